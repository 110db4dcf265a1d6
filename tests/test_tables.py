"""The study's tables (paper 000 layout), their renderings, the report's verdict and the choice of
the Fig. 4 patient: each checked against numbers computed by hand from the same inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedaudit.evaluation.stats import summarize, wilcoxon_vs_reference
from fedaudit.report import verdict
from fedaudit.report.render import latex_escape, to_html, to_latex, to_markdown, write_table
from fedaudit.report.selection import (
    comparison_gamma,
    comparison_rows,
    representative_patient,
)
from fedaudit.report.tables import (
    DASH,
    TableError,
    inversion_table,
    membership_table,
    poisoning_grid,
    poisoning_table,
    quality_table,
)
from fedaudit.scenarios import Scenario

CENTERS = {"A": ["a1", "a2", "a3"], "B": ["b1", "b2"], "E": ["e1", "e2", "e3", "e4"]}


def _patients(scenario: str, offset: dict[str, float]) -> pd.DataFrame:
    """Per-patient metrics: MAE = 100 + 10 * patient index + the scenario's per-center offset."""
    rows = []
    for center, pids in CENTERS.items():
        for i, pid in enumerate(pids):
            mae = 100.0 + 10.0 * i + offset.get(center, 0.0)
            rows.append({"scenario": scenario, "center": center, "patient": pid, "mae": mae,
                         "psnr": 30.0 - i, "ssim": 0.9 - 0.01 * i})
    return pd.DataFrame(rows)


SCENARIOS = {
    "baseline": Scenario("baseline"),
    "secagg": Scenario("secagg", secagg=True),
    "fedmedian": Scenario("fedmedian", "fedmedian"),
    "poison-A-g1.0-fedavg": Scenario("poison-A-g1.0-fedavg", "fedavg", False, "A", 1.0,
                                     "baseline"),
    "poison-A-g1.0-fedmedian": Scenario("poison-A-g1.0-fedmedian", "fedmedian", False, "A",
                                        1.0, "fedmedian"),
    "poison-A-g0.1-fedavg": Scenario("poison-A-g0.1-fedavg", "fedavg", False, "A", 0.1,
                                     "baseline"),
    "poison-A-g0.1-fedmedian": Scenario("poison-A-g0.1-fedmedian", "fedmedian", False, "A",
                                        0.1, "fedmedian"),
}
OFFSETS = {
    "baseline": {}, "secagg": {"E": 0.5}, "fedmedian": {"A": 2.0, "B": 2.0, "E": 2.0},
    "poison-A-g1.0-fedavg": {"A": 300.0, "B": 200.0, "E": 150.0},
    "poison-A-g1.0-fedmedian": {"A": 50.0, "B": 20.0, "E": 10.0},
    # at gamma 0.1 the two aggregations tie on B: neither is marked better
    "poison-A-g0.1-fedavg": {"A": 5.0, "B": 4.0, "E": 1.0},
    "poison-A-g0.1-fedmedian": {"A": 7.0, "B": 4.0, "E": 3.0},
    # the constant predictor: baseline / constant = 110/210 on A, 105/200 on B, 115/125 on E
    "constant": {"A": 100.0, "B": 95.0, "E": 10.0},
}


@pytest.fixture(scope="module")
def per_patient() -> pd.DataFrame:
    return pd.concat([_patients(s, OFFSETS[s]) for s in [*SCENARIOS, "constant"]],
                     ignore_index=True)


@pytest.fixture(scope="module")
def summary(per_patient: pd.DataFrame) -> pd.DataFrame:
    return summarize(per_patient)


@pytest.fixture(scope="module")
def grid(summary: pd.DataFrame, per_patient: pd.DataFrame) -> pd.DataFrame:
    pairs = {s.name: s.reference for s in SCENARIOS.values() if s.reference}
    return poisoning_grid(summary, wilcoxon_vs_reference(per_patient, pairs), SCENARIOS)


