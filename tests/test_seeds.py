"""Verdicts across training seeds (config ``seeds``): replicas of the headline federations, the
cross-seed rules (a level that flips is reported as varying, a difference inside the
seed-to-seed spread is no cost) and Holm's correction, on synthetic tables."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml
from statsmodels.stats.multitest import multipletests
from test_tables import FEDMIA, OFFSETS, SCENARIOS, _mia_rows, _patients

from conftest import REPO
from fedaudit.attacks.fedmia.report import findings as fedmia_findings
from fedaudit.attacks.fedmia.report import membership_table
from fedaudit.config import ConfigError, validate_config
from fedaudit.evaluation.stats import summarize, wilcoxon_vs_reference
from fedaudit.federation.plan import plan_from_config
from fedaudit.report.levels import Finding, Level
from fedaudit.report.seeds import across_seeds, beyond_spread, by_seed, holm, spread
from fedaudit.report.tables import DASH, poisoning_grid, poisoning_table, quality_table
from fedaudit.report.verdict import poisoning_findings, secagg_cost_finding, utility_finding
from fedaudit.scenarios import scenarios_from_config


def _config(**over) -> dict:
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw.update(over)
    return validate_config(raw)


# ---------------------------------------------------------------------------- the rules


def test_holm_matches_statsmodels_and_a_hand_computed_case() -> None:
    # m = 4: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 13):
        p = list(rng.uniform(0, 0.2, m))
        p[0] = p[-1]  # a tie
        assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    # a finding without a p-value is neither adjusted nor counted
    out = holm([0.02, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.04) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)


def test_a_difference_counts_only_beyond_the_seed_to_seed_spread() -> None:
    assert spread([100.0, 104.0, 101.0]) == 4.0 and np.isnan(spread([100.0]))
    assert beyond_spread([5.0, 6.0], [100.0, 104.0])  # +5, +6 HU against a 4 HU spread
    assert not beyond_spread([5.0, 3.0], [100.0, 104.0])  # not on every seed
    assert not beyond_spread([50.0], [100.0])  # one seed: the spread is unknown


def _finding(level: str, text: str) -> Finding:
    return Finding("Topic", level, text, power="p" if level == "not detected" else "")


def test_a_level_that_holds_on_every_seed_says_so_and_one_that_flips_is_reported_varying() -> None:
    same = across_seeds([(42, _finding("high", "high risk: 9/10.")),
                         (43, _finding("high", "high risk: 8/10."))],
                        number="ASR", values={42: 0.9, 43: 0.8})
    assert same.level == Level.HIGH
    assert same.sentence == ("high risk: 9/10. The same level on all 2 training seeds (ASR "
                             "0.80–0.90 across seeds 42, 43).")
    flip = across_seeds([(42, _finding("not detected", "not detected: 1/10.")),
                         (43, _finding("moderate", "moderate risk: 5/10."))])
    # the most severe level that occurred, and the line says that it varies
    assert flip.level == Level.MODERATE
    assert flip.sentence.startswith("varies across training seeds: moderate on seed 43; not "
                                    "detected on seed 42")
    assert "Seed 42: not detected: 1/10. Seed 43: moderate risk: 5/10." in flip.sentence
    held = across_seeds([(42, _finding("not detected", "none.")),
                         (43, _finding("not detected", "none."))])
    assert held.level == Level.NOT_DETECTED and held.power == "p"
    one = across_seeds([(7, _finding("high", "high risk: 9/10."))])
    assert one.sentence.endswith("Read on one training seed (7): its run-to-run variation is "
                                 "not measured.")


# ----------------------------------------------------------------------- the replicas


def test_seeds_replicate_the_headline_federations_on_the_same_data() -> None:
    cfg = _config(seeds=[42, 43])
    sc = scenarios_from_config(cfg)
    replicas = {n: (s.replica_of, s.seed, s.reference) for n, s in sc.items() if s.replica_of}
    assert replicas == {
        "baseline-seed43": ("baseline", 43, None),
        "secagg-seed43": ("secagg", 43, "baseline-seed43"),
        "fedmedian-seed43": ("fedmedian", 43, "baseline-seed43"),
        "poison-D-g1.0-fedavg-seed43": ("poison-D-g1.0-fedavg", 43, "baseline-seed43"),
        "poison-D-g1.0-fedmedian-seed43": ("poison-D-g1.0-fedmedian", 43, "fedmedian-seed43"),
        "memorise-seed43": ("memorise", 43, None)}
    # a replica is its federation but for the name, the seed and the reference
    assert replace(sc["secagg-seed43"], name="secagg", seed=None, replica_of=None,
                            reference="baseline") == sc["secagg"]
    # one seed (the default): no replica, and the scenarios are those of a config without seeds
    assert scenarios_from_config(_config(seeds=[42])) == \
        scenarios_from_config(_config(seeds=None))
    only = scenarios_from_config(_config(seeds=[42, 5, 6],
                                         scenarios={"replicated": ["fedmedian"]}))
    assert [n for n, s in only.items() if s.replica_of] == ["fedmedian-seed5",
                                                            "fedmedian-seed6"]


def test_a_count_of_seeds_follows_the_study_seed() -> None:
    # the demo's seeds: 2 -> seed, seed + 1; overriding seed alone moves both
    moved = scenarios_from_config(_config(seed=7))
    assert [(n, s.seed) for n, s in moved.items() if s.replica_of][:1] == [("baseline-seed8", 8)]
    assert scenarios_from_config(_config(seeds=2)) == scenarios_from_config(_config(seeds=[42,
                                                                                          43]))


def test_seeds_must_start_with_the_study_seed_and_name_known_scenarios() -> None:
    with pytest.raises(ConfigError, match=r"'seeds': \[7, 8\] must start with the study's seed"):
        _config(seeds=[7, 8])
    with pytest.raises(ConfigError, match="'scenarios.replicated': unknown scenario.*nope"):
        _config(seeds=[42, 43], scenarios={"replicated": ["nope"]})


def test_a_replica_trains_with_its_own_seed() -> None:
    sc = scenarios_from_config(_config(seeds=[42, 43]))
    splits = {"A": {"train": ["a1"], "val": []}}
    cfg = _config()
    for name, seed in (("baseline", 42), ("baseline-seed43", 43)):
        plan = plan_from_config(cfg["train"], sc[name], splits, "pre", "out", seed=42)
        assert plan.seed == seed


# ---------------------------------------------------------------- lines across seeds


def _summary_two_seeds(secagg_shift: float, seed_shift: float) -> tuple[pd.DataFrame, dict]:
    """The eval summary of baseline and secagg trained with seeds 42 and 43: seed 43's runs
    are ``seed_shift`` HU worse everywhere, secagg ``secagg_shift`` HU worse than baseline."""
    frames = []
    for seed, extra in ((42, 0.0), (43, seed_shift)):
        for name in ("baseline", "secagg"):
            run = name if seed == 42 else f"{name}-seed43"
            shift = extra + (secagg_shift if name == "secagg" else 0.0)
            frames.append(_patients(run, {c: shift for c in "ABE"}))
    # the constant predictor 200+ HU: every run below passes the gate on its own
    frames.append(_patients("constant", {"A": 100.0, "B": 95.0, "E": 100.0}))
    runs = {n: [(42, n), (43, f"{n}-seed43")] for n in ("baseline", "secagg")}
    return summarize(pd.concat(frames, ignore_index=True)), runs


def test_a_secagg_difference_inside_the_seed_spread_is_no_cost() -> None:
    summary, runs = _summary_two_seeds(secagg_shift=3.0, seed_shift=8.0)
    t = quality_table(summary, external=["E"], seeds=runs)
    assert t.blocks[0].frame["MAE over seeds (HU)"].iloc[0] == "114.0 (110.0–118.0; 2 seeds)"
    assert [s for s, _ in by_seed(t.data)] == [42, 43]
    line = secagg_cost_finding(t.data)
    assert line.sentence.startswith("no cost beyond run-to-run variation: on 2 training seeds")
    assert "+3.0 HU" in line.sentence and "varies by 8.0 HU" in line.sentence
    summary, runs = _summary_two_seeds(secagg_shift=12.0, seed_shift=2.0)
    costly = secagg_cost_finding(quality_table(summary, external=["E"], seeds=runs).data)
    assert costly.sentence.startswith("SecAgg+ costs a measurable synthesis quality, beyond")
    # one seed: whatever the difference, no cost is claimed
    single = _summary_two_seeds(secagg_shift=12.0, seed_shift=2.0)[0]
    one = secagg_cost_finding(quality_table(single, external=["E"]).data)
    assert one.sentence.startswith("no cost is claimed: on one training seed")
    # the table of a one-run study is the table it was (no seed columns)
    assert "seed" not in quality_table(single, external=["E"]).data.columns


def test_the_utility_gate_must_hold_on_every_seed() -> None:
    summary, runs = _summary_two_seeds(secagg_shift=0.0, seed_shift=100.0)
    gate = utility_finding(quality_table(summary, external=["E"], seeds=runs).data)
    # seed 43's federation is 100 HU worse: above 0.8 × the constant (215 vs 215 HU on E)
    assert gate.level == Level.NO_MODEL
    assert gate.sentence.startswith("varies across training seeds: no usable model on seed "
                                    "43; info on seed 42")


def _grid_two_seeds() -> pd.DataFrame:
    """The poisoning grid of seeds 42 and 43: FedAvg's poisoning is as strong on both; under
    FedMedian seed 43's poisoned run is its unpoisoned federation on the clean centers."""
    sc = {**SCENARIOS}
    frames = [_patients(s, OFFSETS[s]) for s in [*SCENARIOS, "constant"]]
    for name in ("baseline", "fedmedian", "poison-A-g1.0-fedavg", "poison-A-g1.0-fedmedian"):
        rep = f"{name}-seed43"
        ref = SCENARIOS[name].reference
        sc[rep] = replace(SCENARIOS[name], name=rep, seed=43, replica_of=name,
                                   reference=None if ref is None else f"{ref}-seed43")
        offset = dict(OFFSETS[name])
        if name == "poison-A-g1.0-fedmedian":
            offset.update(B=2.0, E=2.0)  # = fedmedian's: no effect on a clean center
        frames.append(_patients(rep, offset))
    per_patient = pd.concat(frames, ignore_index=True)
    pairs = {s.name: s.reference for s in sc.values() if s.reference}
    return poisoning_grid(summarize(per_patient), wilcoxon_vs_reference(per_patient, pairs), sc,
                          study_seed=42)


