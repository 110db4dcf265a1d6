"""Canary clients in a scenario's federation: the one-run audit of the noise its clients really
send (Andrew et al., "One-shot Empirical Privacy Estimation for Federated Learning", ICLR 2024,
§3: canary clients whose updates are random directions, scored by their alignment with what the
server receives; Steinke, Nasr & Jagielski, NeurIPS 2023: the bound, :mod:`.one_run`).

Canary ``i`` is a client of round ``1 + i mod R`` only (R: the federation's rounds), so each
canary is protected by one round of the mechanism and the audit is read against one round's ε
(the accountant's ε for the whole run composes those rounds, and is tested against
``dp-accounting`` on its own). Its update is ``norm · u_i``, ``u_i`` a uniformly random unit
direction of the exchanged arrays (drawn from the study's seed: the server may know it, as
Andrew et al.'s attacker does), when the canary is *in*, and the zero update when it is out:
add or remove one client, the adjacency of DP-FedAvg's ε. Whether it is in is the auditor's
draw, made once before the first round from the operating system's entropy (the server holds the
config and the seed derivation, so a seeded draw would let it read the answer; this is the
audit's one fresh random choice, and its bound moves from run to run for it).

Each canary is a Flower client wrapped in the client mod the federation's clients run for the
scenario's noise defense (:func:`noise_mods`: the defense's own mod, with its noise source),
called through the in-process grid's message path
(:mod:`fedaudit.federation.grid`) with the round's ``FitIns``, and its reply is read the way the
strategy reads a client's (``FitRes`` parameters). Canaries are left out of aggregation; their
updates do not depend on the global model and their noise does not depend on other clients, so
the federation's rounds are the same with or without them, and they run in their own job after
training (changing the audit re-trains nothing). The server scores each reply when it arrives
(nothing is logged but the scores): ``direct`` ⟨y, u_i⟩ and ``replay`` ⟨y − n′, u_i⟩, ``n′``
the noise it regenerates from what it holds (:func:`fedaudit.defenses.update_noise.regenerate`
with the client mod's seed derivation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import FitIns, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat

from fedaudit.attacks.privacy_audit.canaries import ATTACKS, canary_name
from fedaudit.defenses.noise_source import noise_seed
from fedaudit.defenses.update_noise import regenerate
from fedaudit.runtime import derive_seed


class CanaryError(RuntimeError):
    """A canary client failed or its reply is not an update of the model's arrays."""


@dataclass(frozen=True)
class CanaryRun:
    """What the server scored: per canary its round, the auditor's inclusion bit (revealed
    after the run) and each attack's score (:data:`fedaudit.attacks.privacy_audit.canaries.
    ATTACKS`)."""

    rounds: np.ndarray
    included: np.ndarray
    scores: dict[str, np.ndarray]
    seconds: float


def canary_round(i: int, rounds: int) -> int:
    """The one round canary ``i`` takes part in: the canaries are dealt to the rounds in turn."""
    return 1 + i % rounds


def canary_direction(seed: int, i: int, size: int) -> np.ndarray:
    """Canary ``i``'s unit direction over ``size`` coordinates (float64): a normalised Gaussian
    vector (drawn in float32, twice as fast), uniform on the sphere, from the study's ``seed``.
    Canaries never share a message, so unlike the sample-level canaries
    (:func:`.canaries.canary_directions`) they need not be orthogonal."""
    g = np.random.default_rng(derive_seed(seed, "privacy_audit", "client_canary", i)
                              ).standard_normal(size, dtype=np.float32).astype(np.float64)
    return g / np.linalg.norm(g)


