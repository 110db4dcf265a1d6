"""Time per attacked image of paper 003's suite (CPL, DLG, iDLG, Inverting Gradients) as
:mod:`fedaudit.attacks.gradinv` runs it: on the sCT UNet at 64² (the demo) and 256² (paper
scale) and on the slice classifier at 32², with the demo's objective-evaluation budgets.

    python benchmarks/gradinv_speed.py                         # CPU, 1 thread as a rule runs
    python benchmarks/gradinv_speed.py --sizes 64 256 --base 64 --device cuda  # paper UNet

One evaluation is one gradient-matching objective with double backpropagation. Weights are
random (speed does not depend on them) and the slice is synthetic; a short warm-up precedes each
timed attack. Prints seconds per image and evaluations per second for every method and network.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fedaudit.attacks.gradient_inversion import Method, client_gradient, invert
from fedaudit.catalog import catalog, fragment_defaults, resolve
from fedaudit.federation.classifier import initial_classifier
from fedaudit.models.device import resolve_device
from fedaudit.models.unet import UNet2D

METHODS = ("dlg", "cpl", "idlg", "inverting_gradients")


def synthetic(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, x = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    mask = (y / 0.45) ** 2 + (x / 0.38) ** 2 < 1
    rng = np.random.default_rng(0)
    mr = np.where(mask, 0.5 + 0.1 * rng.standard_normal((size, size)), 0.0)
    ct = np.where(mask, 0.27 + 0.05 * rng.standard_normal((size, size)), 0.006)
    return (mr[None, None].astype(np.float32), ct[None, None].astype(np.float32),
            mask[None, None])


def method(name: str, task: str, evaluations: int) -> Method:
    spec = catalog().attacks[name]
    suite = {"evaluations": {task: evaluations}, "sct_target": "known"}
    return resolve(spec.method, spec.package)(fragment_defaults(spec.folder), task, suite, 1)


def time_one(net: torch.nn.Module, m: Method, task: str, x: np.ndarray, target: np.ndarray,
             mask: np.ndarray | None, device: torch.device) -> tuple[float, int]:
    xt = torch.from_numpy(x).to(device)
    tt = torch.as_tensor(target).to(device)
    g = client_gradient(net.to(device), xt, tt, task=task)
    known = target if m.target == "known" else None
    kwargs = {"task": task, "shape": tuple(x.shape), "seed": 0, "mask": mask,
              "known_target": known, "num_classes": 4, "device": device}
    warm = Method(**{**m.__dict__, "evaluations": 3, "restarts": 1})
    invert(net, g, warm, **kwargs)
    t0 = time.perf_counter()
    res = invert(net, g, m, **kwargs)
    return time.perf_counter() - t0, res.evaluations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--base", type=int, default=8, help="UNet width (demo 8, paper 64)")
    ap.add_argument("--evaluations", type=int, default=20,
                    help="timed evaluations per UNet attack (the time scales linearly)")
    ap.add_argument("--classifier-evaluations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    device = resolve_device(args.device)
    print(f"device {device}, {args.threads} thread(s)")
    print(f"{'network':<28}{'method':<22}{'s/image':>10}{'eval/s':>10}")
    clf = initial_classifier(0, 4)
    x, _, _ = synthetic(32)
    for name in METHODS:
        m = method(name, "classification", args.classifier_evaluations)
        seconds, evals = time_one(clf, m, "classification", x, np.array([1]), None, device)
        print(f"{'classifier 32x32':<28}{name:<22}{seconds:>10.2f}{evals / seconds:>10.1f}")
    for size in args.sizes:
        net = UNet2D(base=args.base)
        mr, ct, mask = synthetic(size)
        for name in METHODS:
            m = method(name, "translation", args.evaluations)
            seconds, evals = time_one(net, m, "translation", mr, ct, mask, device)
            print(f"{f'UNet base {args.base} {size}x{size}':<28}{name:<22}{seconds:>10.2f}"
                  f"{evals / seconds:>10.1f}")
    print("UNet times are for --evaluations each; the demo runs 100, paper scale ~6,000 "
          "(DLG/CPL/iDLG: 300 L-BFGS steps of up to 20) to 24,000 (GradInv): multiply.")


if __name__ == "__main__":
    main()
