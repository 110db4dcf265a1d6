"""Evaluate one scenario's global model on every test patient: sCT volumes and metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from fedaudit.data.slices import load_volume
from fedaudit.evaluation.inference import predict_volume
from fedaudit.evaluation.metrics import image_metrics
from fedaudit.federation.local import resolve_device
from fedaudit.federation.run import load_model
from fedaudit.io import read_header, write_volume

log = logging.getLogger(__name__)


def _with_geometry_of(array: np.ndarray, reference: Path) -> sitk.Image:
    """``array`` as an image on ``reference``'s grid (read from its header only)."""
    reader = read_header(reference, "CT")
    img = sitk.GetImageFromArray(array)
    img.SetOrigin(reader.GetOrigin())
    img.SetSpacing(reader.GetSpacing())
    img.SetDirection(reader.GetDirection())
    return img


def evaluate_scenario(*, model_path: str | Path, patients: Sequence[tuple[str, str]],
                      preprocessed_root: str | Path, sct_paths: Sequence[str | Path],
                      metrics_path: str | Path, scenario: str, fusion: str = "axial",
                      batch_size: int = 16, device: str = "auto", amp: bool = True
                      ) -> pd.DataFrame:
    """sCT (HU, NIfTI, the CT's geometry) and MAE/PSNR/SSIM per test patient.

    ``sct_paths[i]`` is where patient ``patients[i]``'s sCT goes. One row per patient in
    ``metrics_path`` (scenario, center, patient, mae, psnr, ssim).
    """
    if len(sct_paths) != len(patients):
        raise ValueError("one sCT path per test patient is needed")
    dev = resolve_device(device)
    model = load_model(model_path, dev)
    rows = []
    root = Path(preprocessed_root)
    for (center, patient), out in zip(patients, sct_paths, strict=True):
        folder = root / center / patient
        vol = load_volume(folder)  # checks shapes, names the file at fault
        sct = predict_volume(model, vol.mr, vol.mask, fusion=fusion, batch_size=batch_size,
                             device=dev, amp=amp)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_volume(_with_geometry_of(sct, folder / "ct.nii.gz"), out)
        m = image_metrics(vol.ct, sct, vol.mask)
        rows.append({"scenario": scenario, "center": center, "patient": patient, **m})
        log.info("%s/%s: MAE %.1f HU, PSNR %.2f dB, SSIM %.3f", center, patient, m["mae"],
                 m["psnr"], m["ssim"])
    table = pd.DataFrame(rows, columns=["scenario", "center", "patient", "mae", "psnr", "ssim"])
    table.to_csv(metrics_path, index=False)
    return table
