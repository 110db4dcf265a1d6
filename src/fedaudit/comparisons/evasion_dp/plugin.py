"""Evasion across the attacked federations (paper 004 §VI): one row per federation the evasion
attack attacks -- baseline, FedMedian, each noise level -- with the headline attack's white-box
ASR beside the victims' AASR and the federation's ε; one information line for the verdict."""

from pathlib import Path

from fedaudit.catalog import ComparisonSpec, TableSpec

COMPARISON = ComparisonSpec(
    name="evasion_dp", title="Evasion across aggregation rules and noise defenses",
    folder=Path(__file__).parent,
    requires=("evasion",),
    # what it reads of the evasion summary (the rule's input ``rates``)
    reads={"rates": ("scenario", "setting", "headline", "method", "label", "epsilon", "role",
                     "model", "usable", "n_slices", "successes", "asr", "ci_low", "ci_high",
                     "null_asr", "clean_mae", "delta_mae", "transfer_rate")},
    tables=(TableSpec(name="evasion_dp",
                      paper="paper 004, §VI",
                      description=("per federation (baseline, FedMedian, each noise level): the "
                                   "headline attack's white-box ASR against the victims' AASR"),
                      category="Integrity",
                      subcategory="Test-time evasion (paper 004)",
                      build=".report:build_defense_table",
                      findings=".report:defense_findings", order=42),))
