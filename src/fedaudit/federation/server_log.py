"""The honest-but-curious server's log: what the server holds each round, on disk.

Per logged round ``r`` (folder ``round_{r:03d}``):
- ``global.npz``: the global model the server sent at the start of round r (named float32
  arrays, the exchanged state of :mod:`fedaudit.models.weights`);
- one ``update_*.npz`` per distinct update the server received: ``update_<center>.npz`` when a
  client's update reached it alone (plain FL: Δw_k = w_k − w_global), ``update_aggregate.npz``
  when several clients' results carried the same arrays (SecAgg+: the server learns only the
  aggregate, so every client maps to it);
- ``masked_<center>.npz`` (SecAgg+ only): the masked vector the server received from that
  client in the protocol's masked-vector stage (:mod:`fedaudit.defenses.secagg.workflow`), the raw
  integers as received in the smallest unsigned dtype holding ``[0, modulus_range)`` (uint32 for
  Flower's 2^32), one key per list entry: ``secagg_weighting_factor`` (shape (1,), the client's
  masked quantised FedAvg weight that ``secaggplus_mod`` prepends), then the exchanged tensors
  under their parameter names;
- ``round.json``: per client its center, num_examples, metrics, which update file holds what
  the server got from it and, under SecAgg+, its ``masked_file``; under SecAgg+ also ``secagg``:
  clipping_range, quantization_range, modulus_range, max_weight, masked_dtype and
  ``masked_layout`` (the list's entries in order, as stored).

Masked vectors are the SecAgg+ server's real per-client view (Bell et al., CCS 2020; Flower's
``SecAggPlusWorkflow``): the uniform masks make each one independent of that client's update,
and only their sum, unmasked, gives the aggregate in ``update_aggregate.npz``. Paper 000's FedMIA
under SecAgg+ (AUC 0.23-0.56) is a measurement on exactly this input, so :func:`load_round`
returns it (``RoundLog.masked``) read the way the server reads a vector: Flower's ``dequantize``.

Beside the rounds, ``rounds.json`` lists the rounds the run logged (every round, or the last with
``train.server_log.rounds: last``), written when the run publishes its log after checking each is
on disk; a reader finds a missing round an error naming it, not a shorter log. ``model.json`` is
the model definition the federation agreed on
(:mod:`fedaudit.models.definition`: the UNet's width and, for the DP-SGD federations, its
GroupNorm), which the server holds as it distributes the model; the attacks rebuild the network
from it (:func:`read_model`). A log without it is the BatchNorm UNet's.

The log is written from what the strategy received, never from a flag, so under SecAgg+ the
absence of per-client updates follows from the protocol. The privacy attacks read it with
:func:`load_round`; nothing else is needed to re-run them without re-training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedaudit.archives import ArchiveError, load_npz
from fedaudit.atomic import save_npz, write_text

AGGREGATE = "aggregate"
# first entry of a SecAgg+ masked vector: secaggplus_mod's factor_combine(q_ratio, ...) puts the
# client's quantised weight n_k / max_weight * quantization_range in front of the parameters
WEIGHTING_FACTOR = "secagg_weighting_factor"


def _digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _save_npz(path: Path, names: list[str], arrays: list[np.ndarray]) -> None:
    save_npz(path, **{n: a.astype(np.float32, copy=False)
                      for n, a in zip(names, arrays, strict=True)})


def masked_dtype(modulus_range: int) -> np.dtype:
    """Smallest unsigned integer dtype holding every value of ``[0, modulus_range)``."""
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if modulus_range - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"modulus_range {modulus_range} does not fit in 64 bits")


def dequantize(quantized: np.ndarray, clipping_range: float,
               quantization_range: int) -> np.ndarray:
    """Flower's ``flwr.common.secure_aggregation.quantization.dequantize`` for one array
    (Flower 1.41, same float64 arithmetic; tests check equality), as float32. A copy rather than
    an import: the attacks' environment has no Flower and must still read SecAgg+ logs."""
    quantizer = (2 * clipping_range) / quantization_range
    return (quantized.astype(float) * quantizer - clipping_range).astype(np.float32)