def test_poisoning_reads_every_seed_and_names_a_varying_level() -> None:
    grid = _grid_two_seeds()
    assert set(grid["seed"]) == {42, 43}
    table = poisoning_table(grid, summarize(pd.concat(
        [_patients(s, OFFSETS[s]) for s in [*SCENARIOS, "constant"]])), external=["E"])
    assert "the blocks show seed 42's runs" in " ".join(table.notes)
    # the last block: each poisoned federation's MAE increase over its own seed's reference,
    # mean and range over the seeds (B under FedMedian: +18 HU on seed 42, +0 on seed 43)
    over = table.blocks[-1].frame.set_index("Aggregation")
    assert over.loc["FedAvg", "B"] == "+200.0 (+200.0 to +200.0; 2 seeds)"
    assert over.loc["FedMedian", "B"] == "+9.0 (+0.0 to +18.0; 2 seeds)"
    assert over.loc["FedMedian", "A"] == DASH  # the poisoned center itself
    # the heatmap draws the study's seed, as the table's blocks do
    from fedaudit.attacks.poisoning.figures import poisoning_delta_table

    drawn = poisoning_delta_table(grid)
    assert len(drawn) == (grid["seed"] == 42).sum()
    lines = {f.topic: f for f in poisoning_findings(grid)}
    fedavg = lines["Data poisoning under FedAvg"]
    assert fedavg.level == Level.HIGH and "The same level on all 2 training seeds" in \
        fedavg.sentence
    median = lines["Data poisoning under FedMedian"]
    # seed 42: +18 HU on B (+17 %): moderate; seed 43: +0 HU: not detected
    assert median.level == Level.MODERATE
    assert median.sentence.startswith("varies across training seeds: moderate on seed 42; not "
                                      "detected on seed 43")


