"""One evasion job: the malicious client crafts perturbations of its test slices on its own
last-round local model (white-box), the evaluator scores them on every model (paper 004 §III,
§IV-C; Algorithm 1, lines 11-14, at test time).

Parties, kept apart here:

- **attacker** (:func:`craft_all`): its own test slices (MR and, for the untargeted objective,
  their CT -- its own patients' ground truth, which paper 004's adversary also holds: it attacks
  its own labelled test data), its own local model; it never sees another model;
- **evaluator** (:func:`score`): every model's sCT of the clean and the perturbed MR against
  the true CT, in HU (:mod:`.metrics`).

Slices: the head-containing axial slices of the attacker's test patients whose head area is at
least :data:`MIN_AREA_FRACTION` of the patient's largest (the caps of the skull hold a few dozen
voxels, where one slice's MAE says little), ``slices`` of them spread evenly over the patients
and, within a patient, evenly through the head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedaudit.attacks.evasion import metrics
from fedaudit.attacks.evasion.algorithm import (
    Attack,
    craft,
    random_sign,
    sct_error,
    sct_region_target,
)
from fedaudit.attacks.evasion.sweep import NULL, Setting
from fedaudit.data.slices import Volume, slice_indices
from fedaudit.intensity import hu_to_unit, unit_to_hu
from fedaudit.runtime import derive_seed

MIN_AREA_FRACTION = 0.25


@dataclass
class Slices:
    """The attacker's test slices: ``mr`` in [0, 1], ``ct_hu`` (HU), ``mask`` -- each
    ``[N, 1, H, W]`` -- and per slice ``{"patient", "axial_index"}``."""

    mr: np.ndarray
    ct_hu: np.ndarray
    mask: np.ndarray
    provenance: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.provenance)


def _even(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)`` (all of them when k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def attack_slices(volumes: list[Volume], n: int) -> Slices:
    """Up to ``n`` representative axial test slices, spread evenly over ``volumes`` (module
    docstring); fewer when the patients hold fewer."""
    if not volumes:
        raise ValueError("the attacker has no test patient to craft perturbations on")
    candidates = []
    for vol in volumes:
        idx = slice_indices(vol, "axial")
        areas = vol.mask[idx].sum(axis=(1, 2)) if idx.size else np.array([])
        candidates.append(idx[areas >= MIN_AREA_FRACTION * areas.max()] if idx.size else idx)
    share = [n // len(volumes) + (i < n % len(volumes)) for i in range(len(volumes))]
    # what a small patient cannot give goes to the others, in order
    spare = sum(max(0, s - c.size) for s, c in zip(share, candidates, strict=True))
    for i, c in enumerate(candidates):
        extra = min(spare, max(0, c.size - share[i]))
        share[i], spare = share[i] + extra, spare - extra
    mr, ct, mask, prov = [], [], [], []
    for vol, cand, k in zip(volumes, candidates, share, strict=True):
        for j in cand[_even(cand.size, k)] if k else []:
            mr.append(vol.mr[j])
            ct.append(vol.ct[j])
            mask.append(vol.mask[j])
            prov.append({"patient": vol.name, "axial_index": int(j)})
    if not prov:
        raise ValueError(f"no head-containing axial slice in {[v.name for v in volumes]}")
    return Slices(np.stack(mr)[:, None].astype(np.float32),
                  np.stack(ct)[:, None].astype(np.float32),
                  np.stack(mask)[:, None].astype(bool), prov)


@torch.no_grad()
def predict_hu(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """The model's sCT of ``x`` ([N, 1, H, W]) in HU, eval mode, float32 (``[N, 1, H, W]``)."""
    model.eval()
    out = [unit_to_hu(model(x[i:i + batch_size]).float()).cpu().numpy()
           for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(out).astype(np.float32)


def craft_all(whitebox: torch.nn.Module, data: Slices, settings: list[Setting],
              cfg: Mapping[str, Any], seed: int, device: torch.device
              ) -> dict[str, tuple[np.ndarray, np.ndarray, list[float]]]:
    """The attacker's side: per setting, the indices of the attacked slices, their perturbed MR
    and the crafting seconds per batch (the null's random corners take no gradient: []).

    Untargeted: every slice, objective :func:`~.algorithm.sct_error`. Targeted: the slices
    whose region (head voxels with CT > ``targeted.region_hu``) has at least
    ``targeted.min_voxels`` voxels, objective :func:`~.algorithm.sct_region_target`. Seeds
    depend on the setting, not on the scenario, so every scenario gets the same random starts
    and the same null."""
    tcfg = cfg["targeted"]
    bs = int(cfg["batch_size"])
    x_all = torch.from_numpy(data.mr).to(device)
    ct_unit = torch.from_numpy(hu_to_unit(data.ct_hu)).to(device)
    mask = torch.from_numpy(data.mask).to(device)
    region = mask & (torch.from_numpy(data.ct_hu).to(device) > float(tcfg["region_hu"]))
    targeted_idx = np.flatnonzero(region.flatten(1).sum(1).cpu().numpy()
                                  >= int(tcfg["min_voxels"]))
    whitebox = whitebox.to(device).eval()
    out = {}
    for s in settings:
        idx = np.arange(len(data)) if s.goal == "untargeted" else targeted_idx
        if idx.size == 0:
            continue
        sel = torch.from_numpy(idx).to(device)
        x = x_all[sel]
        if s.method == NULL:
            g = torch.Generator().manual_seed(derive_seed(seed, "evasion-null", s.key))
            out[s.key] = (idx, random_sign(x, s.epsilon, g).cpu().numpy(), [])
            continue
        attack = Attack(s.method, s.epsilon, s.alpha, s.steps, s.random_start,
                        targeted=s.goal == "targeted")
        if s.goal == "untargeted":
            def objective_for(part: slice, _t=ct_unit[sel], _m=mask[sel]):
                return sct_error(_t[part], _m[part])
        else:
            def objective_for(part: slice, _r=region[sel]):
                return sct_region_target(_r[part], float(tcfg["target_hu"]))
        x_adv, seconds = craft(whitebox, x, objective_for, attack, batch_size=bs,
                               seed=derive_seed(seed, "evasion", s.key))
        out[s.key] = (idx, x_adv.cpu().numpy(), seconds)
    return out


def constant_mae(data: Slices, constant_hu: float) -> float:
    """The constant predictor's in-mask MAE (HU) over the attacked slices."""
    return float(np.abs(float(constant_hu) - data.ct_hu)[data.mask].mean())


def score(models: Mapping[str, tuple[str, torch.nn.Module]], data: Slices,
          settings: list[Setting], crafted: Mapping[str, tuple[np.ndarray, np.ndarray,
                                                                list[float]]],
          cfg: Mapping[str, Any], device: torch.device, constant_hu: float | None = None
          ) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """The evaluator's side: one row per (setting, model, attacked slice) with the clean and
    adversarial in-mask MAE, the region's mean sCT and distance to the target HU, and the
    perturbation's size; and which models are usable: a finite clean output (noise on
    BatchNorm's running variances can leave a model that outputs NaN) and, given the constant
    predictor's value ``constant_hu``, a clean in-mask MAE over the attacked slices below that
    predictor's on the same slices -- an error a model that has learnt nothing already makes
    is no evidence of an attack."""
    tcfg = cfg["targeted"]
    bs = int(cfg["batch_size"])
    target_hu = float(tcfg["target_hu"])
    region = data.mask & (data.ct_hu > float(tcfg["region_hu"]))
    x_clean = torch.from_numpy(data.mr).to(device)
    clean, usable = {}, {}
    for name, (_, model) in models.items():
        model.to(device).eval()
        sct = predict_hu(model, x_clean, bs)
        usable[name] = bool(np.isfinite(sct[data.mask]).all())
        if usable[name] and constant_hu is not None:
            usable[name] = bool(np.abs(sct - data.ct_hu)[data.mask].mean()
                                < constant_mae(data, constant_hu))
        clean[name] = sct
    rows = []
    for s in settings:
        if s.key not in crafted:
            continue
        idx, x_adv, seconds = crafted[s.key]
        n_batches = max(1, len(seconds))
        batch_of = np.minimum(np.arange(idx.size) // bs, n_batches - 1)
        pert = metrics.perturbation_stats(data.mr[idx], x_adv)
        ct, msk, reg = data.ct_hu[idx], data.mask[idx], region[idx]
        x_t = torch.from_numpy(x_adv).to(device)
        for name, (role, model) in models.items():
            sct_c = clean[name][idx]
            sct_a = predict_hu(model, x_t, bs)
            mae_c = metrics.slice_mae(sct_c, ct, msk)
            mae_a = metrics.slice_mae(sct_a, ct, msk)
            reg_c = metrics.region_mean(sct_c, reg)
            reg_a = metrics.region_mean(sct_a, reg)
            dist_c = metrics.region_mean(np.abs(sct_c - target_hu), reg)
            dist_a = metrics.region_mean(np.abs(sct_a - target_hu), reg)
            for j, i in enumerate(idx):
                rows.append({
                    **s.as_row(), "model": name, "role": role, "slice": int(i),
                    **data.provenance[i], "head_voxels": int(msk[j].sum()),
                    "region_voxels": int(reg[j].sum()),
                    "clean_mae": mae_c[j], "adv_mae": mae_a[j], "delta_mae": mae_a[j] - mae_c[j],
                    "clean_region_hu": reg_c[j], "adv_region_hu": reg_a[j],
                    "clean_distance": dist_c[j], "adv_distance": dist_a[j],
                    "shift": dist_c[j] - dist_a[j],
                    "linf": pert["linf"][j], "mean_abs": pert["mean_abs"][j],
                    "psnr": pert["psnr"][j],
                    "seconds_per_batch": seconds[batch_of[j]] if seconds else np.nan,
                    "usable": usable[name],
                    "batch_size": bs})
    return rows, usable


def example(models: Mapping[str, tuple[str, torch.nn.Module]], data: Slices,
            setting: Setting, crafted: Mapping[str, tuple[np.ndarray, np.ndarray, list[float]]],
            rows: list[dict[str, Any]], cfg: Mapping[str, Any], device: torch.device
            ) -> dict[str, np.ndarray]:
    """The figure's slice for ``setting``: the one with the median white-box ΔMAE -- its clean
    and perturbed MR, the true CT, the mask and the clean / adversarial sCT of the white-box
    and the global model (HU)."""
    if setting.key not in crafted:
        return {}
    idx, x_adv, _ = crafted[setting.key]
    wb = [r for r in rows if r["setting"] == setting.key and r["role"] == "whitebox"]
    if not wb:
        return {}
    delta = np.array([r["delta_mae"] for r in wb], float)
    order = np.argsort(np.nan_to_num(delta, nan=-np.inf))
    pick = int(order[len(order) // 2])
    i = int(idx[pick])
    out = {"mr": data.mr[i, 0], "mr_adv": x_adv[pick, 0], "ct": data.ct_hu[i, 0],
           "mask": data.mask[i, 0], "epsilon": np.float32(setting.epsilon),
           "slice": np.int64(i), "patient": np.array(data.provenance[i]["patient"]),
           "axial_index": np.int64(data.provenance[i]["axial_index"]),
           "setting": np.array(setting.key), "label": np.array(setting.label)}
    bs = int(cfg["batch_size"])
    for name, (role, model) in models.items():
        if role in ("whitebox", "global"):
            both = torch.from_numpy(np.stack([data.mr[i], x_adv[pick]])).to(device)
            sct = predict_hu(model, both, bs)
            out[f"{role}_sct"], out[f"{role}_sct_adv"] = sct[0, 0], sct[1, 0]
            out[f"{role}_name"] = np.array(name)
    return out
