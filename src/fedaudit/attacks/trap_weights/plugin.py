"""Trap-weight reconstruction by a malicious server (paper 002; Boenisch et al. 2023; Fowl et
al. 2022): 2-D slices, whole 3-D volumes, and the clients' architecture check and weight audit.
Its jobs (``rules.smk``), config (``schema.yaml``), tables and verdict finding (``report.py``)
and captions. It also registers the ``trap_weights`` server behaviour, so a custom scenario can
train with a malicious server (``server: trap_weights``: the last round is a trap round, kept
out of the honest server log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedaudit.catalog import AttackSpec, ServerSpec, SettingError, TableSpec, check_logged_rounds

_CATEGORY, _SUB = "Privacy", "Malicious server (trap weights)"
ATTACK = AttackSpec(
    name="trap_weights", title="Trap-weight reconstruction (malicious server)",
    view="malicious_server", folder=Path(__file__).parent,
    default_scenarios=("baseline", "secagg"), check=".plugin:check",
    tables=(TableSpec(name="trap_weights",
                      paper="paper 002, Table 1",
                      description=("slices recovered / attacked with 95 % CI, SSIM, MSE, PSNR per "
                                   "scenario, mode, initialisation, federation size and batch "
                                   "size; the null and the untrained-UNet control"),
                      category=_CATEGORY, subcategory=_SUB,
                      build=".report:build_slices_table", findings=".report:findings",
                      advice=".report:advice",
                      settings=".report:settings", thresholds=".report:thresholds",
                      order=15,
                      primary=("the share of slices recovered at SSIM ≥ the threshold in the "
                               "verdict's fixed setting, its lower 95 % bound minus the null's "
                               "share")),
            TableSpec(name="trap_weights_3d",
                      paper="paper 002, Table 2",
                      description=("per client volume and batch: slices recovered / depth, 3-D "
                                   "SSIM and PSNR with and without the oracle"),
                      category=_CATEGORY, subcategory=_SUB,
                      build=".report:build_volumes_table", order=16),
            TableSpec(name="trap_weights_defenses",
                      description=("the architecture check and the weight audit against both "
                                   "malicious servers; false alarms over every honest round"),
                      category=_CATEGORY, subcategory=_SUB,
                      build=".report:build_defenses_table",
                      findings=".report:defense_findings", order=17)))
SERVER = ServerSpec("trap_weights", "malicious server: trap weights in the last round",
                    wrap=".server:wrap")


def check(config: dict[str, Any], scenarios: set[str]) -> None:
    """The attacked round must be logged (the server's own global model of that round), and a
    federation of ``clients`` needs that many training patients."""
    trap = config["attacks"]["trap_weights"]
    if not trap["enabled"]:
        return
    check_logged_rounds(config, "round", trap["round"])
    n_train = sum(c["role"] == "train" for c in config["centers"].values())
    small = [n for n in trap["clients"] if n is not None and n < n_train]
    if small:
        raise SettingError("clients", f"{small}: fewer clients than the {n_train} training "
                           "centers (a federation is split into more clients, never merged)")
