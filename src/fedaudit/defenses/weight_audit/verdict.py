"""The weight audit's test, numpy only (the report environment reads it without Flower):
:func:`audit` of one received model against the previous one, :func:`trap_signature` and
:func:`is_alarm`. The method and its sources are in :mod:`.audit`."""

from __future__ import annotations

from typing import Any

import numpy as np


def trap_signature(weight: np.ndarray, bias: np.ndarray | None) -> bool:
    """Paper 002 Eq. 5 by construction: every bias exactly zero and negative weight mass in
    excess of the positive, ``I = (Σ|w⁻| − Σw⁺) / Σ|w| > 3/√n`` over the tensor's ``n``
    entries (three standard errors of a sign-symmetric draw, whose ``I`` has sd ≈ 1/√n). A
    trained layer never has all biases at exactly zero. Small tensors (a 3×3 convolution's few
    dozen weights) cannot show a scale of 0.9 this way: there the change test must catch it."""
    if bias is None or np.any(bias != 0):
        return False
    w = np.asarray(weight, np.float64).ravel()
    total = np.abs(w).sum()
    if total == 0:
        return False
    imbalance = (-w[w < 0].sum() - w[w > 0].sum()) / total
    return bool(imbalance > 3.0 / np.sqrt(w.size))


def is_alarm(flags: str, score: float, threshold: float) -> bool:
    """The audit's verdict from what a round recorded: a structural or signature flag, or a
    change beyond ``threshold`` (a NaN score, nothing to compare with, is no alarm)."""
    return bool(flags) or bool(np.isfinite(score) and score > threshold)


# how far above its expected norm the update noise of a kernel may reach before its change
# counts: the norm of k i.i.d. N(0, s²) draws is s·√k with sd ≈ s/√2, so 5 sd
NOISE_SDS = 5.0


def noise_allowance(noise_std: float, size: int) -> float:
    """The part of a kernel's change that the federation's own update noise explains: its
    expected norm ``s·√k`` plus :data:`NOISE_SDS` standard deviations (``s/√2`` each), for
    per-coordinate noise std ``s`` on the global model and ``k`` entries (0 without noise)."""
    if noise_std <= 0:
        return 0.0
    return float(noise_std * (np.sqrt(size) + NOISE_SDS / np.sqrt(2.0)))


def audit(previous: dict[str, np.ndarray] | None, received: dict[str, np.ndarray],
          threshold: float, noise_std: float = 0.0) -> dict[str, Any]:
    """The audit of one received model (names -> arrays, in wire order) against the previous
    one: ``{"alarm": bool, "score": max relative change (NaN without a previous model),
    "flags": the threshold-free findings (new, missing or reshaped tensors, the trap
    signature), "reason": everything that raised the alarm}``.

    ``noise_std``: the per-coordinate std of the update noise the global model carries (the
    federation's DP-FedAvg or Laplace noise averaged by FedAvg,
    :func:`fedaudit.defenses.weight_audit.audit.global_noise_std`). A kernel's change is then
    scored beyond what that noise explains (:func:`noise_allowance`): DP noise on a kernel
    changes it by about ``s·√k``, which at the demo's DP-FedAvg level is of the order of the
    kernel's own norm and looked like a replaced kernel (12 false alarms in one federation). The
    price: a trap that changes a kernel by less than the noise does hides in it."""
    reasons: list[str] = []
    names = list(received)
    weights = [n for n in names if n.endswith(".weight") and received[n].ndim >= 2]
    if weights:
        first = weights[0]
        bias = received.get(first[: -len("weight")] + "bias")
        if trap_signature(received[first], bias):
            reasons.append(f"{first}: trap-weight signature (zero biases, rows with more "
                           "negative than positive mass)")
    score = float("nan")
    if previous is not None:
        new = [n for n in names if n not in previous]
        gone = [n for n in previous if n not in received]
        reshaped = [n for n in names if n in previous and previous[n].shape != received[n].shape]
        for label, items in (("new tensors", new), ("missing tensors", gone),
                             ("reshaped tensors", reshaped)):
            if items:
                reasons.append(f"{label}: {', '.join(items[:3])}"
                               + (f" (+{len(items) - 3})" if len(items) > 3 else ""))
        ratios = {}
        for n in names:
            # kernels only: a trap is planted in a weight matrix, and 1-D tensors (biases,
            # BatchNorm) have small norms whose relative change is large in honest rounds
            # (up to 1.25 on the demo's early rounds, measured)
            if n in previous and previous[n].shape == received[n].shape \
                    and received[n].ndim >= 2:
                ref = float(np.linalg.norm(previous[n]))
                if ref > 0:
                    change = float(np.linalg.norm(received[n] - previous[n]))
                    change = max(change - noise_allowance(noise_std, received[n].size), 0.0)
                    ratios[n] = change / ref
        flags = "; ".join(reasons)
        if ratios:
            worst = max(ratios, key=ratios.__getitem__)
            score = ratios[worst]
            if score > threshold:
                reasons.append(f"{worst} changed by {score:.3g} of its norm"
                               + (" beyond the update noise" if noise_std > 0 else "")
                               + f" (threshold {threshold:g})")
    else:
        flags = "; ".join(reasons)
    return {"alarm": is_alarm(flags, score, threshold), "score": score, "flags": flags,
            "reason": "; ".join(reasons)}
