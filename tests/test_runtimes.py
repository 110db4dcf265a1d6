"""The runtime table (fedaudit.report.runtimes): benchmark files written by Snakemake's own writer
are summed per rule and per scenario as computed by hand, spans come from the files' times, and
files of another configuration are left out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from snakemake.benchmark import BenchmarkRecord, write_benchmark_records

from fedaudit.report.runtimes import collect, read_benchmark, runtime_table, summarise
from fedaudit.report.tables import TableError

RULES = {"train": ["scenario"], "register": ["center", "patient"], "splits": []}
T0 = 1_800_000_000.0  # the jobs' end times, as POSIX seconds


def _bench(root: Path, rel: str, seconds: float, end: float, cpu: float = 1.0,
           rss: float = 100.0) -> None:
    """One job's benchmark file, written as Snakemake writes it, ending at ``end``."""
    rec = BenchmarkRecord(running_time=seconds, max_rss=rss, max_vms=2 * rss, max_uss=rss,
                          max_pss=rss, io_in=0.0, io_out=0.0, cpu_time=cpu)
    rec.data_collected = True
    rec.cpu_usages = {}
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_benchmark_records([rec], str(path), extended_fmt=False)
    os.utime(path, (end, end))


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    root = tmp_path / "benchmarks"
    _bench(root, "register/A/p1.tsv", 30, T0 + 30, cpu=25, rss=300)
    _bench(root, "register/A/p2.tsv", 40, T0 + 40, cpu=38, rss=350)
    _bench(root, "splits.tsv", 1, T0 + 41)
    _bench(root, "train/baseline.tsv", 600, T0 + 700, cpu=590, rss=2000)
    _bench(root, "train/secagg.tsv", 300, T0 + 650, cpu=280, rss=1500)
    # another configuration's: a scenario, a patient and a rule this one does not have
    _bench(root, "train/old-scenario.tsv", 999, T0 + 2000)
    _bench(root, "register/A/gone.tsv", 999, T0 + 2000)
    _bench(root, "removed_rule/x.tsv", 999, T0 + 2000)
    return root


KNOWN = {"scenario": ["baseline", "secagg"], "center": ["A"], "patient": ["p1", "p2"]}


def test_snakemake_benchmark_files_are_read(bench: Path) -> None:
    rec = read_benchmark(bench / "register/A/p1.tsv")
    assert rec["s"] == pytest.approx(30) and rec["cpu_time"] == pytest.approx(25)
    assert rec["max_rss"] == pytest.approx(300)


def test_sums_and_spans_per_rule_and_scenario(bench: Path) -> None:
    jobs, skipped = collect(bench, RULES, KNOWN)
    assert skipped == 3 and len(jobs) == 5
    data = summarise(jobs).set_index(["level", "name"])
    total = data.loc[("total", "all jobs")]
    assert total["jobs"] == 5
    assert total["job_minutes"] == pytest.approx((30 + 40 + 1 + 600 + 300) / 60)
    # first start: register p1 (T0 + 30 - 30 = T0); last end: train baseline (T0 + 700)
    assert total["wall_minutes"] == pytest.approx(700 / 60)
    reg = data.loc[("rule", "register")]
    assert reg["jobs"] == 2 and reg["job_minutes"] == pytest.approx(70 / 60)
    assert reg["wall_minutes"] == pytest.approx(40 / 60)  # T0 .. T0 + 40
    assert reg["longest_job_s"] == pytest.approx(40) and reg["longest_job"] == "A, p2"
    assert reg["cpu_minutes"] == pytest.approx(63 / 60) and reg["max_rss_mb"] == 350
    train = data.loc[("rule", "train")]
    # secagg ran T0+350 .. T0+650 beside baseline T0+100 .. T0+700
    assert train["wall_minutes"] == pytest.approx(600 / 60)
    assert train["share"] == pytest.approx(900 / 971)
    shared = data.loc[("scenario", "(shared)")]
    assert shared["jobs"] == 3 and shared["job_minutes"] == pytest.approx(71 / 60)
    assert data.loc[("scenario", "baseline")]["job_minutes"] == pytest.approx(10)
    # largest first within a level
    rules = [n for lv, n in data.index if lv == "rule"]
    assert rules == ["train", "register", "splits"]


def test_table_states_totals_and_what_was_left_out(bench: Path) -> None:
    jobs, skipped = collect(bench, RULES, KNOWN)
    table = runtime_table(summarise(jobs), skipped)
    assert list(table.blocks[0].frame["Job-minutes"]) == ["16.2"]
    per_rule = table.blocks[1].frame
    assert list(per_rule["Rule"]) == ["train", "register", "splits"]
    assert list(per_rule["Job-minutes"]) == ["15.0", "1.2", "0.0"]
    assert "5 jobs, 16.2 job-minutes" in table.notes[0]
    assert "11.7 min" in table.notes[0]
    assert table.notes[1].startswith("3 benchmark file(s)")


def test_unsampled_jobs_and_bad_files(tmp_path: Path) -> None:
    root = tmp_path / "b"
    # a job faster than the first sample: Snakemake writes NA for memory and CPU
    rec = BenchmarkRecord(running_time=0.4)
    rec.data_collected = False
    (root / "splits.tsv").parent.mkdir(parents=True)
    write_benchmark_records([rec], str(root / "splits.tsv"), extended_fmt=False)
    jobs, _ = collect(root, RULES, KNOWN)
    row = summarise(jobs).iloc[0]
    assert row["job_minutes"] == pytest.approx(0.4 / 60) and np.isnan(row["max_rss_mb"])
    (root / "splits.tsv").write_text("not a benchmark\n", encoding="utf-8")
    with pytest.raises(TableError, match="splits.tsv"):
        collect(root, RULES, KNOWN)
    (root / "splits.tsv").unlink()
    with pytest.raises(TableError, match="no benchmark files"):
        summarise(collect(root, RULES, KNOWN)[0])


def test_cpu_minutes_are_labelled_a_lower_bound_for_snakemakes_sampling(bench: Path) -> None:
    """Snakemake keeps the last CPU sample of a job (every 0.5 s for ~15 s, then every 30 s),
    so the column is a lower bound, and the table says so; if Snakemake's schedule changes,
    this fails and the note (fedaudit.report.runtimes) must be re-measured."""
    from snakemake import benchmark

    assert (benchmark.BENCHMARK_INTERVAL, benchmark.BENCHMARK_INTERVAL_SHORT) == (30, 0.5)
    jobs, _ = collect(bench, RULES, KNOWN)
    table = runtime_table(summarise(jobs))
    assert all("CPU minutes (≥)" in b.frame.columns for b in table.blocks)
    assert any("lower bound" in n and "not idle time" in n for n in table.notes)
