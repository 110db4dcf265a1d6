"""One client's local work per round: FedProx-regularised training and validation.

Local objective (FedProx, Li et al., "Federated Optimization in Heterogeneous Networks", MLSys
2020, Eq. 2): ``L(w) + (μ/2)·‖w − w_global‖²`` over the trainable parameters; paper 000 uses
μ = 3 with Adam (lr 1e-4), batches of 8 slices and one Random Multi-2D epoch per round
("Federated Learning Framework"). A fresh Adam is created every round: clients keep no state
between rounds, as in FedSynthCT-Brain's Flower clients.

On CUDA the step runs under bf16 autocast with pinned, non-blocking host-to-device copies; on the
CPU it runs in float32 so the same seed gives the same numbers. Tensors are channels_last on both
(on a CPU it trains the demo UNet ~30 % faster, measured) and Adam is the fused kernel.

Learning-rate schedule across rounds (``lr_schedule``): ``constant`` is paper 000's fixed Adam lr;
``cosine`` anneals the lr a client uses in round r of R as lr·(1 + cos(π(r − 1)/R))/2 (Loshchilov &
Hutter, "SGDR", ICLR 2017, Eq. 5 with one cycle and η_min = 0), the same for every client, so a
short CPU federation ends on small steps instead of wherever its last large step left it.

A defense may change the local training itself (``DefenseSpec.local_training``): DP-SGD
(:mod:`fedaudit.defenses.dp_sgd`) replaces each epoch's shuffled batches by Poisson-sampled lots
and each optimiser step by Abadi et al.'s clipped and noised one. It reaches :func:`train_local`
as a :class:`LocalTraining` object; the federation never imports the defense (the client resolves
it through the catalog).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedaudit.catalog import schema_defaults
from fedaudit.data.slices import SliceDataset, Volume, axial_slices, plan_epoch
from fedaudit.intensity import HU_RANGE

_TRAIN = schema_defaults("train")
_EXEC = schema_defaults("execution")["train"]


@dataclass(frozen=True)
class LocalConfig:
    """A client's local training settings; the defaults are the config schema's ``train``
    section (paper 000's values), read from it, not written again."""

    lr: float = _TRAIN["lr"]
    batch_size: int = _TRAIN["batch_size"]
    local_epochs: int = _TRAIN["local_epochs"]
    loss: str = _TRAIN["loss"]
    proximal_mu: float = _TRAIN["proximal_mu"]
    max_slices_per_volume: int | None = _TRAIN["max_slices_per_volume"]
    augment: bool = _TRAIN["augment"]["enabled"]
    rotate_deg: float = _TRAIN["augment"]["rotate_deg"]
    translate_frac: float = _TRAIN["augment"]["translate_frac"]
    num_workers: int = _EXEC["num_workers"]
    val_max_slices: int | None = _TRAIN["val_max_slices"]
    lr_schedule: str = _TRAIN["lr_schedule"]
    optimizer: str = _TRAIN["optimizer"]
    momentum: float = _TRAIN["momentum"]  # SGD only
    # Not a config key: a server-supplied preprocessing (paper 002, "Adaptation to 3D Data")
    # may make a round train on head-containing axial slices [first, stop) of training volume
    # ``index``, in order, as one batch: (index, first, stop).
    slab: tuple[int, int, int] | None = None


LR_SCHEDULES = ("constant", "cosine")


class LocalTraining(Protocol):
    """What a defense that changes the local training brings (``DefenseSpec.local_training``:
    ``factory(settings, seed) -> LocalTraining``, one per client and round). Used in this order:
    ``attach`` once, then per epoch ``loader`` (or ``index_batches``) and per batch ``step``,
    then ``detach``. ``withheld`` names the training statistics the client must not send (they
    are un-noised functions of its training data); ``memory_format`` is the tensor layout the
    model and its batches must have while it trains (the plain path uses channels_last)."""

    withheld: tuple[str, ...]
    memory_format: torch.memory_format

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch_size: int
               ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The model to run forward and the optimiser to step (wrapped)."""
        ...

    def loader(self, dataset: Dataset, batch_size: int, **kwargs: Any
               ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch's batches of ``dataset`` (``kwargs``: DataLoader options)."""
        ...

    def index_batches(self, num_samples: int, batch_size: int) -> Iterable[torch.Tensor]:
        """One epoch's batches as sample indices (data held in memory)."""
        ...

    def step(self, optimizer: torch.optim.Optimizer,
             extra_grads: Sequence[torch.Tensor] | None = None) -> None:
        """One optimiser step after ``backward`` (an empty batch has had none); ``extra_grads``
        (one per trainable parameter) are gradients of data-independent terms, added after the
        defense has processed the data's gradient."""
        ...

    def detach(self) -> dict[str, float | str]:
        """Unwrap the model; what the client reports about this training (fit metrics)."""
        ...


def round_lr(cfg: LocalConfig, rnd: int, total_rounds: int) -> float:
    """The Adam learning rate of round ``rnd`` (1-based) of ``total_rounds`` (module docstring)."""
    if not 1 <= rnd <= total_rounds:
        raise ValueError(f"round {rnd} is outside 1..{total_rounds}")
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (rnd - 1) / total_rounds))
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; allowed: {', '.join(LR_SCHEDULES)}")