def test_quality_table_is_table2_with_the_constant_predictor(summary: pd.DataFrame) -> None:
    t = quality_table(summary, external=["E"])
    frame = t.blocks[0].frame
    assert list(frame.columns) == ["Center", "Model", "SecAgg+", "MAE (HU)", "SSIM", "PSNR (dB)",
                                   "MAE ÷ constant", "n"]
    assert list(frame["Center"]) == ["A", "", "", "B", "", "", "E (External)", "", ""]
    assert list(frame["SecAgg+"]) == ["✗", "✓", "–"] * 3
    assert list(frame["Model"]) == ["federation", "federation", "constant predictor"] * 3
    # E: MAE 100, 110, 120, 130 (+0.5 under SecAgg+, +10 for the constant): mean and sample sd
    e = np.array([100.0, 110.0, 120.0, 130.0])
    assert frame["MAE (HU)"].iloc[6] == f"{e.mean():.1f} ± {e.std(ddof=1):.1f}"
    assert frame["MAE (HU)"].iloc[7] == f"{e.mean() + 0.5:.1f} ± {e.std(ddof=1):.1f}"
    assert frame["MAE (HU)"].iloc[8] == f"{e.mean() + 10:.1f} ± {e.std(ddof=1):.1f}"
    assert list(frame["MAE ÷ constant"]) == [f"{110 / 210:.2f}", f"{110 / 210:.2f}", "–",
                                             f"{105 / 200:.2f}", f"{105 / 200:.2f}", "–",
                                             f"{115 / 125:.2f}", f"{115.5 / 125:.2f}", "–"]
    assert frame["SSIM"].iloc[0] == "0.89 ± 0.01"
    assert frame["n"].tolist() == ["3"] * 3 + ["2"] * 3 + ["4"] * 3
    tidy = t.data[t.data["scenario"] != "constant"].set_index(["center", "secagg", "metric"])
    assert tidy.loc[("E", True, "mae"), "mean"] == pytest.approx(115.5)
    assert tidy.loc[("B", False, "mae_vs_constant"), "mean"] == pytest.approx(105 / 200)
    with pytest.raises(TableError, match="'nope'"):
        quality_table(summary, secagg="nope")
    plain = quality_table(summary, constant=None).blocks[0].frame
    assert "MAE ÷ constant" not in plain.columns and len(plain) == 6


def test_utility_gate_reads_the_worst_center(summary: pd.DataFrame) -> None:
    failed = verdict.utility_finding(quality_table(summary, external=["E"]).data)
    # E: 115 vs 125 HU = 0.92x > 0.8x
    assert failed.level == "inconclusive" and "did not learn" in failed.sentence
    assert "0.92× on center E: 115 HU vs 125 HU" in failed.sentence
    page = verdict.front_page("Intro.\n\nStages.", [failed], demo=False)
    assert page.index("**The federation did not learn the task**") < page.index(failed.topic)
    better = summary.copy()
    better.loc[(better["scenario"] == "constant") & (better["center"] == "E"), "mae_mean"] = 230.0
    passed = verdict.utility_finding(quality_table(better, external=["E"]).data)
    # worst is now B (105/200 = 0.525 vs A 110/210 = 0.524, E 115/230 = 0.5)
    assert passed.level == "info" and "at most 0.53× the constant predictor's" in passed.sentence
    assert "did not learn" not in verdict.front_page("I.", [passed], demo=False)
    assert verdict.utility_finding(quality_table(summary, constant=None).data) is None


def test_data_quality_finding_names_flagged_patients() -> None:
    none = verdict.data_quality_finding({"flagged": {}, "excluded": [], "z_threshold": 3.5})
    assert none.level == "info" and "robust z below 3.5" in none.sentence
    rec = {"flagged": {"E/P4": "Mattes MI after registration -0.560 vs median -0.720"},
           "excluded": ["E/P4"], "z_threshold": 3.5}
    out = verdict.data_quality_finding(rec)
    assert "1 patient(s) flagged" in out.sentence and "E/P4 (excluded: Mattes MI" in out.sentence
    kept = verdict.data_quality_finding({**rec, "excluded": []})
    assert kept.level == "moderate" and "results include them" in kept.sentence


def test_poisoning_grid_reference_pvalue_and_better(grid: pd.DataFrame) -> None:
    g = grid.set_index(["aggregation", "gamma", "evaluated"])
    row = g.loc[("fedavg", 1.0, "B")]
    assert row["mae"] == pytest.approx(105.0 + 200.0)
    assert row["reference"] == "baseline" and row["reference_mae"] == pytest.approx(105.0)
    med = g.loc[("fedmedian", 1.0, "E")]
    assert med["reference"] == "fedmedian" and med["reference_mae"] == pytest.approx(117.0)
    # 4 E patients all worse by the same amount: the exact two-sided signed-rank p is 2/2^4
    assert med["p_value"] == pytest.approx(0.125)
    assert row["p_value"] == pytest.approx(0.5)  # 2 patients, both worse: 2/2^2
    assert bool(g.loc[("fedmedian", 1.0, "B"), "better"])
    assert not bool(g.loc[("fedavg", 1.0, "B"), "better"])
    # the tie at gamma 0.1 on B marks neither
    assert not g.loc[(slice(None), 0.1, "B"), "better"].any()