def test_fedmia_reads_every_seed_of_its_federations() -> None:
    seed43 = pd.DataFrame(
        _mia_rows("baseline-seed43", "update", "fedmia", (0.55, 0.40, 0.70, 0.30))
        + _mia_rows("memorise-seed43", "update", "fedmia", (0.95, 0.90, 1.0, 0.001),
                    control=True))
    data = membership_table(pd.concat([FEDMIA, seed43], ignore_index=True)).data
    settings = {"unit": "batch", "simulation": [], "seed": 42,
                "replicas": {"baseline-seed43": ["baseline", 43],
                             "memorise-seed43": ["memorise", 43]}}
    line, once = fedmia_findings(data, settings)
    # seed 42 detects a leak (p = 0.01), seed 43 does not (p = 0.30): the line varies
    assert line.level == Level.MODERATE
    assert line.sentence.startswith("varies across training seeds: moderate on seed 42; not "
                                    "detected on seed 43 (baseline's pooled AUC 0.55–0.85 "
                                    "across seeds 42, 43)")
    assert "secagg" not in line.sentence  # not trained on seed 43: its own line
    assert once.topic == "Membership inference (FedMIA), federations trained on one seed"
    assert "secagg with SecAgg+, on the masked per-client vectors: AUC 0.52" in once.sentence
    assert once.sentence.endswith("Read on one training seed (42): these federations are not "
                                  "replicated.")
    # its power rests on the first seed's memorising control
    assert once.level == Level.NOT_DETECTED and "memorising control is detected" in once.power
    # the table gives the pooled AUC's mean and range over the seeds on the federation's row
    replicas = {k: tuple(v) for k, v in settings["replicas"].items()}
    frame = membership_table(pd.concat([FEDMIA, seed43], ignore_index=True),
                             replicas=replicas).blocks[0].frame
    column = "Pooled AUC over seeds, slices"
    base = frame[(frame["Target"] == "pooled")].iloc[0]
    pooled_slice = {r.scenario: r.auc for r in data[(data["unit"] == "slice")
                                                     & (data["target"] == "all")
                                                     & (data["test"] == "membership")
                                                     & (data["view"] == "update")].itertuples()}
    lo, hi = sorted((pooled_slice["baseline"], pooled_slice["baseline-seed43"]))
    assert base[column] == f"{(lo + hi) / 2:.2f} ({lo:.2f}–{hi:.2f}; 2 seeds)"
    assert "baseline-seed43 (baseline, seed 43)" in set(frame["Scenario"])
    # the memorising control has its replica too; secagg has one run: no range on its rows
    assert frame[frame[column] != DASH]["Target"].tolist() == ["pooled", "pooled"]