def flat64(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Every array as one float64 vector, in order (what a score or a norm is taken over)."""
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def split_like(flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """``flat`` as float32 arrays of ``shapes`` (in order)."""
    out, start = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(flat[start:start + n].reshape(s).astype(np.float32))
        start += n
    return out


class _CanaryClient(NumPyClient):
    """A canary: it trains nothing; its fit reply is its update (the direction at ``norm`` or
    zero) and its name, where a hospital's client names its center (the noise mod keys its
    seed derivation by it, :mod:`fedaudit.defenses.noise_mod`)."""

    def __init__(self, name: str, update: list[np.ndarray]) -> None:
        self.name, self.update = name, update

    def fit(self, parameters: list[np.ndarray], config: Mapping[str, Any]
            ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        return self.update, 1, {"center": self.name}


def noise_mods(plan: Any) -> list[Callable]:
    """The client mods of the plan's noise defense (:class:`fedaudit.catalog.DefenseSpec`'s
    ``client_mods`` hook, as the federation's ``ClientApp`` is built with them), none without
    one. A scenario's other client mods (the weight audit that checks the model a client
    receives) act on what the server sends, not on what a client replies."""
    from fedaudit.catalog import catalog, resolve
    from fedaudit.scenarios import noise_defense

    entry = noise_defense(plan.scenario.defenses)
    if entry is None:
        return []
    spec = catalog(plan.plugins).defenses[str(entry["name"])]
    return [] if spec.client_mods is None else list(resolve(spec.client_mods,
                                                            spec.package)(plan))


def run_canaries(mods: Sequence[Callable], defense: Mapping[str, Any] | None, seed: int,
                 global_arrays: Sequence[np.ndarray], m: int, rounds: int, norm: float,
                 included: np.ndarray, progress: Callable[[str], None] | None = None
                 ) -> CanaryRun:
    """Run ``m`` canary clients over ``rounds`` rounds through the client mods ``mods`` (the
    scenario's noise defense's, :func:`noise_mods`) and score every reply as the server
    (module docstring). ``defense``: the scenario's noise entry (None: none), whose
    noise the replay regenerates with ``seed`` (the federation's); ``global_arrays``: the model
    the server sends (its shapes are the update's); ``included``: the auditor's bits."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    from fedaudit.federation.grid import PARTITION_ID_KEY, InProcessGrid

    if len(included) != m:
        raise ValueError(f"{len(included)} inclusion bits for {m} canaries")
    if m < 1 or rounds < 1 or not np.isfinite(norm) or norm <= 0:
        raise ValueError(f"need m >= 1, rounds >= 1 and a positive norm; got {m}, {rounds}, "
                         f"{norm}")
    shapes = [tuple(np.shape(a)) for a in global_arrays]
    size = int(sum(np.prod(s) for s in shapes))
    current: dict[int, list[np.ndarray]] = {}  # the update canary i is about to send

    def client_fn(context: Context) -> Client:
        # each canary is a node of its own; its partition id is its number
        i = int(context.node_config[PARTITION_ID_KEY])
        return _CanaryClient(canary_name(i), current.pop(i)).to_client()

    grid = InProcessGrid(ClientApp(client_fn=client_fn, mods=list(mods)), m)
    # this process is the server of the canaries' run: Flower stamps every message it creates
    # with the running task's identity, which a SuperLink would set
    TaskIdentity.task_id, TaskIdentity.node_id = 1, SUPERLINK_NODE_ID
    TaskIdentity.run_id = grid.run.run_id
    name = None if defense is None else str(defense["name"])
    rounds_of = np.array([canary_round(i, rounds) for i in range(m)])
    scores = {a: np.zeros(m) for a in ATTACKS}
    start = time.perf_counter()
    # the round's FitIns carries no model: a canary ignores it, and decoding the global model
    # at every canary would cost a third of the audit's time
    parameters = ndarrays_to_parameters([])
    for t in range(1, rounds + 1):
        content = compat.fitins_to_recorddict(FitIns(parameters, {"round": t}), keep_input=True)
        for i in np.flatnonzero(rounds_of == t):
            u = canary_direction(seed, int(i), size)
            who = canary_name(int(i))
            current[int(i)] = split_like(norm * u if included[i] else np.zeros(size), shapes)
            msg = grid.create_message(content, MessageType.TRAIN, grid.node_ids[i],
                                      group_id=str(t))
            y = _received(_reply(grid, msg, who), shapes, who)
            scores["direct"][i] = float(y @ u)
            if defense is None:
                scores["replay"][i] = scores["direct"][i]
                continue
            noise = regenerate(shapes, defense, noise_seed(seed, name, who, t))
            scores["replay"][i] = scores["direct"][i] - float(flat64(noise) @ u)
        if progress is not None and (t == rounds or t % max(1, rounds // 5) == 0):
            progress(f"round {t}/{rounds}: {int((rounds_of <= t).sum())}/{m} canaries sent "
                     f"and scored ({time.perf_counter() - start:.1f} s)")
    return CanaryRun(rounds=rounds_of, included=np.asarray(included, bool), scores=scores,
                     seconds=time.perf_counter() - start)


def _reply(grid: Any, msg: Message, name: str) -> Message:
    reply = next(iter(grid.send_and_receive([msg])))
    if reply.has_error():
        raise CanaryError(f"canary client {name} failed: {reply.error.reason}"
                          + (f"\n{grid.errors[-1]}" if grid.errors else ""))
    return reply


# .npy header bytes -> (dtype, shape, Fortran order, data offset): every canary's reply has the
# model's headers, which numpy parses with ast.literal_eval at every array (a fifth of the audit)
_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...], bool, int]] = {}


def decode_tensor(tensor: bytes) -> np.ndarray:
    """One serialised array of a Flower ``Parameters`` (``.npy`` bytes), as Flower's
    ``bytes_to_ndarray`` (``np.load``, no pickles) reads it, each distinct header parsed once."""
    import io

    from numpy.lib import format as npy

    size = 2 if tensor[6] == 1 else 4  # the header length's bytes: 2 in format 1.0, else 4
    offset = 8 + size + int.from_bytes(tensor[8:8 + size], "little")
    key = bytes(tensor[:offset])
    meta = _HEADERS.get(key)
    if meta is None:
        stream = io.BytesIO(tensor)
        version = npy.read_magic(stream)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = read(stream)
        if dtype.hasobject:
            raise CanaryError("a canary reply holds an object array (a pickle): refused")
        meta = _HEADERS[key] = (dtype, tuple(shape), bool(fortran), stream.tell())
    dtype, shape, fortran, start = meta
    flat = np.frombuffer(tensor, dtype=dtype, count=int(np.prod(shape)), offset=start)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _received(reply: Message, shapes: Sequence[tuple[int, ...]], name: str) -> np.ndarray:
    """The update the server holds from a canary's reply, flat (float64): the ``FitRes``
    parameters, as the strategy reads a client's (:func:`decode_tensor`: what Flower's
    ``parameters_to_ndarrays`` gives, faster)."""
    fitres = compat.recorddict_to_fitres(reply.content, keep_input=False)
    arrays = [decode_tensor(t) for t in fitres.parameters.tensors]
    got = [tuple(np.shape(a)) for a in arrays]
    if got != list(shapes):
        raise CanaryError(f"canary client {name} replied with {len(got)} arrays of shapes "
                          f"{got[:3]}..., not the model's {len(shapes)}")
    return flat64(arrays)


def canary_norm(defense: Mapping[str, Any] | None, updates: Sequence[Sequence[np.ndarray]],
                norm_factor: float) -> tuple[float, str]:
    """An included canary's update norm and how it was chosen: ``norm_factor`` × the clip where
    the defense clips (a correct client clips it to C, a missing clip shows), else the median
    norm of the clients' ``updates`` as the server received them with the noise's expected
    energy removed (√max(‖y‖² − dσ², 0)): a canary the size of a real hospital's update."""
    if defense is not None and "clip" in defense:
        clip = float(defense["clip"])
        return norm_factor * clip, f"{norm_factor:g} × the clip C = {clip:g}"
    if not updates:
        raise ValueError("no client update in the server log to size the canaries by")
    var = 0.0
    if defense is not None:
        from fedaudit.defenses.update_noise import update_noise_std

        var = update_noise_std(defense) ** 2
    norms = []
    for arrays in updates:
        y = flat64(arrays)
        norms.append(float(np.sqrt(max(float(y @ y) - y.size * var, 0.0))))
    norm = float(np.median(norms))
    if not norm > 0:
        raise ValueError("the clients' updates in the server log have no measurable norm "
                         "above their noise: nothing to size the canaries by")
    return norm, f"median client update, {len(norms)} clients, noise removed"


# a client's update carries the claimed noise unless its energy is this many standard
# deviations below the noise's own (module docstring of :func:`noise_energy`)
MISSING_SDS = 5.0


def noise_energy(defense: Mapping[str, Any], updates: Sequence[Sequence[np.ndarray]]
                 ) -> list[tuple[float, bool]]:
    """Whether the federation's own clients' updates (as the server logged them) carry the
    noise the accountant is told about: per update, its energy over the noise's expected
    energy ‖y‖² / (dσ²), and whether it is too low for noise of std σ to be in it.

    For y = c + n with n ~ N(0, σ²I), ‖y‖²/σ² is non-central χ²_d, which grows with ‖c‖:
    the worst case of a real update is c = 0, where ‖y‖² has mean dσ² and standard deviation
    σ²√(2d). An update ``MISSING_SDS`` standard deviations below that mean (taken with the
    fourth moment of Laplace noise, 5σ⁴ per coordinate, so one threshold serves both) did not
    get the noise, whatever the client's update. Powered where the clip bounds the update:
    without noise ‖y‖² ≤ C², far below dσ² at any z above 5√(5/d)."""
    from fedaudit.defenses.update_noise import update_noise_std

    var = update_noise_std(defense) ** 2
    out = []
    for arrays in updates:
        y = flat64(arrays)
        expected = y.size * var
        floor = expected - MISSING_SDS * var * np.sqrt(5.0 * y.size)
        energy = float(y @ y)
        out.append((energy / expected, bool(energy < floor)))
    return out
