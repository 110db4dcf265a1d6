"""DLG's result files and the scoring arithmetic that needs no torch: what one attack produced
(:class:`DLGResult`), its ``.npz`` format (:func:`save_result` / :func:`load_result`) and the
least-squares gain/offset fit the scores and the figure use (:func:`fit_gain_offset`). The
figure (:mod:`fedaudit.attacks.dlg.figures`) reads results through this module alone, so
drawing it loads no torch; the attack itself is :mod:`fedaudit.attacks.dlg.inversion`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedaudit.archives import load_npz
from fedaudit.atomic import save_npz

# What run_dlg attacks, in this order: the audited model, the architecture-level positive control
# that gates the verdict, and the check of the attack code.
NETWORKS = ("unet", "control", "code_check")




@dataclass
class DLGResult:
    """What one attack produced. Arrays are float32 on the host, ``[B, 1, H, W]`` per image.

    ``loss[i]`` is the gradient-matching objective at the dummy after ``i`` updates (one entry
    per iteration run, non-finite ones included when the run stopped early);
    ``snapshots[j]`` is the masked dummy MR after ``snapshot_iterations[j]`` updates;
    ``reconstruction`` is the dummy after ``final_iteration`` updates: the last iteration, or,
    when the objective became non-finite (``stopped_early``), the last dummy checked finite.
    """

    reconstruction: np.ndarray
    ct_reconstruction: np.ndarray | None
    snapshots: np.ndarray
    snapshot_iterations: np.ndarray
    loss: np.ndarray
    seconds: float
    iterations_per_s: float
    stopped_early: bool
    final_iteration: int


def fit_gain_offset(true_mr: np.ndarray, reconstruction: np.ndarray,
                    mask: np.ndarray) -> tuple[float, float]:
    """Least-squares gain and offset of one slice inside the mask:
    ``a, b = argmin_{a >= 0, b} Σ_mask (a·rec + b − true)²``.

    Closed form: ``a = cov(rec, true) / var(rec)``, ``b = mean(true) − a·mean(rec)`` (means and
    moments over mask pixels). The gain is constrained to ``a >= 0``: BatchNorm hides a
    *positive* rescaling of the input, not a sign flip, so a contrast-inverted reconstruction
    gets no credit; where the unconstrained gain is negative, and for a constant reconstruction
    (var 0: every gain fits equally), the constrained optimum is ``a = 0, b = mean(true)``.
    """
    r, g = reconstruction[mask].astype(np.float64), true_mr[mask].astype(np.float64)
    dr = r - r.mean()
    var = float(np.dot(dr, dr))
    cov = float(np.dot(dr, g - g.mean()))
    # var relative to the reconstruction's magnitude: float round-off leaves a constant slice
    # with var ~ 1e-32·mean², which must not turn into an arbitrary huge gain.
    if not np.isfinite(var) or var <= 1e-24 * max(float(np.dot(r, r)), 1e-300) or cov <= 0:
        return 0.0, float(g.mean())
    gain = cov / var
    return gain, float(g.mean() - gain * r.mean())



_RESULT_ARRAYS = ("reconstruction", "snapshots", "snapshot_iterations", "loss")
_RESULT_SCALARS = ("seconds", "iterations_per_s", "stopped_early", "final_iteration")


def save_result(path: str | Path, outcome: dict[str, Any]) -> Path:
    """One ``.npz``: the raw arrays of every network's attack (:data:`NETWORKS`) and the ground
    truth, plus a JSON ``meta``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {k: np.asarray(outcome[k])
                                     for k in ("true_mr", "true_ct", "mask")}
    scalars: dict[str, dict[str, Any]] = {}
    for label in NETWORKS:
        res: DLGResult = outcome[label]
        for k in _RESULT_ARRAYS:
            arrays[f"{label}_{k}"] = np.asarray(getattr(res, k))
        if res.ct_reconstruction is not None:
            arrays[f"{label}_ct_reconstruction"] = res.ct_reconstruction
        scalars[label] = {k: getattr(res, k) for k in _RESULT_SCALARS}
    meta = {k: outcome[k] for k in outcome
            if k not in arrays and k not in NETWORKS}
    meta["results"] = scalars
    arrays["meta"] = np.asarray(json.dumps(meta))
    save_npz(path, compressed=True, **arrays)
    return path


def load_result(path: str | Path) -> dict[str, Any]:
    """The inverse of :func:`save_result`: the dict :func:`run_dlg` returned."""
    data = load_npz(path)
    meta = json.loads(str(data.pop("meta")))
    scalars = meta.pop("results")
    if set(scalars) != set(NETWORKS):
        # Files of the two-network version named the MLP "control": reading one as the
        # BatchNorm-free UNet would mislabel the verdict's gate.
        raise ValueError(f"{path} holds DLG results for {sorted(scalars)}, not {list(NETWORKS)}: "
                         "written by an older version (where 'control' was the MLP); re-run "
                         "its dlg job")
    out: dict[str, Any] = {**meta, **{k: data[k] for k in ("true_mr", "true_ct", "mask")}}
    for label in NETWORKS:
        out[label] = DLGResult(
            **{k: data[f"{label}_{k}"] for k in _RESULT_ARRAYS},
            ct_reconstruction=data.get(f"{label}_ct_reconstruction"),
            **scalars[label])
    return out
