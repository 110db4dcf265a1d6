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
                                   "violated / no claim; with sample_level on, a block of "
                                   "DP-SGD scenarios: canaries in one client's round, scored "
                                   "white-box and black-box, beside a noise-free control"),
                      category="Privacy", subcategory="Privacy audit (one run)",
                      build=".report:build_table", findings=".report:findings",
                      advice=".report:advice", thresholds=".report:thresholds", order=16),))


def auditable(defenses: Any) -> str | None:
    """Why a scenario's clients cannot be audited with canary clients (None: they can): under
    SecAgg+ the server holds only the aggregate of the canaries' messages, and DP-SGD's noise is
    inside the local steps (its audit is the sample level, :mod:`.sample_round`)."""
    from fedaudit.scenarios import noise_defense, noise_on_update

    names = [d["name"] for d in defenses]
    if "secagg" in names:
        return "its clients' messages are masked by SecAgg+ (the server holds only the aggregate)"
    entry = noise_defense(defenses)
    if entry is not None and not noise_on_update(str(entry["name"])):
        return (f"its noise ({entry['name']}) is inside the local steps, not on the update a "
                "client sends")
    return None


def trains_dp_sgd(defenses: Any) -> bool:
    """Whether a scenario's clients train with DP-SGD (the sample level's scenarios)."""
    return any(d["name"] == "dp_sgd" for d in defenses)


def check(config: dict[str, Any], scenarios: set[str]) -> None:
    """Every listed scenario must be auditable (:func:`auditable`); the default (the control and
    the noise grid) keeps those that are. The sample level's scenarios must train with DP-SGD
    (without SecAgg+) and its center must be a training center."""
    from fedaudit.scenarios import noise_grid, scenarios_from_config

    section = config["attacks"]["privacy_audit"]
    sample = section["sample_level"]
    if sample["enabled"]:
        _check_sample(config, sample, scenarios_from_config(config), scenarios)
    if not section["enabled"] or section["scenarios"] is None:
        return
    known = scenarios_from_config(config)
    grid = set(noise_grid(config["scenarios"]["noise"], config["defenses"]))
    for name in section["scenarios"]:
        why = auditable(known[name].defenses) if name in known else None
        if why is not None and name not in grid | {"baseline"}:
            raise SettingError("scenarios", f"{name!r} cannot be audited with canary clients: "
                               f"{why}")


def _check_sample(config: dict[str, Any], sample: dict[str, Any], known: dict[str, Any],
                  scenarios: set[str]) -> None:
    key = "sample_level"
    train = sorted(c for c, v in config["centers"].items() if v.get("role") == "train")
    if sample["center"] is not None and sample["center"] not in train:
        raise SettingError(f"{key}.center", f"{sample['center']!r} is not a training center "
                           f"({', '.join(train)})")
    for name in sample["scenarios"] or []:
        if name not in known or name not in scenarios:
            raise SettingError(f"{key}.scenarios", f"{name!r} is not among the trained "
                               f"scenarios ({', '.join(sorted(scenarios))})")
        names = [d["name"] for d in known[name].defenses]
        if not trains_dp_sgd(known[name].defenses) or "secagg" in names:
            raise SettingError(f"{key}.scenarios", f"{name!r} cannot carry sample-level "
                               "canaries: they audit DP-SGD, on the update the server receives "
                               f"(its defenses: {', '.join(names) or 'none'})")
