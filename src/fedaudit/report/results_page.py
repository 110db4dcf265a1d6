"""The results page: every number the documentation quotes, generated from one run's
``results/`` and checkable against it.

The docs never type a result. They link to this page (published as ``docs/results-demo.md`` for
the default demo), which holds, for the run it was made from: when and on what machine it ran,
its seeds, the audit verdict as the report's front page states it, and every table of the
report in Markdown, each beside the SHA-256 of the CSV it renders. :func:`check_page` reads a
page and a ``results/`` folder and lists every disagreement (a table re-run since, a number
edited by hand, a table missing from the page), so a stale page fails a test instead of
misleading a reader.

Usage: the workflow's ``results_page`` rule writes ``results/report/results.md`` at the end of
every run; ``python -m fedaudit.report.results_page check docs/results-demo.md`` compares a page
with ``results/`` and ``... publish`` copies the run's page to ``docs/results-demo.md`` after
checking it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from fedaudit.atomic import write_text

__all__ = ["GENERATED_BY", "build_page", "check_page", "machine", "main"]

GENERATED_BY = "fedaudit.report.results_page"
VERDICT_HEADING = "Audit verdict"
_SECTION = re.compile(r"^## (.+)\n", re.M)
_SOURCE = re.compile(r"^Source: `results/tables/(?P<name>[\w-]+)\.csv`, SHA-256 "
                     r"`(?P<sha>[0-9a-f]{64})`\.$", re.M)


def sha256(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def machine() -> str:
    """The machine the run's jobs ran on, in words: CPU model, cores, OS, Python and torch."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux: platform's words are what there is
        pass
    try:
        torch = f", torch {metadata.version('torch')}"
    except metadata.PackageNotFoundError:
        torch = ""
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}{torch}")


def code_version(checkout: str | os.PathLike[str]) -> str:
    """FedAudit's version and the checkout's git commit (with a note when files differ from
    it): which code made the numbers."""
    import subprocess

    from fedaudit import __version__

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return f"FedAudit {__version__} (not a git checkout)"
    return f"FedAudit {__version__}, git {commit}" + (" with uncommitted changes" if dirty else "")


def verdict_text(front_page: str) -> str:
    """The verdict part of the report's front page (its "Audit verdict" section with its
    subsections, up to the next reST heading of its level), in Markdown: the introduction
    before it holds the report's templates, not results, and the sections after it describe
    the method. The summary's list-table becomes a pipe table, a subsection a ``###``
    heading (:func:`rst_to_markdown`)."""
    lines = front_page.splitlines()
    heads = [i for i in range(len(lines) - 1)
             if lines[i].strip() and len(set(lines[i + 1].strip())) == 1
             and lines[i + 1].strip()[0] in "-=~" and len(lines[i + 1].strip()) >= 3]
    for k, i in enumerate(heads):
        if lines[i].strip() == VERDICT_HEADING:
            mark = lines[i + 1].strip()[0]
            end = next((j for j in heads[k + 1:] if lines[j + 1].strip()[0] == mark),
                       len(lines))
            return rst_to_markdown("\n".join(lines[i + 2:end])).strip() + "\n"
    raise ValueError(f"the front page has no '{VERDICT_HEADING}' section")


def rst_to_markdown(text: str) -> str:
    """The few reST constructs the verdict uses, in Markdown: a ``list-table`` (header row
    first) as a pipe table, a heading underlined with ``~`` as ``###``. Bullets, ``**bold**``
    and ``*emphasis*`` read the same in both."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == ".. list-table::":
            rows: list[list[str]] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
                cell = lines[i].strip()
                if cell.startswith("* - "):
                    rows.append([cell[4:]])
                elif cell.startswith("- ") and rows:
                    rows[-1].append(cell[2:])
                i += 1
            if rows:
                out += ["| " + " | ".join(rows[0]) + " |",
                        "|" + "|".join("---" for _ in rows[0]) + "|"]
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
                        for r in rows[1:]]
                out.append("")
            continue
        if (i + 1 < len(lines) and line.strip() and lines[i + 1].strip()
                and set(lines[i + 1].strip()) == {"~"} and len(lines[i + 1].strip()) >= 3):
            out.append(f"### {line.strip()}")
            i += 2
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _time_lines(tables: Path) -> list[str]:
    """The run's time from the runtimes table (its "all jobs" row), when the run made one."""
    import pandas as pd

    csv = tables / "runtimes.csv"
    if not csv.exists():
        return []
    total = pd.read_csv(csv)
    total = total[total["level"] == "total"]
    if total.empty:
        return []
    row = total.iloc[0]
    return [f"- Time: {row['wall_minutes']:.1f} min from the first job's start to the last "
            f"job's end, {row['job_minutes']:.1f} job-minutes over {int(row['jobs'])} jobs "
            "([runtimes](#runtimes))"]


def _table_section(name: str, tables: Path) -> str:
    md = (tables / f"{name}.md").read_text(encoding="utf-8").strip()
    return (f"## {name}\n\n{md}\n\nSource: `results/tables/{name}.csv`, SHA-256 "
            f"`{sha256(tables / f'{name}.csv')}`.\n")


