"""Resampling of MR, CT and mask to one fixed cube (paper 000, "Materials and Methods /
Datasets": "all MRI and CT volumes were resampled to a fixed dimension of 256x256x256 using a
combination of cropping, resizing, and constant padding").

Implemented as ONE physical resampling of all three volumes onto a centred cube grid instead of
array-level resize + pad/crop: geometry stays exact, the three volumes stay voxel-aligned, the
padding value is right per modality (-1000 HU / 0, not MONAI's default 0 = water in HU), and
the grid is centred rather than anchored at a corner voxel. Cropping and padding fall out of the
grid's extent.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

from fedaudit.preprocess.mask import apply_mask

# The value fedaudit.intensity.AIR_HU names for training and evaluation. Not imported from
# there: intensity needs torch, which the preprocess env lacks (tests/test_resample.py
# checks the two agree).
CT_OUTSIDE = -1000.0
MR_OUTSIDE = 0.0


def cube_reference(ct: sitk.Image, mask: sitk.Image, *, size: int,
                   spacing_mm: float | None = None, margin_mm: float = 0.0) -> sitk.Image:
    """The cube grid (``size``^3, isotropic, identity direction = LPS) centred on the centre of
    the mask's bounding box.

    Source: paper 000 "Datasets" (fixed 256^3 dimension; "resizing" at the original extent).
    Spacing: ``spacing_mm`` if given, else the largest in-plane (axial, L-R / A-P) physical
    extent of the CT field of view plus ``margin_mm`` on both sides, divided by ``size``.
    Identity direction makes array axis 0 always inferior->superior, 1 anterior->posterior,
    2 right->left, whatever each center's acquisition orientation.
    """
    if size < 2:
        raise ValueError(f"cube size must be >= 2, got {size}")
    if spacing_mm is None:
        lo, hi = _physical_bounds(ct, _full_index_box(ct), voxel_edges=True)
        extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))  # LPS x (L-R) and y (A-P)
        spacing_mm = (extent + 2.0 * float(margin_mm)) / size
    if not spacing_mm > 0:
        raise ValueError(f"cube spacing must be > 0 mm, got {spacing_mm}")
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    if not stats.HasLabel(1):
        raise ValueError("mask is empty; cannot centre the cube on the head")
    bb = stats.GetBoundingBox(1)  # (x0, y0, z0, sx, sy, sz) in index space
    box = (np.asarray(bb[:3], float), np.asarray(bb[:3], float) + np.asarray(bb[3:], float) - 1)
    lo, hi = _physical_bounds(mask, box, voxel_edges=True)
    centre = (lo + hi) / 2.0
    ref = sitk.Image([int(size)] * 3, sitk.sitkUInt8)
    ref.SetSpacing([float(spacing_mm)] * 3)
    ref.SetDirection(tuple(np.eye(3).ravel()))
    ref.SetOrigin(tuple(centre - (size - 1) / 2.0 * float(spacing_mm)))
    return ref


def to_cube(mr: sitk.Image, ct: sitk.Image, mask: sitk.Image, *, size: int,
            spacing_mm: float | None = None) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """(MR, CT, mask) on the cube of :func:`cube_reference` (paper 000 "Datasets").

    MR linear (outside the field of view 0), CT linear (-1000 HU), mask nearest-neighbour (0);
    then the mask is re-applied so everything outside it is exactly -1000 HU / 0, and the MR is
    clipped to [0, 1] (linear interpolation cannot leave it, float rounding could).
    """
    ref = cube_reference(ct, mask, size=size, spacing_mm=spacing_mm)
    identity = sitk.Transform()
    mask_c = sitk.Resample(sitk.Cast(mask > 0, sitk.sitkUInt8), ref, identity,
                           sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    ct_c = sitk.Resample(sitk.Cast(ct, sitk.sitkFloat32), ref, identity, sitk.sitkLinear,
                         CT_OUTSIDE, sitk.sitkFloat32)
    mr_c = sitk.Resample(sitk.Cast(mr, sitk.sitkFloat32), ref, identity, sitk.sitkLinear,
                         MR_OUTSIDE, sitk.sitkFloat32)
    mr_c = sitk.Clamp(mr_c, sitk.sitkFloat32, 0.0, 1.0)
    ct_c, mr_c = apply_mask(ct_c, mr_c, mask_c)
    return mr_c, ct_c, mask_c


def _full_index_box(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(3), np.asarray(img.GetSize(), float) - 1.0


def _physical_bounds(img: sitk.Image, box: tuple[np.ndarray, np.ndarray], *,
                     voxel_edges: bool) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounds of an index box (inclusive voxel indices), from its 8 corners;
    with ``voxel_edges`` the box reaches the outer faces of its voxels (extent = n * spacing)."""
    pad = 0.5 if voxel_edges else 0.0
    lo_i, hi_i = box[0] - pad, box[1] + pad
    corners = [img.TransformContinuousIndexToPhysicalPoint(
        [float(c[0]), float(c[1]), float(c[2])])
        for c in itertools.product(*zip(lo_i, hi_i, strict=True))]
    pts = np.asarray(corners)
    return pts.min(axis=0), pts.max(axis=0)
