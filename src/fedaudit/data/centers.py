"""Acquisition profiles of the five demo centers A-E (paper 000, Table 1) and their patient ids.

Split from :mod:`fedaudit.data.demo` so that code which only needs to know which centers exist,
whether they ship a head mask and how their patients are named (config validation, the
workflow's wildcard constraints) does not import the demo generator and its SimpleITK and
scipy. Nothing here imports more than the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CENTER_PROFILES", "PAPER_PATIENT_COUNTS", "CenterProfile", "Size3", "Vec3",
           "patient_id"]

Vec3 = tuple[float, float, float]
Size3 = tuple[int, int, int]


@dataclass(frozen=True)
class CenterProfile:
    """Acquisition of one center (paper 000, Table 1). Sizes and spacings are in index order."""

    mr_spacing: Vec3
    mr_size: Size3
    mr_orientation: str            # DICOMOrient code, e.g. "LPS": index axes point to L, P, S
    field_strength_t: float        # 1.5 or 3.0: T1 contrast GM/WM/CSF and SNR
    mr_noise: float                # Rician noise sd as a fraction of the WM intensity
    bias_amplitude: float          # log-amplitude of the multiplicative B1 field (0.2 ~ +-22 %)
    mr_scale: float                # scanner intensity units for WM (arbitrary, differs per site)
    ct_spacing: Vec3
    ct_size: Size3
    ct_orientation: str
    kvp: int                       # 120 or 140
    ct_noise_hu: float             # quantum noise sd in HU
    ships_mask: bool               # SynthRAD2023-style mask.nii.gz next to mr/ct
    max_rotation_deg: float        # per-axis bound of the known rigid MR<->CT misalignment
    max_translation_mm: float
    mr_scanner: str = ""
    ct_scanner: str = ""


# Modelled on paper 000 Table 1. Orientations differ on purpose (axial CT, sagittal, coronal and
# NIfTI/RAS-style MR) so the pipeline's geometry handling is exercised; the MR matrix axes follow
# the table where the table gives them (A: 256 A-P x 176 L-R x 256 S-I). D and E are SynthRAD2023
# cases: already roughly registered by the challenge, hence smaller residual misalignment.
CENTER_PROFILES: dict[str, CenterProfile] = {
    "A": CenterProfile(
        mr_spacing=(1.0, 1.0, 1.0), mr_size=(256, 176, 256), mr_orientation="PLI",
        field_strength_t=3.0, mr_noise=0.02, bias_amplitude=0.25, mr_scale=900.0,
        ct_spacing=(0.55, 0.55, 2.5), ct_size=(512, 512, 96), ct_orientation="LPS",
        kvp=140, ct_noise_hu=6.0, ships_mask=False, max_rotation_deg=5.0,
        max_translation_mm=10.0, mr_scanner="Siemens MAGNETOM Trio",
        ct_scanner="GE LightSpeed QX/i"),
    "B": CenterProfile(
        mr_spacing=(1.0, 1.0, 1.0), mr_size=(176, 256, 248), mr_orientation="RAS",
        field_strength_t=3.0, mr_noise=0.025, bias_amplitude=0.3, mr_scale=1500.0,
        ct_spacing=(0.98, 0.98, 3.27), ct_size=(512, 512, 72), ct_orientation="LPI",
        kvp=120, ct_noise_hu=5.0, ships_mask=False, max_rotation_deg=4.0,
        max_translation_mm=8.0, mr_scanner="Siemens Biograph mMR",
        ct_scanner="GE Discovery ST"),
    "C": CenterProfile(
        mr_spacing=(0.78, 0.78, 1.0), mr_size=(256, 300, 230), mr_orientation="LIP",
        field_strength_t=1.5, mr_noise=0.035, bias_amplitude=0.15, mr_scale=300.0,
        ct_spacing=(0.78, 0.78, 1.0), ct_size=(512, 512, 240), ct_orientation="LPS",
        kvp=120, ct_noise_hu=7.0, ships_mask=False, max_rotation_deg=5.0,
        max_translation_mm=10.0, mr_scanner="Canon Vantage Titan",
        ct_scanner="Philips Brilliance Sensation Open"),
    "D": CenterProfile(
        mr_spacing=(1.0, 1.0, 1.0), mr_size=(192, 240, 256), mr_orientation="RAS",
        field_strength_t=3.0, mr_noise=0.025, bias_amplitude=0.2, mr_scale=600.0,
        ct_spacing=(0.72, 0.72, 1.5), ct_size=(280, 340, 170), ct_orientation="RAS",
        kvp=120, ct_noise_hu=5.0, ships_mask=True, max_rotation_deg=2.0,
        max_translation_mm=4.0, mr_scanner="Siemens MAGNETOM Avanto_fit/Skyra/Vida_fit/Prisma_fit",
        ct_scanner="Philips Brilliance Big Bore"),
    "E": CenterProfile(
        mr_spacing=(0.98, 0.98, 0.98), mr_size=(200, 235, 240), mr_orientation="LAS",
        field_strength_t=1.5, mr_noise=0.03, bias_amplitude=0.2, mr_scale=450.0,
        ct_spacing=(0.9, 0.9, 2.0), ct_size=(240, 290, 125), ct_orientation="LAI",
        kvp=120, ct_noise_hu=6.0, ships_mask=True, max_rotation_deg=2.0,
        max_translation_mm=4.0, mr_scanner="Siemens MAGNETOM Aera/Avanto_fit",
        ct_scanner="Siemens SOMATOM Definition AS"),
}

PAPER_PATIENT_COUNTS: dict[str, int] = {"A": 15, "B": 14, "C": 21, "D": 29, "E": 23}


def patient_id(center: str, index: int) -> str:
    """SynthRAD2023 Task-1 brain style id: ``1B`` + center + 1-based 3-digit number (1BA001)."""
    return f"1B{center}{index + 1:03d}"