# ------------------------------------------------------------------------- multiplicity


def test_the_front_page_holds_its_significance_claims_to_holm() -> None:
    from fedaudit.report import verdict
    from fedaudit.report.verdict import holm_corrected

    page = [Finding("A", "high", "a.", p_value=0.001), Finding("B", "moderate", "b.",
                                                                   p_value=0.03),
            Finding("C", "moderate", "c.", p_value=0.04), Finding("D", "info", "d.")]
    out = {f.topic: f for f in holm_corrected(page)}
    # m = 3: 0.003, 0.06, 0.06: A keeps its level, B and C lose theirs, D is no test
    assert out["A"].level == Level.HIGH and out["A"].p_value == pytest.approx(0.003)
    assert out["A"].sentence == "a. (Holm-adjusted p = 0.003 over the page's 3 tests.)"
    for t in "BC":
        assert out[t].level == Level.INCONCLUSIVE and out[t].p_value == pytest.approx(0.06)
        assert out[t].sentence.startswith("inconclusive after correction for the page's 3 tests")
        # its summary row says why, whatever its table advises for an inconclusive line
        assert out[t].advice.startswith("a moderate signal that does not survive the "
                                        "correction for the page's 3 tests")
        kept = verdict.with_table(out[t], "Honest-but-curious server", "the control failed")
        assert kept.advice == out[t].advice and kept.attacker == "Honest-but-curious server"
    assert out["A"].advice == "" and verdict.with_table(out["A"], "", "act").advice == "act"
    assert out["D"] == page[3]


