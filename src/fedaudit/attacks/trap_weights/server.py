"""The malicious server: for chosen rounds it sends a trapped model, then reads the clients'
inputs out of what they return (paper 002, "Method" and "Adaptation to 3D Data").

:class:`TrapServer` wraps the honest :class:`fedaudit.federation.strategy.AuditStrategy`
(composition, so every honest round is exactly the honest server's, log included). In a trap
round it sends, instead of the global model, the agreed UNet behind a linear front block
(:mod:`fedaudit.models.front`) initialised with trap weights or bins
(:mod:`fedaudit.attacks.trap_weights.imprint`), with the model definition and, in ``gradient``
mode, local training settings that make the update one SGD step (gradient sharing, as paper
002's experiments: "a single federated optimization step was simulated"); in ``local`` mode the
clients train as configured. What comes back is kept in the attack's own capture -- never in
the honest server log, so no honest-server attack ever reads a malicious round as an honest one
-- and the global model is left as it was (the round's aggregate is discarded).

``stealth`` placement keeps the architecture and plants trap weights in the UNet's first
convolution instead: what an architecture check cannot see.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.common import (
    EvaluateIns,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from fedaudit.atomic import save_npz, write_text
from fedaudit.attacks.trap_weights.imprint import (
    binning_init,
    scaled_positive_scale,
    trap_init,
)
from fedaudit.catalog import fragment_defaults
from fedaudit.federation.strategy import AuditStrategy
from fedaudit.models import definition
from fedaudit.models.front import FrontedModel, LinearFront
from fedaudit.models.weights import exchanged_names, get_arrays, set_arrays
from fedaudit.runtime import derive_seed

log = logging.getLogger(__name__)

MODES = ("gradient", "local")
PLACEMENTS = ("front", "stealth")
FRONT = ("front.linear.weight", "front.linear.bias")


_DEFAULTS = fragment_defaults(Path(__file__).parent)


@dataclass(frozen=True)
class TrapSettings:
    """The malicious server's choices (config ``attacks.trap_weights``); the defaults are its
    ``schema.yaml``'s, read from it (the first initialisation and mode listed there)."""

    init: str = _DEFAULTS["inits"][0]
    neurons: int = _DEFAULTS["neurons"]
    positive_scale: float = _DEFAULTS["positive_scale"]
    back_std: float = _DEFAULTS["back_std"]
    prior_mean: float = _DEFAULTS["prior_mean"]
    prior_std: float = _DEFAULTS["prior_std"]
    mode: str = _DEFAULTS["modes"][0]
    gradient_lr: float = _DEFAULTS["gradient_lr"]
    placement: str = "front"  # or "stealth": the defense table's second server

    @classmethod
    def from_config(cls, section: dict[str, Any], **overrides: Any) -> TrapSettings:
        keys = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in {**section, **overrides}.items() if k in keys})


def _first_conv_names(names: list[str]) -> tuple[str, str]:
    weights = [n for n in names if n.endswith(".weight") and "enc" in n]
    if not weights:
        raise ValueError("the model has no encoder convolution to plant trap weights in")
    w = weights[0]
    return w, w[: -len("weight")] + "bias"


