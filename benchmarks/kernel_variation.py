"""How far "same seed, same numbers on CPU" holds: the same seed's federation trained under each
CPU kernel choice and thread count on this machine, compared with a reference run.

    python benchmarks/kernel_variation.py                   # 10 runs, 2-6 minutes on 2 cores
    python benchmarks/kernel_variation.py --rounds 4 --size 32  # smaller and faster

One tiny federated study (``tests/fl_study.py``: three centers, synthetic head phantoms) and one
synthetic held-out patient are written once; then the same plan (same seed, data and
hyper-parameters) is trained with the project's federation code
(:func:`fedaudit.federation.run.train_federation`, in-process backend, float32 on the CPU) once
per setting, each in a fresh subprocess whose environment is set before torch is imported:

- ``ATEN_CPU_CAPABILITY`` in {default, avx2, avx512} (those this CPU runs): the vector width of
  ATen's own kernels (element-wise ops, reductions, BatchNorm, fused Adam).
  ``torch.backends.cpu.get_cpu_capability()`` records what was used;
- torch threads in {1, 2} (``plan.threads``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``);
- the reference setting again, and its 2-thread setting again, to show whether a run is
  bit-identical with itself (each repeat is compared with its own first run);
- the reference with the plan's seed + 1 (same data), for scale: what a seed change does;
- one extra run with oneDNN also capped at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``): convolutions run
  in oneDNN, which picks its own ISA whatever ``ATEN_CPU_CAPABILITY`` says, so "avx2" + this cap
  is how an AVX2-only CPU would run the network.

Each run is compared with the reference (the widest ATen kernels this CPU has, oneDNN
unrestricted, 1 thread: the demo's ``execution.train.threads``): the final global model's
exchanged arrays (bit-identical or not; max absolute and relative L2 difference of the
trainable parameters, relative L2 difference of the BatchNorm running statistics) and the
in-mask MAE in HU of its sCT on the held-out patient
(:func:`fedaudit.evaluation.inference.predict_volume` with median3 fusion, then
:func:`fedaudit.evaluation.metrics.mae`, run in the same subprocess, so under the same setting),
plus the largest voxel difference of that sCT. Training times are reported but depend on what
else the machine runs (the load average is recorded). Results go to
``results/benchmarks/kernel_variation.{json,md}``; the table is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"
CAPABILITIES = ("avx512", "avx2", "default")  # ATEN_CPU_CAPABILITY values, widest first
THREADS = (1, 2)
ONEDNN_CAP = "AVX2"  # the extra run's ONEDNN_MAX_CPU_ISA

PROBE = """
import json, torch
from fedaudit.models.unet import UNet2D
x = torch.rand(8, 1, 32, 32).contiguous(memory_format=torch.channels_last)
UNet2D(base=8).to(memory_format=torch.channels_last)(x)
print("PROBE " + json.dumps({"aten": torch.backends.cpu.get_cpu_capability(),
                             "torch": torch.__version__}), flush=True)
"""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One run's CPU kernels and threads."""

    label: str
    aten: str  # ATEN_CPU_CAPABILITY
    threads: int
    onednn: str | None = None  # ONEDNN_MAX_CPU_ISA, None: unrestricted
    seed_offset: int = 0  # added to the plan's seed (the data stay those of the seed)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
            env.pop(var, None)
        env["ATEN_CPU_CAPABILITY"] = self.aten
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(self.threads)
        if self.onednn:
            env["ONEDNN_MAX_CPU_ISA"] = self.onednn
        env["FLWR_TELEMETRY_ENABLED"] = "0"
        return env


# ---------------------------------------------------------------- the machine and its kernels


def machine() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    have = set(flags.group(1).split()) if flags else set()
    return {"cpu": model.group(1).strip() if model else platform.processor() or "unknown",
            "cores": os.cpu_count(), "avx2": "avx2" in have, "avx512f": "avx512f" in have,
            "python": platform.python_version(), "platform": platform.platform()}


