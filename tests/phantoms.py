"""Synthetic head-like MR/CT phantoms for the preprocessing tests and benchmarks.

The anatomy is defined analytically in physical (LPS, mm) coordinates, so any grid -- any
spacing, origin or direction -- can be filled with it, and an MR that is a known rigid motion of
the CT is rendered exactly (no resampling blur that would bias a registration test):
``MR(p) = anatomy(T^-1(p))`` for the fixed->moving transform ``T``.

Labels: 0 background, 1 scalp/soft tissue, 2 bone, 3 CSF, 4 GM, 5 WM, 6 air (sinus and the
nasal channel), 7 couch, 8 eyes, 9 foam head rest bridging the head to the couch. CT and MR
intensities come from the same label map but with different per-label values, so MR->CT
registration is a multimodal problem (as in FedSynthCT-Brain, paper 000 "Datasets").
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

BACKGROUND, SCALP, BONE, CSF, GM, WM, AIR, COUCH, EYE, HEADREST = range(10)

CT_HU = {BACKGROUND: -1000.0, SCALP: 30.0, BONE: 1200.0, CSF: 8.0, GM: 40.0, WM: 28.0,
         AIR: -950.0, COUCH: 300.0, EYE: 15.0, HEADREST: 0.0}
MR_T1 = {BACKGROUND: 0.0, SCALP: 350.0, BONE: 60.0, CSF: 120.0, GM: 450.0, WM: 700.0,
         AIR: 0.0, COUCH: 0.0, EYE: 80.0, HEADREST: 0.0}

# Head field of view (mm) along LPS x (R->L), y (A->P), z (I->S); the couch sits posterior (+y).
CT_FOV_MM = (240.0, 240.0, 196.0)
CT_FOV_CENTRE = (0.0, 5.0, -6.0)
MR_FOV_MM = (200.0, 230.0, 190.0)
MR_FOV_CENTRE = (0.0, -5.0, 0.0)


def make_grid(size: tuple[int, int, int], spacing: tuple[float, float, float] | float,
              centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
              direction: tuple[float, ...] | None = None) -> sitk.Image:
    """An empty uint8 image whose voxel centres are centred on ``centre`` (mm)."""
    sp = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    img = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    img.SetSpacing(sp)
    d = np.eye(3) if direction is None else np.asarray(direction, float).reshape(3, 3)
    img.SetDirection(tuple(d.ravel()))
    half = (np.asarray(size, float) - 1.0) / 2.0 * np.asarray(sp)
    img.SetOrigin(tuple(np.asarray(centre, float) - d @ half))
    return img


def grid_for_fov(fov_mm: tuple[float, float, float], spacing: float,
                 centre: tuple[float, float, float]) -> sitk.Image:
    size = tuple(int(round(f / spacing)) for f in fov_mm)
    return make_grid(size, spacing, centre)


def physical_points(img: sitk.Image) -> np.ndarray:
    """Physical coordinates of every voxel, shape (nz, ny, nx, 3) in array order."""
    nx, ny, nz = img.GetSize()
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(float)
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    return np.asarray(img.GetOrigin()) + (idx * np.asarray(img.GetSpacing())) @ d.T


def _inside(p: np.ndarray, centre: tuple[float, float, float],
            semi: tuple[float, float, float]) -> np.ndarray:
    q = (p - np.asarray(centre)) / np.asarray(semi)
    return (q**2).sum(axis=-1) <= 1.0


def anatomy_labels(p: np.ndarray, *, couch: bool = True) -> np.ndarray:
    """Label of each physical point ``p[..., 3]`` (mm, LPS) of the one phantom head."""
    lab = np.zeros(p.shape[:-1], np.uint8)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    head_semi = np.array([72.0, 90.0, 85.0])
    neck = (((x / 45.0) ** 2 + ((y - 10.0) / 50.0) ** 2) <= 1.0) & (z < -40.0)
    head = _inside(p, (0, 0, 0), tuple(head_semi)) | neck
    nose = _inside(p, (0, -86, -22), (10, 12, 18))
    lab[head | nose] = SCALP
    lab[_inside(p, (0, 0, 0), tuple(head_semi - 6))] = BONE
    lab[_inside(p, (0, 82, -30), (14, 10, 10))] = BONE  # occipital protuberance: breaks symmetry
    lab[_inside(p, (0, 0, 0), tuple(head_semi - 12))] = CSF
    lab[_inside(p, (0, 0, 4), tuple(head_semi - 16))] = GM
    lab[_inside(p, (0, 0, 6), tuple(head_semi - 26))] = WM
    lab[_inside(p, (9, -4, 12), (6, 18, 9))] = CSF  # left ventricle larger than the right
    lab[_inside(p, (-8, -2, 10), (4, 14, 7))] = CSF
    lab[_inside(p, (30, -64, -14), (12, 11, 11)) | _inside(p, (-30, -64, -14), (12, 11, 11))] = EYE
    # frontal sinus plus a nasal channel that opens at the bottom of the head: not a 3-D hole,
    # but a hole in every axial slice it crosses inside the head
    lab[_inside(p, (0, -66, -30), (12, 8, 10))] = AIR
    channel = ((x**2 + (y + 66.0) ** 2) <= 4.0**2) & (z < -30.0) & (lab > 0)
    lab[channel] = AIR
    if couch:
        lab[(np.abs(x) <= 120.0) & (y >= 105.0) & (y <= 112.0)] = COUCH
        lab[(np.abs(x) <= 3.0) & (np.abs(z + 10.0) <= 3.0) & (y > 60.0) & (y < 105.0)
            & (lab == BACKGROUND)] = HEADREST
    return lab


def label_image(reference: sitk.Image, *, fixed_to_moving: sitk.Transform | None = None,
                couch: bool = True) -> sitk.Image:
    """Render the anatomy on ``reference``'s grid; with ``fixed_to_moving`` = T the grid shows
    the head moved by T, i.e. voxel p shows anatomy(T^-1(p))."""
    p = physical_points(reference)
    if fixed_to_moving is not None:
        inv = fixed_to_moving.GetInverse()
        a = np.asarray(inv.GetMatrix()).reshape(3, 3)
        c = np.asarray(inv.GetCenter())
        t = np.asarray(inv.GetTranslation())
        p = (p - c) @ a.T + c + t
    lab = sitk.GetImageFromArray(anatomy_labels(p, couch=couch))
    lab.CopyInformation(reference)
    return lab


def intensity_image(labels: sitk.Image, table: dict[int, float], *, noise: float, seed: int,
                    blur_mm: float = 1.0, bias: sitk.Image | None = None) -> sitk.Image:
    lab = sitk.GetArrayViewFromImage(labels)
    lut = np.zeros(256, np.float32)
    for k, v in table.items():
        lut[k] = v
    img = sitk.GetImageFromArray(lut[lab])
    img.CopyInformation(labels)
    if blur_mm > 0:
        img = sitk.SmoothingRecursiveGaussian(img, blur_mm)
    arr = sitk.GetArrayFromImage(img)
    if bias is not None:
        arr = arr * sitk.GetArrayViewFromImage(bias)
    arr = arr + np.random.default_rng(seed).normal(0.0, noise, arr.shape).astype(np.float32)
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.CopyInformation(labels)
    return out


def ct_phantom(spacing: float = 3.0, *, seed: int = 0, couch: bool = True,
               grid: sitk.Image | None = None) -> tuple[sitk.Image, sitk.Image]:
    """(CT in HU, label map) on a CT-like grid that includes the couch."""
    ref = grid if grid is not None else grid_for_fov(CT_FOV_MM, spacing, CT_FOV_CENTRE)
    lab = label_image(ref, couch=couch)
    return intensity_image(lab, CT_HU, noise=10.0, seed=seed), lab


def mr_phantom(spacing: float = 3.0, *, fixed_to_moving: sitk.Transform | None = None,
               seed: int = 1, bias: bool = False, grid: sitk.Image | None = None,
               noise: float = 8.0) -> tuple[sitk.Image, sitk.Image, sitk.Image | None]:
    """(T1-like MR, label map, true multiplicative bias field or None), no couch in MR."""
    if grid is None:
        # the MR scanner's field of view follows the head wherever T puts it
        centre = MR_FOV_CENTRE if fixed_to_moving is None else \
            tuple(fixed_to_moving.TransformPoint(MR_FOV_CENTRE))
        grid = grid_for_fov(MR_FOV_MM, spacing, centre)
    ref = grid
    lab = label_image(ref, fixed_to_moving=fixed_to_moving, couch=False)
    field = bias_field(ref) if bias else None
    return intensity_image(lab, MR_T1, noise=noise, seed=seed, bias=field), lab, field


def bias_field(reference: sitk.Image) -> sitk.Image:
    """A smooth multiplicative field (about 0.75-1.35 over the head), like a receive coil's."""
    p = physical_points(reference)
    x, y, z = p[..., 0] / 80.0, p[..., 1] / 90.0, p[..., 2] / 85.0
    log_b = 0.22 * x - 0.15 * y + 0.15 * z**2 + 0.08 * x * z - 0.05
    f = sitk.GetImageFromArray(np.exp(log_b).astype(np.float32))
    f.CopyInformation(reference)
    return f