def _save_masked(path: Path, layout: list[str], arrays: list[np.ndarray], modulus: int) -> None:
    dt = masked_dtype(modulus)
    out = {}
    for n, a in zip(layout, arrays, strict=True):
        # the wire holds int64 after the mod: check before narrowing so nothing wraps silently
        if a.size and (int(a.min()) < 0 or int(a.max()) >= modulus):
            raise ValueError(f"{path.name}: {n} has values outside [0, {modulus})")
        out[n] = a.astype(dt)
    save_npz(path, **out)  # uncompressed: masked integers are uniform, they do not compress


def write_round(root: str | Path, rnd: int, names: list[str], global_arrays: list[np.ndarray],
                received: list[dict[str, Any]],
                masked: dict[str, list[np.ndarray]] | None = None,
                secagg: dict[str, Any] | None = None) -> Path:
    """Write one round. ``received``: per client {center, num_examples, metrics, arrays}.

    ``masked`` (SecAgg+): center -> the integer arrays of its masked vector as received
    (weighting factor first, then one per name); ``secagg``: the protocol's clipping_range,
    quantization_range, modulus_range and max_weight."""
    folder = Path(root) / f"round_{rnd:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    _save_npz(folder / "global.npz", names, global_arrays)
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in received:
        groups.setdefault(_digest(item["arrays"]), []).append(item)
    clients = []
    for items in groups.values():
        tag = items[0]["center"] if len(items) == 1 else AGGREGATE
        _save_npz(folder / f"update_{tag}.npz", names, items[0]["arrays"])
        for it in items:
            clients.append({"center": it["center"], "num_examples": int(it["num_examples"]),
                            "metrics": it["metrics"], "update_file": f"update_{tag}.npz"})
    clients.sort(key=lambda c: c["center"])
    record: dict[str, Any] = {
        "round": rnd, "parameter_names": names, "clients": clients,
        "meaning": "global.npz = model sent at round start; update_* = what the server "
                   "received: w_k - w_global per client, or only their aggregate"}
    if masked:
        if secagg is None:
            raise ValueError("masked vectors need the SecAgg+ settings they were made with")
        layout = [WEIGHTING_FACTOR, *names]
        shapes = [(1,), *(a.shape for a in global_arrays)]
        for c in clients:
            vec = masked[c["center"]]
            got = [tuple(a.shape) for a in vec]
            if got != [tuple(s) for s in shapes]:
                raise ValueError(f"round {rnd}: masked vector of {c['center']} has shapes "
                                 f"{got[:3]}..., expected [weighting factor (1,), *parameters]")
            _save_masked(folder / f"masked_{c['center']}.npz", layout, vec,
                         int(secagg["modulus_range"]))
            c["masked_file"] = f"masked_{c['center']}.npz"
        record["secagg"] = {
            **{k: secagg[k] for k in ("clipping_range", "quantization_range", "modulus_range",
                                      "max_weight")},
            "masked_dtype": masked_dtype(int(secagg["modulus_range"])).name,
            "masked_layout": layout,
            "meaning": "masked_<center>.npz = that client's SecAgg+ masked vector as the server "
                       "received it: (quantize(q/Q * (w_k - w_global)) + private and pairwise "
                       "masks) mod modulus_range per parameter, preceded by the same masking "
                       "of its weighting factor q = round(num_examples / max_weight * Q); "
                       "Q = quantization_range"}
    # last: a round is logged once its round.json exists, after every array it names
    write_text(json.dumps(record, indent=1), folder / "round.json")
    return folder


@dataclass
class RoundLog:
    round: int
    names: list[str]
    global_arrays: dict[str, np.ndarray]
    updates: dict[str, dict[str, np.ndarray]]  # center -> what the server has for that client
    num_examples: dict[str, int]
    update_file: dict[str, str]
    # SecAgg+ only, else {}: center -> parameter name -> the masked vector the server received
    # from it (weighting factor dropped), read with Flower's dequantize: float32 in
    # [-clip, clip * (2 * modulus_range / quantization_range - 1)), independent of the update
    masked: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    secagg: dict[str, Any] | None = None  # round.json's "secagg" (protocol settings, layout)


class ServerLogError(FileNotFoundError):
    """A server log that is incomplete or unreadable; the message names the round and file."""


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_npz(path)
    except ArchiveError as err:
        raise ServerLogError(f"{err}; the server log is damaged: re-run the scenario's "
                             "training") from err


