"""The one-run privacy audit (canary clients in the audited scenario's federation; Steinke et
al. 2023's ε lower bound beside the accountant's ε): its jobs (``rules.smk``), config
(``schema.yaml``), table and verdict findings (``report.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedaudit.catalog import NOISE_GRID, AttackSpec, SettingError, TableSpec

ATTACK = AttackSpec(
    name="privacy_audit", title="Empirical privacy audit (canary clients, one run)",
    view="server_log", folder=Path(__file__).parent,
    # the control (no noise) and every update-noise level
    default_scenarios=("baseline", NOISE_GRID), check=".plugin:check",
    tables=(TableSpec(name="privacy_audit",
                      description=("per audited scenario: canaries, guesses and right guesses, "
                                   "the measured ε lower bound (95 %) beside the accountant's "
                                   "one-round ε, Andrew et al.'s estimate, what a perfect "
                                   "attacker reaches on the mechanism, and consistent / "
                                   "violated / no claim"),
                      category="Privacy", subcategory="Privacy audit (one run)",
                      build=".report:build_table", findings=".report:findings",
                      advice=".report:advice", thresholds=".report:thresholds", order=16),))


def auditable(defenses: Any) -> str | None:
    """Why a scenario's clients cannot be audited with canary clients (None: they can): under
    SecAgg+ the server holds only the aggregate of the canaries' messages, and DP-SGD's noise is
    inside the local steps (its audit is the sample-level one)."""
    from fedaudit.scenarios import noise_defense, noise_on_update

    names = [d["name"] for d in defenses]
    if "secagg" in names:
        return "its clients' messages are masked by SecAgg+ (the server holds only the aggregate)"
    entry = noise_defense(defenses)
    if entry is not None and not noise_on_update(str(entry["name"])):
        return (f"its noise ({entry['name']}) is inside the local steps, not on the update a "
                "client sends")
    return None


def check(config: dict[str, Any], scenarios: set[str]) -> None:
    """Every listed scenario must be auditable (:func:`auditable`); the default (the control and
    the noise grid) keeps those that are."""
    section = config["attacks"]["privacy_audit"]
    if not section["enabled"] or section["scenarios"] is None:
        return
    from fedaudit.scenarios import noise_grid, scenarios_from_config

    known = scenarios_from_config(config)
    grid = set(noise_grid(config["scenarios"]["noise"], config["defenses"]))
    for name in section["scenarios"]:
        why = auditable(known[name].defenses) if name in known else None
        if why is not None and name not in grid | {"baseline"}:
            raise SettingError("scenarios", f"{name!r} cannot be audited with canary clients: "
                               f"{why}")
