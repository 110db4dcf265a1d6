"""DLG gradient inversion (Zhu et al. 2019; paper 000 "Gradient Inversion", Fig. 2): the
honest-but-curious server inverts a client's shared gradient at the global model it logged.
Its jobs (``rules.smk``), config (``schema.yaml``), table and verdict finding (``report.py``)
and captions; the worked example of CONTRIBUTING.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedaudit.catalog import AttackSpec, TableSpec, check_logged_rounds

ATTACK = AttackSpec(
    name="dlg", title="Gradient inversion (DLG)", view="server_log",
    folder=Path(__file__).parent, default_scenarios=("baseline",), check=".plugin:check",
    # the gradient-inversion suite (paper 003) runs DLG beside CPL, iDLG and GradInv
    method=".suite:build",
    tables=(TableSpec(name="inversion",
                      paper="paper 000, Fig. 2",
                      description=("DLG SSIM / PSNR per center and optimiser, raw and after the "
                                   "gain/offset fit, one row per network: the UNet, the same UNet "
                                   "without BatchNorm (positive control) and the MLP code check"),
                      category="Privacy",
                      subcategory="Gradient inversion (DLG)", build=".report:build_table",
                      findings=".report:findings", thresholds=".report:thresholds", order=20,
                      advice=".report:advice"),))


def check(config: dict[str, Any], scenarios: set[str]) -> None:
    """The round DLG attacks must be logged."""
    if config["attacks"]["dlg"]["enabled"]:
        check_logged_rounds(config, "round", config["attacks"]["dlg"]["round"])
