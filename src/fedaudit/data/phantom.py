"""A head model grown around the MNI ICBM152 2009 brain, for the embedded demo data.

The brain comes from the templates bundled in nilearn's wheel (no download):
the MNI ICBM152 2009 nonlinear symmetric T1 template's grey-matter and white-matter probability
maps and its brain mask (Fonov et al., "Unbiased nonlinear average age-appropriate brain
templates from birth to adulthood", NeuroImage 47 S102, 2009; Fonov et al., "Unbiased average
age-appropriate atlases for pediatric studies", NeuroImage 54(1):313-327, 2011). Everything
outside the brain is a caricature grown with distance transforms: a thin subarachnoid CSF layer,
the skull (inner table, diploe, outer table), scalp soft tissue, subcutaneous fat, and a neck
(soft tissue around a bony canal that holds the continuation of the brain stem) so the head does
not float.

The model is not an image: it is a stack of smooth *fields* (tissue fractions and signed
distances in mm) on a coarse grid in template space. The demo generator resamples the fields onto
each modality's grid and only there turns them into labels, T1-weighted intensities and HU
(:func:`compose_labels`), so thin layers such as the skull tables stay crisp on fine grids while
the model itself stays small (2 mm: ~2.6 M voxels, built in well under a second).

Physical coordinates are SimpleITK's LPS millimetres (x to the patient's left, y posterior,
z superior); the template's own RAS world coordinates are converted once when loading.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

# Label values written to labels_mr.nii.gz / labels_ct.nii.gz (uint8). "couch" only ever
# appears on the CT grid.
LABELS: dict[str, int] = {
    "background": 0,
    "csf": 1,            # subarachnoid / sulcal CSF and the spinal canal
    "gm": 2,
    "wm": 3,
    "ventricles": 4,     # CSF of the lateral/third ventricles (central part of the brain)
    "lesion": 5,         # small WM lesions, T1-hypointense and slightly hypodense on CT
    "bone_cortical": 6,  # skull inner/outer table and the cervical canal wall
    "bone_diploe": 7,    # cancellous middle layer of the skull
    "soft_tissue": 8,    # scalp, muscle, neck
    "fat": 9,            # subcutaneous fat
    "couch": 10,         # patient couch / head rest (CT only)
}
BRAIN_LABELS: tuple[int, ...] = (LABELS["csf"], LABELS["gm"], LABELS["wm"], LABELS["ventricles"],
                                 LABELS["lesion"])

# Distances are stored as (OFFSET_MM - d) clipped at 0 so that the resampler's default value 0
# (outside the model grid) decodes to "far outside" rather than to "on the surface".
OFFSET_MM = 100.0

# Order of the components of HeadFields.vector (and of the resampled vector image).
FIELD_NAMES: tuple[str, ...] = ("gm", "wm", "ventricles", "lesion", "inv_d_icv", "inv_d_body",
                                "texture")

# Template head centre (LPS mm): middle of the brain, a little below the vertex-chin midpoint.
TEMPLATE_HEAD_CENTER_LPS: tuple[float, float, float] = (0.0, 18.0, 5.0)
# Level (LPS z, mm) below which the body is the neck cylinder only.
_NECK_TOP_Z = -30.0
# Ventricles are the CSF inside this central box (RAS mm of the MNI template).
_VENTRICLE_BOX_RAS = ((-30.0, 30.0), (-50.0, 30.0), (-8.0, 32.0))


@dataclass(frozen=True)
class TemplateBrain:
    """The MNI brain resampled to a model grid (arrays are z, y, x; geometry is LPS)."""

    spacing_mm: float
    origin: tuple[float, float, float]
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray          # brain-mask fraction
    ventricle_sd: np.ndarray   # signed distance to the template ventricles (mm, < 0 inside)
    icv_sd: np.ndarray         # signed distance to the closed intracranial envelope (mm)
    z_mm: np.ndarray           # LPS z of every slice
    y_mm: np.ndarray
    x_mm: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.gm.shape

    def reference(self) -> sitk.Image:
        img = sitk.Image([int(n) for n in self.shape[::-1]], sitk.sitkUInt8)
        img.SetSpacing([self.spacing_mm] * 3)
        img.SetOrigin(self.origin)
        return img


@dataclass(frozen=True)
class HeadFields:
    """One patient's head in template space: the fields of FIELD_NAMES plus the layer geometry.

    ``data`` is (z, y, x, field) float32 with a one-voxel border of zeros, so that sampling
    outside the model grid reads 0 (= "far outside" for the distance fields)."""

    data: np.ndarray
    origin: tuple[float, float, float]   # LPS mm of data[1, 1, 1] (the first real voxel)
    spacing_mm: float
    csf_layer_mm: float
    skull_thickness_mm: float
    fat_mm: float

    def sample(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Trilinear interpolation at LPS points (arrays of one shape) -> (..., n_fields).

        Done in numpy rather than by ITK's resampler (which, with a displacement-field
        transform, costs ~1 us per voxel for a vector image). Points clearly outside the body
        only get the body-distance field: every tissue fraction there is 0 anyway, and most of a
        CT field of view is air.
        """
        a = self.data
        nz, ny, nx, nc = a.shape
        shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
        idx, frac = [], []
        for coord, o, n in ((z, self.origin[2], nz), (y, self.origin[1], ny),
                            (x, self.origin[0], nx)):
            c = np.clip((np.broadcast_to(coord, shape).ravel() - o) / self.spacing_mm + 1.0,
                        0.0, n - 1.001).astype(np.float32)
            i0 = c.astype(np.int64)
            idx.append(i0)
            frac.append(c - i0)
        base = (idx[0] * ny + idx[1]) * nx + idx[2]
        offsets = [dz * ny * nx + dy * nx + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]

        def weights(sel: np.ndarray | slice) -> list[np.ndarray]:
            fz, fy, fx = (f[sel] for f in frac)
            return [(fz if dz else 1.0 - fz) * (fy if dy else 1.0 - fy) * (fx if dx else 1.0 - fx)
                    for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]

        ib = FIELD_NAMES.index("inv_d_body")
        body = a[..., ib].ravel()  # a copy: gathers from a contiguous vector are faster
        inv_body = np.zeros(base.shape, np.float32)
        for off, w in zip(offsets, weights(slice(None)), strict=True):
            inv_body += body[base + off] * w
        out = np.zeros(base.shape + (nc,), np.float32)
        out[:, ib] = inv_body
        near = np.flatnonzero(inv_body > OFFSET_MM - 3.0 * self.spacing_mm)
        if near.size:
            flat_a = a.reshape(-1, nc)
            b_near = base[near]
            acc = np.zeros((near.size, nc), np.float32)
            buf = np.empty_like(acc)
            for off, w in zip(offsets, weights(near), strict=True):
                np.take(flat_a, b_near + off, axis=0, out=buf)
                buf *= w[:, None]
                acc += buf
            out[near] = acc
        return out.reshape(shape + (nc,))