def test_poisoning_table_layout(grid: pd.DataFrame, summary: pd.DataFrame) -> None:
    t = poisoning_table(grid, summary, external=["E"])
    assert [b.title.split(":")[0] for b in t.blocks] == ["FedAvg", "FedMedian"]
    fedavg = t.blocks[0]
    frame = fedavg.frame
    assert list(frame.columns) == ["Poisoned center", "Noise", "A", "B", "E (External)"]
    assert list(frame["Noise"]) == ["100%", "10%", DASH]  # gamma high to low, then no poisoning
    assert list(frame["Poisoned center"]) == ["A", "", "No poisoning"]
    assert (frame["A"].iloc[:2] == DASH).all()  # the poisoned center on itself
    assert frame["B"].iloc[0] == "305.0 ± 7.1 (p = 0.500)"
    assert frame["E (External)"].iloc[2] == "115.0 ± 12.9"
    # bold: FedMedian beats FedAvg at gamma 1.0 everywhere; at 0.1 FedAvg wins on E only
    assert not fedavg.is_bold(0, 3) and t.blocks[1].is_bold(0, 3)
    assert fedavg.is_bold(1, 4) and not t.blocks[1].is_bold(1, 4)
    assert not fedavg.is_bold(1, 3) and not t.blocks[1].is_bold(1, 3)  # tie
    with pytest.raises(TableError, match="no poisoned scenario"):
        poisoning_table(grid.iloc[0:0], summary)


FEDMIA = pd.DataFrame([
    {"scenario": sc, "secagg": sa, "target": t, "score": "fedmia", "level": lvl, "metric": m,
     "value": v, "n_members": 20, "n_nonmembers": 30}
    for sc, sa, base in (("baseline", False, 0.9), ("secagg", True, 0.5))
    for t, dt in (("A", 0.0), ("B", 0.05))
    for lvl, m, v in (("slice", "auc", base + dt), ("slice", "tpr@0.001fpr", 0.1),
                      ("slice", "tpr@0.01fpr", 0.2), ("patient", "auc", base))
] + [{"scenario": "baseline", "secagg": False, "target": "A", "score": "cosine",
      "level": "slice", "metric": "auc", "value": 0.1}])


def test_membership_table() -> None:
    t = membership_table(FEDMIA)
    frame = t.blocks[0].frame
    assert list(frame["Center"]) == ["A", "", "B", ""]
    assert list(frame["SecAgg+"]) == ["✗", "✓", "✗", "✓"]
    assert list(frame["AUC"]) == ["0.90", "0.50", "0.95", "0.55"]  # the cosine row is not used
    assert list(frame["TPR @ 0.1% FPR"]) == ["0.10"] * 4
    assert frame["Patient-level AUC"].iloc[2] == "0.90"


DLG = pd.DataFrame([
    {"scenario": "baseline", "center": c, "optimizer": o, "network": n, "round": 8,
     "target": "known", "batch_size": 1, "metric": m, "value": v}
    for c, s in (("A", 0.1), ("B", 0.3))
    for o in ("adam", "lbfgs")
    for n, ss, ps in (("unet", s, 6.0), ("control", 0.999, np.inf))
    for m, v in (("ssim", ss), ("psnr", ps), ("iterations", 600))
])


def test_inversion_table_puts_the_control_beside_the_unet() -> None:
    frame = inversion_table(DLG).blocks[0].frame
    assert list(frame.columns) == ["Center", "Optimizer", "UNet SSIM", "UNet PSNR (dB)",
                                   "Control SSIM", "Control PSNR (dB)", "Iterations"]
    assert list(frame["Optimizer"]) == ["Adam", "L-BFGS"] * 2
    assert list(frame["UNet SSIM"]) == ["0.10", "0.10", "0.30", "0.30"]
    assert set(frame["Control PSNR (dB)"]) == {"∞"}  # an exact reconstruction


def test_renderings(grid: pd.DataFrame, summary: pd.DataFrame, tmp_path) -> None:
    t = poisoning_table(grid, summary, external=["E"])
    md = to_markdown(t)
    assert "| Poisoned center | Noise | A | B | E (External) |" in md
    assert "**" + t.blocks[1].frame["B"].iloc[0] + "**" in md  # bold = the better aggregation
    tex = to_latex(t)
    assert r"100\%" in tex and r"$\pm$" in tex and r"\textbf{" in tex
    assert tex.count(r"\multicolumn{5}{l}") == 2  # one title row per aggregation block
    assert latex_escape("a_b & 50% ± –") == r"a\_b \& 50\% $\pm$ --"
    page = to_html(t)
    assert "<b>" in page and "http" not in page  # self-contained
    paths = {fmt: tmp_path / f"p.{fmt}" for fmt in ("csv", "md", "tex", "html")}
    write_table(t, paths)
    back = pd.read_csv(paths["csv"])
    assert len(back) == len(grid) and set(back["aggregation"]) == {"fedavg", "fedmedian"}
    with pytest.raises(ValueError, match="unknown table format"):
        write_table(t, {"docx": tmp_path / "x.docx"})


