"""Embedded multi-center demo data: paired brain MR/CT for centers A-E, with ground truth.

What it models (paper 000, "Datasets" and Table 1; FedSynthCT-Brain): five centers whose MR
(T1-weighted, 1.5 or 3 T) and CT (120 or 140 kVp) differ in voxel spacing, matrix size,
orientation, MR contrast, noise and B1 bias field, CT kilovoltage, whether a head mask is shipped
(centers D and E mimic SynthRAD2023 Task 1 brain, Thummerer et al., Med. Phys. 50:4664, 2023,
which ships ``mask.nii.gz``) and a known rigid MR<->CT misalignment that preprocessing must undo.

Anatomy: the MNI ICBM152 2009 nonlinear brain (Fonov et al., NeuroImage 2009 and 2011; bundled
with nilearn) with a skull, scalp, fat and neck grown around it (:mod:`fedaudit.data.phantom`).
Each patient is a different head: random affine (rotation, per-axis scale) and smooth elastic
deformation, ventricle size, skull thickness, CSF layer (atrophy), scalp/fat thickness, 0-3 small
WM lesions, a smooth per-patient tissue texture and per-patient tissue intensities. Patient
anatomy lives in "patient space" = the CT's physical frame (SimpleITK LPS mm); the MR sees the
same anatomy through the rigid transform recorded in ``truth/``.

Tissue values are typical literature values, not measurements: HU at 120 kVp (air -1000, fat
about -100, CSF 0-15, WM 20-30, GM 35-45, muscle 40-50, cortical bone >1000, diploe a few hundred;
e.g. Hounsfield 1980; Lev & Gonzalez, "CT angiography and CT perfusion imaging", Brain Mapping
2002; Schneider et al. Phys. Med. Biol. 45:459, 2000) lowered for bone at 140 kVp (bone HU falls
with tube voltage because the photoelectric share of attenuation falls); T1-weighted MPRAGE
relative intensities WM > GM > CSF, fat bright, cortical bone dark (e.g. Wansapura et al. JMRI
9:531, 1999 for T1 at 1.5 vs 3 T: GM/WM contrast in MPRAGE is higher at 3 T).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

# Re-exported: the profiles and ids are part of what the demo data is (callers that only need
# them import fedaudit.data.centers and skip this module's SimpleITK/scipy stack).
from fedaudit.data.centers import (
    CENTER_PROFILES,
    PAPER_PATIENT_COUNTS,
    CenterProfile,
    Size3,
    Vec3,
    patient_id,
)
from fedaudit.data.phantom import (
    LABELS,
    TEMPLATE_HEAD_CENTER_LPS,
    compose,
    compose_labels,
    head_fields,
    sample_wm_points,
)
from fedaudit.io import write_json, write_volume
from fedaudit.runtime import derive_seed

__all__ = [
    "CENTER_PROFILES",
    "CONVENTION",
    "LABELS",
    "PAPER_PATIENT_COUNTS",
    "CenterProfile",
    "generate_patient",
    "patient_id",
    "scaled_profile",
    "TEMPLATE_CITATION",
]

TEMPLATE_CITATION = (
    "MNI ICBM152 2009a nonlinear symmetric template (GM/WM probability maps, brain mask) as "
    "bundled with nilearn; Fonov et al., NeuroImage 47:S102 (2009) and NeuroImage 54:313 (2011)")

CONVENTION = (
    "The rigid transform maps a physical point of the CT (SimpleITK LPS mm) to the physical point "
    "of the same anatomy in the MR: p_mr = R (p_ct - center_mm) + center_mm + translation_mm, "
    "R = matrix (row-major) = Rz(rz) Ry(ry) Rx(rx) with rotation_deg = [rx, ry, rz] as in "
    "SimpleITK's Euler3DTransform (rigid.tfm holds the same transform). It is what a SimpleITK "
    "registration with fixed=CT and moving=MR should estimate: sitk.Resample(mr, ct, transform) "
    "puts the MR onto the CT grid.")

# MNI space is larger than most individual heads (Lancaster et al., Hum. Brain Mapp. 28:1194,
# 2007); the global factor keeps grown heads (~180 mm wide in template space) inside a 176 mm
# sagittal MPRAGE slab like center A's.
_GLOBAL_SCALE = 0.9
_PER_AXIS_SCALE = (0.94, 1.06)
_TEMPLATE_HEAD_WIDTH_MM = 180.0  # left-right width of the grown template head (measured)
_SLAB_VOXELS = 3_000_000  # rendering works in slabs so paper-scale grids stay within ~1-2 GB

# Relative T1-weighted (MPRAGE-like) intensities, WM = 1. Higher field: more GM/WM contrast.
_T1_3T = {"csf": 0.18, "gm": 0.62, "wm": 1.0, "ventricles": 0.16, "lesion": 0.45,
          "bone_cortical": 0.03, "bone_diploe": 0.55, "soft_tissue": 0.5, "fat": 1.15}
_T1_15T = {"csf": 0.26, "gm": 0.72, "wm": 1.0, "ventricles": 0.24, "lesion": 0.55,
           "bone_cortical": 0.04, "bone_diploe": 0.6, "soft_tissue": 0.55, "fat": 1.1}
# HU at 120 kVp (typical literature values; see module docstring).
_HU_120 = {"csf": 12.0, "gm": 40.0, "wm": 25.0, "ventricles": 10.0, "lesion": 17.0,
           "bone_cortical": 1450.0, "bone_diploe": 700.0, "soft_tissue": 40.0, "fat": -100.0}
_COUCH_HU = {"shell": 250.0, "core": -850.0}


def scaled_profile(profile: CenterProfile, resolution_scale: float) -> CenterProfile:
    """The same field of view on a coarser grid: spacings x scale, sizes / scale (min 8)."""
    s = float(resolution_scale)
    if not s > 0:
        raise ValueError(f"resolution_scale must be > 0, got {resolution_scale!r}")

    def sp(v: Vec3) -> Vec3:
        return tuple(float(x) * s for x in v)  # type: ignore[return-value]

    def sz(v: Size3) -> Size3:
        return tuple(max(8, int(round(n / s))) for n in v)  # type: ignore[return-value]

    return replace(profile, mr_spacing=sp(profile.mr_spacing), mr_size=sz(profile.mr_size),
                   ct_spacing=sp(profile.ct_spacing), ct_size=sz(profile.ct_size))


# --------------------------------------------------------------------------- geometry helpers


@dataclass(frozen=True)
class Grid:
    size: Size3
    spacing: Vec3
    origin: Vec3
    direction: tuple[float, ...]  # row-major 3x3, columns = index axes

    @classmethod
    def centered(cls, size: Size3, spacing: Vec3, orientation: str, center: np.ndarray) -> Grid:
        d = np.array(sitk.DICOMOrientImageFilter.GetDirectionCosinesFromOrientation(
            orientation)).reshape(3, 3)
        half = (np.asarray(size, float) - 1.0) * np.asarray(spacing, float) / 2.0
        origin = np.asarray(center, float) - d @ half
        return cls(tuple(int(n) for n in size), tuple(float(x) for x in spacing),
                   tuple(float(x) for x in origin), tuple(float(x) for x in d.ravel()))

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.direction).reshape(3, 3)

    def extent_mm(self) -> np.ndarray:
        """Physical extent along x, y, z (LPS) of the voxel centres."""
        return np.abs(self.matrix) @ ((np.asarray(self.size) - 1) * np.asarray(self.spacing))

    def image(self, k0: int = 0, k1: int | None = None) -> sitk.Image:
        """An empty reference image for index slab [k0, k1) along the third axis."""
        k1 = self.size[2] if k1 is None else k1
        img = sitk.Image([self.size[0], self.size[1], k1 - k0], sitk.sitkUInt8)
        img.SetSpacing(self.spacing)
        origin = np.asarray(self.origin) + self.matrix @ (np.array([0, 0, k0]) * self.spacing[2])
        img.SetOrigin(origin.tolist())
        img.SetDirection(self.direction)
        return img

    def physical(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS x, y, z of every voxel of slab [k0, k1), as (k, j, i) arrays (broadcast views)."""
        i = np.arange(self.size[0], dtype=np.float32) * self.spacing[0]
        j = np.arange(self.size[1], dtype=np.float32) * self.spacing[1]
        k = np.arange(k0, k1, dtype=np.float32) * self.spacing[2]
        m = self.matrix
        out = []
        for r in range(3):
            out.append(self.origin[r] + m[r, 0] * i[None, None, :] + m[r, 1] * j[None, :, None]
                       + m[r, 2] * k[:, None, None])
        return out[0], out[1], out[2]

    def slabs(self) -> list[tuple[int, int]]:
        per = max(1, _SLAB_VOXELS // (self.size[0] * self.size[1]))
        return [(k, min(k + per, self.size[2])) for k in range(0, self.size[2], per)]

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "spacing": list(self.spacing),
                "origin": list(self.origin), "direction": list(self.direction)}


