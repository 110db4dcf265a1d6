"""The noise replay (the server regenerates the clients' privacy noise from what it holds and
subtracts it; :mod:`.replay`): its jobs (``rules.smk``), config (``schema.yaml``), table and
verdict finding (``report.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedaudit.catalog import NOISE_GRID, AttackSpec, SettingError, TableSpec, check_logged_rounds

ATTACK = AttackSpec(
    name="noise_replay", title="Noise replay (the server regenerates the clients' noise)",
    view="server_log", folder=Path(__file__).parent, default_scenarios=(NOISE_GRID,),
    check=".plugin:check",
    tables=(TableSpec(name="noise_replay",
                      description=("per noised scenario: the share of the clients' noise the "
                                   "server removes by regenerating it from what it holds, the "
                                   "residual, and the control (seeded simulation noise, which must "
                                   "be recovered)"),
                      category="Privacy", subcategory="Noise replay",
                      build=".report:build_table", findings=".report:findings",
                      advice=".report:advice",
                      thresholds=".report:thresholds", order=15),))


def check(config: dict[str, Any], scenarios: set[str]) -> None:
    """The rounds must be logged, and every scenario must have a noise defense or be in the
    noise grid (the default). A DP-SGD scenario or its GroupNorm reference is accepted and not
    replayed (its noise is inside the local steps, not on the
    update: nothing to subtract), so the default (the whole noise grid) is valid."""
    section = config["attacks"]["noise_replay"]
    if not section["enabled"]:
        return
    check_logged_rounds(config, "rounds", section["rounds"])
    from fedaudit.attacks.noise_replay.replay import replayable_names
    from fedaudit.scenarios import is_noise, noise_grid, scenarios_from_config

    known = scenarios_from_config(config)
    # the default, DP-SGD's reference too
    grid = set(noise_grid(config["scenarios"]["noise"], config["defenses"]))
    for name in section["scenarios"] or []:
        if name in known and name not in grid and not any(
                is_noise(d["name"]) for d in known[name].defenses):
            raise SettingError("scenarios", f"{name!r} has no noise defense; the replay attacks "
                               f"noise on the updates ({', '.join(replayable_names())})")
