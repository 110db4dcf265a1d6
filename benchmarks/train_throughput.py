"""Training throughput of the paper's UNet on this machine: slices/s, model FLOP utilisation, and
the time a 20-round scenario would take at paper scale.

    python benchmarks/train_throughput.py                      # paper scale: base 64, 256^2, bf16
    python benchmarks/train_throughput.py --size 64 --base 8   # the CPU demo's network

It runs the real client step (:func:`fedaudit.federation.local.train_local`: Random Multi-2D
epoch, MONAI augmentation, FedProx, fused Adam, channels_last, bf16 autocast on CUDA) on synthetic
volumes, so data loading and augmentation are included. FLOPs per slice are counted with
``torch.utils.flop_counter`` (forward + backward); MFU = achieved FLOP/s / the device's peak
(dense bf16 tensor-core peak for known GPUs, or ``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fedaudit.data.slices import Volume
from fedaudit.federation.local import LocalConfig, train_local
from fedaudit.models.device import resolve_device
from fedaudit.models.unet import UNet2D, count_parameters

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
# Paper 000 / FedSynthCT-Brain: 15 + 14 + 21 + 29 patients, 70 % train -> ~55 training volumes;
# about 200 head-containing slices per 256^3 volume in a random orientation.
PAPER_TRAIN_VOLUMES = 55
PAPER_SLICES_PER_VOLUME = 200


def synthetic_volume(size: int, rng: np.random.Generator, name: str) -> Volume:
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float32) / size - 0.5
    mask = (z / 0.42) ** 2 + (y / 0.4) ** 2 + (x / 0.36) ** 2 < 1
    mr = np.where(mask, 0.5 + 0.2 * rng.standard_normal(mask.shape, dtype=np.float32), 0)
    ct = np.where(mask, 40 + 300 * rng.standard_normal(mask.shape, dtype=np.float32), -1000)
    return Volume(name, mr.astype(np.float32), ct.astype(np.float32), mask)


def flops_per_slice(model: torch.nn.Module, size: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 1, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).abs().mean().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, val in PEAK_BF16_TFLOPS.items():
            if key in name:
                return val
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--volumes", type=int, default=4)
    ap.add_argument("--slices", type=int, default=64, help="slices per volume per epoch")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = ap.parse_args()

    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    vols = [synthetic_volume(args.size, rng, f"v{i}") for i in range(args.volumes)]
    torch.manual_seed(0)
    model = UNet2D(base=args.base).to(device)
    cfg = LocalConfig(lr=1e-4, batch_size=args.batch, max_slices_per_volume=args.slices,
                      num_workers=args.workers if device.type == "cuda" else 0)
    amp = not args.no_amp
    fl = flops_per_slice(model, args.size, device)
    train_local(model, vols, cfg, seed=0, device=device, amp=amp)  # warm-up (cudnn, workers)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    stats = train_local(model, vols, cfg, seed=1, device=device, amp=amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    sps = stats["num_examples"] / secs
    peak = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}   threads: {torch.get_num_threads()}   amp(bf16): "
          f"{amp and device.type == 'cuda'}")
    print(f"UNet base {args.base}: {count_parameters(model):,} parameters; "
          f"{fl / 1e9:.2f} GFLOP per {args.size}^2 slice (forward + backward)")
    print(f"training: {sps:.1f} slices/s ({stats['num_examples']:.0f} slices in {secs:.1f} s, "
          f"batch {args.batch}, augmentation on)")
    print(f"achieved: {sps * fl / 1e12:.2f} TFLOP/s"
          + (f"   MFU: {100 * sps * fl / (peak * 1e12):.1f} % of {peak:.0f} TFLOP/s"
             if peak else "   MFU: n/a (pass --peak-tflops)"))
    per_round = PAPER_TRAIN_VOLUMES * PAPER_SLICES_PER_VOLUME / sps
    print(f"paper scale ({PAPER_TRAIN_VOLUMES} volumes x ~{PAPER_SLICES_PER_VOLUME} slices per "
          f"round, clients in turn on this device): {per_round / 60:.1f} min/round, "
          f"{20 * per_round / 60:.0f} min per 20-round scenario")


if __name__ == "__main__":
    main()