def _with_geometry(arr: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(grid.spacing)
    img.SetOrigin(grid.origin)
    img.SetDirection(grid.direction)
    return img


def _rotation_matrix(angles_rad: np.ndarray) -> np.ndarray:
    t = sitk.Euler3DTransform((0.0, 0.0, 0.0), *[float(a) for a in angles_rad])
    return np.array(t.GetMatrix()).reshape(3, 3)


def _elastic_transform(rng: np.random.Generator, center: np.ndarray, *, rms_mm: float,
                       spacing_mm: float = 10.0, half_extent_mm: float = 160.0,
                       smooth_cells: float = 1.5) -> tuple[sitk.Transform, dict[str, float]]:
    """Smooth random displacement u(x) (patient frame): a Gaussian-smoothed white-noise field
    on a coarse grid, scaled to ``rms_mm`` inside the head and tapered to 0 at the field border
    (ITK returns zero displacement outside a displacement field; the taper avoids a seam)."""
    n = int(math.ceil(2 * half_extent_mm / spacing_mm)) + 1
    noise = rng.standard_normal((n, n, n, 3))
    comps = []
    for c in range(3):
        img = sitk.GetImageFromArray(noise[..., c])
        comps.append(sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(img, smooth_cells)))
    u = np.stack(comps, axis=-1)
    r = np.linspace(-1.0, 1.0, n)
    rr = np.sqrt(r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2)
    taper = np.clip((1.0 - rr) / 0.25, 0.0, 1.0)[..., None]
    inner = rr <= 0.6
    u *= rms_mm / max(float(np.sqrt((u[inner] ** 2).sum(axis=-1).mean())), 1e-9)
    u *= taper
    img = sitk.GetImageFromArray(u.astype(np.float64), isVector=True)
    img.SetSpacing([spacing_mm] * 3)
    img.SetOrigin((np.asarray(center) - half_extent_mm).tolist())
    stats = {"rms_mm": float(np.sqrt((u[inner] ** 2).sum(axis=-1).mean())),
             "max_mm": float(np.sqrt((u ** 2).sum(axis=-1)).max()),
             "grid_spacing_mm": spacing_mm}
    tx = sitk.DisplacementFieldTransform(img)
    return tx, stats


