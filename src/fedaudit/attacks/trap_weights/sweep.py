"""Which 2-D sweep a trap-weight job runs: paper 002 Table 1's batch size × federation size ×
initialisation, with the local-training mode's own batch sizes and initialisations.

In gradient mode (paper 002's setting, one SGD step on the first B slices) the recovered share
falls with the batch: more slices share each trap neuron. In local mode a client trains every
slice of its round whatever B, so the batch only changes how the steps are grouped; measured over
[8, 32, 128] on the demo the share stayed at one level (e.g. 94, 90, 92 of 320 with 4 clients)
and binning stayed below trap weights in every cell, which is why the demo sweeps the local mode
at batch 8 with trap weights only (``attacks.trap_weights.local``).
"""

from __future__ import annotations

from typing import Any

SWEPT = ("batch_sizes", "inits")
# read by the job itself, not by the study's rules: settings that decide nothing in a job
NOT_SETTINGS = ("enabled", "scenarios", "modes", "local")


def mode_settings(trap: dict[str, Any], mode: str) -> dict[str, Any]:
    """The settings of the 2-D sweep job of ``mode``: the section without what no job reads,
    and in ``local`` mode ``local.batch_sizes`` / ``local.inits`` in place of the gradient
    mode's where they are set (None keeps the gradient mode's)."""
    out = {k: v for k, v in trap.items() if k not in NOT_SETTINGS}
    if mode == "local":
        for key in SWEPT:
            own = (trap.get("local") or {}).get(key)
            if own is not None:
                out[key] = list(own)
    return out