def test_verdict_levels_follow_the_numbers(grid: pd.DataFrame, summary: pd.DataFrame) -> None:
    mia = verdict.membership_finding(membership_table(FEDMIA).data)
    assert mia.level == "high" and "up to 0.95 (center B, 20 member vs 30 non-member" in \
        mia.sentence
    assert "mitigated (AUC at most 0.55)" in mia.sentence
    low = FEDMIA.assign(value=FEDMIA["value"].where(FEDMIA["secagg"], 0.59))
    assert verdict.membership_finding(membership_table(low).data).level == "low"

    inv = verdict.inversion_finding(inversion_table(DLG).data)
    assert inv.level == "low" and "best UNet SSIM 0.30, center B" in inv.sentence
    broken = DLG.assign(value=DLG["value"].where(
        ~((DLG["network"] == "control") & (DLG["metric"] == "ssim")), 0.4))
    assert verdict.inversion_finding(inversion_table(broken).data).level == "inconclusive"

    fedavg, fedmedian = verdict.poisoning_findings(grid)
    # worst clean center at gamma 1.0 under FedAvg: B, 105 -> 305 HU (+190 %); A is excluded
    assert fedavg.level == "high" and "clean center B by +200 HU" in fedavg.sentence
    # FedMedian: B +18 HU on 107 (+17 %), E +8 HU on 117 (+7 %)
    assert fedmedian.level == "moderate" and "clean center B by +18 HU" in fedmedian.sentence

    cost = verdict.secagg_cost_finding(quality_table(summary, external=["E"]).data)
    assert "+0.5 HU" in cost.sentence and "center E" in cost.sentence
    # E's 0.5 HU on 115 HU is under 1 %: no cost; a lower MAE under SecAgg+ is never a cost
    assert "costs no synthesis quality" in cost.sentence
    better = summary.copy()
    better.loc[(better["scenario"] == "secagg") & (better["center"] == "B"), "mae_mean"] = 90.0
    gain = verdict.secagg_cost_finding(quality_table(better, external=["E"]).data)
    assert "costs no synthesis quality" in gain.sentence and "-15.0 HU" in gain.sentence
    assert "lower with SecAgg+" in gain.sentence
    worse = summary.copy()
    worse.loc[(worse["scenario"] == "secagg") & (worse["center"] == "A"), "mae_mean"] = 121.0
    assert "a measurable" in verdict.secagg_cost_finding(
        quality_table(worse, external=["E"]).data).sentence  # +10 %
    page = verdict.front_page("Intro.\n\nStages.", [mia, inv, fedavg], demo=True)
    assert page.startswith("Intro.") and "synthetic demo data" in page
    assert page.count("\n- **") == 3
    # the verdict comes right after the first paragraph, before how the audit works
    assert page.index("Audit verdict") < page.index("How the audit works") < \
        page.index("Stages.")


def test_sct_comparison_selection() -> None:
    assert comparison_gamma(SCENARIOS) == 1.0
    only_low = {k: v for k, v in SCENARIOS.items() if v.gamma != 1.0}
    assert comparison_gamma(only_low) == 0.1
    assert comparison_gamma({"baseline": SCENARIOS["baseline"]}) is None
    rows = comparison_rows(SCENARIOS, 1.0)
    assert rows == [("no poisoning", "baseline", "fedmedian"),
                    ("poisoned center A", "poison-A-g1.0-fedavg", "poison-A-g1.0-fedmedian")]
    no_median = {k: v for k, v in SCENARIOS.items() if v.aggregation != "fedmedian"}
    assert comparison_rows(no_median, 1.0)[1] == ("poisoned center A", "poison-A-g1.0-fedavg",
                                                  None)
    metrics = pd.DataFrame({"center": ["E"] * 4 + ["A"], "patient": ["e1", "e2", "e3", "e4", "a1"],
                            "mae": [400.0, 100.0, 300.0, 200.0, 250.0]})
    cands = [("E", p) for p in ("e1", "e2", "e3", "e4")]
    assert representative_patient(metrics, cands) == ("E", "e4")  # lower median of 4: 200
    assert representative_patient(metrics, cands[:3]) == ("E", "e3")  # median of 3: 300
    with pytest.raises(ValueError, match="no MAE"):
        representative_patient(metrics, [("E", "e9")])
    # a QC-excluded patient is never the one shown
    flagged = metrics.assign(excluded=[False, False, False, True, False])
    assert representative_patient(flagged, cands) == ("E", "e3")  # median of 100, 300, 400
