"""Data poisoning by one client (paper 000, "Data Poisoning", Eq. 2) as a client attack, with
Table 3 (MAE per poisoned center x noise x evaluated center) and its verdict findings."""

from pathlib import Path

from fedaudit.catalog import ClientAttackSpec, TableSpec

CLIENT_ATTACK = ClientAttackSpec(
    name="poisoning", title="Data poisoning",
    transform="fedaudit.attacks.poisoning.noise:poison_client",
    schema={"properties": {"gamma": {"type": "number", "minimum": 0, "maximum": 1,
                                     "description": "Noise level of Eq. 2 (0 = clean data)."}},
            "required": ["gamma"]},
    folder=Path(__file__).parent,
    tables=(TableSpec(name="poisoning",
                      paper="paper 000, Table 3",
                      description=("MAE per poisoned center × noise × evaluated center, a FedAvg "
                                   "and a FedMedian block each with its no-poisoning row, paired "
                                   "Wilcoxon p against the block's no-poisoning federation"),
                      category="Integrity", subcategory="Data poisoning",
                      build=".report:poisoning_table", findings=".report:poisoning_findings",
                      advice=".report:advice",
                      seeds=True,
                      primary=("the relative MAE increase on the worst clean center at the "
                               "largest γ, per aggregation, every training seed"),
                      thresholds="fedaudit.report.verdict:poisoning_thresholds",
                      order=30),))
