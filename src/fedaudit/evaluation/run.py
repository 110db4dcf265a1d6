"""Evaluate one scenario's global model, or the constant predictor, on every test patient: sCT
volumes and SynthRAD2023 metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from fedaudit.atomic import write_csv
from fedaudit.data.slices import Volume, load_volume
from fedaudit.evaluation.inference import predict_volume
from fedaudit.evaluation.metrics import image_metrics
from fedaudit.evaluation.reference import constant_hu, constant_sct
from fedaudit.io import read_header, write_quarantine, write_volume
from fedaudit.models.device import resolve_device
from fedaudit.models.store import load_model

log = logging.getLogger(__name__)


def _with_geometry_of(array: np.ndarray, reference: Path) -> sitk.Image:
    """``array`` as an image on ``reference``'s grid (read from its header only)."""
    reader = read_header(reference, "CT")
    img = sitk.GetImageFromArray(array)
    img.SetOrigin(reader.GetOrigin())
    img.SetSpacing(reader.GetSpacing())
    img.SetDirection(reader.GetDirection())
    return img


COLUMNS = ["scenario", "center", "patient", "excluded", "mae", "psnr", "ssim"]


def evaluate_predictor(predict: Callable[[Volume], np.ndarray], *,
                       patients: Sequence[tuple[str, str]], preprocessed_root: str | Path,
                       metrics_path: str | Path, scenario: str,
                       sct_paths: Sequence[str | Path] | None = None,
                       excluded: Collection[tuple[str, str]] = (),
                       failed: Collection[tuple[str, str]] = ()) -> pd.DataFrame:
    """MAE/PSNR/SSIM of ``predict``'s sCT (HU) for every test patient; one row per patient in
    ``metrics_path`` (columns :data:`COLUMNS`). ``sct_paths[i]``, when given, is where patient
    ``patients[i]``'s sCT is written (NIfTI, the CT's geometry). Patients QC ``excluded`` are
    still predicted and scored, and marked ``excluded``: summaries leave them out. Patients who
    ``failed`` preprocessing (``preprocess.on_error: exclude``) have no volumes: their row is
    marked ``excluded`` with no metrics (NaN), and their sCT path holds the quarantine record
    (:mod:`fedaudit.preprocess.quarantine`)."""
    if sct_paths is not None and len(sct_paths) != len(patients):
        raise ValueError("one sCT path per test patient is needed")
    rows = []
    root = Path(preprocessed_root)
    for i, (center, patient) in enumerate(patients):
        folder = root / center / patient
        if (center, patient) in failed:
            log.info("%s/%s: no sCT, the patient failed preprocessing", center, patient)
            if sct_paths is not None:
                write_quarantine([sct_paths[i]], center=center, patient=patient,
                                 step="preprocessing",
                                 error="no sCT: the patient failed preprocessing (qc.tsv)")
            rows.append({"scenario": scenario, "center": center, "patient": patient,
                         "excluded": True, "mae": np.nan, "psnr": np.nan, "ssim": np.nan})
            continue
        vol = load_volume(folder)  # checks shapes, names the file at fault
        sct = predict(vol)
        if sct_paths is not None:
            Path(sct_paths[i]).parent.mkdir(parents=True, exist_ok=True)
            write_volume(_with_geometry_of(sct, folder / "ct.nii.gz"), sct_paths[i])
        m = image_metrics(vol.ct, sct, vol.mask)
        out = (center, patient) in excluded
        rows.append({"scenario": scenario, "center": center, "patient": patient,
                     "excluded": out, **m})
        log.info("%s/%s: MAE %.1f HU, PSNR %.2f dB, SSIM %.3f%s", center, patient, m["mae"],
                 m["psnr"], m["ssim"], " (excluded by QC)" if out else "")
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_csv(table, metrics_path, index=False)
    return table


def evaluate_scenario(*, model_path: str | Path, patients: Sequence[tuple[str, str]],
                      preprocessed_root: str | Path, sct_paths: Sequence[str | Path],
                      metrics_path: str | Path, scenario: str, fusion: str = "axial",
                      batch_size: int = 16, device: str = "auto", amp: bool = True,
                      excluded: Collection[tuple[str, str]] = (),
                      failed: Collection[tuple[str, str]] = ()) -> pd.DataFrame:
    """The scenario's global model: sCT and metrics per patient (:func:`evaluate_predictor`)."""
    dev = resolve_device(device)
    model = load_model(model_path, dev)
    return evaluate_predictor(
        lambda vol: predict_volume(model, vol.mr, vol.mask, fusion=fusion,
                                   batch_size=batch_size, device=dev, amp=amp),
        patients=patients, preprocessed_root=preprocessed_root, metrics_path=metrics_path,
        scenario=scenario, sct_paths=sct_paths, excluded=excluded, failed=failed)


CONSTANT = "constant"  # the constant predictor's name in metrics and summaries


def evaluate_constant(*, train_patients: Sequence[tuple[str, str]],
                      patients: Sequence[tuple[str, str]], preprocessed_root: str | Path,
                      metrics_path: str | Path,
                      excluded: Collection[tuple[str, str]] = (),
                      failed: Collection[tuple[str, str]] = ()) -> tuple[float, pd.DataFrame]:
    """The constant predictor (:mod:`fedaudit.evaluation.reference`): its value from
    ``train_patients`` (those QC kept), scored on the test ``patients`` like a scenario, with
    the test patients QC ``excluded`` marked as such."""
    root = Path(preprocessed_root)
    value = constant_hu(load_volume(root / c / p) for c, p in train_patients)
    log.info("constant predictor: %.1f HU (median in-mask HU of %d training patients)", value,
             len(train_patients))
    table = evaluate_predictor(lambda vol: constant_sct(vol.mask, value), patients=patients,
                               preprocessed_root=root, metrics_path=metrics_path,
                               scenario=CONSTANT, excluded=excluded, failed=failed)
    return value, table