def build_page(results: str | os.PathLike[str], names: Sequence[str], *, seeds: Sequence[int],
               title: str = "Results", when: datetime | None = None,
               where: str | None = None, code: str | None = None) -> str:
    """The page for the run in ``results`` (its ``tables/`` and ``report/front_page.rst``):
    ``names`` are the tables in report order; ``when`` defaults to the newest table's time and
    ``where`` to this machine (the rule runs at the end of the run, on its machine); ``code`` is
    :func:`code_version` of the checkout that ran it."""
    results = Path(results)
    tables = results / "tables"
    if when is None:  # when the run made its results: its newest table
        newest = max((tables / f"{n}.csv").stat().st_mtime for n in names)
        when = datetime.fromtimestamp(newest, UTC)
    head = [
        f"# {title}",
        "",
        f"Generated by `{GENERATED_BY}` from `results/` at the end of a run; do not edit it by "
        "hand: the documentation links here instead of typing numbers, and "
        f"`python -m {GENERATED_BY} check <this file>` fails when a table below differs from "
        "the `results/` it names.",
        "",
        f"- Run finished: {when.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {where or machine()}",
        *([f"- Code: {code}"] if code else []),
        f"- Seed{'s' if len(seeds) > 1 else ''}: {', '.join(str(s) for s in seeds)}",
        *_time_lines(tables),
        f"- Tables: {', '.join(f'[{n}](#{n})' for n in names)}",
        "",
        f"## {VERDICT_HEADING}",
        "",
        verdict_text((results / "report" / "front_page.rst").read_text(encoding="utf-8")),
    ]
    return "\n".join(head) + "\n" + "\n".join(_table_section(n, tables) for n in names)


def check_page(page: str, results: str | os.PathLike[str], complete: bool = True) -> list[str]:
    """Every way ``page`` disagrees with the run in ``results``: a table whose CSV hash or
    Markdown differs, a verdict that is not the front page's and, with ``complete``, a table
    under ``results/tables`` the page lacks. Empty when the page states what ``results``
    holds."""
    results = Path(results)
    tables = results / "tables"
    problems = []
    sections = dict(_split_sections(page))
    for name, body in sections.items():
        if name == VERDICT_HEADING:
            continue
        csv = tables / f"{name}.csv"
        if not csv.exists():
            problems.append(f"{name}: the page shows it but {csv} does not exist")
            continue
        source, actual = _SOURCE.search(body), sha256(csv)
        if source is None or source["name"] != name:
            problems.append(f"{name}: no 'Source: results/tables/{name}.csv' line with its hash")
        elif source["sha"] != actual:
            problems.append(f"{name}: {csv} has changed since the page was made (SHA-256 "
                            f"{actual[:12]}…, the page names {source['sha'][:12]}…)")
        shown = body[:source.start()].strip() if source else body.strip()
        if shown != (tables / f"{name}.md").read_text(encoding="utf-8").strip():
            problems.append(f"{name}: the table on the page differs from {tables / name}.md")
    for csv in sorted(tables.glob("*.csv")) if complete else ():
        if csv.stem not in sections:
            problems.append(f"{csv.stem}: {csv} is not on the page")
    front = results / "report" / "front_page.rst"
    verdict = sections.get(VERDICT_HEADING)
    if verdict is None:
        problems.append(f"the page has no '## {VERDICT_HEADING}' section")
    elif front.exists() and verdict.strip() != verdict_text(front.read_text("utf-8")).strip():
        problems.append(f"the verdict on the page differs from {front}")
    return problems


def _split_sections(page: str) -> list[tuple[str, str]]:
    """(heading, body) of each ``## `` section, in page order."""
    marks = list(_SECTION.finditer(page))
    return [(m.group(1).strip(),
             page[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(page)])
            for i, m in enumerate(marks)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {GENERATED_BY}",
        description="Check a results page against results/, or publish the run's page.")
    parser.add_argument("action", choices=["check", "publish"])
    parser.add_argument("page", nargs="?", default="docs/results-demo.md",
                        help="the page to check, or where to publish (default %(default)s)")
    parser.add_argument("--results", default="results", help="the run's folder (default "
                        "%(default)s)")
    args = parser.parse_args(argv)
    if args.action == "publish":
        made = Path(args.results) / "report" / "results.md"
        if not made.exists():
            print(f"{made} does not exist: run the workflow first (rule results_page)",
                  file=sys.stderr)
            return 1
        text = made.read_text(encoding="utf-8")
    else:
        if not Path(args.page).exists():
            print(f"{args.page} does not exist", file=sys.stderr)
            return 1
        text = Path(args.page).read_text(encoding="utf-8")
    problems = check_page(text, args.results)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    if args.action == "publish":
        write_text(text, args.page)
        print(f"{args.page}: published from {args.results}")
    else:
        print(f"{args.page}: matches {args.results}")
    return 0


if __name__ == "__main__":  # pragma: no cover - the command line
    raise SystemExit(main())
