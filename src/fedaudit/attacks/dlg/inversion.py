"""Gradient inversion: Deep Leakage from Gradients (DLG) against one client's shared gradient.

Sources: Zhu, Liu and Han, "Deep Leakage from Gradients", NeurIPS 2019 (Algorithm 1, Eq. 4: find
dummy data whose gradient matches the shared one, ``min ‖∇θL(x', y') − ∇θL(x, y)‖²``); paper 000
(Raggio, Bucher et al.), section "Gradient Inversion", Results paragraph on DLG and Fig. 2:

* the sensitive data is the input MR slice; a 2-D dummy MR "initialized as a learnable tensor
  within the anatomical mask", from "a uniform initialization" (Fig. 2);
* the objective is the squared difference between dummy and real gradients, with the dummy
  confined to the mask "to suppress background reconstruction";
* Adam (lr 0.1, StepLR ×0.1 every 10,000 iterations) and L-BFGS ("line search step size" 0.1)
  are evaluated separately, 30,000 iterations each, batch size 1;
* quality is SSIM/PSNR inside the mask (0.16 ± 0.05 and 11 ± 2 dB reported for the UNet);
  here scored raw and after a least-squares gain/offset fit (:func:`reconstruction_quality`).

The three parties of DESIGN.md ("Threat-model discipline") are separate functions:

* client -- :func:`client_gradient`: what the client computes from its private (MR, CT) slice;
* attacker -- :func:`reconstruct`: gets the model the server sent, the shared gradient, the
  anatomical mask and, for ``target="known"``, the CT; never the MR;
* evaluator -- :func:`reconstruction_quality`: compares the reconstruction with the true MR.

Choices the paper leaves open, made here:

* ``target="known"``: the attacker knows the client's CT slice (the label), the upper-bound
  attacker the paper's "upper bound assessment" implies; ``target="joint"`` optimises a dummy CT
  as well, as DLG optimises the dummy label.
* Dummy MR = mask ⊙ z with the background fixed at 0, the preprocessed MR's background; a joint
  dummy CT is air (-1000 HU) outside the mask, the value preprocessing writes there.
* One "iteration" is one evaluation of the gradient-matching objective and its gradient:
  one Adam step, or one ``LBFGS.step(closure)`` with ``max_iter=1`` and no line search (the step
  is then ``lr`` times the L-BFGS direction, PyTorch's reading of a fixed "step size"). Both
  optimisers thus get the same number of double-backpropagation passes.
* The model runs in train mode, as the client trains it: BatchNorm normalises with the batch's
  own statistics, which the attacker's forward pass reproduces.
* Controls (issue 12): the same attack, slice and dummy start run against the same UNet
  without BatchNorm (the positive control that gates the verdict) and against a closed-form
  invertible MLP (a check of the attack code); see :func:`run_dlg`.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fedaudit.attacks.dlg.results import (  # noqa: F401 - part of this module's API
    NETWORKS,
    DLGResult,
    fit_gain_offset,
    load_result,
    save_result,
)
from fedaudit.attacks.gradient_inversion import Descent, Watch, descend, shared_gradient_on
from fedaudit.attacks.views import ServerView
from fedaudit.catalog import fragment_defaults, schema_defaults
from fedaudit.data.slices import Volume, load_volume, slice_indices
from fedaudit.federation.local import LOSSES
from fedaudit.intensity import AIR_HU, hu_to_unit
from fedaudit.models.device import resolve_device
from fedaudit.models.tiny import TinyMLPTranslator
from fedaudit.models.unet import UNet2D
from fedaudit.runtime import derive_seed

OPTIMIZERS = ("adam", "lbfgs")
TARGETS = ("known", "joint")
# Finiteness is checked (one host sync) every CHECK_EVERY iterations and at every snapshot, so a
# blow-up costs at most this many iterations of work and the last finite dummy is at most this old.
CHECK_EVERY = 100
LOG_EVERY_S = 30.0
# A representative slice (paper Fig. 2 shows mid-brain axial slices): at least this fraction of
# the volume's largest axial head area.
MIN_AREA_FRACTION = 0.5
AIR_UNIT = float(hu_to_unit(np.float32(AIR_HU)))
# reconstruction_quality's keys: SSIM/PSNR of the reconstruction as is and after the gain/offset
# fit, and the fitted gain and offset.
QUALITY_KEYS = ("ssim_raw", "psnr_raw", "ssim_fit", "psnr_fit", "gain", "offset")


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# ---------------------------------------------------------------------------------------------
# Client party
# ---------------------------------------------------------------------------------------------

def client_gradient(model: nn.Module, mr: torch.Tensor, ct: torch.Tensor,
                    loss: str = "l1") -> list[torch.Tensor]:
    """∇θ of the client's data loss ``LOSSES[loss](model(mr), ct)`` on one batch ``[B, 1, H, W]``.

    Computed as the client computes it (:func:`fedaudit.federation.local.train_local`): train
    mode, so BatchNorm uses batch statistics. The FedProx term ``(μ/2)‖w − w_global‖²`` has zero
    gradient at the round-start global model, so at the first local step the data loss is the
    whole gradient. The work happens on a deep copy: a train-mode forward updates BatchNorm
    running statistics, and the caller's model must stay the one the server sent.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}; got {loss!r}")
    net = copy.deepcopy(model).to(mr.device).train()
    value = LOSSES[loss](net(mr), ct)
    return [g.detach() for g in torch.autograd.grad(value, _trainable(net))]


