"""Per-step preprocessing timings on synthetic head phantoms (tests/phantoms.py).

Usage: python benchmarks/preprocess_timing.py [--threads 2] [--sizes demo,full]
                                              [--backends simpleitk,ants]

"demo": CT 64x64x52 at 3.75 mm, MR 3.5 mm, cube 64^3. "full": CT 256x256x196 at
0.94x0.94x1 mm (the 256^3-ish case of paper 000 "Datasets"), MR 1 mm, cube 256^3. The MR is the
CT anatomy moved by a known rigid transform (8 deg, ~40 mm) with a smooth bias field. Each
(size, backend) pair runs in a fresh process, because ITK reads its thread count once, when
ANTsPy is imported. Prints a table; asserts nothing. The "n4" column includes check_mask (an
Otsu threshold, < 0.5 s at 256^3); "norm" includes apply_mask.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    # name: (CT spacing (x, y, z) mm, MR spacing mm, cube size)
    "demo": ((3.75, 3.75, 3.75), 3.5, 64),
    "full": ((240.0 / 256, 240.0 / 256, 1.0), 1.0, 256),
}


def run_one(size: str, backend: str, threads: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    import phantoms as P

    from fedaudit.preprocess.mask import apply_mask, check_mask, head_mask_from_ct
    from fedaudit.preprocess.n4 import n4_correct
    from fedaudit.preprocess.normalize import normalize_mr
    from fedaudit.preprocess.register import rigid_error, rigid_register
    from fedaudit.preprocess.resample import to_cube
    from fedaudit.runtime import set_threads

    set_threads(threads)
    ct_sp, mr_sp, cube = SIZES[size]
    t = time.perf_counter()
    n = [int(round(f / s)) for f, s in zip(P.CT_FOV_MM, ct_sp, strict=True)]
    ct_grid = P.make_grid(tuple(n), ct_sp, P.CT_FOV_CENTRE)
    ct, labels = P.ct_phantom(grid=ct_grid)
    truth = P.euler((3.0, -4.0, 6.0), (25.0, -20.0, 30.0))
    mr, _, _ = P.mr_phantom(mr_sp, fixed_to_moving=truth, bias=True)
    gen = time.perf_counter() - t

    times: dict[str, float] = {}
    t = time.perf_counter()
    mask = head_mask_from_ct(ct)
    times["mask"] = time.perf_counter() - t
    t = time.perf_counter()
    reg = rigid_register(ct, mr, backend=backend, fixed_mask=mask, threads=threads)
    times["registration"] = time.perf_counter() - t
    disp, ang = rigid_error(reg.transform, truth, P.head_points(labels))
    t = time.perf_counter()
    cov = check_mask(mask, reg.moving_resampled)["coverage"]
    n4 = n4_correct(reg.moving_resampled, mask, backend=backend, threads=threads)
    times["n4"] = time.perf_counter() - t
    t = time.perf_counter()
    ct_m, mr_m = apply_mask(ct, n4.corrected, mask)
    mr_n = normalize_mr(mr_m, mask)
    times["normalise"] = time.perf_counter() - t
    t = time.perf_counter()
    to_cube(mr_n, ct_m, mask, size=cube)
    times["to_cube"] = time.perf_counter() - t
    return {"size": size, "backend": backend, "threads": threads, "ct_size": list(ct.GetSize()),
            "mr_size": list(mr.GetSize()), "phantom_s": gen, **times,
            "reg_err_mm": disp, "reg_err_deg": ang, "mask_coverage": cov}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="demo,full")
    ap.add_argument("--backends", default="simpleitk,ants")
    ap.add_argument("--one", nargs=2, metavar=("SIZE", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.threads)))
        return
    rows = []
    for size in args.sizes.split(","):
        for backend in args.backends.split(","):
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads),
                                  "--one", size, backend], capture_output=True, text=True,
                                 check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{r['size']:5s} {r['backend']:9s} CT {r['ct_size']} MR {r['mr_size']} "
                  f"reg {r['registration']:6.1f}s  n4 {r['n4']:5.1f}s  mask {r['mask']:5.2f}s  "
                  f"norm {r['normalise']:5.2f}s  cube {r['to_cube']:5.2f}s  "
                  f"(reg err {r['reg_err_mm']:.2f} mm / {r['reg_err_deg']:.2f} deg, "
                  f"coverage {r['mask_coverage']:.3f})", flush=True)


if __name__ == "__main__":
    main()