def _render(fields: Any, grid: Grid, transform: sitk.Transform, model_mm: float,
            fn: Any) -> None:
    """Sample the head fields onto ``grid`` slab by slab (``transform`` maps grid points to
    template points) and hand each slab's tissue composition and physical coordinates to
    ``fn(k0, k1, comp, xyz)``."""
    w = float(min(grid.spacing))
    for k0, k1 in grid.slabs():
        ref = grid.image(k0, k1)
        # Evaluating the composite transform densely is cheap in ITK; interpolation is ours.
        disp = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat32,
                                                 ref.GetSize(), ref.GetOrigin(),
                                                 ref.GetSpacing(), ref.GetDirection())
        d = sitk.GetArrayViewFromImage(disp)
        xyz = grid.physical(k0, k1)
        vals = fields.sample(xyz[0] + d[..., 0], xyz[1] + d[..., 1], xyz[2] + d[..., 2])
        # Interpolation between the model's own voxels softens edges anyway; ramps narrower
        # than half the model spacing would only alias.
        comp = compose(vals, fields, max(w, 0.5 * model_mm))
        fn(k0, k1, comp, xyz)


def model_spacing(resolution_scale: float) -> float:
    """Head-model spacing: 2 mm for the CPU demo, 1.5 mm when the target grids are ~1 mm."""
    return 1.5 if resolution_scale < 1.5 else 2.0