def probe(setting: Setting) -> dict[str, Any]:
    """ATen's capability and oneDNN's ISA (from its verbose log of one UNet forward) under
    ``setting``'s environment."""
    env = setting.env() | {"ONEDNN_VERBOSE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    info = json.loads(next(line[6:] for line in done.stdout.splitlines()
                           if line.startswith("PROBE ")))
    isa = re.search(r"onednn_verbose,.*,info,cpu,isa:(.+)", done.stdout)
    impls = sorted(set(re.findall(r"exec,cpu,convolution,([^,]+)", done.stdout)))
    info["onednn_isa"] = isa.group(1).strip() if isa else "oneDNN not used"
    info["onednn_conv"] = impls
    return info


def settings(supported: list[str]) -> list[tuple[Setting, int]]:
    """(setting, index of the run it is compared with): the reference first, then the grid, the
    extra oneDNN-capped run, repeats of the reference and of its 2-thread run (each compared
    with its own first run), and the reference with the seed + 1 (the scale of a seed change)."""
    cap = supported[0]
    ref = Setting(f"{cap}, 1 thread (reference)", cap, 1)
    grid = [Setting(f"{c}, {n} thread{'s' * (n > 1)}", c, n)
            for c in supported for n in THREADS if (c, n) != (cap, 1)]
    extra = ([Setting(f"avx2 + oneDNN {ONEDNN_CAP}, 1 thread", "avx2", 1, ONEDNN_CAP)]
             if "avx2" in supported else [])
    runs = [(ref, 0), *((g, 0) for g in grid), *((e, 0) for e in extra)]
    runs.append((Setting(f"{cap}, 1 thread (reference, repeated)", cap, 1), 0))
    two = next(i for i, (g, _) in enumerate(runs) if (g.aten, g.threads) == (cap, 2))
    runs.append((Setting(f"{cap}, 2 threads (repeated)", cap, 2), two))
    # for scale: what changing the seed alone does, on the same data and kernels
    runs.append((Setting(f"{cap}, 1 thread, seed + 1", cap, 1, seed_offset=1), 0))
    return runs


# ---------------------------------------------------------------- one run (in its subprocess)


