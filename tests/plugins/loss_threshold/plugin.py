"""A toy attack registered from a test folder: membership by loss threshold on the trained model
("member if its loss is below the median"; Yeom et al., CSF 2018, Sec. 3.2, with the threshold
set at the median of the candidates' losses instead of the training loss).

It exists to show that an attack is one folder (tests/test_catalog.py): its spec here, its
config in schema.yaml, its jobs in rules.smk, its code, table and finding in steps.py, its
caption in report_captions/."""

from pathlib import Path

from fedaudit.catalog import AttackSpec, TableSpec

ATTACK = AttackSpec(
    name="loss_threshold", title="Membership by loss threshold (toy)", view="trained_model",
    folder=Path(__file__).parent, default_scenarios=("baseline",),
    tables=(TableSpec(name="loss_membership", category="Privacy",
                      subcategory="Membership by loss threshold (toy)",
                      build=".steps:build_table", findings=".steps:findings", order=40),))
