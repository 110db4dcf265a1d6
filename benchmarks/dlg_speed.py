"""Speed of the DLG attack (:func:`fedaudit.attacks.dlg.inversion.reconstruct`): iterations/s on
the paper's UNet, on its BatchNorm-free positive control and on the MLP code check, and what 30,000
iterations would take.

    python benchmarks/dlg_speed.py                                   # CPU demo network, Adam
    python benchmarks/dlg_speed.py --optimizer lbfgs --threads 1     # one thread, as a rule runs
    python benchmarks/dlg_speed.py --base 64 --size 256 --device cuda  # paper scale

One iteration is one evaluation of the gradient-matching objective with double backpropagation
plus one optimiser step (the module docstring of :mod:`fedaudit.attacks.dlg.inversion`). The
network's weights are random (speed does not depend on them); the slice is a synthetic head,
batch 1 as in paper 000. A short warm-up run precedes the timed one (allocator, oneDNN/cuDNN
kernel choice).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from fedaudit.attacks.dlg.inversion import DLGConfig, client_gradient, reconstruct
from fedaudit.models.device import resolve_device
from fedaudit.models.tiny import TinyMLPTranslator
from fedaudit.models.unet import UNet2D, count_parameters

PAPER_ITERATIONS = 30000


def synthetic_slice(size: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MR, unit CT and mask ``[B, 1, S, S]``: an elliptical head with some texture."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    mask = (y / 0.45) ** 2 + (x / 0.38) ** 2 < 1
    mr = np.where(mask, 0.5 + 0.1 * rng.standard_normal((batch, 1, size, size)), 0.0)
    ct = np.where(mask, 0.27 + 0.05 * rng.standard_normal((batch, 1, size, size)), 0.006)
    m = np.broadcast_to(mask, (batch, 1, size, size))
    return mr.astype(np.float32), ct.astype(np.float32), m.copy()


def time_attack(net: torch.nn.Module, label: str, args: argparse.Namespace,
                device: torch.device) -> None:
    mr, ct, mask = synthetic_slice(args.size, args.batch)
    shared = client_gradient(net.to(device), torch.from_numpy(mr).to(device),
                             torch.from_numpy(ct).to(device))
    warm = DLGConfig(optimizer=args.optimizer, iterations=max(5, args.iterations // 10),
                     snapshots=2)
    reconstruct(net, shared, mask, warm, ct=ct, seed=0, device=device, progress=False)
    cfg = DLGConfig(optimizer=args.optimizer, iterations=args.iterations, snapshots=2)
    res = reconstruct(net, shared, mask, cfg, ct=ct, seed=0, device=device, progress=False)
    n_params = count_parameters(net)
    eta = PAPER_ITERATIONS / res.iterations_per_s
    print(f"{label:<28} {n_params:>11,} params  {res.iterations_per_s:8.1f} it/s  "
          f"({args.iterations} it in {res.seconds:.1f} s; {PAPER_ITERATIONS:,} it: "
          f"{eta / 60:.1f} min)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64, help="MLP code check's hidden width")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}   threads: {torch.get_num_threads()}   optimizer: {args.optimizer}   "
          f"slice {args.size}^2, batch {args.batch}")
    torch.manual_seed(0)
    time_attack(UNet2D(base=args.base), f"UNet2D(base={args.base})", args, device)
    time_attack(UNet2D(base=args.base, norm="none"), f"UNet2D(base={args.base}, no BatchNorm)",
                args, device)
    time_attack(TinyMLPTranslator(args.size, args.hidden),
                f"TinyMLPTranslator(h={args.hidden})", args, device)


if __name__ == "__main__":
    main()
