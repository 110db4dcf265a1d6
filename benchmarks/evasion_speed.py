"""Time per batch of paper 004's evasion attacks as :mod:`fedaudit.attacks.evasion` runs them
(FGSM, BIM and PGD at ε = 0.03, α = ε/4 on the sCT UNet, in float32), and whether PGD's time is
linear in its steps (paper 004 Table I: PGD-40 takes twice PGD-20's time).

    python benchmarks/evasion_speed.py                        # CPU, 1 thread, demo UNet at 64²
    python benchmarks/evasion_speed.py --size 256 --base 64 --device cuda   # paper scale

Weights are random (speed does not depend on them) and the slices synthetic; one warm-up
attack precedes the timed ones and each is timed ``--repeats`` times (the median is printed).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from fedaudit.attacks.evasion.algorithm import Attack, craft, sct_error
from fedaudit.models.device import resolve_device
from fedaudit.models.unet import UNet2D


def synthetic(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    y, x = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    mask = (y / 0.45) ** 2 + (x / 0.38) ** 2 < 1
    rng = np.random.default_rng(0)
    mr = np.where(mask, 0.5 + 0.1 * rng.standard_normal((batch, size, size)), 0.0)
    ct = np.where(mask, 0.27 + 0.05 * rng.standard_normal((batch, size, size)), 0.006)
    m = np.broadcast_to(mask, (batch, size, size))
    return (torch.from_numpy(np.clip(mr, 0, 1)[:, None].astype(np.float32)),
            torch.from_numpy(ct[:, None].astype(np.float32)), torch.from_numpy(m[:, None].copy()))


def seconds_per_batch(net: torch.nn.Module, x: torch.Tensor, ct: torch.Tensor, mask: torch.Tensor,
                      attack: Attack, repeats: int) -> float:
    def objective_for(part: slice):
        return sct_error(ct[part], mask[part])

    times = []
    for r in range(repeats):
        _, seconds = craft(net, x, objective_for, attack, batch_size=x.shape[0], seed=r)
        times += seconds
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, nargs="+", default=[64], help="slice side(s)")
    ap.add_argument("--base", type=int, default=8, help="UNet width (demo 8, paper 64)")
    ap.add_argument("--batch", type=int, default=16, help="slices per batch (the default)")
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 40])
    ap.add_argument("--epsilon", type=float, default=0.03)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the attack step does
    device = resolve_device(args.device)
    eps = args.epsilon
    print(f"device {device}, {args.threads} thread(s), batch {args.batch}, ε {eps:g}, α ε/4")
    print(f"{'network':<24}{'attack':<10}{'s/batch':>10}{'ms/step':>10}")
    for size in args.size:
        torch.manual_seed(0)
        net = UNet2D(base=args.base).to(device).eval()
        x, ct, mask = (t.to(device) for t in synthetic(args.batch, size))
        attacks = [Attack("fgsm", eps)]
        attacks += [Attack(m, eps, eps / 4, s) for m in ("bim", "pgd") for s in args.steps]
        seconds_per_batch(net, x, ct, mask, Attack("pgd", eps, eps / 4, 2), 1)  # warm-up
        timed = {}
        for a in attacks:
            s = seconds_per_batch(net, x, ct, mask, a, args.repeats)
            name = "FGSM" if a.method == "fgsm" else f"{a.method.upper()}-{a.steps}"
            timed[name] = s
            print(f"{f'UNet base {args.base} {size}x{size}':<24}{name:<10}{s:>10.3f}"
                  f"{1000 * s / a.iterations:>10.1f}")
        pgd = [timed[f"PGD-{s}"] for s in args.steps]
        if len(pgd) > 1:
            print(f"PGD time ratio {args.steps[-1]}/{args.steps[0]} steps: "
                  f"{pgd[-1] / pgd[0]:.2f} (linear: {args.steps[-1] / args.steps[0]:.2f})")


if __name__ == "__main__":
    main()
