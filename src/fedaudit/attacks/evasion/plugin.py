"""Test-time evasion by a malicious client (paper 004, paper 004, "Exploring adversarial
attacks in federated learning for medical imaging"): FGSM, BIM and PGD perturbations of the
attacker's own test MR slices, crafted on its own last-round local model (white-box) and
evaluated on that model, the final global model and every other client's local model (grey-box
transfer), per scenario (baseline, FedMedian, the update-noise defenses). Jobs: ``rules.smk``;
code: :mod:`.algorithm` (the attacks), :mod:`.sweep`, :mod:`.local_models`, :mod:`.run`,
:mod:`.metrics`, :mod:`.steps`, :mod:`.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedaudit.catalog import NOISE_GRID, AttackSpec, SettingError, TableSpec

SUBCATEGORY = "Test-time evasion (paper 004)"

ATTACK = AttackSpec(
    name="evasion", title="Test-time evasion by a malicious client (paper 004)", view="client",
    folder=Path(__file__).parent, default_scenarios=("baseline", "fedmedian", NOISE_GRID),
    check=".plugin:check",
    tables=(
        TableSpec(name="evasion",
                  paper="paper 004, Table I",
                  description=("per attacked federation: FGSM, BIM and PGD with the victims' clean "
                               "MAE, white-box and global-model ASR with 95 % CI, AASR, the random "
                               "±ε null, ΔMAE, PSNR, time per batch; the targeted attack (bone "
                               "toward soft tissue)"),
                  category="Integrity", subcategory=SUBCATEGORY,
                  build=".report:build_attack_table", findings=".report:findings",
                  advice=".report:advice",
                  settings=".report:settings", thresholds=".report:thresholds", order=40,
                  primary=("the final global model's ASR (slices whose in-mask MAE rises by "
                           "more than threshold_hu), its exact lower bound (Bonferroni over the "
                           "Table I attacks) minus the random ±ε null's ASR")),
        TableSpec(name="evasion_transfer",
                  paper="paper 004, Table II",
                  description=("per attack: the attacker's own model, the final global model and "
                               "every other client's local model: MAE, ASR, transfer rate"),
                  category="Integrity", subcategory=SUBCATEGORY,
                  build=".report:build_transfer_table", order=41),
    ))


def check(config: dict[str, Any], scenarios: set[str]) -> None:
    """The attacker is a training center; the primary ε and α are points of their sweeps (so
    Table I's numbers lie on the sweep figures)."""
    section = config["attacks"]["evasion"]
    if not section["enabled"]:
        return
    attacker = section["attacker"]
    train = [c for c, v in config["centers"].items() if v["role"] == "train"]
    if attacker is not None and attacker not in train:
        raise SettingError("attacker", f"{attacker!r} is not a training center (training "
                           f"centers: {', '.join(train)}); paper 004's attacker is a "
                           "participant that receives the global model")
    if section["epsilon"] not in section["epsilons"]:
        raise SettingError("epsilon", f"{section['epsilon']} is not one of epsilons "
                           f"{section['epsilons']}")
    if section["alpha_fraction"] not in section["alpha_fractions"]:
        raise SettingError("alpha_fraction", f"{section['alpha_fraction']} is not one of "
                           f"alpha_fractions {section['alpha_fractions']}")
