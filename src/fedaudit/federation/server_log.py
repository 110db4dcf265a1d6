"""The honest-but-curious server's log: what the server holds each round, on disk.

Per logged round ``r`` (folder ``round_{r:03d}``):
- ``global.npz``: the global model the server sent at the start of round r (named float32
  arrays, the exchanged state of :mod:`fedaudit.federation.weights`);
- one ``update_*.npz`` per distinct update the server received: ``update_<center>.npz`` when a
  client's update reached it alone (plain FL: Δw_k = w_k − w_global), ``update_aggregate.npz``
  when several clients' results carried the same arrays (SecAgg+: the server learns only the
  aggregate, so every client maps to it);
- ``round.json``: per client its center, num_examples, metrics and which update file holds what
  the server got from it.

The log is written from what the strategy received, never from a flag, so under SecAgg+ the
absence of per-client updates follows from the protocol. The privacy attacks read it with
:func:`load_round`; nothing else is needed to re-run them without re-training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

AGGREGATE = "aggregate"


def _digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _save_npz(path: Path, names: list[str], arrays: list[np.ndarray]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{n: a.astype(np.float32, copy=False)
                     for n, a in zip(names, arrays, strict=True)})
    tmp.replace(path)


def write_round(root: str | Path, rnd: int, names: list[str], global_arrays: list[np.ndarray],
                received: list[dict[str, Any]]) -> Path:
    """Write one round. ``received``: per client {center, num_examples, metrics, arrays}."""
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
    record = {"round": rnd, "parameter_names": names, "clients": clients,
              "meaning": "global.npz = model sent at round start; update_* = what the server "
                         "received: w_k - w_global per client, or only their aggregate"}
    tmp = folder / "round.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(folder / "round.json")
    return folder


@dataclass
class RoundLog:
    round: int
    names: list[str]
    global_arrays: dict[str, np.ndarray]
    updates: dict[str, dict[str, np.ndarray]]  # center -> what the server has for that client
    num_examples: dict[str, int]
    update_file: dict[str, str]


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_round(root: str | Path, rnd: int) -> RoundLog:
    folder = Path(root) / f"round_{rnd:03d}"
    meta_path = folder / "round.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: round {rnd} is not in the server log (rounds "
                                f"logged: {logged_rounds(root)})")
    meta = json.loads(meta_path.read_text())
    files = {c["update_file"] for c in meta["clients"]}
    loaded = {f: _load_npz(folder / f) for f in files}
    return RoundLog(
        round=rnd, names=meta["parameter_names"],
        global_arrays=_load_npz(folder / "global.npz"),
        updates={c["center"]: loaded[c["update_file"]] for c in meta["clients"]},
        num_examples={c["center"]: c["num_examples"] for c in meta["clients"]},
        update_file={c["center"]: c["update_file"] for c in meta["clients"]})


def logged_rounds(root: str | Path) -> list[int]:
    return sorted(int(p.parent.name.split("_")[1]) for p in Path(root).glob("round_*/round.json"))


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
