"""The suite's rule steps (called through :func:`fedaudit.catalog.run_step`):

* ``train_classifier`` -- paper 003's target: the slice classifier federation of one scenario
  (with that scenario's update noise on every client's update, or its DP-SGD in every client's
  local steps);
* ``attack`` -- one method against one target (``unet``: the UNet and its BatchNorm-free
  control at the scenario's logged round; ``classifier``: the classifier's global model of the
  attacked round), every training center, a seeded sample of slices; one row per slice;
* ``summary`` -- every row in one CSV, and the classifiers' accuracies.

The three parties stay apart: the client computes its gradient (and adds its defense's noise),
the attacker gets the model, that shared gradient, the mask and only the target knowledge its
method allows, and the evaluator scores against the true slice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fedaudit.atomic import save_npz, write_csv
from fedaudit.io import read_json, write_json
from fedaudit.preprocess.outliers import read_excluded
from fedaudit.runtime import derive_seed

if TYPE_CHECKING:
    import torch

    from fedaudit.catalog import Job

TARGETS = ("unet", "classifier")


def _folders(job: Job, key: str) -> dict[str, list[str]]:
    """center -> its preprocessed patient folders of a split, QC-excluded patients left out
    (a client trains on what passed QC)."""
    excluded = read_excluded(job.input.qc_flags)
    return {c: [f for f in folders if (c, Path(f).name) not in excluded]
            for c, folders in getattr(job.params, key).items()}


def train_classifier(job: Job, log: logging.Logger) -> None:
    """Rule gradinv_classifier: the classifier federation of one scenario."""
    from fedaudit.catalog import catalog, resolve
    from fedaudit.defenses.noise_mod import noise_mod
    from fedaudit.federation.classifier import train_classifier_federation
    from fedaudit.scenarios import noise_defense

    p = job.params
    clf = p.classifier
    noise = noise_defense(p.defenses)
    mods, private = [], None
    spec = None if noise is None else catalog(p.plugins).defenses[noise["name"]]
    if spec is not None and spec.local_training is not None:
        # a defense that noises inside every local step (DP-SGD): each client round builds its
        # own, from the catalog (as the sCT federation's clients do), seeded by that round's seed
        make = resolve(spec.local_training, spec.package)

        def private(seed: int) -> Any:
            return make(noise, seed)
    elif noise is not None:
        mods = [noise_mod(noise, derive_seed(p.seed, "classifier-noise"))]
    result = train_classifier_federation(
        _folders(job, "train_folders"), out_dir=job.output.folder, rounds=clf["rounds"],
        local_epochs=clf["local_epochs"], lr=clf["lr"], batch_size=clf["batch_size"],
        classes=clf["classes"], seed=derive_seed(p.seed, "classifier"),
        val_folders=_folders(job, "val_folders"), test_folders=_folders(job, "test_folders"),
        max_slices_per_volume=clf["max_slices_per_volume"], threads=job.threads,
        client_mods=mods, local_training=private)
    acc = result["accuracy"]
    log.info("classifier federation (%s): %.1f s; accuracy\n%s", job.wildcards.scenario,
             result["seconds"], acc.to_string(index=False))


# ------------------------------------------------------------------------------------ attack


def _method(name: str, settings: dict[str, Any], task: str, suite: dict[str, Any],
            batch_size: int, plugins: tuple[str, ...]) -> Any:
    from fedaudit.catalog import catalog, resolve

    spec = catalog(plugins).attacks[name]
    if spec.method is None:
        raise ValueError(f"attack {name!r} is not a gradient-inversion method")
    return resolve(spec.method, spec.package)(settings, task, suite, batch_size)


def _unet_targets(job: Job, p: Any) -> tuple[dict[str, torch.nn.Module], int]:
    from fedaudit.attacks.dlg.inversion import bn_free_control
    from fedaudit.attacks.views import ServerView

    view = ServerView(job.input.target, p.model_base)
    rounds = view.rounds(p.gradinv["round"])
    if len(rounds) != 1:
        raise ValueError(f"the suite attacks one round; {p.gradinv['round']!r} gives {rounds}")
    unet = view.global_model(view.round(rounds[0]))
    nets = {"unet": unet, "control": bn_free_control(unet)}
    return {k: nets[k] for k in p.gradinv["networks"]}, rounds[0]


def _classifier_target(job: Job, p: Any) -> tuple[dict[str, torch.nn.Module], int]:
    from fedaudit.federation.classifier import load_global_models
    from fedaudit.models.classifier import DLGConvNet
    from fedaudit.models.weights import exchanged_names, set_arrays

    clf = p.gradinv["classifier"]
    rnd = clf["attacked_round"]
    arrays = load_global_models(Path(job.input.target) / "global_models.npz")[rnd]
    net = DLGConvNet(num_classes=clf["classes"])
    set_arrays(net, [arrays[n] for n in exchanged_names(net)])
    return {"classifier": net}, rnd


def _null_partners(provenance: list[dict[str, Any]], null_provenance: list[dict[str, Any]]
                   ) -> list[int]:
    """For attacked slice i, the first null slice from position i on (cyclically) that is not
    the same slice: the null scores a *different* slice of the center."""
    n = len(null_provenance)
    out = []
    for i, q in enumerate(provenance):
        j = next((k % n for k in range(i, i + n) if null_provenance[k % n] != q), i % n)
        out.append(j)
    return out


def _unet_slices(folders: list[str], n: int, seed: int) -> dict[str, Any]:
    from fedaudit.attacks.dlg.inversion import pick_client_slices
    from fedaudit.data.slices import load_volume

    volumes = [load_volume(f) for f in folders]
    mr, ct, mask, prov = pick_client_slices(volumes, n, seed)
    null_mr, _, _, null_prov = pick_client_slices(volumes, n, derive_seed(seed, "null"))
    return {"x": mr, "target": ct, "mask": mask, "provenance": prov, "null": null_mr,
            "null_provenance": null_prov}


def _classifier_slices(folders: list[str], n: int, seed: int, classes: int) -> dict[str, Any]:
    from fedaudit.attacks.dlg.inversion import MIN_AREA_FRACTION
    from fedaudit.data.levels import slice_dataset
    from fedaudit.data.slices import load_volume

    x, y, mask, prov = slice_dataset([load_volume(f) for f in folders], classes)
    # representative slices as for the UNet: a head area of at least MIN_AREA_FRACTION of the
    # largest one of the same patient (the attacker's mask is not used, see below)
    area = mask.flatten(1).sum(1).numpy()
    patients = np.array([q["patient"] for q in prov])
    ok = np.array([area[i] >= MIN_AREA_FRACTION * area[patients == patients[i]].max()
                   for i in range(len(prov))])
    idx = np.flatnonzero(ok)
    if idx.size < n:
        raise ValueError(f"{idx.size} representative slices in {folders}; {n} requested")
    rng = np.random.default_rng(seed)
    pick = rng.choice(idx, size=n, replace=False)
    null = rng.choice(idx, size=n, replace=False)
    # paper 003 reconstructs and scores the whole 32x32 image: the classifier's attacker gets
    # no mask, and the scoring mask is the whole image
    full = np.ones((n, 1, x.shape[-2], x.shape[-1]), bool)
    return {"x": x[pick].numpy(), "target": y[pick].numpy(), "mask": full,
            "provenance": [prov[i] for i in pick], "null": x[null].numpy(),
            "null_provenance": [prov[i] for i in null]}


def _nothing_to_degrade(reference: Any, method: str) -> str | None:
    """Why a noisy scenario's UNet attack is not run, or None to run it: the same method on the
    noise-free reference's UNet (batch 1, every center) recovered no slice. Noise on the shared
    gradient moves the attacker's objective away from the private slice; it cannot make an
    inversion that recovers nothing from the exact gradient recover a slice, so the run could
    only add 0/n (and its cost)."""
    rows = [r for f in ([reference] if isinstance(reference, str) else reference)
            for r in read_json(f)["results"]
            if r["network"] == "unet" and int(r["batch_size"]) == 1]
    if not rows or any(bool(r["success"]) for r in rows):
        return None
    ref = rows[0]["scenario"]
    return (f"{method} recovers 0/{len(rows)} slices of the noise-free {ref} UNet at batch 1; "
            "noise on the gradient cannot make it recover more")


def attack(job: Job, log: logging.Logger) -> None:
    """Rule gradinv: one method against one target, every training center."""
    import torch

    from fedaudit.attacks.gradient_inversion import client_gradient, invert
    from fedaudit.attacks.gradinv.scoring import match_batch, slice_scores
    from fedaudit.defenses.update_noise import perturb_update
    from fedaudit.models.device import resolve_device
    from fedaudit.scenarios import noise_defense

    p, wc = job.params, job.wildcards
    g = p.gradinv
    torch.set_num_threads(max(1, job.threads))
    torch.set_flush_denormal(True)  # sigmoid tails: denormal floats slow CPUs tenfold
    dev = resolve_device(job.device())
    task = "classification" if wc.gradinv_target == "classifier" else "translation"
    noise = noise_defense(p.defenses)
    # decided before the target is loaded: a skipped job reads only the reference's metrics
    skip = _nothing_to_degrade(job.input.get("reference", []), wc.gradinv_method) \
        if noise is not None and task == "translation" else None
    if skip is not None:
        log.info("%s on the UNet of %s not run: %s", wc.gradinv_method, wc.scenario, skip)
        write_json({"results": [], "skipped": skip}, job.output.metrics)
        save_npz(Path(job.output.arrays), compressed=True)
        return
    nets, rnd = (_classifier_target(job, p) if task == "classification"
                 else _unet_targets(job, p))
    batch_sizes = p.method_settings.get("batch_sizes", [1])
    if noise is not None:
        # Under noise the question is how far the attack falls from its unperturbed result:
        # the audited model at batch 1. The BatchNorm-free control and the larger batches are
        # read in the unperturbed scenarios (they cost as much again).
        nets = {k: v for k, v in nets.items() if k != "control"}
        batch_sizes = [1]
    n = g["slices"][task]
    num_classes = g["classifier"]["classes"] if task == "classification" else 0
    methods = {b: _method(wc.gradinv_method, p.method_settings, task, g, b, p.plugins)
               for b in batch_sizes}
    folders = _folders(job, "train_folders")
    rows: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for center, center_folders in folders.items():
        seed = derive_seed(p.seed, "gradinv", center, wc.gradinv_target)
        data = (_classifier_slices(center_folders, max(n, *batch_sizes), seed, num_classes)
                if task == "classification"
                else _unet_slices(center_folders, max(n, *batch_sizes), seed))
        arrays[f"{center}/truth"] = data["x"][:n]
        partners = _null_partners(data["provenance"], data["null_provenance"])
        for net_name, net in nets.items():
            net = net.to(dev)
            for b in batch_sizes:
                method = methods[b]
                groups = [[i] for i in range(n)] if b == 1 else [list(range(b))]
                for gi, members in enumerate(groups):
                    x = torch.from_numpy(data["x"][members]).to(dev)
                    t = torch.as_tensor(data["target"][members]).to(dev)
                    shared = client_gradient(net, x, t, task=task, loss=p.loss)
                    if noise is not None:
                        # the client's noise on the attacked gradient, seeded so the experiment
                        # repeats; the attacker never uses the seed (the noise_replay attack is
                        # the one that tries to regenerate noise)
                        seed_n = derive_seed(p.seed, "gradinv-noise", wc.scenario, center,
                                             net_name, b, gi)
                        shared = [torch.from_numpy(a) for a in perturb_update(
                            [s.cpu().numpy() for s in shared], noise, seed_n)]
                    known = data["target"][members] if method.target == "known" else None
                    res = invert(net, shared, method, task=task, shape=tuple(x.shape),
                                 seed=derive_seed(p.seed, "gradinv-dummy", center, gi),
                                 mask=None if task == "classification"
                                 else data["mask"][members],
                                 known_target=known, num_classes=num_classes,
                                 loss=p.loss, device=dev)
                    recon = res.reconstruction[:, 0]
                    truth = data["x"][members][:, 0]
                    msk = data["mask"][members][:, 0]
                    order, scores = match_batch(truth, recon, msk, g["success_ssim"])
                    if b == 1:
                        arrays[f"{center}/{net_name}/{members[0]}"] = recon[0]
                    for j, i in enumerate(members):
                        null = slice_scores(truth[j], data["null"][partners[i]][0], msk[j])
                        row = {"scenario": wc.scenario, "target": wc.gradinv_target,
                               "network": net_name, "method": wc.gradinv_method, "center": center,
                               "batch_size": b, "round": rnd, "slice": i,
                               "patient": data["provenance"][i]["patient"],
                               "axial_index": data["provenance"][i]["axial_index"],
                               "label_target": method.target,
                               **scores[j],
                               "success": bool(scores[j]["ssim"] >= g["success_ssim"]),
                               "null_ssim": null["ssim"],
                               "null_success": bool(null["ssim"] >= g["success_ssim"]),
                               "evaluations": res.evaluations / b,
                               "seconds_per_image": res.seconds / b,
                               "objective": res.objective,
                               "stopped_early": res.stopped_early,
                               "noise": None if noise is None else noise["name"]}
                        if task == "classification":
                            true_label = int(data["target"][i])
                            row["label_true"] = true_label
                            row["label_recovered"] = int(res.label[order[j]])
                            row["label_correct"] = row["label_recovered"] == true_label
                        rows.append(row)
                    log.info("%s on %s (%s), center %s, batch %d, slices %s: fitted SSIM %s, "
                             "%.2f s/image", wc.gradinv_method, net_name, wc.scenario, center, b,
                             members, [round(s["ssim"], 3) for s in scores],
                             res.seconds / b)
    write_json({"results": rows}, job.output.metrics)
    out = Path(job.output.arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, compressed=True, **arrays)


def summary(job: Job, log: logging.Logger) -> None:
    """Rule gradinv_summary: every attacked slice in one CSV; the classifiers' accuracies."""
    rows = [r for f in job.input.metrics for r in read_json(f)["results"]]
    frame = pd.DataFrame(rows)
    write_csv(frame, job.output.table, index=False)
    acc = []
    for scenario, folder in zip(job.params.classifier_scenarios, job.input.classifiers,
                                strict=True):
        a = pd.read_csv(Path(folder) / "accuracy.tsv", sep="\t")
        a.insert(0, "scenario", scenario)
        acc.append(a)
    write_csv(pd.concat(acc) if acc else pd.DataFrame(), job.output.classifier, index=False)
    pooled = frame.groupby(["scenario", "target", "network", "method", "batch_size"]).agg(
        attacked=("success", "size"), asr=("success", "mean"), ssim=("ssim", "mean"),
        null_asr=("null_success", "mean"))
    log.info("gradient inversion, per setting:\n%s", pooled.round(3).to_string())
    log.info("settings: %s", json.dumps(job.params.settings, sort_keys=True))
