"""DP-SGD inside a client's local training, with Opacus (Abadi et al. 2016, "Deep Learning with
Differential Privacy", CCS, Algorithm 1).

Per step of Algorithm 1: take a random lot (here Poisson sampling: every slice of the epoch
joins the lot independently with probability q = L/N, the sampling the RDP analysis of the
subsampled Gaussian assumes, Mironov, Talwar & Zhang 2019), compute each sample's gradient
g(x_i), clip it to L2 norm C (``ḡ = g / max(1, ‖g‖₂/C)``), add N(0, σ²C²I) to the sum and divide
by the expected lot size L; the optimiser (Adam or SGD; any function of the noisy gradient is
post-processing) then steps. Opacus computes the per-sample gradients
(``opacus.GradSampleModule``: hooks for Conv2d and GroupNorm, ``torch.func`` for the transposed
convolutions), clips, noises and scales them (``opacus.optimizers.DPOptimizer``) and draws the
lots (``opacus.data_loader.DPDataLoader``, ``opacus.utils.uniform_sampler``); nothing of the
mechanism is written here.

What this adds around Opacus:

- **BatchNorm refused**: a BatchNorm output mixes the samples of a batch, so a sample's own
  gradient is undefined and clipping cannot bound its contribution; the DP-SGD scenarios train
  the GroupNorm UNet (:class:`fedaudit.models.unet.UNet2D` ``norm="group"``), and a model with
  BatchNorm raises :class:`DPSGDError` naming that.
- **Empty lots** (possible under Poisson sampling) still take a step of pure noise, as
  Algorithm 1 does; skipping it would tell the server that the lot was empty.
- **Noise the server cannot reproduce** (:mod:`fedaudit.defenses.noise_source`): by default
  the lots and the noise come from ``torch.Generator`` s whose state is fresh OS entropy, held by
  the client alone, and Opacus runs in ``secure_mode`` (each noise draw is the sum of four
  Gaussians, against the floating-point attack on Gaussian sampling, Mironov 2012). Under
  ``noise_source: simulation`` both generators are seeded from the client's round seed, which
  the server can derive (``secure_mode=False``): the same seed gives the same model, for tests
  and reproducibility studies, with no guarantee against the server.
- **In-place activations off** while wrapped: Opacus' backward hooks return views that an
  in-place LeakyReLU would overwrite (PyTorch refuses); restored afterwards.
- **What the client reports**: the (q, steps) of every epoch (``dp_sgd_events``, JSON), from
  which :mod:`.budget` computes ε; num_examples = L·steps, the expected number of slices, not
  the sampled count (an un-noised count would reveal whether a slice was drawn); the training
  loss is withheld (NaN), being an un-noised function of the training slices. Timings are not
  protected.

The unit of privacy is one 2-D slice of the client's epoch (:mod:`.budget`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from fedaudit.defenses.dp_sgd.budget import EVENTS
from fedaudit.defenses.noise_source import entropy, is_simulation
from fedaudit.runtime import derive_seed

# the fit metrics a DP-SGD client adds besides EVENTS, which the budget reads back
STEPS = "dp_sgd_steps"


def torch_generator(device: Any, simulation_seed: int | None) -> torch.Generator:
    """A ``torch.Generator`` on ``device``: seeded with ``simulation_seed`` when given, else
    with fresh OS entropy (``manual_seed`` alone would take 64 bits): on the CPU all 624 words
    of MT19937's state (19,968 bits; the layout of torch's ``CPUGeneratorImplState``, checked
    by reading the state back), on CUDA Philox's 64-bit key and its counter offset (a multiple
    of 4 below 2^63, as CUDA requires: 125 bits)."""
    gen = torch.Generator(device=device)
    if simulation_seed is not None:
        return gen.manual_seed(int(simulation_seed))
    gen.manual_seed(entropy() % 2**64)
    state = gen.get_state().clone()
    raw = state.numpy()
    if gen.device.type == "cpu":
        # CPUGeneratorImplState: uint64 initial seed, int32 left, int32 seeded, uint64 next,
        # then uint64 state[624] holding the 32-bit MT words; left = 1 makes the next draw
        # twist the whole (fresh) state first
        words = np.frombuffer(os.urandom(4 * 624), np.uint32).astype(np.uint64)
        raw[8:12] = np.frombuffer(np.int32(1).tobytes(), np.uint8)
        raw[16:24] = 0
        raw[24:24 + 8 * 624] = np.frombuffer(words.tobytes(), np.uint8)
    else:
        # Philox: uint64 seed then int64 offset
        raw[0:8] = np.frombuffer(os.urandom(8), np.uint8)
        offset = int.from_bytes(os.urandom(8), "little") % 2**61 * 4
        raw[8:16] = np.frombuffer(offset.to_bytes(8, "little"), np.uint8)
    gen.set_state(state)
    if gen.device.type == "cpu" and not torch.equal(gen.get_state()[24:24 + 8 * 624],
                                                    state[24:24 + 8 * 624]):
        raise DPSGDError("torch's CPU generator state has another layout than expected: "
                         "cannot seed DP-SGD's noise from OS entropy")
    return gen


class DPSGDError(ValueError):
    """A model or setting DP-SGD cannot train (BatchNorm, an empty dataset, ...)."""


def check_model(model: nn.Module) -> None:
    """Refuse a model Opacus cannot give per-sample gradients for (BatchNorm first: the case
    the UNet's ``norm`` option exists for)."""
    bn = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bn:
        raise DPSGDError(
            f"DP-SGD cannot train a model with BatchNorm ({len(bn)} layers, e.g. {bn[0]!r}): "
            "BatchNorm normalises each sample with statistics of the whole batch, so a "
            "sample's own gradient is undefined and per-sample clipping bounds nothing. Train "
            "the GroupNorm UNet (UNet2D(norm='group'); the scenarios naming the dp_sgd defense "
            "do so by themselves)")
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise DPSGDError(f"Opacus cannot train this model with DP-SGD: {errors[0]}")


class DPSGDTraining:
    """One client's DP-SGD for one round (:class:`fedaudit.federation.local.LocalTraining`).

    ``settings``: the scenario's ``dp_sgd`` defense entry (``noise_multiplier`` σ,
    ``max_grad_norm`` C); ``seed``: the client's round seed (lots and noise derive from it)."""

    withheld = ("train_loss", "train_acc")
    # Opacus' per-sample Conv2d gradients (opacus 1.6.0, torch 2.13) are wrong when the
    # activations are channels_last: on the UNet every 3x3 convolution with more than one input
    # channel came out with a relative error of about 1 against single-slice backward passes
    # (tests/test_dp_sgd.py in this folder), and the DP-SGD federations did not learn.
    # Contiguous is right.
    memory_format = torch.contiguous_format

    def __init__(self, settings: dict[str, Any], seed: int) -> None:
        self.noise_multiplier = float(settings["noise_multiplier"])
        self.max_grad_norm = float(settings["max_grad_norm"])
        if not self.noise_multiplier >= 0 or not self.max_grad_norm > 0:
            raise DPSGDError(f"dp_sgd needs noise_multiplier >= 0 and max_grad_norm > 0; got "
                             f"{self.noise_multiplier}, {self.max_grad_norm}")
        self.seed = int(seed)
        # the lots are secret too: privacy amplification by subsampling assumes the server does
        # not know which slices a step used
        self.simulation = is_simulation(settings)
        self.sampling = torch_generator("cpu", self._simulation_seed("lots"))
        self.events: list[list[float]] = []  # [q, steps taken] per epoch
        self.batch_size = 0
        self._gsm: Any = None
        self._inplace: list[nn.Module] = []

    # ---------------------------------------------------------------- LocalTraining protocol

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch_size: int
               ) -> tuple[nn.Module, torch.optim.Optimizer]:
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        check_model(model)
        if batch_size < 1:
            raise DPSGDError(f"batch_size must be >= 1; got {batch_size}")
        self.batch_size = int(batch_size)
        self._inplace = [m for m in model.modules() if getattr(m, "inplace", False)]
        for m in self._inplace:
            m.inplace = False
        device = next(model.parameters()).device
        noise = torch_generator(device, self._simulation_seed("noise"))
        # the first layer's input (an image) needs no gradient; Opacus' full backward hooks
        # then warn on every wrap, about nothing that matters here
        warnings.filterwarnings("ignore", message="Full backward hook is firing",
                                category=UserWarning)
        self._gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        dp_opt = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                             max_grad_norm=self.max_grad_norm,
                             expected_batch_size=self.batch_size, loss_reduction="mean",
                             generator=noise, secure_mode=not self.simulation)
        return self._gsm, dp_opt

    def _simulation_seed(self, purpose: str) -> int | None:
        """The seed of the lots or the noise under ``noise_source: simulation``, else None
        (fresh OS entropy)."""
        return derive_seed(self.seed, "dp_sgd", purpose) if self.simulation else None

    def _epoch(self, num_samples: int, batch_size: int) -> float:
        if num_samples < 1:
            raise DPSGDError("DP-SGD got an epoch without training slices")
        q = min(1.0, batch_size / num_samples)
        self.events.append([q, 0])
        return q

    def loader(self, dataset: Dataset, batch_size: int, **kwargs: Any
               ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's lots: Opacus' DPDataLoader (Poisson sampling at q = L/N, ⌊1/q⌋ lots,
        empty ones as zero-length batches)."""
        from opacus.data_loader import DPDataLoader

        q = self._epoch(len(dataset), batch_size)  # type: ignore[arg-type]
        return DPDataLoader(dataset, sample_rate=q, generator=self.sampling, **kwargs)

    def index_batches(self, num_samples: int, batch_size: int) -> Iterator[torch.Tensor]:
        """The epoch's lots as index tensors (Opacus' UniformWithReplacementSampler)."""
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        q = self._epoch(num_samples, batch_size)
        for idx in UniformWithReplacementSampler(num_samples=num_samples, sample_rate=q,
                                                 generator=self.sampling):
            yield torch.as_tensor(idx, dtype=torch.long)

    def step(self, optimizer: torch.optim.Optimizer,
             extra_grads: Sequence[torch.Tensor] | None = None) -> None:
        """Algorithm 1's clip, noise and scale (``DPOptimizer.pre_step``), the data-independent
        ``extra_grads`` added to the result, then the wrapped optimiser's step."""
        if not self.events:
            raise DPSGDError("a DP-SGD step outside an epoch (no loader was drawn)")
        params = optimizer.params  # type: ignore[attr-defined]
        for p in params:
            if getattr(p, "grad_sample", None) is None:  # an empty lot: no backward ran
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        if not optimizer.pre_step():  # type: ignore[attr-defined]
            raise DPSGDError("Opacus skipped a step (gradient accumulation is not used here)")
        if extra_grads is not None:
            for p, g in zip(params, extra_grads, strict=True):
                p.grad.add_(g)
        optimizer.original_optimizer.step()  # type: ignore[attr-defined]
        self.events[-1][1] += 1

    def detach(self) -> dict[str, float | str]:
        if self._gsm is not None:
            module = self._gsm._module
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._gsm.to_standard_module()
            for p in module.parameters():
                for attr in ("grad_sample", "summed_grad"):
                    if hasattr(p, attr):
                        delattr(p, attr)
            self._gsm = None
        for m in self._inplace:
            m.inplace = True
        self._inplace = []
        steps = int(sum(s for _, s in self.events))
        return {"num_examples": float(self.batch_size * steps), STEPS: float(steps),
                EVENTS: json.dumps([[float(q), int(s)] for q, s in self.events])}


def local_training(settings: dict[str, Any], seed: int) -> DPSGDTraining:
    """The ``dp_sgd`` defense's hook (:class:`fedaudit.catalog.DefenseSpec`)."""
    return DPSGDTraining(settings, seed)
