"""Malicious initialisations of the inserted linear block and the closed-form reconstruction.

The closed form (paper 002, "Data Reconstruction Overview", Eqs. 3-4; Geiping et al.,
"Inverting Gradients", NeurIPS 2020, Prop. D.1): for neuron ``i`` of a linear layer
``y_i = w_iᵀx + b_i``, ``∂L/∂w_i = Σ_n (∂L/∂y_{i,n}) x_n`` and ``∂L/∂b_i = Σ_n ∂L/∂y_{i,n}``
over the batch. Behind a ReLU, ``∂L/∂y_{i,n} = 0`` for every sample with ``y_{i,n} ≤ 0``, so
when exactly one sample activates neuron ``i``::

    x_n = (∂L/∂w_i) / (∂L/∂b_i)                                        (paper 002, Eq. 3)

A server that sends the weights chooses how many samples each neuron fires for:

- :func:`trap_init` -- *trap weights* (Boenisch et al., "When the Curious Abandon Honesty:
  Federated Learning Is Not Private", EuroS&P 2023, §V-A; paper 002 Eq. 5): random rows whose
  positive entries are scaled down, so that ``Σ_{n∈N} |w_n| x_n < Σ_{p∈P} w_p x_p`` (a neuron
  fires) holds for few non-negative inputs;
- :func:`binning_init` -- the *imprint* module of Fowl et al., "Robbing the Fed", ICLR 2022, §3:
  every row measures the mean intensity and the biases cut its (assumed) distribution into
  equal-mass bins, so neuron ``i`` fires for every sample brighter than threshold ``q_i``; the
  difference of consecutive neurons isolates the samples of one bin (their Eq. 3).

The same ratio holds for a client's *update* after one SGD step (``Δ = −lr·∇``, the ratio is
unchanged) and, approximately, after several small steps (Fowl et al. §4); under Adam each
coordinate of the step is rescaled separately and the ratio no longer gives the input.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from fedaudit.models.front import LinearFront

INITS = ("trap", "binning")


def trap_init(front: LinearFront, *, positive_scale: float, back_std: float,
              generator: torch.Generator) -> None:
    """Trap weights (Boenisch et al. 2023, §V-A): each row ``|z|`` with random signs, the
    positive entries multiplied by ``positive_scale`` (< 1 makes activation rare for
    non-negative inputs, paper 002 Eq. 5); zero biases; the path back ``V ~ N(0, back_std²)``."""
    with torch.no_grad():
        k, d = front.linear.weight.shape
        mag = torch.randn(k, d, generator=generator).abs()
        sign = torch.where(torch.rand(k, d, generator=generator) < 0.5, -1.0, 1.0)
        w = mag * sign
        w = torch.where(w > 0, w * positive_scale, w)
        front.linear.weight.copy_(w / np.sqrt(d))
        front.linear.bias.zero_()
        front.back.weight.copy_(torch.randn(d, k, generator=generator) * back_std)


REFERENCE_D = 64 * 64  # the input size ``positive_scale`` is given for


def scaled_positive_scale(scale: float, d: int) -> float:
    """``scale`` given for a 64×64 input, for an input of ``d`` values: the pre-activation's
    mean grows like ``d·(1 − s)`` and its spread like ``√d``, so ``1 − s`` shrinks like
    ``1/√d`` to keep the share of inputs a neuron fires for (for the same pixel statistics)."""
    return 1.0 - (1.0 - scale) * float(np.sqrt(REFERENCE_D / d))


def binning_init(front: LinearFront, *, mean: float, std: float, back_std: float,
                 generator: torch.Generator) -> None:
    """Robbing the Fed's imprint module (Fowl et al. 2022, §3): every row is ``1/d`` (the mean
    intensity ``m(x)``), ``b_i = −q_i`` with ``q_i`` the ``(i+1)/(k+1)`` quantile of the
    server's prior ``m ~ N(mean, std²)`` (increasing in ``i``), and every neuron has the same
    path back (one column repeated), so a sample's ``∂L/∂y_{i,n}`` is the same for all the
    neurons it activates and consecutive differences cancel exactly."""
    with torch.no_grad():
        k, d = front.linear.weight.shape
        q = mean + std * norm.ppf(np.arange(1, k + 1) / (k + 1))
        front.linear.weight.fill_(1.0 / d)
        front.linear.bias.copy_(torch.as_tensor(-q, dtype=torch.float32))
        column = torch.randn(d, 1, generator=generator) * back_std
        front.back.weight.copy_(column.expand(d, k))


def reconstruct(d_weight: np.ndarray, d_bias: np.ndarray, init: str,
                rel_tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """The server's reconstructions from the inserted layer's gradient or update (``d_weight``
    (k, d), ``d_bias`` (k,)): ``(reconstructions (m, d), the neuron (or bin) each came from)``.

    ``trap``: every neuron whose bias moved (``|Δb_i| > rel_tol·max|Δb|``) gives
    ``Δw_i / Δb_i``; ``binning``: bin ``i`` (samples with ``q_i < m(x) ≤ q_{i+1}``) gives
    ``(Δw_i − Δw_{i+1}) / (Δb_i − Δb_{i+1})``, the last bin ``Δw_{k-1} / Δb_{k-1}``. A neuron
    that fired for several samples gives their weighted mean: the scoring decides what counts as
    recovered. Non-finite inputs give no reconstruction."""
    if init not in INITS:
        raise ValueError(f"unknown initialisation {init!r} (known: {', '.join(INITS)})")
    w = np.asarray(d_weight, np.float64)
    b = np.asarray(d_bias, np.float64)
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(f"expected weight (k, d) and bias (k,), got {w.shape} and {b.shape}")
    if init == "binning":
        w = np.concatenate([w[:-1] - w[1:], w[-1:]])
        b = np.concatenate([b[:-1] - b[1:], b[-1:]])
    finite = np.isfinite(b) & np.all(np.isfinite(w), axis=1)
    scale = np.max(np.abs(b[finite])) if finite.any() else 0.0
    keep = np.flatnonzero(finite & (np.abs(b) > rel_tol * scale) & (scale > 0))
    return (w[keep] / b[keep, None]).astype(np.float32), keep
