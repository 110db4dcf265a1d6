"""Speed of FedMIA's measurement (:func:`fedaudit.attacks.fedmia.algorithm.similarity_matrix`):
per-sample gradients with ``torch.func`` (functional_call + vmap(grad)) against a loop of
backward passes, and what one round of a candidate set would take.

    python benchmarks/fedmia_speed.py                                  # CPU demo network
    python benchmarks/fedmia_speed.py --base 64 --size 256 --device cuda --chunk 8   # paper scale

The weights and slices are random (speed does not depend on them). A warm-up chunk precedes the
timed runs (allocator, kernel choice).
"""

from __future__ import annotations

import argparse
import time

import torch

from fedaudit.attacks.fedmia.algorithm import (
    Candidates,
    per_sample_gradients_loop,
    similarity_matrix,
    trainable_names,
)
from fedaudit.models.device import resolve_device
from fedaudit.models.unet import UNet2D, count_parameters


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=1500,
                    help="candidate slices per round to extrapolate to (paper scale: ~30 "
                         "patients x 3 orientations x 16 slices)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    torch.manual_seed(0)
    model = UNet2D(base=args.base).to(dev)
    n_par = count_parameters(model)
    mr = torch.rand(args.samples, 1, args.size, args.size)
    ct = torch.rand(args.samples, 1, args.size, args.size)
    cand = Candidates(mr, ct, *([None] * 4))
    p = sum(dict(model.named_parameters())[n].numel() for n in trainable_names(model))
    updates = [torch.randn(p) for _ in range(args.clients)]
    warm = Candidates(mr[:args.chunk], ct[:args.chunk], *([None] * 4))
    similarity_matrix(model, updates, warm, chunk_size=args.chunk)
    _sync(dev)
    t0 = time.perf_counter()
    similarity_matrix(model, updates, cand, chunk_size=args.chunk)
    _sync(dev)
    fast = args.samples / (time.perf_counter() - t0)
    n_loop = min(args.samples, 16)
    t0 = time.perf_counter()
    per_sample_gradients_loop(model, mr[:n_loop].to(dev), ct[:n_loop].to(dev))
    _sync(dev)
    loop = n_loop / (time.perf_counter() - t0)
    print(f"UNet base {args.base} ({n_par:,} parameters), {args.size}x{args.size}, {dev}, "
          f"{args.threads} threads, chunk {args.chunk}, {args.clients} clients")
    print(f"  vmap(grad) + cosine:  {fast:8.1f} samples/s")
    print(f"  loop of backward():   {loop:8.1f} samples/s  (x{fast / loop:.1f} for vmap)")
    print(f"  one round of {args.candidates} candidates: {args.candidates / fast / 60:.1f} min")


if __name__ == "__main__":
    main()
