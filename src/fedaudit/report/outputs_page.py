"""The outputs page (``docs/outputs.md``), generated from the threat catalog: every table a
configuration can produce, with what it holds and the published table it corresponds to, and
the folders of ``results/``. A plugin's table appears here by declaring ``description`` and
``paper`` in its :class:`fedaudit.catalog.TableSpec`; a test fails when the committed page is
not what this module writes.

``python -m fedaudit.report.outputs_page`` rewrites ``docs/outputs.md``; ``--check`` only
compares.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fedaudit.atomic import write_text
from fedaudit.catalog import Catalog, catalog

__all__ = ["FOLDERS", "build_outputs_page", "main"]

# What the workflow writes besides the tables, in DAG order: (path, what).
FOLDERS: tuple[tuple[str, str], ...] = (
    ("results/data/demo/<center>/<patient>/{mr,ct[,mask]}.nii.gz",
     "demo input in the SynthRAD2023 layout (only for centers whose source is `demo`)"),
    ("results/data/montage/<center>.png", "raw MR / CT / mask mid-slices per center"),
    ("results/preprocessed/<center>/<patient>/{mr,ct,mask}.nii.gz",
     "the preprocessed cube: MR in [0, 1], CT in HU, −1000 HU / 0 outside the head"),
    ("results/preprocessed/<center>/<patient>/steps/",
     "each preprocessing step's output and JSON record"),
    ("results/preprocessed/qc.tsv, qc_flags.json",
     "QC per patient with per-center outlier flags, and the patients who failed a step; the "
     "flagged, failed and excluded patients"),
    ("results/splits/<center>.json", "patient-level train / val / test lists"),
    ("results/train/<scenario>/{model.pt,history.tsv,clients.tsv}",
     "the final global model; what the server recorded per round and center; the clients' own "
     "records"),
    ("results/train/<scenario>/server_log/",
     "the server's view of the logged rounds: the global model, every update it received "
     "(under SecAgg+ the masked vectors and the aggregate) and the round's messages"),
    ("results/eval/<scenario>/{metrics.csv,sct/}",
     "per test patient MAE (HU), PSNR, SSIM and the synthetic CT"),
    ("results/eval/{summary.csv,wilcoxon.csv,constant/}",
     "per scenario and center mean ± sd against the constant predictor; paired Wilcoxon tests "
     "against each scenario's reference"),
    ("results/attacks/<attack>/", "each attack's raw measurements, one folder per attack"),
    ("results/tables/<name>.{csv,md,tex,html}",
     "the tables below: tidy CSV, Markdown, LaTeX (booktabs) and the report's HTML"),
    ("results/figures/", "training curves, heatmaps, the sCT comparison and every attack's "
     "figures"),
    ("results/report/front_page.rst", "the report's front page with the audit verdict"),
    ("results/report/results.md",
     "every table and the verdict with the CSVs' hashes, the date, machine and seeds "
     "(published as docs/results-demo.md for the demo)"),
    ("results/benchmarks/<rule>/...tsv", "each job's wall time, CPU time and memory"),
    ("results/logs/<rule>/...log", "one log per job"),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "—"


def build_outputs_page(cat: Catalog) -> str:
    """The page's Markdown: the folders, then every table of ``cat`` by report category."""
    lines = [
        "# Outputs",
        "",
        "Generated from the threat catalog by `python -m fedaudit.report.outputs_page`; do not "
        "edit by hand.",
        "Everything goes to `results/` (never committed). The demo's numbers are in",
        "[results-demo.md](results-demo.md); the papers are listed in",
        "[references.md](references.md).",
        "",
        "## Folders",
        "",
        "| path | what |",
        "|---|---|",
        *(f"| `{path}` | {_cell(what)} |" for path, what in FOLDERS),
        "",
        "## Tables",
        "",
        "Each is `results/tables/<name>.{csv,md,tex,html}` and a section of the report. Which "
        "ones a run makes depends on its configuration.",
        "",
        "| table | report category | published counterpart | what | primary statistic |",
        "|---|---|---|---|---|",
    ]
    specs = sorted(cat.tables.values(), key=lambda t: (t.category, t.order, t.name))
    missing = [t.name for t in specs if not t.description]
    if missing:
        raise ValueError(f"table(s) {', '.join(missing)} declare no description (TableSpec."
                         "description): the outputs page would not say what they hold")
    lines += [f"| [`{t.name}`](results-demo.md#{t.name}) | {_cell(t.category)} — "
              f"{_cell(t.subcategory)} | {_cell(t.paper)} | {_cell(t.description)} | "
              f"{_cell(t.primary)} |" for t in specs]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedaudit.report.outputs_page",
                                     description="Write (or --check) docs/outputs.md.")
    parser.add_argument("page", nargs="?", default="docs/outputs.md")
    parser.add_argument("--check", action="store_true",
                        help="compare with the page instead of writing it")
    args = parser.parse_args(argv)
    text = build_outputs_page(catalog([]))
    page = Path(args.page)
    if args.check:
        if not page.exists() or page.read_text(encoding="utf-8") != text:
            print(f"{page} is out of date: run python -m fedaudit.report.outputs_page",
                  file=sys.stderr)
            return 1
        print(f"{page}: up to date")
        return 0
    write_text(text, page)
    print(f"{page}: written")
    return 0


if __name__ == "__main__":  # pragma: no cover - the command line
    raise SystemExit(main())