# --------------------------------------------------------------------------- generation


def _draw_patient(rng: np.random.Generator, prof: CenterProfile, model_mm: float) -> dict:
    """All per-patient random choices, in a fixed order (so one seed gives one patient)."""
    p: dict[str, Any] = {}
    p["affine_rotation_deg"] = (rng.uniform(-8, 8), rng.uniform(-4, 4), rng.uniform(-5, 5))
    p["affine_scale"] = tuple(_GLOBAL_SCALE * rng.uniform(*_PER_AXIS_SCALE) for _ in range(3))
    p["elastic_seed"] = int(rng.integers(2**31))
    p["elastic_rms_mm"] = float(rng.uniform(1.5, 3.5))
    p["skull_thickness_mm"] = float(rng.uniform(5.0, 9.0))
    p["csf_layer_mm"] = float(rng.uniform(1.0, 2.5))
    p["scalp_mm"] = float(rng.uniform(3.0, 5.0))
    p["fat_mm"] = float(rng.uniform(2.0, 4.0))
    p["ventricle_dilation_mm"] = float(rng.uniform(-1.0, 4.0))
    n_les = int(rng.choice(4, p=[0.35, 0.3, 0.2, 0.15]))
    centers = sample_wm_points(model_mm, rng, n_les)
    p["lesions"] = [{"center_lps_mm": [float(v) for v in c],
                     "semi_axes_mm": [float(rng.uniform(2.5, 6.0)) for _ in range(3)],
                     "angles_rad": [float(rng.uniform(-np.pi, np.pi)) for _ in range(3)]}
                    for c in centers]
    p["texture_seed"] = int(rng.integers(2**31))
    # Per-patient tissue properties: real heads differ in T1 and density, not only in shape.
    p["mr_tissue_jitter"] = {k: float(rng.normal(0, 0.03)) for k in ("csf", "gm", "wm", "fat",
                                                                    "soft_tissue")}
    p["ct_tissue_jitter_hu"] = {k: float(rng.normal(0, 3.0)) for k in ("csf", "gm", "wm",
                                                                      "soft_tissue", "fat")}
    p["bone_density_factor"] = float(rng.uniform(0.9, 1.1))
    p["mr_gain"] = float(rng.uniform(0.9, 1.1))
    p["texture_mr"] = float(rng.uniform(0.02, 0.05))
    p["texture_ct_hu"] = float(rng.uniform(1.5, 4.0))
    # Rigid MR<->CT misalignment: magnitudes between 40 % and 100 % of the center's bound so
    # every patient really needs registration.
    sign = rng.choice([-1.0, 1.0], size=6)
    p["rigid_rotation_deg"] = tuple(float(sign[i] * rng.uniform(0.4, 1.0)
                                          * prof.max_rotation_deg) for i in range(3))
    p["rigid_translation_mm"] = tuple(float(sign[3 + i] * rng.uniform(0.4, 1.0)
                                            * prof.max_translation_mm) for i in range(3))
    p["head_jitter_mm"] = tuple(float(v) for v in rng.uniform(-1.0, 1.0, 3))
    p["mr_grid_jitter"] = tuple(float(v) for v in rng.uniform(-1.0, 1.0, 3))
    p["couch_gap_mm"] = float(rng.uniform(0.0, 1.0))
    p["bias_coeffs"] = rng.standard_normal(9).tolist()
    p["noise_seed"] = int(rng.integers(2**31))
    return p


