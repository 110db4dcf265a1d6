"""The per-patient preprocessing steps as file-to-file functions, one per Snakemake rule.

Order (paper 000, "Datasets"; FedSynthCT-Brain): rigid registration MR -> CT, head mask, N4 on the
MR within the mask, then masking (CT -1000 HU, MR 0 outside), MR normalisation to [0, 1] and
resampling of MR, CT and mask to a fixed cube. N4 runs after the mask step because it is fitted
within the head mask. Each step writes a JSON record; ``qc_record`` merges them.

Errors from the algorithms are re-raised as :class:`PatientError`, naming the patient and the
files involved, so a failing patient is easy to find among many jobs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from fedaudit.io import VolumeError, read_json, read_volume, write_json, write_volume

log = logging.getLogger("fedaudit")
PathLike = str | Path


class PatientError(ValueError):
    """A patient whose data cannot be preprocessed; the message names the files."""


def _geometry(img: sitk.Image) -> dict[str, Any]:
    return {"size": list(img.GetSize()), "spacing_mm": [round(s, 4) for s in img.GetSpacing()],
            "origin_mm": [round(o, 3) for o in img.GetOrigin()],
            "orientation": sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
                img.GetDirection())}


def _fail(files: Sequence[PathLike], exc: Exception) -> PatientError:
    names = ", ".join(str(f) for f in files)
    return PatientError(f"{names}: {exc}")


def register_step(mr_path: PathLike, ct_path: PathLike, out_mr: PathLike, out_transform: PathLike,
                  out_record: PathLike, *, backend: str, seed: int, threads: int) -> dict[str, Any]:
    from fedaudit.preprocess.register import rigid_register, transform_parameters

    ct = read_volume(ct_path, "CT")
    mr = read_volume(mr_path, "MR")
    log.info("CT %s, MR %s", _geometry(ct), _geometry(mr))
    try:
        res = rigid_register(ct, mr, backend=backend, seed=seed, threads=threads)
    except (ValueError, RuntimeError) as exc:
        raise _fail([mr_path, ct_path], exc) from exc
    write_volume(sitk.Cast(res.moving_resampled, sitk.sitkFloat32), out_mr)
    Path(out_transform).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteTransform(res.transform, str(out_transform))
    record = {
        "step": "register", "backend": res.backend, "seconds": round(res.seconds, 3),
        "metric": "Mattes mutual information (lower is better)",
        "metric_before": res.metric_before, "metric_after": res.metric_after,
        "transform": transform_parameters(res.transform),
        "ct": _geometry(ct), "mr": _geometry(mr),
    }
    log.info("registration %s: MI %.4f -> %.4f in %.1f s", res.backend, res.metric_before,
             res.metric_after, res.seconds)
    write_json(record, out_record)
    return record


def mask_step(ct_path: PathLike, mr_registered: PathLike, given_mask: PathLike | None,
              out_mask: PathLike, out_record: PathLike, *, threshold_hu: float,
              min_coverage: float, min_mr_fill: float = 0.3,
              mr_source: PathLike | None = None,
              transform: PathLike | None = None) -> dict[str, Any]:
    """The head mask on the CT grid, cut to the MR's field of view when ``mr_source`` and the
    registration's ``transform`` are given (:func:`~fedaudit.preprocess.mask.mr_field_of_view`).
    ``mr_source`` (the raw MR) is also what errors name: users know that file, not the
    intermediate registered MR."""
    from fedaudit.preprocess.mask import (
        check_mask,
        head_mask_from_ct,
        mr_field_of_view,
        outline_agreement,
        resample_mask_to,
    )

    t0 = time.perf_counter()
    ct = read_volume(ct_path, "CT")
    mr = read_volume(mr_registered, "registered MR")
    if given_mask is not None:
        mask = resample_mask_to(read_volume(given_mask, "mask"), ct)
        source = str(given_mask)
        if not sitk.GetArrayViewFromImage(mask).any():
            raise VolumeError(given_mask, "mask does not overlap the CT field of view")
    else:
        mask = head_mask_from_ct(ct, threshold_hu=threshold_hu)
        source = f"computed from CT (threshold {threshold_hu} HU)"
    head_voxels = int(sitk.GetArrayViewFromImage(mask).astype(bool).sum())
    outside_fov = 0.0
    if transform is not None and mr_source is not None:
        fov = mr_field_of_view(read_volume(mr_source, "MR"), ct, sitk.ReadTransform(str(transform)))
        mask = sitk.And(sitk.Cast(mask > 0, sitk.sitkUInt8), fov)
        kept = int(sitk.GetArrayViewFromImage(mask).astype(bool).sum())
        outside_fov = 1.0 - kept / max(head_voxels, 1)
        if outside_fov > 0:
            log.info("%.1f%% of the head lies outside the MR's field of view: left out of the "
                     "mask", 100 * outside_fov)
    try:
        check = check_mask(mask, mr, min_coverage=min_coverage, min_mr_fill=min_mr_fill)
    except ValueError as exc:
        files = [ct_path, mr_source or mr_registered] + ([given_mask] if given_mask else [])
        raise _fail(files, exc) from exc
    write_volume(sitk.Cast(mask > 0, sitk.sitkUInt8), out_mask)
    record = {"step": "mask", "source": source, "seconds": round(time.perf_counter() - t0, 3),
              "outside_mr_fov": round(outside_fov, 5),
              "outline_dice": outline_agreement(mask, mr), **check}
    write_json(record, out_record)
    return record


def n4_step(mr_registered: PathLike, mask_path: PathLike, out_mr: PathLike, out_field: PathLike,
            out_record: PathLike, *, backend: str, shrink: int, iterations: Sequence[int],
            tolerance: float, threads: int) -> dict[str, Any]:
    from fedaudit.preprocess.n4 import n4_correct

    mr = read_volume(mr_registered, "registered MR")
    mask = read_volume(mask_path, "mask")
    res = n4_correct(mr, mask, backend=backend, shrink=shrink, iterations=tuple(iterations),
                     tolerance=tolerance, threads=threads)
    write_volume(sitk.Cast(res.corrected, sitk.sitkFloat32), out_mr)
    write_volume(sitk.Cast(res.bias_field, sitk.sitkFloat32), out_field)
    record = {"step": "n4", "backend": backend, "seconds": round(res.seconds, 3),
              "field_min": res.field_min, "field_max": res.field_max, "shrink": shrink,
              "iterations": list(iterations), "tolerance": tolerance}
    log.info("N4 %s: bias field range [%.3f, %.3f] in %.1f s", backend, res.field_min,
             res.field_max, res.seconds)
    write_json(record, out_record)
    return record


def finalize_step(ct_path: PathLike, mr_n4: PathLike, mask_path: PathLike,
                  out_mr: PathLike, out_ct: PathLike, out_mask: PathLike, out_record: PathLike, *,
                  normalize: dict[str, Any], cube: dict[str, Any]) -> dict[str, Any]:
    from fedaudit.preprocess.mask import apply_mask
    from fedaudit.preprocess.normalize import normalize_mr
    from fedaudit.preprocess.resample import to_cube

    t0 = time.perf_counter()
    ct = sitk.Cast(read_volume(ct_path, "CT"), sitk.sitkFloat32)
    mr = read_volume(mr_n4, "N4-corrected MR")
    mask = read_volume(mask_path, "mask")
    ct_m, mr_m = apply_mask(ct, mr, mask)
    mr_n = normalize_mr(mr_m, mask, method=normalize["method"],
                        percentiles=tuple(normalize["percentiles"]))
    mr_c, ct_c, mask_c = to_cube(mr_n, ct_m, mask, size=int(cube["size"]),
                                 spacing_mm=cube["spacing_mm"])
    for img, path in ((mr_c, out_mr), (ct_c, out_ct)):
        write_volume(sitk.Cast(img, sitk.sitkFloat32), path)
    write_volume(sitk.Cast(mask_c, sitk.sitkUInt8), out_mask)
    record = {"step": "finalize", "seconds": round(time.perf_counter() - t0, 3),
              "normalize": normalize, "cube": _geometry(mask_c)}
    write_json(record, out_record)
    return record


def qc_record(center: str, patient: str, mr_img: sitk.Image, ct_img: sitk.Image,
              mask_img: sitk.Image, step_records: Sequence[PathLike]) -> dict[str, Any]:
    """One flat record per patient: what a reviewer scans to spot a failed registration or N4."""
    steps = {r["step"]: r for r in (read_json(p) for p in step_records)}
    mr = sitk.GetArrayFromImage(mr_img)
    ct = sitk.GetArrayFromImage(ct_img)
    m = sitk.GetArrayFromImage(mask_img) > 0
    voxel_ml = float(np.prod(mask_img.GetSpacing())) / 1000.0
    reg, n4, msk = steps["register"], steps["n4"], steps["mask"]
    return {
        "center": center, "patient": patient,
        "registration_backend": reg["backend"],
        "mi_before": reg["metric_before"], "mi_after": reg["metric_after"],
        "rotation_deg": reg["transform"]["rotation_deg"],
        "translation_mm": reg["transform"]["translation_mm"],
        "n4_field_min": n4["field_min"], "n4_field_max": n4["field_max"],
        "mask_source": msk["source"], "mask_mr_coverage": msk.get("coverage"),
        "mask_mr_fill": msk.get("mr_fill"), "outline_dice": msk.get("outline_dice"),
        "outside_mr_fov": msk.get("outside_mr_fov"),
        "mask_volume_ml": round(float(m.sum()) * voxel_ml, 2),
        "final_shape": list(mask_img.GetSize()),
        "final_spacing_mm": list(mask_img.GetSpacing()),
        "mr_range_in_mask": [float(mr[m].min()), float(mr[m].max())],
        "ct_mean_hu_in_mask": float(ct[m].mean()),
        "ct_outside_mask_unique": sorted({float(v) for v in np.unique(ct[~m])}),
        "mr_outside_mask_unique": sorted({float(v) for v in np.unique(mr[~m])}),
        "seconds": {k: v.get("seconds") for k, v in steps.items()},
    }
