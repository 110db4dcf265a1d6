"""FedMIA membership inference (Zhu et al. 2025; paper 000 "Membership Inference", Fig. 3) by the
honest-but-curious server on its log: its jobs (``rules.smk``), config (``schema.yaml``), table
and verdict finding (``report.py``) and captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedaudit.catalog import (
    NOISE_GRID,
    AttackSpec,
    SettingError,
    TableSpec,
    check_logged_rounds,
)

ATTACK = AttackSpec(
    name="fedmia", title="Membership inference (FedMIA)", view="server_log",
    folder=Path(__file__).parent, default_scenarios=("baseline", "secagg", NOISE_GRID),
    check=".plugin:check",
    tables=(TableSpec(name="membership",
                      paper="paper 000, Fig. 3",
                      description=("FedMIA patient-level AUC with 95 % CI and permutation p "
                                   "against same-center non-members, per target and pooled, per "
                                   "unit (slices, batches); center inference; client updates, "
                                   "SecAgg+ masked vectors and aggregate, the memorising control"),
                      category="Privacy",
                      subcategory="Membership inference (FedMIA)", build=".report:build_table",
                      findings=".report:findings", settings=".report:settings", seeds=True,
                      advice=".report:advice",
                      primary=("the pooled patient-level AUC of the per-client view against "
                               "same-center held-out patients, unit attacks.fedmia.units[0], "
                               "with its permutation p"),
                      thresholds=".report:thresholds", order=10),))


def check(config: dict[str, Any], scenarios: set[str]) -> None:
    """What the schema cannot say: FedMIA's null comes from the other clients (>= 2 train
    centers), a batch unit needs that many candidate slices, and its rounds must be logged."""
    fedmia = config["attacks"]["fedmia"]
    n_train = sum(c["role"] == "train" for c in config["centers"].values())
    if fedmia["enabled"] and n_train < 2:
        raise SettingError("enabled", "FedMIA needs at least 2 train centers (the null "
                           "distribution comes from the non-target clients)")
    if fedmia["enabled"] is None:  # null: whenever it is possible
        fedmia["enabled"] = n_train >= 2
    if "batch" in fedmia["units"] and fedmia["batch_size"] > fedmia["slices_per_orientation"]:
        raise SettingError("batch_size", f"{fedmia['batch_size']} slices per batch unit, but a "
                           f"patient has only slices_per_orientation = "
                           f"{fedmia['slices_per_orientation']} candidate slices per "
                           "orientation to make one from")
    if fedmia["enabled"]:
        check_logged_rounds(config, "rounds", fedmia["rounds"])
