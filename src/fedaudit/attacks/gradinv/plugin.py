"""The gradient-inversion suite of paper 003 (MedPFL, §IV-B and Table II): CPL, DLG, iDLG and
Inverting Gradients (each its own catalog folder holding its recipe) against the
honest-but-curious server's view, on the sCT UNet, its BatchNorm-free control and paper 003's
own target, a federated slice classifier; with the update-noise defenses (Laplace, DP-FedAvg)
and their privacy budget in one privacy-utility table. Jobs: ``rules.smk``; code:
:mod:`fedaudit.attacks.gradient_inversion` (the attacks' engine, shared with DLG and each
method's folder), :mod:`.scoring`, :mod:`.steps`, :mod:`.report`."""

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
    name="gradinv", title="Gradient inversion suite (paper 003)", view="server_log",
    folder=Path(__file__).parent, default_scenarios=("baseline", NOISE_GRID), check=".plugin:check",
    tables=(
        TableSpec(name="inversion_suite",
                  paper="paper 003",
                  description=("CPL, DLG, iDLG, GradInv per network (UNet, its BatchNorm-free "
                               "control, the slice classifier): per-center successes, ASR with 95 "
                               "% CI, null, SSIM / MSE of the successes, SSIM over all, labels, "
                               "time per image"),
                  category="Privacy",
                  subcategory="Gradient inversion suite (paper 003)",
                  build=".report:build_suite_table", findings=".report:suite_findings",
                  advice=".report:advice",
                  thresholds=".report:thresholds", order=21),
        TableSpec(name="inversion_classifier",
                  paper="paper 003, Table II",
                  description=("the slice classifier: per center and method ASR, SSIM, MSE of the "
                               "successes, time"),
                  category="Privacy",
                  subcategory="Gradient inversion suite (paper 003)",
                  build=".report:build_classifier_table", order=22),
    ))


def check(config: dict[str, Any], scenarios: set[str]) -> None:
    """The attacked round is logged and the attacked classifier round is trained."""
    section = config["attacks"]["gradinv"]
    if not section["enabled"]:
        return
    check_logged_rounds(config, "round", section["round"])
    clf = section["classifier"]
    if clf["attacked_round"] > clf["rounds"]:
        raise SettingError("classifier.attacked_round",
                           f"{clf['attacked_round']} exceeds classifier.rounds = {clf['rounds']}")