def _tissue_values(prof: CenterProfile, p: dict) -> tuple[dict[str, float], dict[str, float]]:
    base = _T1_3T if prof.field_strength_t >= 2.0 else _T1_15T
    wm = prof.mr_scale * p["mr_gain"]
    mr = {k: wm * v * (1.0 + p["mr_tissue_jitter"].get(k, 0.0)) for k, v in base.items()}
    mr["ventricles"] = mr["csf"] * base["ventricles"] / base["csf"]
    hu = {k: v + p["ct_tissue_jitter_hu"].get(k, 0.0) for k, v in _HU_120.items()}
    hu["ventricles"] = hu["csf"] - 2.0
    hu["lesion"] = hu["wm"] - 8.0
    bone = p["bone_density_factor"] * (0.9 if prof.kvp >= 140 else 1.0)
    hu["bone_cortical"] *= bone
    hu["bone_diploe"] *= bone
    if prof.kvp >= 140:
        # Harder beam: fat attenuates relatively more like water; soft tissue ~1-2 HU lower.
        hu["fat"] += 10.0
        for k in ("csf", "gm", "wm", "ventricles", "lesion", "soft_tissue"):
            hu[k] -= 1.5
    return mr, hu


def _bias(xyz: tuple[np.ndarray, ...], center: np.ndarray, coeffs: np.ndarray,
          amplitude: float, norm: float) -> np.ndarray:
    """exp(amplitude * f(q)), f = linear + quadratic polynomial of q = (p - c) / 100 mm: the
    slowly varying receive/transmit (B1) inhomogeneity that N4 (Tustison et al., IEEE TMI
    29:1310, 2010) removes."""
    q = [(xyz[i] - center[i]) / 100.0 for i in range(3)]
    f = (coeffs[0] * q[0] + coeffs[1] * q[1] + coeffs[2] * q[2]
         + 0.5 * (coeffs[3] * q[0] * q[0] + coeffs[4] * q[1] * q[1] + coeffs[5] * q[2] * q[2])
         + 0.5 * (coeffs[6] * q[0] * q[1] + coeffs[7] * q[1] * q[2] + coeffs[8] * q[0] * q[2]))
    return np.exp(amplitude * f / norm).astype(np.float32)


def _bias_norm(coeffs: np.ndarray, rng: np.random.Generator) -> float:
    # Normalise over a 90 mm ball around the head centre: the head, not the corners of the FOV.
    pts = rng.uniform(-90.0, 90.0, (512, 3))
    pts = pts[np.linalg.norm(pts, axis=1) <= 90.0]
    c = np.zeros(3)
    f = _bias(tuple(pts[:, i] for i in range(3)), c, coeffs, 1.0, 1.0)
    return float(np.abs(np.log(f)).max()) or 1.0