def malicious_model(names: list[str], arrays: list[np.ndarray], base: int, shape: tuple[int, ...],
                    settings: TrapSettings, seed: int
                    ) -> tuple[dict[str, Any], list[str], list[np.ndarray]]:
    """What the server sends in a trap round: (definition, exchanged names, arrays). ``names``
    and ``arrays`` are the honest global model (UNet2D(base)); ``shape`` one sample's (C, H, W).
    """
    gen = torch.Generator().manual_seed(seed)
    agreed = definition.agreed(base)
    if settings.placement == "stealth":
        # Same architecture, trap weights in the first convolution's filters (Eq. 5 per filter):
        # the check of names, shapes and definition hash cannot tell.
        w_name, b_name = _first_conv_names(names)
        out = [a.copy() for a in arrays]
        wi, bi = names.index(w_name), names.index(b_name)
        w = torch.from_numpy(out[wi]).flatten(1)
        front = LinearFront(w.shape[1], w.shape[0])
        trap_init(front, positive_scale=settings.positive_scale, back_std=0.0, generator=gen)
        out[wi] = front.linear.weight.detach().numpy().reshape(out[wi].shape).copy()
        out[bi] = np.zeros_like(out[bi])
        return agreed, list(names), out
    d = int(np.prod(shape))
    defn = {**agreed, "front": {"kind": "linear", "d": d, "k": int(settings.neurons)}}
    model = definition.build(defn)
    assert isinstance(model, FrontedModel)
    set_arrays(model.net, arrays)
    if settings.init == "trap":
        trap_init(model.front, positive_scale=scaled_positive_scale(settings.positive_scale, d),
                  back_std=settings.back_std, generator=gen)
    else:
        binning_init(model.front, mean=settings.prior_mean, std=settings.prior_std,
                     back_std=settings.back_std, generator=gen)
    return defn, exchanged_names(model), get_arrays(model)


