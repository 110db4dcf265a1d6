"""A tiny federated study on disk for federation tests: a few synthetic preprocessed patients per
center (cube, head-like ellipsoid mask, MR in [0, 1], CT in HU with a bright rim like a skull)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fedaudit.federation.local import LocalConfig
from fedaudit.federation.plan import ClientData, TrainPlan
from fedaudit.scenarios import Scenario


def write_patient(folder: Path, rng: np.random.Generator, size: int = 32) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float32) / (size - 1) - 0.5
    r = np.sqrt((z / 0.42) ** 2 + (y / 0.40) ** 2 + (x / 0.36) ** 2) * (1 + 0.05 * rng.random())
    mask = r < 1.0
    rim = (r > 0.8) & mask
    mr = np.where(mask, 0.6 + 0.2 * np.sin(8 * x + rng.random()) * (1 - rim) - 0.5 * rim, 0.0)
    mr = np.clip(mr + 0.02 * rng.standard_normal(mr.shape), 0, 1) * mask
    ct = np.where(mask, 30.0 + 40.0 * np.sin(8 * x), -1000.0)
    ct[rim] = 900.0
    for name, arr in (("mr", mr.astype(np.float32)), ("ct", ct.astype(np.float32)),
                      ("mask", mask.astype(np.uint8))):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((6.0, 6.0, 6.0))
        sitk.WriteImage(img, str(folder / f"{name}.nii.gz"))


def make_study(root: Path, centers: dict[str, int] | None = None, size: int = 32,
               seed: int = 0) -> tuple[ClientData, ...]:
    """Centers -> number of train patients; each center also gets one validation patient."""
    centers = centers or {"A": 1, "B": 2, "C": 2}
    rng = np.random.default_rng(seed)
    clients = []
    for c, n in centers.items():
        train = []
        for i in range(n):
            write_patient(root / c / f"{c}{i:03d}", rng, size)
            train.append(str(root / c / f"{c}{i:03d}"))
        write_patient(root / c / f"{c}val", rng, size)
        clients.append(ClientData(c, tuple(train), (str(root / c / f"{c}val"),)))
    return tuple(clients)


def tiny_plan(clients: tuple[ClientData, ...], out_dir: Path, scenario: Scenario | None = None,
              **overrides) -> TrainPlan:
    local = LocalConfig(lr=1e-3, batch_size=4, max_slices_per_volume=4, val_max_slices=4,
                        proximal_mu=3.0)
    plan = TrainPlan(scenario=scenario or Scenario("baseline"), clients=clients,
                     out_dir=str(out_dir), seed=7, rounds=2, model_base=2, local=local,
                     device="cpu", threads=1)
    return dataclasses.replace(plan, **overrides)
