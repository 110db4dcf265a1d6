"""Sample-level canaries in one client's real DP-SGD round (the UNet, its data, Opacus).

The audited mechanism is a client's local round under DP-SGD (:mod:`fedaudit.defenses.dp_sgd`:
Abadi et al. 2016, Alg. 1): Poisson lots at rate q, each slice's gradient clipped to C, Gaussian
noise of std σC on each lot's sum. Its unit of privacy is one slice of the client's epoch, so its
canaries are samples of that epoch, each included with probability ½ by a draw the server
cannot make, and each included canary joins every lot at the rate the client's sampler draws its
own slices at (read from Opacus' loader, not from what the client reports to its accountant).
Two kinds, two adversaries:

- **Gradient canaries, white-box** (Nasr et al., "Tight Auditing of Differentially Private
  Machine Learning", USENIX Security 2023, §4: the "Dirac canary"; Steinke, Nasr & Jagielski
  2023, §7, white-box): a sample whose gradient is zero but for one coordinate of one trainable
  tensor, there ``norm_factor``·C (so a correct client clips it to C and a missing clip shows).
  It enters Opacus as one more row of every tensor's per-sample gradients, before the clip, so
  the clip, the noise and the scaling are Opacus' own. The server receives the client's update
  Δ (the reply of the round) and scores canary i by −Δ at its coordinate: Adam and FedProx
  act coordinate by coordinate, so no other canary and only the data's (clipped, ~C/√P per
  coordinate) gradient reach it.
- **Slice canaries, black-box**: (MR, CT) pairs of independent uniform noise (in the model's
  input and target scales), appended to the lots they join, so Opacus computes their gradients
  through the UNet like any slice's. The attacker queries the model before and after the round
  (the global model and the client's: what a round's last client would deploy) and scores a
  canary by how much its loss fell.

The canaries are known to the attacker (derived from the study's seed); their inclusion and the
lots they join come from the operating system's entropy unless a test passes a generator.
:func:`run_round` runs the round the way :meth:`fedaudit.federation.client.SCTClient.fit` does
(its seed, model, settings, data and DP-SGD hook), with the canaries added by wrapping the
scenario's own ``LocalTraining``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from fedaudit.attacks.privacy_audit.canaries import INCLUSION_SOURCE, canary_name
from fedaudit.federation.local import LOSSES, LocalTraining
from fedaudit.runtime import derive_seed


class SampleAuditError(ValueError):
    """A scenario or client whose round cannot carry sample-level canaries."""


@dataclass(frozen=True)
class SampleCanaries:
    """The auditor's canaries, fixed before the round: ``coords`` (tensor index, flat index) of
    each gradient canary, the slice canaries' ``mr`` and ``ct`` (``[n, 1, H, W]``), and the
    gradient canaries' value before the clip (``norm_factor`` × C)."""

    coords: np.ndarray  # [m, 2] int64
    mr: torch.Tensor
    ct: torch.Tensor
    magnitude: float