def euler(rotation_deg: tuple[float, float, float], translation_mm: tuple[float, float, float],
          centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> sitk.Euler3DTransform:
    tx = sitk.Euler3DTransform()
    tx.SetCenter(centre)
    tx.SetRotation(*np.deg2rad(rotation_deg))
    tx.SetTranslation(translation_mm)
    return tx


def head_points(labels: sitk.Image, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Physical points (n, 3) of head voxels (not couch/head rest), for registration errors."""
    arr = sitk.GetArrayViewFromImage(labels)
    zyx = np.argwhere((arr > 0) & (arr != COUCH) & (arr != HEADREST))
    rng = np.random.default_rng(seed)
    pick = zyx[rng.choice(len(zyx), size=min(n, len(zyx)), replace=False)]
    return np.array([labels.TransformIndexToPhysicalPoint([int(i), int(j), int(k)])
                     for k, j, i in pick])


def head_truth_mask(labels: sitk.Image) -> sitk.Image:
    """Ground-truth head mask: every head label incl. the air inside it, no couch/head rest."""
    arr = sitk.GetArrayViewFromImage(labels)
    m = sitk.GetImageFromArray(((arr > 0) & (arr != COUCH) & (arr != HEADREST)).astype(np.uint8))
    m.CopyInformation(labels)
    return m