def generate_patient(center: str, index: int, seed: int, out_dir: str | Path, *,
                     resolution_scale: float = 1.0,
                     profiles: dict[str, CenterProfile] | None = None) -> dict:
    """Write one demo patient's ``mr.nii.gz``, ``ct.nii.gz`` (+ ``mask.nii.gz``) and ``truth/``.

    Every random choice comes from ``numpy.random.default_rng(derive_seed(seed, "demo", center,
    index))``, so the same arguments give byte-identical arrays. Returns the truth record (also
    written to ``truth/truth.json``); its ``convention`` key states the direction of the rigid
    transform.
    """
    profiles = CENTER_PROFILES if profiles is None else profiles
    if center not in profiles:
        raise KeyError(f"no demo profile for center {center!r} (known: {sorted(profiles)})")
    prof = scaled_profile(profiles[center], resolution_scale)
    out = Path(out_dir)
    truth_dir = out / "truth"
    model_mm = model_spacing(resolution_scale)
    rng = np.random.default_rng(derive_seed(seed, "demo", center, index))
    p = _draw_patient(rng, prof, model_mm)
    mr_vals, hu_vals = _tissue_values(prof, p)

    fields = head_fields(
        model_mm, skull_thickness_mm=p["skull_thickness_mm"], csf_layer_mm=p["csf_layer_mm"],
        scalp_mm=p["scalp_mm"], fat_mm=p["fat_mm"],
        ventricle_dilation_mm=p["ventricle_dilation_mm"], lesions=p["lesions"],
        texture_seed=p["texture_seed"])

    # ---- patient placement in the CT frame (patient space == CT physical space)
    jitter = np.array(p["head_jitter_mm"]) * np.array([4.0, 4.0, 8.0])
    c_pat = jitter
    c_tmpl = np.array(TEMPLATE_HEAD_CENTER_LPS)
    rot = _rotation_matrix(np.deg2rad(p["affine_rotation_deg"]))
    # A narrow field of view (center A's 176 mm sagittal slab) takes narrower heads only: the
    # grown template head is ~180 mm wide, and the whole head must lie inside both grids.
    fov_lr = min(Grid.centered(size, sp, o, np.zeros(3)).extent_mm()[0] for size, sp, o in (
        (prof.mr_size, prof.mr_spacing, prof.mr_orientation),
        (prof.ct_size, prof.ct_spacing, prof.ct_orientation)))
    scale = np.array(p["affine_scale"])
    scale[0] = min(scale[0], (fov_lr - 14.0) / _TEMPLATE_HEAD_WIDTH_MM)
    p["affine_scale"] = tuple(float(v) for v in scale)
    # patient point x -> template point: c_tmpl + diag(1/s) R^T (x - c_pat)
    m_pt = np.diag(1.0 / scale) @ rot.T
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(m_pt.ravel().tolist())
    affine.SetCenter(c_pat.tolist())
    affine.SetTranslation((c_tmpl - c_pat).tolist())
    elastic, elastic_stats = _elastic_transform(np.random.default_rng(p["elastic_seed"]), c_pat,
                                                rms_mm=p["elastic_rms_mm"])
    to_template = sitk.CompositeTransform([affine, elastic])  # elastic first, then affine

    # CT field of view centred on the head (reconstruction FOV is set on the head; the couch
    # sits below it, partly outside a small field of view, as in real head CTs).
    ct_center = np.array([c_pat[0] - jitter[0] * 0.5, c_pat[1], c_pat[2] - 10.0])
    ct_grid = Grid.centered(prof.ct_size, prof.ct_spacing, prof.ct_orientation, ct_center)

    # ---- rigid MR <- CT transform (truth) and the MR grid
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(c_pat.tolist())
    rigid.SetRotation(*[math.radians(a) for a in p["rigid_rotation_deg"]])
    rigid.SetTranslation(p["rigid_translation_mm"])
    mr_head = np.array(rigid.TransformPoint(c_pat.tolist()))
    mr_extent = Grid.centered(prof.mr_size, prof.mr_spacing, prof.mr_orientation,
                              np.zeros(3)).extent_mm()
    head_extent = np.array([_TEMPLATE_HEAD_WIDTH_MM, 214.0, 0.0]) * scale.max()
    slack = np.clip((mr_extent - head_extent) / 2.0 - 2.0, 0.0, 8.0)
    slack[2] = min(8.0, max(0.0, (mr_extent[2] / 2.0 - 100.0)))
    mr_center = mr_head + np.array(p["mr_grid_jitter"]) * slack + np.array([0.0, 0.0, -10.0])
    mr_grid = Grid.centered(prof.mr_size, prof.mr_spacing, prof.mr_orientation, mr_center)
    mr_to_template = sitk.CompositeTransform([affine, elastic, rigid.GetInverse()])

    # ---- MR
    noise_rng = np.random.default_rng(p["noise_seed"])
    coeffs = np.array(p["bias_coeffs"])
    norm = _bias_norm(coeffs, noise_rng)
    mr_arr = np.zeros(prof.mr_size[::-1], np.float32)
    bias_arr = np.zeros_like(mr_arr)
    lab_mr = np.zeros(prof.mr_size[::-1], np.uint8)
    sigma_mr = prof.mr_noise * mr_vals["wm"]

    def paint_mr(k0: int, k1: int, comp: Any, xyz: tuple) -> None:
        sig = np.zeros(comp.texture.shape, np.float32)
        for name, frac in comp.fractions.items():
            sig += frac * np.float32(mr_vals[name])
        brain = sum(comp.fractions[n] for n in ("gm", "wm", "csf", "ventricles", "lesion"))
        sig *= 1.0 + np.float32(p["texture_mr"]) * comp.texture * brain
        b = _bias(xyz, mr_head, coeffs, prof.bias_amplitude, norm)
        b = np.broadcast_to(b, sig.shape)
        n1 = noise_rng.standard_normal(sig.shape, dtype=np.float32) * np.float32(sigma_mr)
        n2 = noise_rng.standard_normal(sig.shape, dtype=np.float32) * np.float32(sigma_mr)
        # Rician magnitude noise (Gudbjartsson & Patz, MRM 34:910, 1995).
        mr_arr[k0:k1] = np.sqrt((sig * b + n1) ** 2 + n2 ** 2)
        bias_arr[k0:k1] = b
        lab_mr[k0:k1] = compose_labels(comp)

    _render(fields, mr_grid, mr_to_template, model_mm, paint_mr)

    # ---- CT: anatomy first, then the couch below the back of the head, then noise
    hu_arr = np.zeros(prof.ct_size[::-1], np.float32)
    lab_ct = np.zeros(prof.ct_size[::-1], np.uint8)
    back = [-np.inf]

    def paint_ct(k0: int, k1: int, comp: Any, xyz: tuple) -> None:
        hu = np.full(comp.texture.shape, -1000.0, np.float32)
        for name, frac in comp.fractions.items():
            hu += frac * np.float32(hu_vals[name] + 1000.0)
        brain = sum(comp.fractions[n] for n in ("gm", "wm", "csf", "ventricles", "lesion"))
        hu += np.float32(p["texture_ct_hu"]) * comp.texture * brain
        labels = compose_labels(comp)
        if labels.any():
            back[0] = max(back[0], float(np.broadcast_to(xyz[1], labels.shape)[labels > 0].max()))
        hu_arr[k0:k1] = hu
        lab_ct[k0:k1] = labels

    _render(fields, ct_grid, to_template, model_mm, paint_ct)
    # The gap keeps couch and head apart by >= 1.5 in-plane voxels (a foam cushion in reality),
    # so a threshold + largest-component head mask can separate them.
    sp_y = _axis_spacing(prof.ct_spacing, prof.ct_orientation, 1)
    gap = max(5.0, 1.5 * sp_y) + 10.0 * p["couch_gap_mm"]
    head_back_y = back[0] + 0.5 * sp_y
    couch_top = head_back_y + gap
    couch_thickness, shell = 40.0, 3.0
    curve = 10.0 / 80.0 ** 2  # head-holder curvature: 10 mm higher at +-80 mm, flat beyond 110
    ct_arr = np.zeros(prof.ct_size[::-1], np.int16)
    for k0, k1 in ct_grid.slabs():
        x, y, _ = ct_grid.physical(k0, k1)
        hu = hu_arr[k0:k1]
        labels = lab_ct[k0:k1]
        shape = hu.shape
        top = couch_top - curve * np.minimum((x - c_pat[0]) ** 2, 110.0 ** 2)
        depth = np.broadcast_to(y - top, shape)
        in_couch = (depth >= 0) & (depth <= couch_thickness) & np.broadcast_to(
            np.abs(x - c_pat[0]) < 230.0, shape)
        in_shell = in_couch & ((depth < shell) | (depth > couch_thickness - shell))
        hu = np.where(in_shell, np.float32(_COUCH_HU["shell"]), hu)
        hu = np.where(in_couch & ~in_shell, np.float32(_COUCH_HU["core"]), hu)
        lab_ct[k0:k1] = np.where(in_couch, np.uint8(LABELS["couch"]), labels)
        hu = hu + noise_rng.standard_normal(shape, dtype=np.float32) * np.float32(
            prof.ct_noise_hu)
        ct_arr[k0:k1] = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    # ---- write
    out.mkdir(parents=True, exist_ok=True)
    write_volume(_with_geometry(mr_arr, mr_grid), out / "mr.nii.gz")
    write_volume(_with_geometry(ct_arr, ct_grid), out / "ct.nii.gz")
    mask_path = None
    if prof.ships_mask:
        mask = ((lab_ct > 0) & (lab_ct != LABELS["couch"])).astype(np.uint8)
        mask_path = out / "mask.nii.gz"
        write_volume(_with_geometry(mask, ct_grid), mask_path)
    write_volume(_with_geometry(bias_arr, mr_grid), truth_dir / "bias_field.nii.gz")
    write_volume(_with_geometry(lab_mr, mr_grid), truth_dir / "labels_mr.nii.gz")
    write_volume(_with_geometry(lab_ct, ct_grid), truth_dir / "labels_ct.nii.gz")
    truth_dir.mkdir(parents=True, exist_ok=True)
    sitk.WriteTransform(rigid, str(truth_dir / "rigid.tfm"))

    def volume_ml(lab: np.ndarray, grid: Grid, names: tuple[str, ...]) -> float:
        n = int(np.isin(lab, [LABELS[k] for k in names]).sum())
        return round(n * float(np.prod(grid.spacing)) / 1000.0, 2)

    truth = {
        "patient_id": patient_id(center, index),
        "center": center,
        "index": int(index),
        "seed": int(seed),
        "patient_seed": derive_seed(seed, "demo", center, index),
        "resolution_scale": float(resolution_scale),
        "model_spacing_mm": model_mm,
        "template": TEMPLATE_CITATION,
        "convention": CONVENTION,
        "rotation_deg": list(p["rigid_rotation_deg"]),
        "translation_mm": list(p["rigid_translation_mm"]),
        "center_mm": c_pat.tolist(),
        "matrix": np.array(rigid.GetMatrix()).reshape(3, 3).tolist(),
        "rigid_tfm": "rigid.tfm",
        "labels": dict(LABELS),
        "files": {"mr": "mr.nii.gz", "ct": "ct.nii.gz",
                  "mask": "mask.nii.gz" if mask_path else None,
                  "bias_field": "truth/bias_field.nii.gz", "labels_mr": "truth/labels_mr.nii.gz",
                  "labels_ct": "truth/labels_ct.nii.gz", "rigid_tfm": "truth/rigid.tfm"},
        "anatomy": {
            "affine_rotation_deg": list(p["affine_rotation_deg"]),
            "affine_scale": list(p["affine_scale"]),
            "template_center_lps_mm": c_tmpl.tolist(),
            "patient_center_lps_mm": c_pat.tolist(),
            "deformation": {"seed": p["elastic_seed"], **elastic_stats},
            "skull_thickness_mm": p["skull_thickness_mm"],
            "csf_layer_mm": p["csf_layer_mm"],
            "scalp_mm": p["scalp_mm"],
            "fat_mm": p["fat_mm"],
            "ventricle_dilation_mm": p["ventricle_dilation_mm"],
            "ventricle_volume_ml_ct": volume_ml(lab_ct, ct_grid, ("ventricles",)),
            "brain_volume_ml_ct": volume_ml(lab_ct, ct_grid, ("gm", "wm", "lesion")),
            "lesions": p["lesions"],
            "lesion_coordinates": "template space (MNI, LPS mm) before the patient deformation",
            "texture_seed": p["texture_seed"],
        },
        "mr": {
            "geometry": mr_grid.to_dict(), "orientation": prof.mr_orientation,
            "field_strength_t": prof.field_strength_t, "scanner": prof.mr_scanner,
            "noise_sd": sigma_mr, "bias_amplitude": prof.bias_amplitude,
            "tissue_intensity": mr_vals,
        },
        "ct": {
            "geometry": ct_grid.to_dict(), "orientation": prof.ct_orientation, "kvp": prof.kvp,
            "scanner": prof.ct_scanner, "noise_sd_hu": prof.ct_noise_hu, "tissue_hu": hu_vals,
            "couch": {"top_y_lps_mm": couch_top, "gap_to_head_mm": gap,
                      "thickness_mm": couch_thickness, "shell_hu": _COUCH_HU["shell"],
                      "core_hu": _COUCH_HU["core"]},
        },
        "profile": asdict(profiles[center]),
        "profile_scaled": asdict(prof),
    }
    write_json(truth, truth_dir / "truth.json")
    return truth


def _axis_spacing(spacing: Vec3, orientation: str, physical_axis: int) -> float:
    """Spacing of the index axis that runs along LPS axis ``physical_axis``."""
    d = np.abs(np.array(sitk.DICOMOrientImageFilter.GetDirectionCosinesFromOrientation(
        orientation)).reshape(3, 3))
    return float(spacing[int(np.argmax(d[physical_axis]))])