def make_canaries(shapes: Sequence[tuple[int, ...]], slice_shape: tuple[int, int],
                  gradient: int, slices: int, magnitude: float, seed: int) -> SampleCanaries:
    """``gradient`` distinct coordinates drawn uniformly over the trainable tensors' entries
    and ``slices`` noise slices, from the study's seed (the server may know them)."""
    rng = np.random.default_rng(derive_seed(seed, "privacy_audit", "sample_canaries"))
    sizes = np.array([int(np.prod(s)) for s in shapes], dtype=np.int64)
    total = int(sizes.sum())
    if gradient > total:
        raise SampleAuditError(f"{gradient} gradient canaries need as many coordinates; the "
                               f"model has {total}")
    flat = np.sort(rng.choice(total, size=gradient, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    tensor = np.searchsorted(starts, flat, side="right") - 1
    coords = np.stack([tensor, flat - starts[tensor]], axis=1).astype(np.int64)
    h, w = slice_shape
    mr = torch.from_numpy(rng.random((slices, 1, h, w), dtype=np.float32))
    ct = torch.from_numpy(rng.random((slices, 1, h, w), dtype=np.float32))
    return SampleCanaries(coords=coords, mr=mr, ct=ct, magnitude=float(magnitude))


class CanaryTraining:
    """A :class:`~fedaudit.federation.local.LocalTraining` (DP-SGD) with the included canaries
    added to its lots: every lot the client's loader draws gets the slice canaries that join it
    (each with the loader's own rate), and every step the gradient canaries that join it, as
    rows of Opacus' per-sample gradients before the clip."""

    def __init__(self, base: LocalTraining, canaries: SampleCanaries, grad_in: np.ndarray,
                 slice_in: np.ndarray, rng: np.random.Generator) -> None:
        self.base = base
        self.canaries = canaries
        self.grad_in = np.flatnonzero(grad_in)
        self.slice_in = np.flatnonzero(slice_in)
        self.rng = rng
        self.rates: list[float] = []  # the loaders' true sampling rates, one per epoch
        self.joined_gradient = np.zeros(len(grad_in), dtype=np.int64)
        self.joined_slice = np.zeros(len(slice_in), dtype=np.int64)
        self._pending = np.zeros(0, dtype=np.int64)
        self._params: list[torch.Tensor] = []

    @property
    def withheld(self) -> tuple[str, ...]:
        return self.base.withheld

    @property
    def memory_format(self) -> torch.memory_format:
        return self.base.memory_format

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch_size: int
               ) -> tuple[nn.Module, torch.optim.Optimizer]:
        net, opt = self.base.attach(model, optimizer, batch_size)
        self._params = [p for p in model.parameters() if p.requires_grad]
        return net, opt

    def loader(self, dataset: Dataset, batch_size: int, **kwargs: Any
               ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        lots = self.base.loader(dataset, batch_size, **kwargs)
        rate = getattr(lots, "sample_rate", None)
        if rate is None:
            raise SampleAuditError("the DP-SGD loader does not say its sampling rate: the "
                                   "canaries cannot join its lots at the data's rate")
        return self._with_canaries(lots, float(rate))

    def _with_canaries(self, lots: Iterable[tuple[torch.Tensor, torch.Tensor]], rate: float
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.rates.append(rate)
        for mr, ct in lots:
            self._pending = self.grad_in[self.rng.random(self.grad_in.size) < rate]
            self.joined_gradient[self._pending] += 1
            joined = self.slice_in[self.rng.random(self.slice_in.size) < rate]
            self.joined_slice[joined] += 1
            if joined.size:
                if tuple(mr.shape[1:]) != tuple(self.canaries.mr.shape[1:]):
                    raise SampleAuditError(f"a lot of slices {tuple(mr.shape[1:])} cannot take "
                                           f"canaries of {tuple(self.canaries.mr.shape[1:])}")
                idx = torch.from_numpy(joined)
                mr = torch.cat([mr, self.canaries.mr[idx]])
                ct = torch.cat([ct, self.canaries.ct[idx]])
            yield mr, ct

    def index_batches(self, num_samples: int, batch_size: int) -> Iterable[torch.Tensor]:
        raise SampleAuditError("sample-level canaries join the lots of a client's loader; "
                               "this training draws index batches")

    def step(self, optimizer: torch.optim.Optimizer,
             extra_grads: Sequence[torch.Tensor] | None = None) -> None:
        joined = self._pending
        self._pending = np.zeros(0, dtype=np.int64)
        if joined.size:
            rows = len(joined)
            coords = self.canaries.coords[joined]
            for t, p in enumerate(self._params):
                sample = getattr(p, "grad_sample", None)
                if sample is None:  # an empty lot: no backward ran
                    sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
                extra = torch.zeros((rows, p.numel()), device=p.device, dtype=p.dtype)
                mine = np.flatnonzero(coords[:, 0] == t)
                if mine.size:
                    extra[torch.from_numpy(mine), torch.from_numpy(coords[mine, 1])] = (
                        self.canaries.magnitude)
                p.grad_sample = torch.cat([sample, extra.view(rows, *p.shape)])
        self.base.step(optimizer, extra_grads)

    def detach(self) -> dict[str, float | str]:
        return self.base.detach()


@dataclass(frozen=True)
class RoundResult:
    """One audited round: each kind's scores and inclusion, how often each included canary
    joined a lot, the client's reported DP-SGD events, the loaders' true rates, the time."""

    gradient_scores: np.ndarray
    gradient_in: np.ndarray
    slice_scores: np.ndarray
    slice_in: np.ndarray
    joined_gradient: np.ndarray
    joined_slice: np.ndarray
    events: list[tuple[float, int]]
    rates: list[float]
    seconds: float
    update: list[np.ndarray]


def dp_sgd_entry(scenario: Any) -> dict[str, Any]:
    """The scenario's ``dp_sgd`` defense entry (refused when it has none, or has SecAgg+)."""
    names = [d["name"] for d in scenario.defenses]
    if "secagg" in names:
        raise SampleAuditError(f"scenario {scenario.name!r}: its clients' messages are masked by "
                               "SecAgg+, so the server holds no client's update")
    entries = [d for d in scenario.defenses if d["name"] == "dp_sgd"]
    if not entries:
        raise SampleAuditError(f"scenario {scenario.name!r} does not train with DP-SGD "
                               f"(defenses: {', '.join(names) or 'none'}): sample-level "
                               "canaries audit DP-SGD")
    return dict(entries[0])


def control_plan(plan: Any) -> Any:
    """The positive control: the same plan with DP-SGD's noise multiplier 0 (the clip and the
    lots unchanged), where the canaries must be told apart."""
    defenses = tuple({**d, "noise_multiplier": 0.0} if d["name"] == "dp_sgd" else d
                     for d in plan.scenario.defenses)
    return replace(plan, scenario=replace(plan.scenario, defenses=defenses))


def run_round(plan: Any, center: str, global_arrays: Sequence[np.ndarray], rnd: int,
              canaries: SampleCanaries, grad_in: np.ndarray, slice_in: np.ndarray,
              rng: np.random.Generator) -> RoundResult:
    """Round ``rnd`` of ``center``'s client from ``global_arrays`` (the model the server sent)
    with the included canaries, as :meth:`SCTClient.fit` runs it; the server's white-box score
    of each gradient canary and the black-box attacker's score of each slice canary."""
    from fedaudit.federation.client import (
        SCTClient,
        local_training,
        round_training,
        seed_everything,
    )
    from fedaudit.federation.client import _model_from as model_from
    from fedaudit.federation.local import train_local
    from fedaudit.models import definition
    from fedaudit.models.weights import exchanged_names, get_arrays, set_arrays, subtract

    client = SCTClient(plan, center)
    seed = derive_seed(plan.seed, "train", center, rnd)
    seed_everything(seed)
    model = model_from(definition.to_json(plan.model_definition()))
    # a canary's coordinate indexes the exchanged arrays (the update) and the trainable
    # parameters (Opacus' rows) alike: only where they are the same tensors in the same order
    if exchanged_names(model) != [n for n, p in model.named_parameters() if p.requires_grad]:
        raise SampleAuditError("the model exchanges other tensors than its trainable "
                               "parameters (buffers?): gradient canaries cannot be placed")
    set_arrays(model, list(global_arrays))
    local, lr, max_batches = round_training(plan, {"round": rnd})
    base = local_training(plan, seed)
    if base is None:
        raise SampleAuditError(f"scenario {plan.scenario.name!r} has no local-training defense")
    private = CanaryTraining(base, canaries, grad_in, slice_in, rng)
    loss_fn = LOSSES[local.loss]
    before = _losses(model, canaries, loss_fn)
    t0 = time.perf_counter()
    stats = train_local(model, client._train_volumes(), local, seed=seed, device=client.device,
                        amp=plan.amp, lr=lr, max_batches=max_batches, private=private)
    seconds = time.perf_counter() - t0
    after = _losses(model, canaries, loss_fn)
    update = subtract(get_arrays(model), list(global_arrays))
    # the server's white-box score: the update against each canary's gradient (a descent step
    # lowers the coordinate the canary's gradient raises)
    coords = canaries.coords
    grad_scores = np.array([-float(update[t].reshape(-1)[j]) for t, j in coords])
    events = [(float(q), int(n)) for q, n in json.loads(str(stats["dp_sgd_events"]))]
    return RoundResult(gradient_scores=grad_scores, gradient_in=np.asarray(grad_in, bool),
                       slice_scores=before - after, slice_in=np.asarray(slice_in, bool),
                       joined_gradient=private.joined_gradient,
                       joined_slice=private.joined_slice, events=events, rates=private.rates,
                       seconds=seconds, update=update)


def audit_rows(plan: Any, scenario: str, global_arrays: Sequence[np.ndarray], rnd: int,
               settings: Mapping[str, Any], *, progress: Callable[..., None] = print,
               rng: Callable[[], np.random.Generator] = np.random.default_rng) -> pd.DataFrame:
    """The audited round and its control (noise multiplier 0), one row per canary and run: its
    kind, the auditor's bit, the lots it joined, its score, and the run's claim (the accountant's
    ε of the round's reported events at the scenario's δ). ``settings``: the config's
    ``attacks.privacy_audit.sample_level``; ``rng``: the auditor's secret source, called once
    per run (fresh OS entropy; tests pass a seeded one)."""
    from fedaudit.defenses.dp_sgd.budget import epsilon
    from fedaudit.defenses.noise_source import source_of
    from fedaudit.federation.client import SCTClient

    entry = dp_sgd_entry(plan.scenario)
    center = settings["center"] or sorted(plan.centers)[0]
    if center not in plan.centers:
        raise SampleAuditError(f"attacks.privacy_audit.sample_level.center: {center!r} is not a "
                               f"training center of {scenario} "
                               f"({', '.join(sorted(plan.centers))})")
    clip = float(entry["max_grad_norm"])
    m, n = int(settings["gradient_canaries"]), int(settings["slice_canaries"])
    # the client's own volumes (cached: the round reads the same), for the slices' shape
    first = SCTClient(plan, center)._train_volumes()[0]
    canaries = make_canaries([np.shape(a) for a in global_arrays], tuple(first.mr.shape[1:]),
                             m, n, float(settings["norm_factor"]) * clip, plan.seed)
    progress(f"{scenario}: client {center}, round {rnd} from the server log; {m} gradient "
             f"canaries ({float(settings['norm_factor']):g} × C before the clip) and {n} slice "
             "canaries, each in with probability 1/2")
    frames = []
    for run, run_plan in (("audited", plan), ("control", control_plan(plan))):
        draw = rng()  # the auditor's secret, fresh per run
        grad_in, slice_in = draw.random(m) < 0.5, draw.random(n) < 0.5
        res = run_round(run_plan, center, global_arrays, rnd, canaries, grad_in, slice_in, draw)
        sigma = float(dp_sgd_entry(run_plan.scenario)["noise_multiplier"])
        claimed = epsilon(sigma, res.events, float(entry["delta"]))
        progress(f"{run} round: {sum(s for _, s in res.events)} steps at reported rates "
                 f"{sorted({q for q, _ in res.events})} (the loader's: {sorted(set(res.rates))})"
                 f", σ = {sigma:g}, claimed ε {claimed:.4g}; {res.seconds:.1f} s")
        for kind, scores, inc, joined in (
                ("gradient", res.gradient_scores, res.gradient_in, res.joined_gradient),
                ("slice", res.slice_scores, res.slice_in, res.joined_slice)):
            frames.append(pd.DataFrame({
                "run": run, "kind": kind, "canary": [canary_name(i) for i in range(len(inc))],
                "included": inc, "joined": joined, "score": scores, "noise_multiplier": sigma,
                "epsilon_claimed": claimed, "events": json.dumps(res.events),
                "loader_rates": json.dumps(res.rates), "seconds": res.seconds}))
    frame = pd.concat(frames, ignore_index=True)
    meta = {"scenario": scenario, "defense": entry["name"],
            "level": float(entry["noise_multiplier"]), "noise_source": source_of(entry),
            "center": center, "round": rnd, "clip": clip,
            "norm_factor": float(settings["norm_factor"]),
            "parameters": sum(int(np.prod(np.shape(a))) for a in global_arrays),
            "delta": float(entry["delta"]), "inclusion_source": INCLUSION_SOURCE}
    for i, (k, v) in enumerate(meta.items()):
        frame.insert(i, k, v)
    return frame


@torch.no_grad()
def _losses(model: nn.Module, canaries: SampleCanaries, loss_fn: Any) -> np.ndarray:
    """Each slice canary's loss under ``model`` (the black-box attacker's queries)."""
    if canaries.mr.shape[0] == 0:
        return np.zeros(0)
    model.eval()
    out = []
    for i in range(0, canaries.mr.shape[0], 32):
        pred = model(canaries.mr[i:i + 32].contiguous()).float()
        # the training loss per slice: its elementwise values averaged over each slice
        per_pixel = loss_fn(pred, canaries.ct[i:i + 32], reduction="none")
        out.append(per_pixel.mean(dim=(1, 2, 3)).double().numpy())
    model.train()
    return np.concatenate(out)
