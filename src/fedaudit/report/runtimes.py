"""Where the run's time went: every job's Snakemake benchmark file (``workflow/rules/
benchmarks.smk`` gives every rule one, ``results/benchmarks/<rule>/<wildcard values>.tsv``)
summed per rule and per scenario.

- **job-minutes**: the sum of the jobs' wall times (the benchmark's ``s``): the work, whatever
  the number of cores;
- **wall (span)**: from the first job's start to the last job's end (a benchmark file is written
  when its job ends, so start = the file's mtime − ``s``); for a run that was interrupted and
  resumed, the span includes the pause;
- **CPU minutes** (``cpu_time``) and the largest job's peak resident memory (``max_rss``), where
  the benchmark could sample them. The CPU time is a lower bound: Snakemake samples a job every
  0.5 s for its first 15 s, then every 30 s, and keeps the last sample, so a job longer than
  15 s loses the CPU time it spent after that sample (up to 30 s). Measured on a 2-core AMD
  EPYC: a gradient-inversion job recorded 14.2 s of CPU in 32.7 s, and the same job alone used
  30.8 s of user time in 30.1 s: it was never idle. Read job-minutes for the work.

Only the jobs of this configuration are counted: files of rules it does not define, or whose
scenario, center or patient it does not have (left by an earlier configuration), are skipped and
the table says how many."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.report.tables import DASH, Block, Table, TableError

log = logging.getLogger(__name__)

SHARED = "(shared)"  # jobs without a scenario: data, preprocessing, summaries, report


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict[str, str]
    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    end: float  # POSIX time the benchmark file was written (the job's end)

    @property
    def start(self) -> float:
        return self.end - self.seconds


def benchmark_path(root: str, rule: str, wildcards: Sequence[str]) -> str:
    """A rule's benchmark file pattern: ``<root>/<rule>.tsv``, or with wildcards (sorted, the
    order :func:`collect` reads them in) ``<root>/<rule>/{w1}/{w2}.tsv``."""
    names = sorted(wildcards)
    if not names:
        return f"{root}/{rule}.tsv"
    return f"{root}/{rule}/" + "/".join("{" + n + "}" for n in names) + ".tsv"


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # "NA": the job ended before the benchmark's first sample
        return float("nan")


def read_benchmark(path: Path) -> dict[str, float]:
    """The last record of one benchmark file (Snakemake writes one per repeat)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(lines) < 2:
        raise TableError(f"{path}: not a Snakemake benchmark file (no record)")
    header, record = lines[0].split("\t"), lines[-1].split("\t")
    if "s" not in header or len(record) != len(header):
        raise TableError(f"{path}: not a Snakemake benchmark file (header {header})")
    return {k: _number(v) for k, v in zip(header, record, strict=True) if k != "h:m:s"}


def collect(root: Path, rules: Mapping[str, Sequence[str]],
            known: Mapping[str, Iterable[str]]) -> tuple[list[Job], int]:
    """Every benchmark file under ``root`` of a rule in ``rules`` (rule -> its wildcard names,
    sorted: the file's path components) whose wildcard values are in ``known`` (wildcard ->
    this configuration's values; wildcards not listed are not checked). Returns the jobs and
    the number of files skipped."""
    allowed = {k: set(v) for k, v in known.items()}
    jobs, skipped = [], 0
    for path in sorted(root.rglob("*.tsv")):
        parts = path.relative_to(root).with_suffix("").parts
        rule = parts[0]
        names = rules.get(rule)
        if names is None or len(parts) != 1 + len(names):
            skipped += 1
            continue
        values = dict(zip(names, parts[1:], strict=True))
        if any(k in allowed and v not in allowed[k] for k, v in values.items()):
            skipped += 1
            continue
        rec = read_benchmark(path)
        jobs.append(Job(rule=rule, wildcards=values, seconds=rec["s"],
                        cpu_seconds=rec.get("cpu_time", np.nan),
                        max_rss_mb=rec.get("max_rss", np.nan), end=path.stat().st_mtime))
    return jobs, skipped


def _span(jobs: Sequence[Job]) -> float:
    return max(j.end for j in jobs) - min(j.start for j in jobs)


