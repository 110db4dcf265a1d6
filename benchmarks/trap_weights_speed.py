"""Speed of the trap-weight attack (paper 002): per batch, what the client's step on the trapped
model costs, what the server's closed-form reconstruction costs, and what the evaluator's
Hungarian SSIM matching costs, at 64² (the demo) and 256² (paper scale).

    python benchmarks/trap_weights_speed.py                       # CPU, demo UNet (base 8)
    python benchmarks/trap_weights_speed.py --base 64 --device cuda  # paper UNet on a GPU

The slices are a synthetic head with texture (speed does not depend on content); the inserted
layer has ``--neurons`` trap-weight neurons. Each figure is the median of ``--repeats`` timed runs
after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from fedaudit.attacks.trap_weights.imprint import reconstruct, scaled_positive_scale, trap_init
from fedaudit.attacks.trap_weights.matching import match_reconstructions
from fedaudit.models.device import resolve_device
from fedaudit.models.front import FrontedModel, LinearFront
from fedaudit.models.unet import UNet2D


def synthetic_batch(size: int, batch: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    mask = (y / 0.45) ** 2 + (x / 0.38) ** 2 < 1
    mr = np.where(mask, 0.5 + 0.15 * rng.standard_normal((batch, 1, size, size)), 0.0)
    return torch.from_numpy(np.clip(mr, 0, 1).astype(np.float32))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--neurons", type=int, default=512)
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, UNet base {args.base}, "
          f"{args.neurons} neurons")
    print(f"{'size':>5} {'batch':>5} {'client step s':>14} {'reconstruct s':>14} "
          f"{'match s':>8} {'recovered (synthetic)':>22}")
    for size in args.sizes:
        d = size * size
        front = LinearFront(d, args.neurons)
        trap_init(front, positive_scale=scaled_positive_scale(0.9, d), back_std=1e-3,
                  generator=torch.Generator().manual_seed(0))
        model = FrontedModel(front, UNet2D(base=args.base)).to(device)
        for batch in args.batches:
            x = synthetic_batch(size, batch).to(device)
            target = torch.zeros_like(x)

            def step(model=model, x=x, target=target) -> None:
                model.zero_grad(set_to_none=True)
                torch.nn.functional.l1_loss(model(x), target).backward()
                if device.type == "cuda":
                    torch.cuda.synchronize()

            t_step = timed(step, args.repeats)
            dw = model.front.linear.weight.grad.detach().cpu().numpy()
            db = model.front.linear.bias.grad.detach().cpu().numpy()
            t_rec = timed(lambda dw=dw, db=db: reconstruct(dw, db, "trap"), args.repeats)
            recon, _ = reconstruct(dw, db, "trap")
            recon = np.clip(recon.reshape(-1, size, size), 0, 1)
            truth = x[:, 0].cpu().numpy()
            t0 = time.perf_counter()
            match = match_reconstructions(recon, truth)
            t_match = time.perf_counter() - t0
            s = match.summary()
            print(f"{size:>5} {batch:>5} {t_step:>14.3f} {t_rec:>14.3f} {t_match:>8.2f} "
                  f"{s['recovered']:>16}/{s['attacked']:<5}")


if __name__ == "__main__":
    main()