# ---------------------------------------------------------------------------------------------
# Attacker party
# ---------------------------------------------------------------------------------------------

_DLG = fragment_defaults(Path(__file__).parent)


@dataclass(frozen=True)
class DLGConfig:
    """Attack settings; the defaults are the config schema's (``attacks.dlg``, paper 000's
    "Gradient Inversion" values), read from the plugin's schema fragment."""

    optimizer: str = _DLG["optimizers"][0]
    iterations: int = _DLG["iterations"]
    lr: float = _DLG["adam"]["lr"]
    step_size: int = _DLG["adam"]["step_size"]  # Adam's StepLR period (iterations)
    gamma: float = _DLG["adam"]["gamma"]  # Adam's StepLR factor
    history_size: int = _DLG["lbfgs"]["history_size"]  # L-BFGS memory
    snapshots: int = _DLG["snapshots"]  # dummies kept for the figure, first and last included
    target: str = _DLG["target"]
    loss: str = schema_defaults("train")["loss"]

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"DLG optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        if self.target not in TARGETS:
            raise ValueError(f"DLG target must be one of {TARGETS} ('known': the attacker knows "
                             f"the CT; 'joint': it optimises it too); got {self.target!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"DLG loss must be one of {sorted(LOSSES)} (the client's training "
                             f"loss); got {self.loss!r}")
        for name in ("iterations", "step_size", "history_size", "snapshots"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"DLG {name} must be an integer; got {value!r}")
        if self.iterations < 1:
            raise ValueError(f"DLG iterations must be >= 1; got {self.iterations}")
        if self.step_size < 1 or self.history_size < 1:
            raise ValueError(f"DLG step_size and history_size must be >= 1; got "
                             f"{self.step_size}, {self.history_size}")
        if self.snapshots < 2:
            raise ValueError(f"DLG snapshots must be >= 2 (the initialisation and the final "
                             f"dummy); got {self.snapshots}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"DLG lr must be a finite number > 0; got {self.lr}")
        if not (math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            raise ValueError(f"DLG gamma (StepLR factor) must be in (0, 1]; got {self.gamma}")


def snapshot_schedule(iterations: int, snapshots: int) -> np.ndarray:
    """``snapshots`` evenly spaced iteration counts in [0, iterations], rounded and unique."""
    return np.unique(np.round(np.linspace(0, iterations, snapshots)).astype(np.int64))


def gradient_matching_loss(model: nn.Module, mr: torch.Tensor, ct: torch.Tensor,
                           shared_grads: Sequence[torch.Tensor], loss: str = "l1",
                           create_graph: bool = True) -> torch.Tensor:
    """DLG Eq. 4: ``Σ_params ‖∇θ LOSSES[loss](model(mr), ct) − shared_grad‖²``.

    ``model`` is used as it is (the caller sets train mode and owns any BatchNorm side effects);
    ``create_graph`` keeps the graph of the gradient so the result can be differentiated w.r.t.
    ``mr`` (and ``ct``) -- double backpropagation.
    """
    params = _trainable(model)
    if len(params) != len(shared_grads):
        raise ValueError(f"{len(shared_grads)} shared gradients for a model with {len(params)} "
                         "trainable tensors")
    value = LOSSES[loss](model(mr), ct)
    dummy = torch.autograd.grad(value, params, create_graph=create_graph)
    return torch.stack([((d - s) ** 2).sum()
                        for d, s in zip(dummy, shared_grads, strict=True)]).sum()


def _as_batch(x: np.ndarray | torch.Tensor, device: torch.device, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 4 or t.shape[1] != 1:
        raise ValueError(f"{name} must be a batch [B, 1, H, W]; got shape {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.float32)


def _check_target(cfg: DLGConfig, ct: object) -> None:
    if cfg.target == "known" and ct is None:
        raise ValueError("DLG target 'known' (the paper's upper-bound attacker, who knows the "
                         "client's CT slice) needs ct=...; use target='joint' to optimise the "
                         "CT as well")
    if cfg.target == "joint" and ct is not None:
        raise ValueError("DLG target 'joint' optimises the CT itself; a ct was passed, which "
                         "would hand the attacker ground truth: pass ct=None")


def _optimizer(cfg: DLGConfig, variables: list[torch.Tensor]
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(variables, lr=cfg.lr)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size,
                                                    gamma=cfg.gamma)
    # PyTorch's L-BFGS reads the loss as a Python float in every step (one host sync per
    # iteration, unlike Adam) and stores a curvature pair only when yᵀs > 1e-10, an absolute
    # threshold: on a flat objective it stays gradient descent with step lr.
    return torch.optim.LBFGS(variables, lr=cfg.lr, max_iter=1,
                             history_size=cfg.history_size), None


class _Trace(Watch):
    """What DLG keeps of the shared loop (:func:`fedaudit.attacks.gradient_inversion.descend`):
    every iteration's objective (on the device, read only at checks), the snapshots at
    ``schedule``'s iterations, and a log line every :data:`LOG_EVERY_S` seconds. It asks for a
    check at each snapshot and log line; the losses since the last check must be finite too."""

    def __init__(self, schedule: set[int], n: int, dummy: Callable[[], torch.Tensor],
                 device: torch.device, name: str, log: logging.Logger | None,
                 bar: tqdm) -> None:
        self.schedule, self.n, self.dummy, self.name, self.log, self.bar = (
            schedule, n, dummy, name, log, bar)
        self.losses = torch.empty(n, device=device)
        self.snaps: list[np.ndarray] = []
        self.iterations: list[int] = []
        self.checked = 0
        self.t0 = self.last_log = time.perf_counter()
        self.want_log = False
        self.snapshot(0)

    def snapshot(self, iteration: int) -> None:
        if iteration in self.schedule:
            self.snaps.append(self.dummy().detach().cpu().numpy())
            self.iterations.append(iteration)

    def after_step(self, steps: int, value: torch.Tensor | None) -> bool:
        self.losses[steps - 1] = value
        now = time.perf_counter()
        self.want_log = self.log is not None and (now - self.last_log >= LOG_EVERY_S
                                                  or steps == self.n)
        return steps in self.schedule or self.want_log

    def finite(self, steps: int) -> list[torch.Tensor]:
        return [torch.isfinite(self.losses[self.checked:steps]).all()]

    def kept(self, steps: int, variables: list[torch.Tensor]) -> None:
        self.checked = steps
        self.snapshot(steps)
        current = float(self.losses[steps - 1])
        self.bar.set_postfix(loss=f"{current:.4g}", refresh=False)
        if self.want_log and self.log is not None:
            now = time.perf_counter()
            self.last_log = now
            self.log.info("DLG %s: iteration %d/%d, gradient-matching loss %.4g, %.2f it/s",
                          self.name, steps, self.n, current, steps / (now - self.t0))


def reconstruct(model: nn.Module, shared_grads: Sequence[torch.Tensor | np.ndarray],
                mask: np.ndarray | torch.Tensor, cfg: DLGConfig, *,
                ct: np.ndarray | torch.Tensor | None = None, seed: int,
                device: str | torch.device = "cpu", log: logging.Logger | None = None,
                progress: bool = True) -> DLGResult:
    """Run DLG: optimise a dummy MR (and, for ``target="joint"``, a dummy CT) until the gradient
    it induces in ``model`` matches ``shared_grads``.

    The attacker's inputs only: ``model`` (the weights the server sent), the shared gradient
    (one tensor per trainable parameter, in ``model.parameters()`` order), the anatomical
    ``mask`` ``[B, 1, H, W]`` and, for ``target="known"``, the client's unit-range CT ``ct``.
    ``seed`` fixes the uniform initialisation (a CPU generator, so CPU and CUDA start alike).
    """
    _check_target(cfg, ct)
    dev = resolve_device(device) if isinstance(device, str) else device
    net = copy.deepcopy(model).to(dev).train()
    params = _trainable(net)
    shared = shared_gradient_on(params, shared_grads, dev)
    m = _as_batch(mask, dev, "mask")
    if not bool((m > 0).flatten(1).any(1).all()):
        raise ValueError("every slice's mask must contain at least one pixel")
    m = (m > 0).float()

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    variables = [torch.rand(m.shape, generator=gen).to(dev).requires_grad_()]
    if cfg.target == "joint":
        variables.append(torch.rand(m.shape, generator=gen).to(dev).requires_grad_())
        known_ct = None
    else:
        known_ct = _as_batch(ct, dev, "ct")
        if known_ct.shape != m.shape:
            raise ValueError(f"ct shape {tuple(known_ct.shape)} != mask shape {tuple(m.shape)}")

    def dummies(vs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = m * vs[0]
        return x, (m * vs[1] + (1 - m) * AIR_UNIT if known_ct is None else known_ct)

    evals = 0

    def closure() -> torch.Tensor:
        nonlocal evals
        evals += 1
        x, y = dummies(variables)
        objective = gradient_matching_loss(net, x, y, shared, cfg.loss, create_graph=True)
        # Differentiate w.r.t. the dummies only: backward() would also fill the model's .grad,
        # work the attack never uses.
        for v, g in zip(variables, torch.autograd.grad(objective, variables), strict=True):
            v.grad = g
        return objective.detach()

    opt, sched = _optimizer(cfg, variables)
    n = cfg.iterations
    bar = tqdm(total=n, desc=f"DLG {cfg.optimizer}", file=sys.stderr, mininterval=5.0,
               disable=not progress)
    trace = _Trace({int(k) for k in snapshot_schedule(n, cfg.snapshots)}, n,
                   lambda: dummies(variables)[0], dev, cfg.optimizer, log, bar)
    t0 = time.perf_counter()
    done = descend(opt, sched, closure, variables, budget=n, evaluations=lambda: evals,
                   bar=bar, check_every=CHECK_EVERY, watch=trace)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    bar.close()

    if done.stopped and log is not None:
        log.warning("DLG %s: non-finite objective or dummy by iteration %d; keeping the "
                    "dummy of iteration %d", cfg.optimizer, done.steps, done.good_step)
    x_final, ct_final = (t.cpu().numpy() for t in dummies(done.good))
    return _result(trace, done, x_final, None if known_ct is not None else ct_final,
                   trace.losses[:done.steps].cpu().numpy(), seconds)


def _result(trace: _Trace, done: Descent, x_final: np.ndarray, ct_final: np.ndarray | None,
            losses: np.ndarray, seconds: float) -> DLGResult:
    """The attack's result from the last finite dummies; a stopped run's final dummy is its
    last snapshot."""
    final_iteration, stopped = done.good_step, done.stopped
    if stopped and (not trace.iterations or trace.iterations[-1] != final_iteration):
        trace.snaps.append(x_final)
        trace.iterations.append(final_iteration)
    done_steps = len(losses)
    return DLGResult(
        reconstruction=x_final.astype(np.float32, copy=False),
        ct_reconstruction=None if ct_final is None else ct_final.astype(np.float32, copy=False),
        snapshots=np.stack(trace.snaps).astype(np.float32, copy=False),
        snapshot_iterations=np.asarray(trace.iterations, dtype=np.int64),
        loss=losses.astype(np.float32, copy=False),
        seconds=seconds,
        iterations_per_s=done_steps / seconds if seconds > 0 else float("inf"),
        stopped_early=stopped, final_iteration=int(final_iteration))


# ---------------------------------------------------------------------------------------------
# Evaluator party
# ---------------------------------------------------------------------------------------------

def _as_slices(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 4 and a.shape[1] == 1:
        return a[:, 0]
    if a.ndim == 3:
        return a
    raise ValueError(f"{name} must be [H, W], [B, H, W] or [B, 1, H, W]; got {a.shape}")


def _masked_ssim_psnr(g: np.ndarray, r: np.ndarray, k: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(g, r, data_range=1.0, full=True)
    mse = float(np.mean((g[k] - r[k]) ** 2))
    return float(smap[k].mean()), float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def reconstruction_quality(true_mr: np.ndarray | torch.Tensor,
                           reconstruction: np.ndarray | torch.Tensor,
                           mask: np.ndarray | torch.Tensor) -> dict[str, float]:
    """SSIM and PSNR of the reconstruction inside the anatomical mask, as paper 000 reports them
    ("SSIM/PSNR" of the DLG reconstructions; the mask confines the comparison to the head),
    scored two ways. Keys: ``ssim_raw``, ``psnr_raw``, ``ssim_fit``, ``psnr_fit``, ``gain``,
    ``offset``.

    * raw: the reconstruction as it is, not clipped (clipping a dummy whose scale drifted to
      ~1e3–1e6 turns it into a flat 1 and hides any structure it has);
    * fit: after the least-squares gain and offset of :func:`fit_gain_offset`, applied inside
      the mask (the background stays the attacker's fixed 0, the preprocessed MR's background).
      Why: with BatchNorm in train mode and batch 1, each layer normalises away the scale of its
      input, so the shared gradient is (almost) invariant to multiplying the MR by a positive
      factor (DESIGN.md, "Lessons": relative gradient change 0.0023 for ×2.5) and DLG
      (Zhu, Liu and Han, NeurIPS 2019, Eq. 4) cannot recover the scale; paper 000 ("Gradient
      Inversion") does not say how it handled it. Scoring up to an affine intensity map is the
      usual answer to an unidentifiable scale (e.g. the scale-invariant error of Eigen, Puhrsch
      and Fergus, "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network",
      NeurIPS 2014, which fits the scale in closed form before scoring).

    Per 2-D slice (each slice its own gain and offset), averaged over the batch; ``gain`` and
    ``offset`` are the batch means. SSIM (Wang et al., "Image quality assessment: from error
    visibility to structural similarity", IEEE TIP 2004) is scikit-image's
    ``structural_similarity`` map (7×7 uniform window, K1 0.01, K2 0.03, sample covariance,
    data_range 1, the MR's range) averaged over mask pixels; PSNR = 10·log10(1 / MSE over mask
    pixels), inf for a perfect match.
    """
    gt = _as_slices(true_mr, "true_mr").astype(np.float64)
    rec = _as_slices(reconstruction, "reconstruction").astype(np.float64)
    msk = _as_slices(mask, "mask").astype(bool)
    if not gt.shape == rec.shape == msk.shape:
        raise ValueError(f"shapes differ: true {gt.shape}, reconstruction {rec.shape}, mask "
                         f"{msk.shape}")
    scores: dict[str, list[float]] = {k: [] for k in QUALITY_KEYS}
    for g, r, k in zip(gt, rec, msk, strict=True):
        if not k.any():
            raise ValueError("a slice's mask is empty: nothing to score")
        if not np.isfinite(r[k]).all():
            raise ValueError("the reconstruction has non-finite values inside the mask")
        ssim_raw, psnr_raw = _masked_ssim_psnr(g, r, k)
        gain, offset = fit_gain_offset(g, r, k)
        ssim_fit, psnr_fit = _masked_ssim_psnr(g, np.where(k, gain * r + offset, r), k)
        for key, v in zip(QUALITY_KEYS, (ssim_raw, psnr_raw, ssim_fit, psnr_fit, gain, offset),
                          strict=True):
            scores[key].append(v)
    return {k: float(np.mean(v)) for k, v in scores.items()}


# ---------------------------------------------------------------------------------------------
# Orchestration (the Snakemake rule): client slice, client gradient, attack on three networks
# ---------------------------------------------------------------------------------------------

def pick_client_slices(volumes: Sequence[Volume], batch_size: int, seed: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """A seeded draw of ``batch_size`` representative axial training slices of one center.

    Candidates are the axial slices whose head-mask area is at least ``MIN_AREA_FRACTION`` of
    that volume's largest axial area (mid-brain slices, like paper Fig. 2). Returns
    ``mr, ct_unit, mask`` (float32, float32, bool; ``[B, 1, H, W]``) and per slice
    ``{"patient", "axial_index"}``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    candidates: list[tuple[int, int]] = []
    for vi, vol in enumerate(volumes):
        idx = slice_indices(vol, "axial")
        if idx.size == 0:
            continue
        areas = vol.mask[idx].sum(axis=(1, 2))
        candidates += [(vi, int(k)) for k in idx[areas >= MIN_AREA_FRACTION * areas.max()]]
    if len(candidates) < batch_size:
        raise ValueError(f"{len(candidates)} representative axial slices in "
                         f"{[v.name for v in volumes]}; {batch_size} requested")
    rng = np.random.default_rng(seed)
    chosen = [candidates[i] for i in rng.choice(len(candidates), size=batch_size, replace=False)]
    mr = np.stack([volumes[v].mr[k] for v, k in chosen])[:, None].astype(np.float32)
    ct = np.stack([hu_to_unit(volumes[v].ct[k]) for v, k in chosen])[:, None].astype(np.float32)
    mask = np.stack([volumes[v].mask[k] for v, k in chosen])[:, None].astype(bool)
    provenance = [{"patient": volumes[v].name, "axial_index": k} for v, k in chosen]
    return mr, ct, mask, provenance


def bn_free_control(unet: UNet2D) -> UNet2D:
    """The same UNet without BatchNorm (``UNet2D(norm="none")``, same width and depth) carrying
    ``unet``'s convolution weights: the BatchNorm weights, biases and running statistics are the
    only entries left out (``norm="none"`` keeps the convolutions' state_dict names).

    Why the global convolutions rather than a fresh initialisation: "the same UNet without
    BatchNorm" should differ from the audited model in the normalisation only; and on the demo
    slice (center B's 1BB003, 64², base 8, L1, 600 iterations; measured for issue 12) DLG
    reached fitted SSIM 0.32 (Adam) / 0.23 (L-BFGS) with them against 0.23 / 0.23 with seeded
    PyTorch-default weights (a constant image scores 0.23): not worse, so nothing argues for
    arbitrary weights.
    """
    control = UNet2D(in_channels=unet.in_channels, out_channels=unet.out_channels,
                     base=unet.base, norm="none")
    mine = control.state_dict()
    theirs = unet.state_dict()
    missing = [k for k in mine if k not in theirs]
    if missing:
        raise ValueError(f"the BatchNorm-free UNet has {len(missing)} tensors the UNet lacks, "
                         f"e.g. {missing[0]}")
    # strict: every tensor of the control comes from the UNet; the BatchNorm entries are the ones
    # this filter drops.
    control.load_state_dict({k: theirs[k] for k in mine})
    return control


def run_dlg(*, server_log: str | Path, round: int | str, train_folders: Sequence[str],
            model_base: int, cfg: DLGConfig, seed: int, device: str = "cpu",
            control_hidden: int = 64, batch_size: int = 1,
            log: logging.Logger | None = None, progress: bool = True) -> dict[str, Any]:
    """DLG on one center against three networks (:data:`NETWORKS`), same private slice, same
    dummy initialisation, same attack settings:

    * ``unet``: the round's global UNet (BatchNorm in train mode), the audited model;
    * ``control``: the same UNet without BatchNorm at the same input size, with the global
      model's convolution weights (:func:`bn_free_control`): the architecture-level positive
      control. Only if DLG recovers it does a low UNet score say the UNet (its BatchNorm)
      resists rather than that this attack budget is too weak for this architecture (issue 12);
    * ``code_check``: the one-hidden-layer MLP of :mod:`fedaudit.models.tiny`, whose input
      follows from its gradient in closed form (Phong et al., IEEE TIFS 2018): it checks the
      attack code, not the UNet.

    ``seed`` is the center's attack seed (the caller derives it per center); the slice draw, the
    dummy initialisation and the MLP's weights use independent seeds derived from it.
    Returns ``round``, ``provenance``, ``true_mr``, ``true_ct``, ``mask`` (the evaluator's
    ground truth), one :class:`DLGResult` per network name, ``quality`` (per network),
    and the settings used.
    """
    dev = resolve_device(device)
    view = ServerView(server_log, model_base)
    rnds = view.rounds(round)
    if len(rnds) != 1:
        raise ValueError(f"DLG attacks one round; {round!r} gives {rnds}")
    rnd = rnds[0]
    # Server party: the global model it sent at the start of the round.
    unet = view.global_model(view.round(rnd))

    # Client party: its private slice and the gradient it computes on it.
    volumes = [load_volume(f) for f in train_folders]
    mr, ct, mask, provenance = pick_client_slices(volumes, batch_size,
                                                  derive_seed(seed, "slices"))
    mr_t, ct_t = torch.from_numpy(mr).to(dev), torch.from_numpy(ct).to(dev)
    size = mr.shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "code_check"))
        code_check = TinyMLPTranslator(size=size, hidden=control_hidden)
    nets = {"unet": unet, "control": bn_free_control(unet), "code_check": code_check}

    # Attacker party: model, shared gradient, mask, and the CT only for the known-CT attacker.
    dummy_seed = derive_seed(seed, "dummy")
    results: dict[str, DLGResult] = {}
    for label in NETWORKS:
        net = nets[label]
        shared = client_gradient(net.to(dev), mr_t, ct_t, cfg.loss)
        if log is not None:
            log.info("DLG on %s: round %d, slices %s, %s, %d iterations", label, rnd, provenance,
                     cfg.optimizer, cfg.iterations)
        results[label] = reconstruct(net, shared, mask, cfg,
                                     ct=ct if cfg.target == "known" else None, seed=dummy_seed,
                                     device=dev, log=log, progress=progress)

    # Evaluator party.
    quality = {k: reconstruction_quality(mr, r.reconstruction, mask) for k, r in results.items()}
    return {"round": rnd, "provenance": provenance, "true_mr": mr, "true_ct": ct, "mask": mask,
            **results, "quality": quality,
            "config": asdict(cfg), "seed": int(seed), "model_base": int(model_base),
            "control_hidden": int(control_hidden)}
