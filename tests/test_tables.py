"""The study's tables (paper 000 layout), their renderings, the report's verdict and the choice of
the Fig. 4 patient: each checked against numbers computed by hand from the same inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedaudit.attacks.dlg.report import inversion_finding, inversion_table
from fedaudit.attacks.fedmia.report import membership_finding, membership_table
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
    poisoning_grid,
    poisoning_table,
    quality_table,
)
from fedaudit.scenarios import Scenario, scenario_of

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
    "secagg": scenario_of("secagg", secagg=True),
    "fedmedian": scenario_of("fedmedian", "fedmedian"),
    "poison-A-g1.0-fedavg": scenario_of("poison-A-g1.0-fedavg", "fedavg", False, "A", 1.0,
                                     reference="baseline"),
    "poison-A-g1.0-fedmedian": scenario_of("poison-A-g1.0-fedmedian", "fedmedian", False, "A",
                                        1.0, reference="fedmedian"),
    "poison-A-g0.1-fedavg": scenario_of("poison-A-g0.1-fedavg", "fedavg", False, "A", 0.1,
                                     reference="baseline"),
    "poison-A-g0.1-fedmedian": scenario_of("poison-A-g0.1-fedmedian", "fedmedian", False, "A",
                                        0.1, reference="fedmedian"),
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
    assert failed.level == "no usable model" and "did not learn" in failed.sentence
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
    none_rec = {"flagged": {}, "excluded": [], "z_threshold": 3.5}
    none = verdict.data_quality_finding(none_rec)
    assert none.level == "info" and "robust z below 3.5" in none.sentence
    rec = {"flagged": {"E/P4": "Mattes MI after registration -0.560 vs median -0.720"},
           "excluded": ["E/P4"], "z_threshold": 3.5}
    out = verdict.data_quality_finding(rec)
    assert "1 patient(s) flagged" in out.sentence and "E/P4 (excluded: Mattes MI" in out.sentence
    kept = verdict.data_quality_finding({**rec, "excluded": []})
    assert kept.level == "moderate" and "results include them" in kept.sentence
    # patients the configuration left out are named too, with or without QC flags
    left = verdict.data_quality_finding({**rec, "left_out": ["A/A001", "C/C004"]})
    assert left.sentence.startswith("2 patient(s) left out of the study by the configuration "
                                     "(preprocess.exclude): A/A001, C/C004. 1 patient(s) flagged")
    assert "A/A001" in verdict.data_quality_finding({**none_rec, "left_out": ["A/A001"]}).sentence
    # patients who failed preprocessing (preprocess.on_error: exclude) are named with the step
    # and error; being excluded, they do not make a kept QC flag read as excluded
    failed = {"A/trunc": "register: /data/trunc/ct.nii.gz: CT file cannot be read"}
    out = verdict.data_quality_finding({**rec, "excluded": ["A/trunc"], "failed": failed})
    assert out.sentence.startswith(
        "1 patient(s) could not be preprocessed and were left out (preprocess.on_error: "
        "exclude): A/trunc (failed at register: /data/trunc/ct.nii.gz: CT file cannot be "
        "read). 1 patient(s) flagged")
    assert out.level == "moderate" and "results include them" in out.sentence


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


def _mia_rows(scenario: str, view: str, score: str, pooled: tuple[float, float, float, float],
              *, control: bool = False, secagg: bool = False) -> list[dict]:
    """Rows as fedmia_evaluate writes them: per unit, level, test and target (A, B, pooled)."""
    auc, lo, hi, p = pooled
    rows = []
    for unit in ("slice", "batch"):
        for level in ("unit", "patient"):
            for test in ("membership", "center"):
                for target, (a, low, h, n1, n0) in {
                        "A": (auc + 0.05, np.nan, np.nan, 1, 2),  # one member: no CI
                        "B": (auc - 0.05, lo - 0.1, hi, 7, 6),
                        "all": (auc, lo, hi, 8, 8)}.items():
                    rows.append({
                        "scenario": scenario, "control": control, "secagg": secagg,
                        "view": view, "score": score, "unit": unit, "level": level,
                        "test": test, "target": target,
                        "auc": a if test == "membership" else 0.99,
                        "ci_low": low, "ci_high": h, "p_value": p,
                        "n_member_patients": n1, "n_nonmember_patients": n0,
                        "n_members": 48 * n1, "n_nonmembers": 48 * n0})
    return rows


FEDMIA = pd.DataFrame(
    _mia_rows("baseline", "update", "fedmia", (0.85, 0.70, 0.97, 0.01))
    + _mia_rows("baseline", "update", "cosine", (0.2, 0.1, 0.3, 0.9))  # not the view's score
    + _mia_rows("secagg", "masked", "fedmia", (0.52, 0.30, 0.70, 0.4), secagg=True)
    + _mia_rows("secagg", "aggregate", "cosine", (0.70, 0.55, 0.85, 0.02), secagg=True)
    + _mia_rows("memorise", "update", "fedmia", (0.95, 0.90, 1.0, 0.001), control=True))


def test_the_membership_line_says_when_a_scenarios_noise_is_simulation_noise() -> None:
    from fedaudit.defenses.noise_source import SIMULATION_NOTE

    data = membership_table(FEDMIA).data
    marked = membership_finding(data, unit="batch", simulation=["baseline"]).sentence
    assert f"baseline ({SIMULATION_NOTE}) on the client updates" in marked
    assert SIMULATION_NOTE not in membership_finding(data, unit="batch").sentence


def test_membership_table_reads_each_view_by_its_score_with_patient_cis() -> None:
    t = membership_table(FEDMIA)
    frame = t.blocks[0].frame
    # per-client views first, the aggregate, then the control; targets then pooled
    assert list(frame["Scenario"]) == ["baseline", "", "", "secagg", "", "", "secagg", "", "",
                                       "memorise (memorising control)", "", ""]
    assert list(frame["Target"]) == ["A", "B", "pooled"] * 4
    assert frame["Server view"].iloc[3].startswith("SecAgg+ masked vectors")
    assert "membership in the federation" in frame["Server view"].iloc[6]
    base = frame.iloc[:3]
    # the update view is read by FedMIA (0.85), not by the cosine rows (0.2)
    assert list(base["AUC, batches [95% CI]"]) == ["0.90 [n too small]", "0.80 [0.60, 0.97]",
                                                    "0.85 [0.70, 0.97]"]
    assert list(base["Patients (members / held-out)"]) == ["1 / 2", "7 / 6", "8 / 8"]
    assert base["Center inference AUC, slices"].iloc[2] == "0.99 [0.70, 0.97]"
    assert set(t.data["level"]) == {"patient"}
    assert "same scanner" in " ".join(t.notes)
    with pytest.raises(TableError, match="FedMIA table: missing column.s. ci_low"):
        membership_table(FEDMIA.drop(columns=["ci_low"]))


DLG = pd.DataFrame([
    {"scenario": "baseline", "center": c, "optimizer": o, "network": n, "round": 8,
     "target": "known", "batch_size": 1, "metric": m, "value": v}
    for c, s in (("A", 0.1), ("B", 0.3))
    for o in ("adam", "lbfgs")
    for n, ss, ps in (("unet", s, 6.0), ("control", 0.95, 30.0), ("code_check", 0.999, np.inf))
    # raw scores lower than fitted ones, as when the dummy's scale drifted
    for m, v in (("ssim_raw", ss / 2), ("psnr_raw", -40.0), ("ssim_fit", ss), ("psnr_fit", ps),
                 ("gain", 1e-3), ("offset", 0.1), ("iterations", 600))
])


def test_inversion_table_puts_the_control_beside_the_unet() -> None:
    t = inversion_table(DLG)
    frame = t.blocks[0].frame
    # one row per network, not one column group per network
    assert list(frame.columns) == [
        "Center", "Optimizer", "Network", "SSIM raw", "PSNR raw (dB)", "SSIM fit",
        "PSNR fit (dB)", "Iterations"]
    assert list(frame["Network"]) == ["UNet", "UNet without BatchNorm (control)",
                                      "MLP (code check)"] * 4
    assert list(frame["Center"]) == ["A"] + [""] * 5 + ["B"] + [""] * 5
    assert list(frame["Optimizer"]) == ["Adam", "", "", "L-BFGS", "", ""] * 2
    unet = frame[frame["Network"] == "UNet"]
    assert list(unet["SSIM fit"]) == ["0.10", "0.10", "0.30", "0.30"]
    assert list(unet["SSIM raw"]) == ["0.05", "0.05", "0.15", "0.15"]
    assert set(unet["PSNR raw (dB)"]) == {"-40.0"}  # unclipped: can be far below 0 dB
    assert set(frame["SSIM fit"].iloc[1::3]) == {"0.95"}  # the BatchNorm-free UNet
    assert set(frame["PSNR fit (dB)"].iloc[2::3]) == {"∞"}  # the MLP: an exact reconstruction
    assert set(frame["Iterations"]) == {"600"}
    assert set(t.data["network"]) == {"unet", "control", "code_check"}
    note = " ".join(t.notes)
    assert "model the server sent" in note and "head mask" in note and "CT" in note
    # one sentence per network on what it shows
    assert all(any(n.startswith(f"{name}:") for n in t.notes)
               for name in ("UNet", "UNet without BatchNorm (control)", "MLP (code check)"))
    with pytest.raises(TableError, match="networks"):
        inversion_table(DLG.replace({"network": {"code_check": "mlp"}}))


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
    mia = membership_finding(membership_table(FEDMIA).data, unit="batch")
    # the lower bound 0.70 (not the best center's 0.90) sets the level: moderate
    assert mia.level == "moderate"
    assert ("baseline on the client updates: AUC 0.85 (95% CI 0.70–0.97; 8 member vs 8 "
            "same-center held-out patients, permutation p = 0.01)") in mia.sentence
    assert "masked per-client vectors: AUC 0.52" in mia.sentence
    assert "aggregate cosine (membership in the federation): AUC 0.70" in mia.sentence
    assert "the attack works" in mia.sentence and "batches of one patient's slices" in mia.sentence
    # a chance-level federation whose control also fails is inconclusive, not "not detected"
    weak = FEDMIA.assign(auc=FEDMIA["auc"].where(~FEDMIA["control"], 0.6),
                         ci_low=FEDMIA["ci_low"].where(FEDMIA["scenario"] != "baseline", 0.3),
                         p_value=FEDMIA["p_value"].where(FEDMIA["scenario"] != "baseline",
                                                         0.3))
    f = membership_finding(membership_table(weak).data, unit="batch")
    assert f.level == "inconclusive" and "attack's power is unproven" in f.sentence
    strong_ctl = weak.assign(auc=weak["auc"].where(~weak["control"], 0.95))
    unseen = membership_finding(membership_table(strong_ctl).data)
    # 8 vs 8 patients: 0.5 + (1.645 + 0.842) * sqrt(17 / 768) = 0.87
    assert unseen.level == "not detected" and "an AUC of about 0.87 or more" in unseen.power
    assert "no leak" not in unseen.text
    with pytest.raises(ValueError, match="no rows for unit 'voxel'"):
        membership_finding(membership_table(FEDMIA).data, unit="voxel")

    inv = inversion_finding(inversion_table(DLG).data)
    # the verdict reads the fitted SSIM (0.30), not the raw one (0.15)
    assert inv.level == "resists at this budget" and \
        "best UNet SSIM 0.30 after a gain/offset fit, center B" in inv.sentence
    assert "without BatchNorm recovers its slice" in inv.power
    assert "attack code works" in inv.sentence
    broken = DLG.assign(value=DLG["value"].where(
        ~((DLG["network"] == "control") & (DLG["metric"] == "ssim_fit")), 0.4))
    assert inversion_finding(inversion_table(broken).data).level == "inconclusive"
    # a raw control score below the gate does not matter: the gate reads the fitted one
    raw_low = DLG.assign(value=DLG["value"].where(
        ~((DLG["network"] == "control") & (DLG["metric"] == "ssim_raw")), 0.1))
    assert inversion_finding(inversion_table(raw_low).data).level == "resists at this budget"
    # the control gates per setting: where it fails (center B), B's UNet score is not read
    b_fails = DLG.assign(value=DLG["value"].where(
        ~((DLG["network"] == "control") & (DLG["metric"] == "ssim_fit")
          & (DLG["center"] == "B")), 0.4))
    part = inversion_finding(inversion_table(b_fails).data)
    assert part.level == "resists at this budget" and "best UNet SSIM 0.10" in part.sentence
    assert "2 of 4" in part.sentence

    fedavg, fedmedian = verdict.poisoning_findings(grid)
    # worst clean center at gamma 1.0 under FedAvg: B, 105 -> 305 HU (+190 %); A is excluded
    assert fedavg.level == "high" and "clean center B by +200 HU" in fedavg.sentence
    # FedMedian: B +18 HU on 107 (+17 %), E +8 HU on 117 (+7 %)
    assert fedmedian.level == "moderate" and "clean center B by +18 HU" in fedmedian.sentence

    cost = verdict.secagg_cost_finding(quality_table(summary, external=["E"]).data)
    assert "+0.5 HU" in cost.sentence and "center E" in cost.sentence
    # one training run per federation: no cost is claimed, whatever the difference (the
    # cross-seed rule is tests/test_seeds.py's)
    assert cost.sentence.startswith("no cost is claimed: on one training seed")
    better = summary.copy()
    better.loc[(better["scenario"] == "secagg") & (better["center"] == "B"), "mae_mean"] = 90.0
    gain = verdict.secagg_cost_finding(quality_table(better, external=["E"]).data)
    assert "-15.0 HU" in gain.sentence and "lower with SecAgg+" in gain.sentence
    worse = summary.copy()
    worse.loc[(worse["scenario"] == "secagg") & (worse["center"] == "A"), "mae_mean"] = 121.0
    tenth = verdict.secagg_cost_finding(quality_table(worse, external=["E"]).data).sentence
    assert "+10.0%" in tenth and "no cost is claimed" in tenth  # +10 % on one run
    # the summary table's cells come with the findings: the number and the control
    assert mia.number == "baseline: AUC 0.85 [0.70, 0.97], 8 vs 8 patients"
    assert mia.control.startswith("memorising control AUC") and mia.control.endswith("works)")
    assert fedavg.number == "clean center B +200 HU (+190%) at γ = 1.0"
    assert inv.number.startswith("best UNet fitted SSIM") and "recovered" in inv.control
    page = verdict.front_page("Intro.\n\nStages.", [mia, inv, fedavg], demo=True)
    assert page.startswith("Intro.") and "synthetic demo data" in page
    # the detail: one line per finding, most severe first, each with its level
    assert page.count("\n- **") == 3
    assert page.index(f"- **{fedavg.topic}** (high)") \
        < page.index(f"- **{mia.topic}** (moderate)") \
        < page.index(f"- **{inv.topic}** (resists at this budget)")
    # a level that says the model held carries its power
    assert f"{inv.sentence} Power: {inv.power}" in page
    # the summary first: a count, then the table, most severe first, then the levels that
    # occur, each defined once
    assert "3 findings: 1 high, 1 moderate, 1 resists at this budget. Most severe first" in page
    table = page[page.index(".. list-table::"):page.index("Levels: ")]
    rows = [r for r in table.splitlines() if r.startswith("   * - ")]
    assert rows == ["   * - Threat", f"   * - {fedavg.topic}", f"   * - {mia.topic}",
                    f"   * - {inv.topic}"]
    assert f"     - {mia.number}" in table and f"     - {' '.join(mia.control.split())}" in table
    assert "     - **high**" in table
    levels = page[page.index("Levels: "):].splitlines()[0]
    assert "**resists at this budget**: the attack fails here" in levels and "info" not in levels
    assert page.count("the attack fails here while") == 1
    # the verdict comes right after the first paragraph, before how the audit works
    assert page.index("Audit verdict") < page.index(".. list-table::") \
        < page.index("Detail\n~~~~~~") \
        < page.index("How the audit works") < page.index("Stages.")


def test_inversion_verdict_is_inconclusive_when_the_bn_free_unet_is_not_recovered() -> None:
    def with_fit(network: str, value: float) -> pd.DataFrame:
        return DLG.assign(value=DLG["value"].where(
            ~((DLG["network"] == network) & (DLG["metric"] == "ssim_fit")), value))

    weak = with_fit("control", 0.23)
    f = inversion_finding(inversion_table(weak).data)
    # names what the control (0.23) and the code check (0.999) reach, and the UNet's best
    assert f.level == "inconclusive"
    assert "does not recover even the BatchNorm-free UNet (fitted SSIM 0.23; needs ≥ 0.9)" in \
        f.sentence
    assert "UNet's best fitted SSIM of 0.30 does not show that it resists" in f.sentence
    assert "code check is recovered in every setting (fitted SSIM ≥ 1.00)" in f.sentence
    assert "attack code works" in f.sentence
    both = weak.assign(value=weak["value"].where(
        ~((weak["network"] == "code_check") & (weak["metric"] == "ssim_fit")), 0.2))
    g = inversion_finding(inversion_table(both).data)
    assert g.level == "inconclusive" and "not recovered either (worst fitted SSIM 0.20" in \
        g.sentence and "broken" in g.sentence
    # the control gates a low reading only: a slice that came back is a leak regardless
    leak = weak.assign(value=weak["value"].where(
        ~((weak["network"] == "unet") & (weak["metric"] == "ssim_fit")), 0.85))
    h = inversion_finding(inversion_table(leak).data)
    assert h.level == "high" and "best UNet SSIM 0.85" in h.sentence and "0.23" in h.sentence


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


def test_a_finding_takes_only_the_shared_levels_and_states_its_power() -> None:
    from fedaudit.report.levels import Level, beyond_null, worst

    with pytest.raises(ValueError, match="'low' is not a verdict level"):
        verdict.Finding("t", "low", "low risk: …")
    with pytest.raises(ValueError, match="states the test's power"):
        verdict.Finding("t", "not detected", "no effect.")
    with pytest.raises(ValueError, match="states the test's power"):
        verdict.Finding("t", Level.RESISTS, "nothing back.", power="  ")
    f = verdict.Finding("t", "not detected", "no effect.", power="the control is found.")
    assert f.level is Level.NOT_DETECTED and f.text == "no effect. Power: the control is found."
    assert beyond_null(0.5, 0.5) is Level.HIGH and beyond_null(0.01, 0.5) is Level.MODERATE
    assert beyond_null(0.0, 0.5) is None and beyond_null(-0.2, 0.5) is None
    assert worst([Level.NOT_DETECTED, Level.MODERATE, Level.INFO]) is Level.MODERATE
    assert worst([Level.RESISTS, Level.INCONCLUSIVE]) is Level.INCONCLUSIVE and worst([]) is None