def test_the_binomial_tail_is_scipys_exact_test() -> None:
    from scipy.stats import binomtest

    from fedaudit.report.intervals import binomial_tail

    for k, n, p0 in ((5, 10, 0.2), (32, 32, 0.0), (0, 8, 0.5), (3, 16, 0.01), (16, 16, 1.0)):
        want = binomtest(k, n, p0, alternative="greater").pvalue if k else 1.0
        assert binomial_tail(k, n, p0) == pytest.approx(want, abs=1e-12), (k, n, p0)


def test_every_table_whose_line_claims_a_level_names_its_primary_statistic() -> None:
    from fedaudit.catalog import catalog

    named = {n for n, t in catalog().tables.items() if t.primary}
    assert {"quality", "poisoning", "membership", "evasion", "trap_weights"} <= named
    # the lines that read every training seed are those of the replicated federations
    assert {n for n, t in catalog().tables.items() if t.seeds} == {"quality", "poisoning",
                                                                   "membership"}


def test_a_seed_without_its_own_control_reads_the_first_seeds() -> None:
    seed43 = pd.DataFrame(_mia_rows("baseline-seed43", "update", "fedmia",
                                    (0.55, 0.40, 0.70, 0.30)))
    data = membership_table(pd.concat([FEDMIA, seed43], ignore_index=True)).data
    settings = {"unit": "batch", "simulation": [], "seed": 42,
                "replicas": {"baseline-seed43": ["baseline", 43]}}
    line = fedmia_findings(data, settings)[0]
    # seed 43's "not detected" rests on the first seed's memorising control (AUC 0.95)
    assert "Seed 43:" in line.sentence
    assert line.sentence.count("The memorising control reaches AUC 0.95") == 2


def test_one_center_beyond_its_spread_is_not_a_cost_of_secagg() -> None:
    """SecAgg+ 9 HU worse on center E only, on both seeds, against a 4 HU seed-to-seed spread:
    E alone would pass "beyond the spread on every seed", but it is the largest of three
    comparisons; the MAE averaged over A, B and E rises by 3 HU, inside the spread, so no
    cost is claimed and E is reported beside it."""
    frames = []
    for seed, extra in ((42, 0.0), (43, 4.0)):
        for name in ("baseline", "secagg"):
            run = name if seed == 42 else f"{name}-seed43"
            frames.append(_patients(run, {c: extra + (9.0 if name == "secagg" and c == "E"
                                                      else 0.0) for c in "ABE"}))
    frames.append(_patients("constant", {"A": 100.0, "B": 95.0, "E": 100.0}))
    runs = {n: [(42, n), (43, f"{n}-seed43")] for n in ("baseline", "secagg")}
    quality = quality_table(summarize(pd.concat(frames, ignore_index=True)), external=["E"],
                            seeds=runs).data
    line = secagg_cost_finding(quality)
    assert line.sentence.startswith("no cost beyond run-to-run variation: on 2 training seeds "
                                    "the MAE averaged over the 3 evaluated centers changes by "
                                    "+3.0 HU, while without SecAgg+ it varies by 4.0 HU")
    assert "the largest increase is on center E: +9.0 HU against a spread of 4.0 HU" \
        in line.sentence