LOSSES = {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss}


def proximal_term(model: nn.Module, global_params: Sequence[torch.Tensor], mu: float
                  ) -> torch.Tensor:
    """(μ/2)·Σ‖w − w_global‖² over ``model.parameters()`` (FedProx, Li et al. 2020, Eq. 2)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if len(params) != len(global_params):
        raise ValueError("global parameters do not match the model's trainable parameters")
    total = sum(((p - g) ** 2).sum() for p, g in zip(params, global_params, strict=True))
    return 0.5 * mu * total


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


OPTIMIZERS = ("adam", "sgd")


def make_optimizer(cfg: LocalConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """A fresh optimiser per round: Adam (paper 000), or SGD, FedAvg's local solver (McMahan et
    al. 2017, Algorithm 1), optionally with heavy-ball momentum (Polyak 1964): its step is still a
    linear combination of the round's gradients. Adam rescales every coordinate of the step, so a
    client's update is nearly orthogonal to any one sample's gradient (cosine ~1e-3 on the demo
    UNet against ~0.2 under SGD, measured): gradient-similarity attacks such as FedMIA assume
    SGD-like updates, and whether they still rank members under Adam is what the membership
    control measures."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (known: {', '.join(OPTIMIZERS)})")


def training_batches(volumes: Sequence[Volume], cfg: LocalConfig, *, seed: int,
                     device: torch.device, max_batches: int | None = None,
                     private: LocalTraining | None = None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The (MR, CT) batches of one round's local training, in order: ``cfg.local_epochs``
    Random Multi-2D epochs drawn from ``seed``, at most ``max_batches`` batches in all. The one
    source of what a client trains on, so an evaluator can know which slices a round saw.
    With ``private`` (DP-SGD) each epoch's slices are batched by ``private.loader`` (Poisson
    sampling: variable, possibly empty batches) instead of in the plan's order."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if cfg.slab is not None:
        if private is not None:
            raise ValueError("the server set a slab (a batch of its choosing) but this client "
                             "trains with DP-SGD, which samples its own batches (Poisson); "
                             "it cannot train on a given batch")
        index, first, stop = cfg.slab
        if not 0 <= index < len(volumes):
            raise ValueError(f"slab volume {index}: the client has {len(volumes)} volume(s)")
        mr, ct, _ = axial_slices(volumes[index], None)
        if not 0 <= first < stop <= mr.shape[0]:
            raise ValueError(f"slab [{first}, {stop}) outside the {mr.shape[0]} head slices of "
                             f"{volumes[index].name}")
        yield mr[first:stop], ct[first:stop]
        return
    n = 0
    for _ in range(cfg.local_epochs):
        refs = plan_epoch(list(volumes), rng, cfg.max_slices_per_volume)
        ds = SliceDataset(list(volumes), refs, augment=cfg.augment, rotate_deg=cfg.rotate_deg,
                          translate_frac=cfg.translate_frac)
        options: dict[str, Any] = {"num_workers": cfg.num_workers,
                                   "pin_memory": device.type == "cuda",
                                   "persistent_workers": False}
        loader = (DataLoader(ds, batch_size=cfg.batch_size, shuffle=False, drop_last=False,
                             **options) if private is None
                  else private.loader(ds, cfg.batch_size, **options))
        for batch in loader:
            if max_batches is not None and n >= max_batches:
                return
            n += 1
            yield batch


