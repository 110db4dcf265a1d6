"""Each client's own record of its training: what it must not tell the server, kept at home.

Under a privacy defense (SecAgg+ or client noise) a client's reply carries its update and its
center's name only: its training loss, validation MAE, throughput and exact slice count are
per-client side channels (each an un-noised function of its data), so they stay out of every
Flower message, ``round.json`` and ``history.tsv``. The client writes them here instead, one
file per center (``<out_dir>/clients/<center>.tsv``, a row per round, upserted so a resumed run
replaces the rounds it re-trains), and the training curves and DP-SGD's accounting read them
(:func:`read_records`); the attacks never do -- they are the hospital's, not the server's.
Without a privacy defense the same fields also travel to the server, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fedaudit.atomic import write_csv

RECORDS_DIR = "clients"


def record_path(out_dir: str | Path, center: str) -> Path:
    return Path(out_dir) / RECORDS_DIR / f"{center}.tsv"


def update_record(out_dir: str | Path, center: str, rnd: int, fields: dict[str, Any]) -> None:
    """Merge ``fields`` into ``center``'s row of round ``rnd`` (created when absent), written
    atomically: the fit and the validation of a round fill one row."""
    path = record_path(out_dir, center)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(path, sep="\t") if path.is_file() else pd.DataFrame(
        columns=["round", "center"])
    row = {"round": int(rnd), "center": center, **fields}
    hit = frame["round"] == int(rnd)
    if hit.any():
        for key, value in row.items():
            if key not in frame.columns:
                frame[key] = pd.Series([None] * len(frame), dtype=object)
            frame.loc[hit, key] = value
    else:
        frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True) if len(frame) \
            else pd.DataFrame([row])
    write_csv(frame.sort_values("round", kind="stable"), path, sep="\t", index=False)


def read_records(folder: str | Path, rounds: int | None = None) -> pd.DataFrame:
    """Every center's record under ``folder`` (the ``clients`` folder) as one frame, rounds in
    order; with ``rounds``, rows of later rounds (an interrupted longer run) are dropped."""
    files = sorted(Path(folder).glob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"{folder}: no client record (<center>.tsv); re-run the "
                                "scenario's training")
    frame = pd.concat([pd.read_csv(f, sep="\t") for f in files], ignore_index=True)
    if rounds is not None:
        frame = frame[frame["round"] <= rounds]
    return frame.sort_values(["round", "center"], kind="stable").reset_index(drop=True)