def worker(spec_path: Path) -> None:
    """Train the plan of ``spec_path`` under this process's environment; write the final model's
    arrays, the held-out sCT and a summary next to it."""
    import torch  # the environment (kernels, threads) is already set by the parent

    sys.path.insert(0, str(ROOT / "tests"))
    from fl_study import tiny_plan

    from fedaudit.data.slices import load_volume
    from fedaudit.evaluation.inference import predict_volume
    from fedaudit.evaluation.metrics import mae
    from fedaudit.federation.local import LocalConfig
    from fedaudit.federation.plan import ClientData
    from fedaudit.federation.run import train_federation
    from fedaudit.models.store import load_model
    from fedaudit.models.weights import exchanged_names, get_arrays

    spec = json.loads(spec_path.read_text())
    out = Path(spec["out_dir"])
    torch.set_num_threads(spec["threads"])
    clients = tuple(ClientData(c["center"], tuple(c["train"]), tuple(c["val"]))
                    for c in spec["clients"])
    local = LocalConfig(**spec["local"])
    plan = tiny_plan(clients, out / "run", seed=spec["seed"], rounds=spec["rounds"],
                     model_base=spec["base"], threads=spec["threads"], local=local)
    t0 = time.perf_counter()
    res = train_federation(plan)
    seconds = time.perf_counter() - t0
    model = load_model(out / "run" / "model.pt")
    np.savez(out / "weights.npz", **dict(zip(exchanged_names(model), get_arrays(model),
                                             strict=True)))
    vol = load_volume(spec["holdout"])
    sct = predict_volume(model, vol.mr, vol.mask, fusion="median3", device="cpu")
    np.save(out / "sct.npy", sct)
    hist = res["history"]
    last = hist[hist["round"] == hist["round"].max()]
    by_round = hist.groupby("round")["val_mae"].mean()
    summary = {"aten_used": torch.backends.cpu.get_cpu_capability(),
               "threads_used": torch.get_num_threads(), "train_seconds": seconds,
               "holdout_mae_hu": mae(vol.ct, sct, vol.mask),
               "val_mae_last_round_hu": dict(zip(last["center"], last["val_mae"], strict=True)),
               "mean_val_mae_by_round_hu": {int(r): float(v) for r, v in by_round.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


# ---------------------------------------------------------------- the parent


def build_study(root: Path, size: int, seed: int) -> tuple[list[dict[str, Any]], str]:
    """The tiny study of tests/fl_study.py and one held-out patient of the same generator."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fl_study import make_study, write_patient

    clients = make_study(root / "study", {"A": 1, "B": 2, "C": 2}, size=size, seed=seed)
    holdout = root / "holdout" / "H000"
    write_patient(holdout, np.random.default_rng(seed + 1), size)
    return [dataclasses.asdict(c) for c in clients], str(holdout)


def run_one(setting: Setting, spec: dict[str, Any], folder: Path, timeout: float) -> Path:
    folder.mkdir(parents=True)
    spec = spec | {"out_dir": str(folder), "threads": setting.threads,
                   "seed": spec["seed"] + setting.seed_offset}
    (folder / "spec.json").write_text(json.dumps(spec, indent=1))
    with open(folder / "log.txt", "w") as log:
        done = subprocess.run([sys.executable, __file__, "--worker", str(folder / "spec.json")],
                              env=setting.env(), stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    if done.returncode:
        tail = (folder / "log.txt").read_text()[-3000:]
        raise RuntimeError(f"{setting.label}: worker failed ({done.returncode})\n{tail}")
    return folder


def _diff(a: np.lib.npyio.NpzFile, b: np.lib.npyio.NpzFile, names: list[str]
          ) -> dict[str, float]:
    wa = np.concatenate([a[k].ravel() for k in names]).astype(np.float64)
    wb = np.concatenate([b[k].ravel() for k in names]).astype(np.float64)
    diff = np.abs(wa - wb)
    return {"max_abs": float(diff.max()),
            "rel_l2": float(np.linalg.norm(wa - wb) / np.linalg.norm(wa)),
            "fraction_differing": float(np.mean(diff > 0)), "n": int(wa.size)}


def compare(ref: Path, other: Path) -> dict[str, Any]:
    """Final global model and held-out sCT of run ``other`` against run ``ref``: all exchanged
    arrays, and separately the trainable parameters and the BatchNorm running statistics."""
    a, b = np.load(ref / "weights.npz"), np.load(other / "weights.npz")
    stats = [k for k in a.files if k.endswith(("running_mean", "running_var"))]
    params = [k for k in a.files if k not in stats]
    everything = _diff(a, b, a.files)
    sa, sb = np.load(ref / "sct.npy"), np.load(other / "sct.npy")
    return {"bit_identical": all(a[k].tobytes() == b[k].tobytes() for k in a.files),
            "max_abs_weight_diff": everything["max_abs"],
            "rel_l2_weight_diff": everything["rel_l2"],
            "fraction_weights_differing": everything["fraction_differing"],
            "n_weights": everything["n"], "parameters": _diff(a, b, params),
            "bn_running_stats": _diff(a, b, stats),
            "max_abs_sct_diff_hu": float(np.abs(sa.astype(np.float64) - sb).max())}


def conv_isa(probed: dict[str, Any]) -> str:
    """The ISA suffixes of oneDNN's convolution implementations, e.g. ``avx512_core``."""
    isas = sorted({part.split(":")[-1] for impl in probed["onednn_conv"]
                   for part in impl.split("+")})
    return ", ".join(isas) or "none"


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| setting | compared with | ATen kernels used | oneDNN conv | threads | bit-identical "
            "| max abs Δ params | rel. L2 Δ params | rel. L2 Δ BN stats | held-out MAE (HU) "
            "| Δ MAE (HU) | max abs ΔsCT (HU) | train s |")
    lines = [head, "|" + "---|" * (head.count(" | ") + 1)]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['compared_with']} | {r['aten_used']} "
            f"| {r['onednn_conv_isa']} | {r['threads_used']} "
            f"| {'yes' if r['bit_identical'] else 'no'} | {r['parameters']['max_abs']:.2g} "
            f"| {r['parameters']['rel_l2']:.2g} | {r['bn_running_stats']['rel_l2']:.2g} "
            f"| {r['holdout_mae_hu']:.2f} | {r['delta_mae_hu']:+.2f} "
            f"| {r['max_abs_sct_diff_hu']:.1f} | {r['train_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=42, help="the plan's (and the data's) seed")
    ap.add_argument("--size", type=int, default=48, help="voxels per side of the phantoms")
    ap.add_argument("--base", type=int, default=8, help="UNet width (the demo's: 8)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--slices", type=int, default=16, help="max slices per volume per round")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return

    mach = machine()
    candidates = [Setting(c, c, 1) for c in CAPABILITIES]
    probes = {s.aten: probe(s) for s in candidates}
    # ATen falls back silently to a narrower kernel set when the CPU lacks one: keep only those
    # this CPU really runs
    supported = [c for c in CAPABILITIES if probes[c]["aten"].lower() == c]
    plan = settings(supported)
    local = {"lr": 0.005, "batch_size": 8, "max_slices_per_volume": args.slices,
             "val_max_slices": 8, "proximal_mu": 0.01, "lr_schedule": "cosine",
             "augment": False, "num_workers": 0}
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kernel_variation_") as tmp:
        clients, holdout = build_study(Path(tmp), args.size, args.seed)
        spec = {"clients": clients, "holdout": holdout, "seed": args.seed,
                "rounds": args.rounds, "base": args.base, "local": local}
        folders = []
        for i, (s, _) in enumerate(plan):
            t0 = time.perf_counter()
            folders.append(run_one(s, spec, Path(tmp) / f"run{i}", args.timeout))
            print(f"[{i + 1}/{len(plan)}] {s.label}: {time.perf_counter() - t0:.1f} s",
                  flush=True)
        summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
        for (s, base), folder, summ in zip(plan, folders, summaries, strict=True):
            pr = probe(s) if s.onednn else probes[s.aten]
            rows.append({"setting": s.label, "compared_with": plan[base][0].label,
                         "ATEN_CPU_CAPABILITY": s.aten, "ONEDNN_MAX_CPU_ISA": s.onednn,
                         "threads_requested": s.threads, "onednn_isa": pr["onednn_isa"],
                         "onednn_conv": pr["onednn_conv"], "onednn_conv_isa": conv_isa(pr),
                         **summ, **compare(folders[base], folder),
                         "delta_mae_hu": summ["holdout_mae_hu"]
                         - summaries[base]["holdout_mae_hu"]})
    table = markdown(rows)
    result = {
        "benchmark": "kernel_variation", "date_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": mach, "torch": probes[supported[0]]["torch"], "seed": args.seed,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "study": {"centers": {"A": 1, "B": 2, "C": 2}, "size": args.size, "base": args.base,
                  "rounds": args.rounds, "local": local, "backend": "inprocess",
                  "holdout": "one synthetic patient (tests/fl_study.write_patient, seed + 1)",
                  "inference": "predict_volume(fusion='median3'), in-mask MAE"},
        "reference": rows[0]["setting"], "supported_aten": supported, "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernel_variation.json").write_text(json.dumps(result, indent=1) + "\n")
    header = (f"Kernel variation, {result['date_utc']}: {mach['cpu']}, {mach['cores']} cores, "
              f"torch {result['torch']}, seed {args.seed}; reference: {rows[0]['setting']}; "
              f"{args.rounds} rounds, 3 centers, {args.size}^3 phantoms, UNet base {args.base}; "
              f"load average {result['load_average_before_after']} (before, after).\n\n")
    (args.out / "kernel_variation.md").write_text(header + table)
    print(header + table)


if __name__ == "__main__":
    main()
