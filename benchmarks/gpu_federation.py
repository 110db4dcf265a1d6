"""A reduced paper-config federation end to end: 256^2 slices, UNet base 64, a few rounds.

    python benchmarks/gpu_federation.py                         # 4 centers, 3 rounds, on the GPU
    python benchmarks/gpu_federation.py --size 48 --base 4 --rounds 2 --device cpu   # smoke run

It writes a synthetic preprocessed study (cubes of ``--size``^3 voxels: a head-like ellipsoid
whose CT is a fixed function of its MR, with a bright rim like a skull, so there is something to
learn) as ``.npy`` arrays, so that it runs where SimpleITK is not installed (the GPU machine; the
clients' volume reader is swapped for ``numpy.load`` in this script only), and runs the real
training path -- :func:`fedaudit.federation.run.train_federation`:
the in-process Flower grid, the AuditStrategy writing the server log, FedAvg + FedProx clients
running :func:`fedaudit.federation.local.train_local` (Random Multi-2D, MONAI augmentation, bf16
autocast and channels_last on CUDA) -- then predicts one held-out volume with 3-orientation
median fusion (:func:`fedaudit.evaluation.inference.predict_volume`) and scores it in HU against
the constant predictor. It prints seconds per round, the validation MAE per round and the
inference time, and extrapolates to paper 000's 20-round scenario.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import fedaudit.federation.client as client_module
from fedaudit.data.slices import Volume
from fedaudit.evaluation.inference import predict_volume
from fedaudit.evaluation.metrics import mae
from fedaudit.federation.local import LocalConfig
from fedaudit.federation.plan import ClientData, TrainPlan
from fedaudit.federation.run import train_federation
from fedaudit.models.device import resolve_device
from fedaudit.models.store import load_model
from fedaudit.scenarios import Scenario

AIR_HU = -1000.0


def synthetic_patient(size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """MR in [0, 1] and CT in HU inside a head-like ellipsoid; CT is a smooth function of the
    local MR texture plus a skull rim that is dark on MR and bright on CT (as in T1 MR)."""
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float32) / (size - 1) - 0.5
    scale = 1 + 0.05 * rng.random()
    r = np.sqrt((z / 0.42) ** 2 + (y / 0.40) ** 2 + (x / 0.36) ** 2) * scale
    mask = r < 1.0
    rim = (r > 0.85) & mask
    phase = rng.random() * 6.28
    texture = np.sin(9 * x + phase) * np.cos(7 * y)
    mr = np.where(mask, 0.55 + 0.25 * texture, 0.0)
    mr[rim] = 0.08
    mr = np.clip(mr + 0.02 * rng.standard_normal(mr.shape, dtype=np.float32), 0, 1) * mask
    ct = np.where(mask, 35.0 + 45.0 * texture, AIR_HU)
    ct[rim] = 1100.0
    return {"mr": mr.astype(np.float32), "ct": ct.astype(np.float32),
            "mask": mask.astype(np.uint8)}


def write_study(root: Path, centers: list[str], train: int, size: int, seed: int
                ) -> tuple[tuple[ClientData, ...], dict[str, np.ndarray]]:
    """One folder per patient (``mr/ct/mask.npy``); each center gets ``train`` training
    patients and one validation patient. Returns the clients, one extra held-out test patient
    and the training patients' median in-mask CT (the constant predictor's value)."""
    rng = np.random.default_rng(seed)
    clients, train_ct = [], []
    for c in centers:
        folders = []
        for i in range(train + 1):
            folder = root / c / f"{c}{i:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            patient = synthetic_patient(size, rng)
            for name, arr in patient.items():
                np.save(folder / f"{name}.npy", arr)
            if i < train:
                train_ct.append(patient["ct"][patient["mask"] > 0])
            folders.append(str(folder))
        clients.append(ClientData(c, tuple(folders[:-1]), (folders[-1],)))
    return tuple(clients), synthetic_patient(size, rng), float(np.median(np.concatenate(train_ct)))


def npy_volume(folder: str, name: str | None = None) -> Volume:
    """The clients' reader for this study: the arrays :func:`write_study` saved."""
    f = Path(folder)
    return Volume(name or f.name, np.load(f / "mr.npy"), np.load(f / "ct.npy"),
                  np.load(f / "mask.npy"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--centers", type=int, default=4)
    ap.add_argument("--train-patients", type=int, default=2, help="per center")
    ap.add_argument("--slices", type=int, default=96, help="slices per volume per epoch")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="/tmp/fedaudit-gpu-federation")
    args = ap.parse_args()

    device = resolve_device(args.device)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    centers = [chr(ord("A") + i) for i in range(args.centers)]
    clients, test, constant_hu = write_study(out / "preprocessed", centers, args.train_patients,
                                             args.size, 0)
    client_module.load_volume = npy_volume
    print(f"study: {args.centers} centers x ({args.train_patients} train + 1 val) patients of "
          f"{args.size}^3, written in {time.perf_counter() - t0:.1f} s")

    local = LocalConfig(lr=2e-4, batch_size=args.batch, max_slices_per_volume=args.slices,
                        val_max_slices=32,
                        num_workers=args.workers if device.type == "cuda" else 0)
    plan = TrainPlan(scenario=Scenario("baseline"), clients=clients, out_dir=str(out / "run"),
                     seed=42, rounds=args.rounds, model_base=args.base, local=local,
                     device=str(device), amp=device.type == "cuda",
                     threads=torch.get_num_threads())
    result = train_federation(plan)
    hist = result["history"]
    per_round = result["seconds"] / max(result["rounds_trained"], 1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    slices = args.centers * args.train_patients * args.slices
    print(f"device: {name}; UNet base {args.base}; {slices} training slices per round "
          f"(batch {args.batch}, bf16: {plan.amp})")
    print(f"federation: {result['rounds_trained']} rounds in {result['seconds']:.1f} s "
          f"({per_round:.1f} s/round, {slices / per_round:.0f} slices/s incl. validation, "
          f"aggregation and the server log)")
    for rnd, grp in hist.groupby("round"):
        cols = {k: grp[k].mean() for k in ("train_loss", "val_mae") if k in grp}
        print(f"  round {rnd}: " + ", ".join(f"mean {k} {v:.1f}" if k == "val_mae"
                                               else f"mean {k} {v:.4f}"
                                               for k, v in cols.items()))

    model = load_model(out / "run" / "model.pt", device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    sct = predict_volume(model, test["mr"], test["mask"], fusion="median3",
                         batch_size=32, device=device, amp=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.synchronize()
    infer = time.perf_counter() - t1
    mask = test["mask"] > 0
    constant = np.full_like(test["ct"], constant_hu)
    print(f"inference: {args.size}^3 volume, 3-orientation median fusion in {infer:.1f} s; "
          f"held-out MAE {mae(test['ct'], sct, mask):.1f} HU vs constant predictor "
          f"{mae(test['ct'], constant, mask):.1f} HU")
    print(f"paper scale: ~55 training volumes x ~200 slices per round -> "
          f"{55 * 200 * per_round / slices / 60:.1f} min/round, "
          f"{20 * 55 * 200 * per_round / slices / 60:.0f} min per 20-round scenario "
          f"(from this run's slices/s)")


if __name__ == "__main__":
    main()