def _row(level: str, name: str, jobs: Sequence[Job], total: float) -> dict[str, Any]:
    secs = np.array([j.seconds for j in jobs])
    cpu = np.array([j.cpu_seconds for j in jobs])
    rss = np.array([j.max_rss_mb for j in jobs])
    longest = max(jobs, key=lambda j: j.seconds)
    return {"level": level, "name": name, "jobs": len(jobs),
            "job_minutes": secs.sum() / 60, "share": secs.sum() / total if total else np.nan,
            "wall_minutes": _span(jobs) / 60, "longest_job_s": longest.seconds,
            "longest_job": ", ".join(longest.wildcards.values()) or longest.rule,
            "cpu_minutes": np.nansum(cpu) / 60 if np.isfinite(cpu).any() else np.nan,
            "max_rss_mb": np.nanmax(rss) if np.isfinite(rss).any() else np.nan}


def summarise(jobs: Sequence[Job]) -> pd.DataFrame:
    """Rows per rule, per scenario (jobs without one under ``(shared)``) and the total,
    each sorted by job-minutes, largest first."""
    if not jobs:
        raise TableError("no benchmark files: has any job of this configuration run?")
    total = sum(j.seconds for j in jobs)
    out = [_row("total", "all jobs", jobs, total)]
    for level, key in (("rule", lambda j: j.rule),
                       ("scenario", lambda j: j.wildcards.get("scenario", SHARED))):
        groups: dict[str, list[Job]] = {}
        for j in jobs:
            groups.setdefault(key(j), []).append(j)
        rows = [_row(level, name, g, total) for name, g in groups.items()]
        out += sorted(rows, key=lambda r: -r["job_minutes"])
    return pd.DataFrame(out)


def _minutes(v: float) -> str:
    return f"{v:.1f}" if np.isfinite(v) else DASH


def runtime_table(data: pd.DataFrame, skipped: int = 0) -> Table:
    total = data[data["level"] == "total"].iloc[0]
    blocks = []
    for level, title in (("total", "All jobs"), ("rule", "Per rule"),
                         ("scenario", "Per scenario")):
        sub = data[data["level"] == level]
        frame = pd.DataFrame({
            {"total": "Run", "rule": "Rule", "scenario": "Scenario"}[level]: sub["name"],
            "Jobs": sub["jobs"].astype(int).astype(str),
            "Job-minutes": sub["job_minutes"].map(_minutes),
            "Share": sub["share"].map(lambda v: f"{100 * v:.0f} %"),
            "Wall (span, min)": sub["wall_minutes"].map(_minutes),
            "Longest job (s)": sub["longest_job_s"].map(lambda v: f"{v:.0f}"),
            "CPU minutes (≥)": sub["cpu_minutes"].map(_minutes),
            "Peak memory (MB)": sub["max_rss_mb"].map(
                lambda v: f"{v:.0f}" if np.isfinite(v) else DASH),
        }).reset_index(drop=True)
        blocks.append(Block(frame, title))
    notes = [f"{int(total['jobs'])} jobs, {total['job_minutes']:.1f} job-minutes (the sum of "
             f"the jobs' wall times), {total['wall_minutes']:.1f} min from the first job's "
             "start to the last one's end (a resumed run's pause included). From each job's "
             "Snakemake benchmark file (results/benchmarks/); a job that did not re-run keeps "
             "the time of the run that made its outputs."]
    if skipped:
        notes.append(f"{skipped} benchmark file(s) of jobs this configuration does not have "
                     "(an earlier configuration's) are not counted.")
    notes.append("CPU minutes are a lower bound: Snakemake samples a job's CPU time every 0.5 s "
                 "for its first 15 s, then every 30 s, and keeps the last sample, so a longer "
                 "job loses up to 30 s of it. A gap between job-minutes and CPU minutes is not "
                 "idle time.")
    return Table(name="runtimes", title="Runtimes: job-minutes and wall time per rule and per "
                 "scenario", data=data, blocks=blocks, notes=notes)


def build_runtime_table(inputs: Any, params: Any) -> Table:
    """Rule table_runtimes: ``params.benchmarks`` (the folder), ``params.rules`` (rule ->
    wildcard names), ``params.known`` (wildcard -> this configuration's values)."""
    jobs, skipped = collect(Path(params.benchmarks), params.rules, params.known)
    if skipped:
        log.info("%d benchmark file(s) of other configurations skipped", skipped)
    return runtime_table(summarise(jobs), skipped)