def train_local(model: nn.Module, volumes: Sequence[Volume], cfg: LocalConfig, *,
                seed: int, device: torch.device, amp: bool = True,
                lr: float | None = None, max_batches: int | None = None,
                private: LocalTraining | None = None) -> dict[str, float | str]:
    """Train ``model`` in place for ``cfg.local_epochs`` Random Multi-2D epochs (at most
    ``max_batches`` steps: one step is the gradient sharing of paper 002).

    Returns num_examples (slices seen, the FedAvg weight), the mean loss without the proximal
    term, and timing. ``seed`` fixes the epoch plan, augmentation, and shuffling. ``lr`` is this
    round's learning rate (:func:`round_lr`); None means ``cfg.lr``.

    ``private`` (a :class:`LocalTraining`, DP-SGD) draws the batches and takes every step; the
    step then runs in float32 (no autocast: per-sample gradients in bf16 would be clipped on
    rounded norms), FedProx's proximal gradient μ(w − w_global) is added after the defense has
    clipped and noised the data's gradient (it does not depend on the data: post-processing),
    and the statistics it withholds are NaN. num_examples is then what ``private`` reports
    (``num_examples`` in its metrics), not the count it sampled.
    """
    layout = torch.channels_last if private is None else private.memory_format
    model.to(device, memory_format=layout)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    global_params = [p.detach().clone() for p in params]
    opt = make_optimizer(cfg, model, cfg.lr if lr is None else lr)
    net = model
    if private is not None:
        net, opt = private.attach(model, opt, cfg.batch_size)
        amp = False
    loss_fn = LOSSES[cfg.loss]
    n_seen, loss_sum, n_batches = 0, torch.zeros((), device=device), 0
    report: dict[str, float | str] = {}
    t0 = time.perf_counter()
    try:
        for mr, ct in training_batches(volumes, cfg, seed=seed, device=device,
                                       max_batches=max_batches, private=private):
            opt.zero_grad(set_to_none=True)
            if private is not None and mr.shape[0] == 0:
                # an empty Poisson lot: Abadi et al.'s step still adds the noise
                private.step(opt, _proximal_grads(params, global_params, cfg.proximal_mu))
                n_batches += 1
                continue
            mr = mr.to(device, non_blocking=True, memory_format=layout)
            ct = ct.to(device, non_blocking=True, memory_format=layout)
            with _autocast(device, amp):
                pred = net(mr)
                data_loss = loss_fn(pred.float(), ct)
            if private is None:
                loss = data_loss
                if cfg.proximal_mu > 0:
                    loss = loss + proximal_term(model, global_params, cfg.proximal_mu)
                loss.backward()
                opt.step()
            else:
                data_loss.backward()
                private.step(opt, _proximal_grads(params, global_params, cfg.proximal_mu))
            # Accumulate on the device: one host sync per round, not per step.
            loss_sum += data_loss.detach()
            n_batches += 1
            n_seen += mr.shape[0]
    finally:
        if private is not None:
            report = private.detach()
    seconds = time.perf_counter() - t0
    if n_batches == 0 or (private is None and n_seen == 0):
        raise RuntimeError("no training slices: every training volume has an empty head mask")
    stats: dict[str, float | str] = {
        "num_examples": float(n_seen), "train_loss": float(loss_sum) / n_batches,
        "train_seconds": seconds, "slices_per_s": n_seen / seconds}
    if private is not None:
        stats.update({k: float("nan") for k in private.withheld if k in stats})
        stats.update(report)
        stats["slices_per_s"] = float(stats["num_examples"]) / seconds
    return stats


def _proximal_grads(params: Sequence[torch.Tensor], global_params: Sequence[torch.Tensor],
                    mu: float) -> list[torch.Tensor] | None:
    """∇ of FedProx's term, μ(w − w_global) (Li et al. 2020, Eq. 2), or None for μ = 0."""
    if mu <= 0:
        return None
    with torch.no_grad():
        return [mu * (p - g) for p, g in zip(params, global_params, strict=True)]


@torch.inference_mode()
def validate(model: nn.Module, volumes: Sequence[Volume], cfg: LocalConfig, *,
             device: torch.device, amp: bool = True) -> dict[str, float]:
    """Mean absolute error in HU inside the head mask on axial validation slices.

    A per-round training curve, not the study's metric (that is the 3-D SynthRAD MAE in
    :mod:`fedaudit.evaluation.metrics`): errors are taken on the [−1024, 3000] HU scale.
    """
    # channels_last as in training: the memory format picks the convolution kernels, so a
    # model that just trained (in-process clients) and a fresh one (a deployed ClientApp
    # process) must use the same one to give the same numbers
    model.to(device, memory_format=torch.channels_last).eval()
    abs_sum = torch.zeros((), device=device, dtype=torch.float64)
    n_vox = torch.zeros((), device=device, dtype=torch.int64)
    step = cfg.batch_size * 4  # no gradients: larger batches fit
    for vol in volumes:
        mr, ct, mask = axial_slices(vol, cfg.val_max_slices)
        mr, ct, mask = mr.to(device), ct.to(device), mask.to(device).bool()
        for i in range(0, mr.shape[0], step):
            sl = slice(i, i + step)
            with _autocast(device, amp):
                pred = model(mr[sl]).float()
            err = (pred - ct[sl]).abs() * HU_RANGE
            abs_sum += err[mask[sl]].sum(dtype=torch.float64)
            n_vox += mask[sl].sum()
    model.train()
    n = int(n_vox)  # the one host sync of the validation pass
    if n == 0:
        return {"val_mae": float("nan"), "val_voxels": 0.0}
    return {"val_mae": float(abs_sum) / n, "val_voxels": float(n)}
