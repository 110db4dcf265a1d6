"""Seconds per local round of a client's training with and without DP-SGD
(:mod:`fedaudit.defenses.dp_sgd`: Opacus' per-slice gradients, clipping and noise), on the
GroupNorm UNet both train, and the BatchNorm UNet of the other scenarios for reference.

    python benchmarks/dp_sgd_speed.py                         # CPU, 1 thread, demo UNet at 64²
    python benchmarks/dp_sgd_speed.py --size 256 --base 64 --device cuda   # paper scale

A round is what :func:`fedaudit.federation.local.train_local` runs for one client: one epoch of
``--slices`` slices (synthetic heads) in batches of ``--batch`` (DP-SGD: Poisson lots of that
expected size). DP-SGD trains in the contiguous layout (Opacus' per-sample convolution
gradients are wrong on channels_last activations), the plain path in channels_last. One warm-up
round precedes the timed ones; the median of ``--repeats`` is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch

from fedaudit.data.slices import Volume
from fedaudit.defenses.dp_sgd.private import local_training
from fedaudit.federation.local import LocalConfig, train_local
from fedaudit.models.device import resolve_device
from fedaudit.models.unet import UNet2D


def synthetic_volumes(n: int, size: int) -> list[Volume]:
    """``n`` cubes with an elliptical head (MR in [0, 1], CT in HU, a head mask)."""
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float32) / size - 0.5
    head = (z / 0.45) ** 2 + (y / 0.4) ** 2 + (x / 0.35) ** 2 < 1
    rng = np.random.default_rng(0)
    vols = []
    for i in range(n):
        mr = np.where(head, 0.5 + 0.1 * rng.standard_normal(head.shape), 0.0)
        ct = np.where(head, 40.0 + 200.0 * rng.standard_normal(head.shape), -1000.0)
        vols.append(Volume(f"synthetic{i}", np.clip(mr, 0, 1).astype(np.float32),
                           ct.astype(np.float32), head.astype(np.uint8)))
    return vols


def round_seconds(norm: str, dp: bool, vols: list[Volume], cfg: LocalConfig, base: int,
                  device: torch.device, repeats: int) -> float:
    torch.manual_seed(0)
    model = UNet2D(base=base, norm=norm)
    times = []
    for r in range(repeats + 1):
        private = (local_training({"noise_multiplier": 1.0, "max_grad_norm": 1.0}, seed=r)
                   if dp else None)
        t0 = time.perf_counter()
        train_local(model, vols, cfg, seed=r, device=device, private=private)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=64, help="slice side (demo 64, paper 256)")
    ap.add_argument("--base", type=int, default=8, help="UNet width (demo 8, paper 64)")
    ap.add_argument("--slices", type=int, default=64, help="slices per epoch")
    ap.add_argument("--batch", type=int, default=8, help="(expected) slices per batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # slices come from three orientations of every volume: enough volumes for the epoch
    n_vols = max(1, -(-args.slices // 32))
    vols = synthetic_volumes(n_vols, args.size)
    cfg = dataclasses.replace(LocalConfig(), batch_size=args.batch, local_epochs=1,
                              max_slices_per_volume=-(-args.slices // n_vols),
                              augment=False, num_workers=0)
    print(f"device {device}, {args.threads} thread(s); UNet base {args.base}, "
          f"{args.size}², {args.slices} slices per round in (expected) batches of {args.batch}")
    rows = [("BatchNorm UNet, plain", "batch", False), ("GroupNorm UNet, plain", "group", False),
            ("GroupNorm UNet, DP-SGD σ=1, C=1", "group", True)]
    plain = None
    for label, norm, dp in rows:
        s = round_seconds(norm, dp, vols, cfg, args.base, device, args.repeats)
        plain = s if (norm, dp) == ("group", False) else plain
        ratio = f"  ({s / plain:.2f}x the GroupNorm plain round)" if dp and plain else ""
        print(f"{label:34s} {s:7.3f} s per round{ratio}")


if __name__ == "__main__":
    main()
