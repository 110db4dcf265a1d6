"""The documentation a user reads: a short README, relative links and anchors that resolve, the
outputs page generated from the catalog, and the results page that matches the run it names."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from fedaudit.catalog import catalog
from fedaudit.report.outputs_page import build_outputs_page
from fedaudit.report.results_page import build_page, check_page

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "config" / "README.md",
                *(ROOT / "docs").glob("*.md"), *(ROOT / "src").rglob("README.md")])
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_REF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)", re.M)  # [name]: target (reference-style)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than '-' and '_' dropped,
    spaces to '-' (inline code and emphasis markers dropped with it)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in _HEADING.finditer(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")  # GitHub numbers repeated headings
        seen[s] = n + 1
    return out


def links(page: Path) -> list[str]:
    text = _CODE.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    targets = _LINK.findall(text) + _REF.findall(text)
    return [t.strip("<>") for t in targets if not re.match(r"[a-z]+:", t.strip("<>"))]


def test_the_readme_is_a_short_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines (at most 200)"
    long = [(i, len(line)) for i, line in enumerate(lines, 1) if len(line) > 100]
    assert not long, f"README.md lines over 100 characters (line, length): {long}"


def test_every_relative_link_and_anchor_resolves() -> None:
    assert len(PAGES) >= 10, [p.name for p in PAGES]
    broken = []
    for page in PAGES:
        for target in links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no heading #{anchor})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "a.md"
    page.write_text("# A page\n\n[ok](#a-page) [bad](b.md) `[code](x.md)` [r][1]\n```\n[f](y.md)\n"
                    "```\n\n[1]: c.md#x\n", encoding="utf-8")
    assert links(page) == ["#a-page", "b.md", "c.md#x"]
    assert anchors(page) == {"a-page"}
    assert slug("`trap_weights_3d`") == "trap_weights_3d"
    assert slug("Tables, figures and the report") == "tables-figures-and-the-report"


def test_the_outputs_page_is_generated_from_the_catalog() -> None:
    committed = (ROOT / "docs" / "outputs.md").read_text(encoding="utf-8")
    assert committed == build_outputs_page(catalog([])), (
        "docs/outputs.md is out of date: run python -m fedaudit.report.outputs_page")
    for name in catalog([]).tables:
        assert f"[`{name}`](results-demo.md#{name})" in committed


def test_the_published_demo_page_covers_every_table() -> None:
    page = (ROOT / "docs" / "results-demo.md").read_text(encoding="utf-8")
    for line in ("- Run finished: ", "- Machine: ", "- Code: FedAudit ", "- Seed", "- Time: "):
        assert line in page, f"docs/results-demo.md lacks its '{line.strip()}' line"
    shown = set(re.findall(r"^## (\S+)$", page, re.M))
    assert shown == set(catalog([]).tables), (
        "docs/results-demo.md shows other tables than the demo makes: regenerate it with "
        "python -m fedaudit.report.results_page publish")
    hashes = re.findall(r"^Source: `results/tables/(\S+)\.csv`, SHA-256 `[0-9a-f]{64}`\.$",
                        page, re.M)
    assert sorted(hashes) == sorted(shown)


def _run(tmp_path: Path) -> Path:
    """A results folder as a run leaves it: two tables (CSV, Markdown) and the front page."""
    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    (results / "report").mkdir()
    pd.DataFrame({"center": ["A", "B"], "mae": [101.5, 97.25]}).to_csv(
        results / "tables" / "quality.csv", index=False)
    (results / "tables" / "quality.md").write_text(
        "**Quality**\n\n| Center | MAE |\n|---|---|\n| A | 101.5 |\n| B | 97.25 |\n")
    pd.DataFrame({"level": ["total", "rule"], "name": ["all jobs", "train"], "jobs": [3, 1],
                  "job_minutes": [2.5, 2.0], "wall_minutes": [1.5, 1.0]}).to_csv(
        results / "tables" / "runtimes.csv", index=False)
    (results / "tables" / "runtimes.md").write_text("| rule | minutes |\n|---|---|\n")
    (results / "report" / "front_page.rst").write_text(
        "Intro {{ snakemake.config['seed'] }}\n\nAudit verdict\n-------------\n\n"
        "- **Utility**: yes: MAE at most 0.48× the constant predictor's.\n\n"
        "How the audit works\n-------------------\n\nThe stages.\n")
    return results


def test_the_results_page_matches_its_run_and_names_what_changed(tmp_path: Path) -> None:
    results = _run(tmp_path)
    page = build_page(results, ["quality", "runtimes"], seeds=[7], where="test machine")
    assert check_page(page, results) == []
    assert "- Seed: 7" in page and "- Machine: test machine" in page
    assert "2.5 job-minutes over 3 jobs" in page
    assert "| A | 101.5 |" in page and "0.48×" in page
    assert "{{" not in page, "the front page's template introduction is not a result"
    assert "The stages" not in page, "the method's description after the verdict is not one"

    # a number typed over on the page
    problems = check_page(page.replace("| A | 101.5 |", "| A | 99.0 |"), results)
    assert problems == [f"quality: the table on the page differs from "
                        f"{results / 'tables' / 'quality'}.md"]
    # the table re-run since the page was made
    csv = results / "tables" / "quality.csv"
    csv.write_text(csv.read_text().replace("97.25", "97.5"))
    assert any(p.startswith("quality: ") and "has changed" in p
               for p in check_page(page, results))
    # a table of the run the page lacks, and a verdict that moved
    fresh = build_page(results, ["quality"], seeds=[7], where="x")
    assert check_page(fresh, results) == [
        f"runtimes: {results / 'tables' / 'runtimes.csv'} is not on the page"]
    assert check_page(fresh, results, complete=False) == []
    front = results / "report" / "front_page.rst"
    front.write_text(front.read_text().replace("0.48×", "0.52×"))
    assert check_page(fresh, results, complete=False) == [
        f"the verdict on the page differs from {front}"]


def test_the_results_page_gives_the_verdicts_summary_table_in_markdown(tmp_path: Path) -> None:
    """The front page's summary (an RST list-table) and its detail subsection reach the results
    page as a pipe table and a ``###`` heading; the next section of the front page does not."""
    from fedaudit.report.levels import Finding
    from fedaudit.report.verdict import front_page

    results = _run(tmp_path)
    findings = [Finding("Utility", "info", "yes.", number="0.48× the constant's",
                        control="the constant predictor"),
                Finding("Trap weights | 2-D", "high", "32/32 slices.", number="32/32 slices",
                        attacker="Malicious server", advice="turn on the weight audit")]
    (results / "report" / "front_page.rst").write_text(
        front_page("Intro.\n\nThe stages.", findings, demo=False))
    page = build_page(results, ["quality"], seeds=[7], where="x")
    assert check_page(page, results, complete=False) == []
    verdict = page[page.index("## Audit verdict"):page.index("## quality")]
    assert ("| Threat | Who attacks | Level | The number behind it | Control that licenses it "
            "| What to do |\n|---|---|---|---|---|---|\n"
            "| Trap weights \\| 2-D | Malicious server | **high** | 32/32 slices | — | turn on "
            "the weight audit |\n"
            "| Utility | — | **info** | 0.48× the constant's | the constant predictor | — |"
            ) in verdict
    assert "### Detail" in verdict and "- **Utility** (info): yes." in verdict
    assert "list-table" not in verdict and "The stages" not in page


def test_the_results_page_refuses_a_front_page_without_a_verdict(tmp_path: Path) -> None:
    results = _run(tmp_path)
    (results / "report" / "front_page.rst").write_text("Intro only\n")
    with pytest.raises(ValueError, match="Audit verdict"):
        build_page(results, ["quality"], seeds=[1], where="x")


def test_the_results_page_names_the_code_that_made_it(tmp_path: Path) -> None:
    from fedaudit import __version__
    from fedaudit.report.results_page import code_version

    assert code_version(tmp_path) == f"FedAudit {__version__} (not a git checkout)"
    assert re.fullmatch(rf"FedAudit {re.escape(__version__)}, git [0-9a-f]{{12}}"
                        r"( with uncommitted changes)?", code_version(ROOT))
    page = build_page(_run(tmp_path), ["quality"], seeds=[1], where="x", code="FedAudit 9")
    assert "- Code: FedAudit 9\n" in page