@functools.lru_cache(maxsize=2)
def load_mni_templates() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GM, WM probability maps and brain mask of MNI ICBM152 2009 at 1 mm (nilearn's copy).

    Returns arrays in nibabel (i, j, k) = RAS order plus the 4x4 RAS affine. Only the loaders that
    read the files shipped inside the nilearn wheel are used; nothing is downloaded.
    """
    from nilearn import datasets

    gm = datasets.load_mni152_gm_template(resolution=1)
    wm = datasets.load_mni152_wm_template(resolution=1)
    mask = datasets.load_mni152_brain_mask(resolution=1)
    return (gm.get_fdata(dtype=np.float32), wm.get_fdata(dtype=np.float32),
            mask.get_fdata(dtype=np.float32), np.asarray(gm.affine, dtype=float))


def _to_sitk_lps(arr_ras: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A nibabel RAS array with a diagonal affine as an LPS SimpleITK image."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr_ras.transpose(2, 1, 0)))
    spacing = np.abs(np.diag(affine)[:3])
    img.SetSpacing(spacing.tolist())
    origin_ras = affine[:3, 3]
    img.SetOrigin((-origin_ras[0], -origin_ras[1], origin_ras[2]))
    img.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    return img


# Template brains read from a file (:func:`use_template_file`), by spacing: the demo builds one
# per study (rule demo_template) instead of once per patient (~2 s each).
_FROM_FILE: dict[float, TemplateBrain] = {}
_ARRAYS = ("gm", "wm", "brain", "ventricle_sd", "icv_sd", "z_mm", "y_mm", "x_mm")


def save_template(tb: TemplateBrain, path: str) -> None:
    """Write ``tb`` to an ``.npz`` (atomic, verified) that :func:`use_template_file` reads."""
    from fedaudit.atomic import save_npz

    save_npz(path, compressed=True, spacing_mm=np.float64(tb.spacing_mm),
             origin=np.asarray(tb.origin),
             **{name: getattr(tb, name) for name in _ARRAYS})


def use_template_file(path: str) -> TemplateBrain:
    """Read a template written by :func:`save_template`; :func:`template_brain` of its spacing
    returns it from now on in this process. The arrays are the saved ones bit for bit, so a
    patient generated from the file equals one generated from a freshly built template."""
    with np.load(path) as data:
        tb = TemplateBrain(float(data["spacing_mm"]), tuple(float(v) for v in data["origin"]),
                           **{name: data[name] for name in _ARRAYS})
    _FROM_FILE[tb.spacing_mm] = tb
    return tb


def template_brain(spacing_mm: float = 2.0) -> TemplateBrain:
    """The template brain of ``spacing_mm`` (:func:`build_template_brain`): the one read from a
    file for that spacing when there is one, else built (once per process)."""
    return _FROM_FILE.get(float(spacing_mm)) or build_template_brain(float(spacing_mm))


@functools.lru_cache(maxsize=4)
def build_template_brain(spacing_mm: float = 2.0) -> TemplateBrain:
    """The template brain on an axis-aligned LPS grid of ``spacing_mm``, padded for the head.

    The grid is padded so the skull/scalp fit around the brain and the neck reaches 100 mm below
    the template's lowest slice; the brain stem's lowest cross-section is extended downward as a
    cord. Ventricles are the template CSF (brain mask - GM - WM) inside a central box; the
    intracranial envelope is the brain mask closed with a ~6 mm ball so the skull follows a smooth
    inner surface instead of every sulcus.
    """
    gm1, wm1, mask1, affine = load_mni_templates()
    s = float(spacing_mm)
    # LPS extent of the template (RAS x,y flip): x in [-98, 98], y in [-98, 134], z in [-72, 116].
    pad_lr, pad_ap, pad_top, pad_bottom = 30.0, 30.0, 30.0, 100.0
    lo = np.array([-98.0 - pad_lr, -98.0 - pad_ap, -72.0 - pad_bottom])
    hi = np.array([98.0 + pad_lr, 134.0 + pad_ap, 116.0 + pad_top])
    size = np.ceil((hi - lo) / s).astype(int) + 1
    ref = sitk.Image([int(n) for n in size], sitk.sitkFloat32)
    ref.SetSpacing([s] * 3)
    ref.SetOrigin(lo.tolist())

    k = max(1, int(s))

    def resample(arr: np.ndarray) -> np.ndarray:
        # Block means (BinShrink) are the exact partial volumes of a k-times coarser grid and
        # cost almost nothing; a Gaussian covers the rest of the way to a non-integer spacing.
        img = _to_sitk_lps(arr, affine)
        if k > 1:
            img = sitk.BinShrink(img, [k, k, k])
        if s > k + 1e-6:
            img = sitk.SmoothingRecursiveGaussian(img, 0.4 * float(np.sqrt(s * s - k * k)))
        out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return np.clip(sitk.GetArrayFromImage(out), 0.0, 1.0)

    gm, wm, brain = resample(gm1), resample(wm1), resample(mask1)
    z = lo[2] + s * np.arange(size[2])
    y = lo[1] + s * np.arange(size[1])
    x = lo[0] + s * np.arange(size[0])

    # Extend the lowest template slice downward as the cord (shrunk: the medulla is wider).
    k0 = int(np.searchsorted(z, -72.0 + 2 * s))
    below = np.arange(k0)
    for arr in (gm, wm, brain):
        arr[below] = 0.0
    cord = brain[k0] > 0.5
    cord = ndimage.binary_erosion(cord, iterations=max(1, int(round(2.0 / s))))
    brain[below] = cord.astype(np.float32)
    wm[below] = 0.8 * cord
    gm[below] = 0.1 * cord
    total = gm + wm
    over = total > brain
    gm[over] *= brain[over] / np.maximum(total[over], 1e-6)
    wm[over] *= brain[over] / np.maximum(total[over], 1e-6)

    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    (bx0, bx1), (by0, by1), (bz0, bz1) = _VENTRICLE_BOX_RAS
    box = ((-xx >= bx0) & (-xx <= bx1) & (-yy >= by0) & (-yy <= by1) & (zz >= bz0) & (zz <= bz1))
    vent = (csf > 0.45) & box
    # Keep the big connected pieces only: the box also catches sulcal CSF near the midline.
    lab, n = ndimage.label(vent)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        vent = np.isin(lab, 1 + np.flatnonzero(sizes >= max(8, 0.05 * sizes.max())))
    # Only the neighbourhood of the ventricles matters: a cropped distance map is much cheaper.
    vent_sd = np.full(vent.shape, 1e3, np.float32)
    if vent.any():
        nz = np.argwhere(vent)
        m = int(np.ceil(20.0 / s))
        lo_i = np.maximum(nz.min(axis=0) - m, 0)
        hi_i = np.minimum(nz.max(axis=0) + m + 1, vent.shape)
        box_sl = tuple(slice(int(a), int(b)) for a, b in zip(lo_i, hi_i, strict=True))
        vent_sd[box_sl] = _signed_distance(vent[box_sl], s)

    # Closing by distance maps (dilate 6 mm, erode 6 mm): exact ball, any spacing, fast.
    dilated = _signed_distance(brain > 0.5, s) <= 6.0
    closed = ndimage.binary_fill_holes(_signed_distance(dilated, s) <= -6.0 + 0.5 * s)
    icv_sd = _signed_distance(closed | (brain > 0.5), s)
    return TemplateBrain(s, tuple(lo.tolist()), gm.astype(np.float32), wm.astype(np.float32),
                         brain.astype(np.float32), vent_sd, icv_sd, z, y, x)


def _signed_distance(mask: np.ndarray, spacing: float) -> np.ndarray:
    """Signed Euclidean distance (mm) to the boundary of ``mask`` (z, y, x): negative inside.

    ITK's Maurer transform (exact, multi-threaded) gives 0 on the boundary voxels; shifting by
    half a voxel puts the zero level on the voxel faces, symmetric inside/outside.
    """
    if not mask.any():
        return np.full(mask.shape, 1e3, np.float32)
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing([float(spacing)] * 3)
    d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False,
                                     useImageSpacing=True, backgroundValue=0)
    return (sitk.GetArrayFromImage(d) - 0.5 * spacing).astype(np.float32)


def _smooth_step(d: np.ndarray, width: float) -> np.ndarray:
    """1 where d << 0, 0 where d >> 0, linear over ``width`` mm: a partial-volume edge."""
    return np.clip(0.5 - d / max(width, 1e-6), 0.0, 1.0)


def head_fields(
    spacing_mm: float,
    *,
    skull_thickness_mm: float = 7.0,
    csf_layer_mm: float = 1.5,
    scalp_mm: float = 4.0,
    fat_mm: float = 3.0,
    ventricle_dilation_mm: float = 0.0,
    lesions: list[dict] | None = None,
    texture_seed: int = 0,
    texture_sigma_mm: float = 10.0,
) -> HeadFields:
    """One patient's anatomy in template space as smooth fields (see FIELD_NAMES).

    ``ventricle_dilation_mm`` moves the ventricle surface outward (> 0, enlarged ventricles as
    with age or hydrocephalus) or inward (< 0) inside the brain; ``lesions`` are ellipsoids
    (``center_lps_mm``, ``semi_axes_mm``, ``angles_rad``) that replace WM/GM; the texture is a
    zero-mean smooth Gaussian random field (unit sd) that the generator scales per modality.
    The body outline is the head (envelope + CSF layer + skull + scalp + fat) united with a neck
    cylinder below the skull base.
    """
    tb = template_brain(spacing_mm)
    s = tb.spacing_mm
    # Ventricle change only inside the brain's central region, never through the cortex.
    vent = _smooth_step(tb.ventricle_sd - ventricle_dilation_mm, s)
    vent *= (tb.ventricle_sd < 12.0) * tb.brain
    gm = tb.gm * (1.0 - vent)
    wm = tb.wm * (1.0 - vent)

    les = np.zeros(tb.shape, np.float32)
    zz, yy, xx = np.meshgrid(tb.z_mm, tb.y_mm, tb.x_mm, indexing="ij", sparse=True)
    for lesion in lesions or []:
        c = np.asarray(lesion["center_lps_mm"], float)
        ax = np.asarray(lesion["semi_axes_mm"], float)
        rot = _rotation(*lesion["angles_rad"])
        sl = _bbox_slices(tb, c, ax.max() + 2 * s)
        p = [xx[..., sl[2]] - c[0], yy[:, sl[1], :] - c[1], zz[sl[0]] - c[2]]
        q = [rot[0, i] * p[0] + rot[1, i] * p[1] + rot[2, i] * p[2] for i in range(3)]
        r = np.sqrt(sum((qi / ai) ** 2 for qi, ai in zip(q, ax, strict=True)))
        # Radial distance in mm (approximately): (r - 1) * mean semi-axis.
        frac = _smooth_step((r - 1.0) * ax.mean(), s)
        les[sl] = np.maximum(les[sl], frac)
    les *= np.clip(gm + wm, 0.0, 1.0)
    take = np.where(gm + wm > 0, les / np.maximum(gm + wm, 1e-6), 0.0)
    gm = gm * (1.0 - take)
    wm = wm * (1.0 - take)

    d_icv = tb.icv_sd
    head_out = csf_layer_mm + skull_thickness_mm + scalp_mm + fat_mm
    head = d_icv < head_out
    head &= (zz >= _NECK_TOP_Z - 25.0) | (d_icv < csf_layer_mm + skull_thickness_mm + 1.0)
    # Neck: an elliptic cylinder below the skull base, centred a little anterior of the cord.
    cord = tb.brain[0] > 0.5
    if cord.any():
        cy = float(tb.y_mm[np.nonzero(cord)[0]].mean()) - 12.0
        cx = float(tb.x_mm[np.nonzero(cord)[1]].mean())
    else:
        cy, cx = 20.0, 0.0
    neck = (((xx - cx) / 58.0) ** 2 + ((yy - cy) / 62.0) ** 2 <= 1.0) & (zz <= _NECK_TOP_Z)
    body = head | neck
    d_body = _signed_distance(body, s)

    rng = np.random.default_rng(texture_seed)
    noise = sitk.GetImageFromArray(rng.standard_normal(tb.shape).astype(np.float32))
    noise.SetSpacing([s] * 3)
    tex = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(noise, texture_sigma_mm))
    tex /= max(float(tex.std()), 1e-6)

    fields = [gm, wm, vent, les, np.clip(OFFSET_MM - d_icv, 0.0, None),
              np.clip(OFFSET_MM - d_body, 0.0, None), tex]
    data = np.zeros(tuple(n + 2 for n in tb.shape) + (len(fields),), np.float32)
    for i, f in enumerate(fields):
        data[1:-1, 1:-1, 1:-1, i] = f
    return HeadFields(data, tb.origin, s, csf_layer_mm, skull_thickness_mm, fat_mm)


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    """Rotation matrix R = Rz(c) Ry(b) Rx(a) (the order of SimpleITK's Euler3DTransform)."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _bbox_slices(tb: TemplateBrain, c: np.ndarray, r: float) -> tuple[slice, slice, slice]:
    def axis(coords: np.ndarray, lo: float, hi: float) -> slice:
        return slice(int(np.searchsorted(coords, lo)), int(np.searchsorted(coords, hi)) + 1)

    return (axis(tb.z_mm, c[2] - r, c[2] + r), axis(tb.y_mm, c[1] - r, c[1] + r),
            axis(tb.x_mm, c[0] - r, c[0] + r))


def sample_wm_points(spacing_mm: float, rng: np.random.Generator, n: int,
                     min_wm: float = 0.95) -> np.ndarray:
    """``n`` random LPS points (mm) deep in template white matter (for lesion centres)."""
    tb = template_brain(spacing_mm)
    deep = (tb.wm >= min_wm) & (tb.ventricle_sd > 6.0) & (tb.z_mm[:, None, None] > -20.0)
    idx = np.argwhere(deep)
    if n == 0 or len(idx) == 0:
        return np.zeros((0, 3))
    pick = idx[rng.choice(len(idx), size=n, replace=False)]
    return np.stack([tb.x_mm[pick[:, 2]], tb.y_mm[pick[:, 1]], tb.z_mm[pick[:, 0]]], axis=1)


@dataclass(frozen=True)
class Composition:
    """Per-voxel tissue fractions on a target grid, derived from resampled HeadFields."""

    fractions: dict[str, np.ndarray]   # keys: LABELS names except background/couch
    texture: np.ndarray
    skull_depth: np.ndarray            # 0 at the inner, 1 at the outer skull surface (bone only)


def compose(resampled: np.ndarray, fields: HeadFields, voxel_mm: float) -> Composition:
    """Turn resampled fields (z, y, x, len(FIELD_NAMES)) into tissue fractions on a grid.

    Layers follow the distance ``d`` outside the intracranial envelope: CSF up to
    ``csf_layer_mm``, then bone for ``skull_thickness_mm`` (outer and inner 30 % cortical tables,
    diploe between; Hounsfield's classic three-layer calvarium), then soft tissue up to the body
    outline, whose outermost ``fat_mm`` are subcutaneous fat. Edges are ramps one voxel wide.
    """
    r = resampled
    gm, wm, vent, les = (np.clip(r[..., i], 0.0, 1.0) for i in range(4))
    d_icv = OFFSET_MM - r[..., 4]
    d_body = OFFSET_MM - r[..., 5]
    tex = r[..., 6]
    w = max(float(voxel_mm), 0.5)
    c, t = fields.csf_layer_mm, fields.skull_thickness_mm

    inside_icv = _smooth_step(d_icv - c, w)
    inside_skull = _smooth_step(d_icv - c - t, w)
    inside_body = _smooth_step(d_body, w)
    inside_fat_core = _smooth_step(d_body + fields.fat_mm, w)

    brain_total = np.clip(gm + wm + vent + les, 0.0, 1.0)
    scale = np.where(brain_total > inside_icv, inside_icv / np.maximum(brain_total, 1e-6), 1.0)
    gm, wm, vent, les = gm * scale, wm * scale, vent * scale, les * scale
    csf = np.clip(inside_icv - gm - wm - vent - les, 0.0, 1.0)
    bone = np.clip(np.minimum(inside_skull, inside_body) - inside_icv, 0.0, 1.0)
    depth = np.clip((d_icv - c) / max(t, 1e-6), 0.0, 1.0)
    diploe_w = np.clip(1.0 - np.abs(depth - 0.5) / 0.2, 0.0, 1.0) ** 0.5 if t >= 3.0 else 0.0
    diploe = bone * diploe_w
    cortical = bone - diploe
    outer = np.clip(inside_body - np.maximum(inside_skull, inside_icv), 0.0, 1.0)
    fat = np.clip(outer * (1.0 - inside_fat_core), 0.0, 1.0)
    soft = outer - fat
    fr = {"csf": csf, "gm": gm, "wm": wm, "ventricles": vent, "lesion": les,
          "bone_cortical": cortical, "bone_diploe": diploe, "soft_tissue": soft, "fat": fat}
    return Composition({k: v.astype(np.float32) for k, v in fr.items()}, tex, depth)


def compose_labels(comp: Composition) -> np.ndarray:
    """Hard labels (uint8, LABELS values): the largest fraction wins where the body is > 50 %."""
    names = list(comp.fractions)
    stack = np.stack([comp.fractions[n] for n in names], axis=0)
    best = np.argmax(stack, axis=0)
    total = stack.sum(axis=0)
    values = np.array([LABELS[n] for n in names], np.uint8)
    return np.where(total >= 0.5, values[best], np.uint8(0)).astype(np.uint8)