def round_settings(settings: TrapSettings, extra: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The local training a trap round asks for: one plain SGD step in ``gradient`` mode (the
    update is then −lr·∇ exactly: no momentum, no proximal pull), nothing in ``local`` mode;
    plus ``extra`` (the 3-D attack's slab of slices, :class:`fedaudit.federation.local.
    LocalConfig`)."""
    out: dict[str, Any] = {}
    if settings.mode == "gradient":
        out = {"optimizer": "sgd", "momentum": 0.0, "lr": settings.gradient_lr,
               "proximal_mu": 0.0, "max_batches": 1}
    return {**out, **(extra or {})}


@dataclass
class Capture:
    """One trap round as the malicious server holds it: the definition and arrays it sent and,
    per client (or the aggregate only, under SecAgg+), the inserted layer's update."""

    round: int
    definition: dict[str, Any]
    settings: dict[str, Any]
    local: dict[str, Any]
    updates: dict[str, dict[str, np.ndarray]]
    num_examples: dict[str, int]
    aggregate_only: bool
    metrics: dict[str, dict[str, Any]]  # per client: what its reply's fit metrics said

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder) / f"round_{self.round:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for who, arrays in self.updates.items():
            save_npz(folder / f"update_{who}.npz", **arrays)
        meta = {"round": self.round, "malicious": True, "definition": self.definition,
                "settings": self.settings, "local": self.local,
                "num_examples": self.num_examples, "aggregate_only": self.aggregate_only,
                "metrics": self.metrics,
                "meaning": "a malicious server's trap round: NOT an honest round of the "
                           "federation; update_<who>.npz = the trapped layer's part of what "
                           "the server received"}
        write_text(json.dumps(meta, indent=1), folder / "round.json")
        return folder


class TrapServer(Strategy):
    """The honest strategy, except in ``trap_rounds`` (module docstring)."""

    def __init__(self, inner: AuditStrategy, settings: TrapSettings, trap_rounds: set[int],
                 *, base: int, sample_shape: tuple[int, ...], seed: int,
                 capture_dir: str | Path | None = None,
                 local_extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.local_extra = dict(local_extra or {})
        self.inner = inner
        self.settings = settings
        self.trap_rounds = set(trap_rounds)
        self.base, self.sample_shape, self.seed = int(base), tuple(sample_shape), int(seed)
        self.capture_dir = capture_dir
        self.captures: dict[int, Capture] = {}
        self._sent: dict[int, tuple[dict[str, Any], list[str]]] = {}

    def record_masked_vectors(self, server_round: int, vectors: dict[str, list[np.ndarray]],
                              settings: dict[str, Any]) -> None:
        self.inner.record_masked_vectors(server_round, vectors, settings)

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.inner.initialize_parameters(client_manager)

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        pairs = self.inner.configure_fit(server_round, parameters, client_manager)
        rnd = self.inner._round(server_round)
        if rnd not in self.trap_rounds:
            return pairs
        defn, names, arrays = malicious_model(
            self.inner.names, self.inner.global_arrays, self.base, self.sample_shape,
            self.settings, derive_seed(self.seed, "trap_weights", rnd))
        self._sent[rnd] = (defn, names)
        config: dict[str, Scalar] = {"round": rnd, "model": definition.to_json(defn),
                                     "local": json.dumps(round_settings(self.settings,
                                                                         self.local_extra))}
        log.warning("round %d: the server sends a trapped model (%s, %s mode)", rnd,
                    self.settings.placement, self.settings.mode)
        ins = FitIns(ndarrays_to_parameters(arrays), config)
        return [(c, ins) for c, _ in pairs]

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Scalar]]:
        rnd = self.inner._round(server_round)
        if rnd not in self.trap_rounds:
            return self.inner.aggregate_fit(server_round, results, failures)
        self.inner._masked.pop(server_round, None)  # the trap round's are not logged
        if failures:
            reasons = "; ".join(str(f if isinstance(f, BaseException) else f[1].status)
                                for f in failures)
            self.inner._fail(f"round {rnd} (trap round): {len(failures)} client(s) failed: "
                             f"{reasons}")
        defn, names = self._sent.pop(rnd)
        keep = FRONT if self.settings.placement == "front" else _first_conv_names(names)
        idx = [names.index(n) for n in keep]
        got = sorted((str(r.metrics.get("center")), r) for _, r in results)
        arrays = {c: parameters_to_ndarrays(r.parameters) for c, r in got}
        digests = {tuple(a.tobytes() for a in (arrs[i] for i in idx))
                   for arrs in arrays.values()}
        aggregate_only = len(got) > 1 and len(digests) == 1  # SecAgg+: every reply = the sum
        pick = {"aggregate": arrays[got[0][0]]} if aggregate_only else arrays
        updates = {who: {n: np.asarray(arrs[i], np.float32) for n, i in zip(keep, idx,
                                                                         strict=True)}
                   for who, arrs in pick.items()}
        cap = Capture(rnd, defn, asdict(self.settings),
                      round_settings(self.settings, self.local_extra), updates,
                      {c: int(r.num_examples) for c, r in got}, aggregate_only,
                      {c: dict(r.metrics) for c, r in got})
        self.captures[rnd] = cap
        if self.capture_dir is not None:
            cap.save(self.capture_dir)
        self.inner.completed_round = rnd
        # the honest global model stays: nothing of the trap round reaches the federation
        return ndarrays_to_parameters(self.inner.global_arrays), {}

    def configure_evaluate(self, server_round: int, parameters: Parameters,
                           client_manager: ClientManager
                           ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if self.inner._round(server_round) in self.trap_rounds:
            return []
        return self.inner.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(self, server_round: int, results: list, failures: list[Any]
                           ) -> tuple[float | None, dict[str, Scalar]]:
        return self.inner.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round: int, parameters: Parameters
                 ) -> tuple[float, dict[str, Scalar]] | None:
        return self.inner.evaluate(server_round, parameters)


def wrap(strategy: AuditStrategy, plan: Any) -> TrapServer:
    """The ``trap_weights`` server behaviour of a trained scenario (``server: trap_weights``):
    the attack's configured settings, one trap round (the last), captured beside the server
    log in ``<out_dir>/malicious/``."""
    return TrapServer(strategy, TrapSettings(), {plan.rounds}, base=plan.model_base,
                      sample_shape=(1, *plan_slice_shape(plan)), seed=plan.seed,
                      capture_dir=Path(plan.out_dir) / "malicious")


def plan_slice_shape(plan: Any) -> tuple[int, int]:
    """(H, W) of the plan's slices: the cube size of its first training volume."""
    return _cube_size(str(Path(plan.clients[0].train[0]) / "mr.nii.gz"))


@lru_cache(maxsize=8)
def _cube_size(mr: str) -> tuple[int, int]:
    # one header read per volume, not one per trap round
    from fedaudit.io import read_header

    n = max(read_header(mr, "MR").GetSize())
    return n, n