def load_round(root: str | Path, rnd: int) -> RoundLog:
    folder = Path(root) / f"round_{rnd:03d}"
    meta_path = folder / "round.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: round {rnd} is not in the server log (rounds "
                                f"logged: {logged_rounds(root)})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ServerLogError(f"{meta_path}: round {rnd}'s record is unreadable ({err})") from err
    files = {c["update_file"] for c in meta["clients"]}
    loaded = {f: _load_npz(folder / f) for f in files}
    secagg = meta.get("secagg")
    masked: dict[str, dict[str, np.ndarray]] = {}
    for c in meta["clients"]:
        if secagg is not None and c.get("masked_file"):
            raw = _load_npz(folder / c["masked_file"])
            masked[c["center"]] = {
                n: dequantize(raw[n], secagg["clipping_range"], secagg["quantization_range"])
                for n in meta["parameter_names"]}
    return RoundLog(
        round=rnd, names=meta["parameter_names"],
        global_arrays=_load_npz(folder / "global.npz"),
        updates={c["center"]: loaded[c["update_file"]] for c in meta["clients"]},
        num_examples={c["center"]: c["num_examples"] for c in meta["clients"]},
        update_file={c["center"]: c["update_file"] for c in meta["clients"]},
        masked=masked, secagg=secagg)


MODEL_FILE = "model.json"


def write_model(root: str | Path, definition: dict[str, Any]) -> Path:
    """Write the federation's model definition into the log folder ``root``."""
    return write_text(json.dumps(definition, sort_keys=True) + "\n", Path(root) / MODEL_FILE)


def read_model(root: str | Path) -> dict[str, Any] | None:
    """The model definition of the log at ``root``, or None when it has none (a log written
    before definitions were stored, or by a test: the BatchNorm UNet)."""
    path = Path(root) / MODEL_FILE
    return json.loads(path.read_text()) if path.is_file() else None


INDEX_FILE = "rounds.json"


def write_index(root: str | Path, rounds: Sequence[int]) -> Path:
    """Record which rounds the run logged (``rounds.json``), after checking each is on disk: a
    reader then tells a complete log from one with a round missing."""
    root = Path(root)
    missing = [r for r in rounds if not (root / f"round_{r:03d}" / "round.json").is_file()]
    if missing:
        raise ServerLogError(f"{root}: round(s) {missing} were to be logged but are not on disk "
                             f"(round_NNN/round.json)")
    return write_text(json.dumps({"rounds": sorted(int(r) for r in rounds)}) + "\n",
                      root / INDEX_FILE)


def logged_rounds(root: str | Path) -> list[int]:
    """The rounds of the log at ``root``: those its index (``rounds.json``) names, each checked
    present, or -- for a log without an index (an attack's own capture, a test) -- those on disk.
    """
    root = Path(root)
    on_disk = sorted(int(p.parent.name.split("_")[1]) for p in root.glob("round_*/round.json"))
    index = root / INDEX_FILE
    if not index.is_file():
        return on_disk
    try:
        listed = [int(r) for r in json.loads(index.read_text())["rounds"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ServerLogError(f"{index}: unreadable index of logged rounds ({err})") from err
    missing = sorted(set(listed) - set(on_disk))
    if missing:
        raise ServerLogError(f"{root / f'round_{missing[0]:03d}' / 'round.json'}: round "
                             f"{missing[0]} is listed in {INDEX_FILE} but missing from the log"
                             f"{f' (and rounds {missing[1:]})' if missing[1:] else ''}: re-run "
                             "the scenario's training")
    return listed


def resolve_rounds(server_log: str | Path, rounds: str | int | Sequence[int]) -> list[int]:
    """``last`` | ``all`` | a round number | a list of them -> logged round numbers."""
    logged = logged_rounds(server_log)
    if not logged:
        raise FileNotFoundError(f"{server_log}: no logged round (round_*/round.json); was the "
                                "scenario trained with this version of FedAudit?")
    if rounds == "last":
        return [logged[-1]]
    if rounds == "all":
        return logged
    wanted = [int(rounds)] if isinstance(rounds, int | str) else [int(r) for r in rounds]
    missing = [r for r in wanted if r not in logged]
    if missing:
        which = f"round {missing[0]} is" if len(missing) == 1 else f"rounds {missing} are"
        raise FileNotFoundError(f"{server_log}: {which} not logged (logged: {logged}; "
                                "train.server_log.rounds: all keeps every round)")
    return wanted
