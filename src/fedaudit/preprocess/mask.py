"""Head masks: non-anatomical regions (scanner couch, background) are masked, "assigning -1000 HU
to CT and 0 to MRI" (paper 000, "Materials and Methods / Datasets"; FedSynthCT-Brain [12]).

Morphology is done with Euclidean distance maps in millimetres (Danielsson 1980 / Maurer et al.
2003, IEEE TPAMI 25(2)) rather than voxel kernels, so the same radii mean the same anatomy at
1 mm and 3 mm and on anisotropic grids, and cost does not grow with the radius.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

OPEN_RADIUS_MM = 6.0  # cuts couch plates and head-rest bridges thinner than ~12 mm
CLOSE_RADIUS_MM = 2.0


class MaskError(ValueError):
    """A mask that does not fit the images (wrong patient, failed registration, empty)."""


def otsu_foreground(img: sitk.Image) -> sitk.Image:
    """Voxels above Otsu's threshold (Otsu 1979, IEEE TSMC 9(1)) as uint8 on ``img``'s grid.

    Computed with scikit-image on the array: ITK's OtsuThreshold gave a different threshold from
    run to run on the same image (measured: 2582.1 vs 2582.8 ml of MR foreground), which broke
    the bit-reproducibility of the QC records.
    """
    from skimage.filters import threshold_otsu

    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    fg = sitk.GetImageFromArray((arr > threshold_otsu(arr)).astype(np.uint8))
    fg.CopyInformation(img)
    return fg


def head_mask_from_ct(ct: sitk.Image, *, threshold_hu: float = -500.0) -> sitk.Image:
    """Head mask (uint8, CT grid) from a CT in HU.

    Source: paper 000 "Datasets" (couch and background masked, after FedSynthCT-Brain [12]).
    Steps: threshold at ``threshold_hu``; morphological opening (6 mm) so the couch and foam
    head rests that touch the head are cut off; largest connected component; the opening's
    shaving of the head surface undone by a dilation constrained to the thresholded image; 3-D
    hole filling plus slice-wise (axial) filling, because sinuses and airways are open to the
    outside in 3-D but enclosed in axial slices; a small (2 mm) closing.
    """
    # Float first: on an int16 CT an upper threshold of 1e30 overflows and rejects most voxels.
    binary = sitk.Cast(sitk.BinaryThreshold(sitk.Cast(ct, sitk.sitkFloat32),
                                            lowerThreshold=float(threshold_hu),
                                            upperThreshold=1e30, insideValue=1, outsideValue=0),
                       sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(binary).any():
        raise MaskError(f"no CT voxel is above {threshold_hu} HU; is this a CT in HU?")
    opened = _dilate_mm(_erode_mm(binary, OPEN_RADIUS_MM), OPEN_RADIUS_MM)
    head = largest_component(opened)
    if not sitk.GetArrayViewFromImage(head).any():
        # everything thinner than the opening: fall back to the unopened threshold
        head = largest_component(binary)
    head = largest_component(sitk.And(_dilate_mm(head, OPEN_RADIUS_MM), binary))
    head = _fill_holes(head)
    head = _erode_mm(_dilate_mm(head, CLOSE_RADIUS_MM), CLOSE_RADIUS_MM)
    head = _fill_holes(head)
    head.CopyInformation(ct)
    return head


def check_mask(mask: sitk.Image, mr_on_ct: sitk.Image, *, min_coverage: float = 0.9,
               min_mr_fill: float = 0.3) -> dict:
    """Fraction of the MR foreground (Otsu 1979 threshold) that lies inside the head mask, and the
    mask volume in ml, and the reverse: the fraction of the head mask that the MR foreground fills
    (a T1 head fills ~0.8 of it; dark skull and CSF make up the rest). Raises MaskError when
    coverage < ``min_coverage`` or fill < ``min_mr_fill`` (an MR that shows something small or
    something else lies wholly inside the head yet cannot be this head): MR and CT of different
    patients, or a failed registration (the check the paper's per-client preprocessing implies
    but does not state; paper 000 "Datasets")."""
    _same_grid(mask, mr_on_ct, "mask", "MR")
    m = sitk.GetArrayViewFromImage(mask) > 0
    if not m.any():
        raise MaskError("mask is empty")
    fg = sitk.GetArrayFromImage(otsu_foreground(mr_on_ct)) > 0
    if not fg.any():
        raise MaskError("MR has no foreground on the CT grid: registration failed, or the MR "
                        "does not overlap the CT")
    ml = float(np.prod(mask.GetSpacing())) / 1000.0
    coverage = float((fg & m).sum() / fg.sum())
    fill = float((fg & m).sum() / m.sum())
    info = {"coverage": coverage, "mr_fill": fill, "min_mr_fill": float(min_mr_fill),
            "min_coverage": float(min_coverage),
            "mask_volume_ml": float(m.sum() * ml), "mr_foreground_ml": float(fg.sum() * ml)}
    if fill < min_mr_fill:
        raise MaskError(
            f"the MR foreground fills only {100 * fill:.1f}% of the head mask (need "
            f"{100 * min_mr_fill:.0f}%): the MR does not show this head (MR and CT of different "
            "patients or body parts, or a failed registration)")
    if coverage < min_coverage:
        raise MaskError(
            f"only {100 * coverage:.1f}% of the MR foreground lies inside the head mask (need "
            f"{100 * min_coverage:.0f}%): MR and CT of different patients, or a failed "
            "registration")
    return info


def mr_field_of_view(mr: sitk.Image, reference: sitk.Image,
                     transform: sitk.Transform) -> sitk.Image:
    """Voxels of ``reference`` (the CT grid) that the MR's field of view covers, as uint8.

    ``transform`` maps CT points to MR points (ITK convention, the registration's result). The
    MR grid's extent is resampled exactly as the registered MR was (linear interpolation, 0
    outside), so a voxel is inside iff the registered MR holds measured signal there. Voxels
    outside carry no MR information for a network to translate, so they leave the head mask
    (SynthRAD2023 crops MR and CT to a common field of view for the same reason; Thummerer et
    al., Med. Phys. 50:4664, 2023, "Data pre-processing").
    """
    ones = sitk.Image(mr.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(mr)
    covered = sitk.Resample(ones, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    out = sitk.Cast(covered > 0.5, sitk.sitkUInt8)
    out.CopyInformation(reference)
    return out


OUTLINE_OTSU_FRACTION = 0.25  # of Otsu's threshold: dark scalp fat and skull stay in the head


def mr_head(mr_on_ct: sitk.Image) -> sitk.Image:
    """The solid head as the MR shows it (uint8, the MR's grid): voxels brighter than a quarter
    of Otsu's threshold (Otsu 1979), largest connected component, holes filled (3-D and per
    axial slice, as :func:`head_mask_from_ct`). Unlike the Otsu foreground of
    :func:`check_mask`, it includes dark skull, CSF and air cavities, so its outline is the
    head's outline."""
    from skimage.filters import threshold_otsu

    arr = sitk.GetArrayFromImage(mr_on_ct).astype(np.float32)
    binary = sitk.GetImageFromArray((arr > OUTLINE_OTSU_FRACTION * threshold_otsu(arr))
                                    .astype(np.uint8))
    binary.CopyInformation(mr_on_ct)
    return _fill_holes(largest_component(binary))


def outline_agreement(mask: sitk.Image, mr_on_ct: sitk.Image) -> float:
    """Dice overlap (Dice 1945, Ecology 26:297) of the head mask (from the CT, or given) and the
    head the registered MR shows (:func:`mr_head`): about 0.95 for a true MR/CT pair of the demo
    data, lower when the MR shows another head (measured on swapped pairs: 0.91-0.97). A QC
    number for :mod:`fedaudit.preprocess.outliers`, not a pass/fail check."""
    _same_grid(mask, mr_on_ct, "mask", "MR")
    m = sitk.GetArrayViewFromImage(mask) > 0
    h = sitk.GetArrayFromImage(mr_head(mr_on_ct)) > 0  # a copy: a view would outlive its image
    total = int(m.sum()) + int(h.sum())
    return float(2 * (m & h).sum() / total) if total else 0.0


def apply_mask(ct: sitk.Image, mr: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """CT outside the mask set to exactly -1000 HU, MR outside to exactly 0 (paper 000,
    "Datasets"; FedSynthCT-Brain [12]). Both returned as float32 on their (shared) grid."""
    _same_grid(mask, ct, "mask", "CT")
    _same_grid(mask, mr, "mask", "MR")
    m = sitk.GetArrayViewFromImage(mask) > 0
    out = []
    for img, fill in ((ct, -1000.0), (mr, 0.0)):
        arr = sitk.GetArrayFromImage(img).astype(np.float32)
        arr[~m] = fill
        o = sitk.GetImageFromArray(arr)
        o.CopyInformation(img)
        out.append(o)
    return out[0], out[1]


def resample_mask_to(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A given mask on another grid, nearest-neighbour onto ``reference`` (uint8, 0 outside its
    field of view). Source: ITK ResampleImageFilter; nearest keeps the mask binary."""
    out = sitk.Resample(sitk.Cast(mask > 0, sitk.sitkUInt8), reference, sitk.Transform(),
                        sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(out).any():
        raise MaskError("the given mask does not overlap the CT grid at all")
    return out


def largest_component(binary: sitk.Image) -> sitk.Image:
    """Largest connected (face-connected) component; ITK ConnectedComponent + RelabelComponent.
    Used by head_mask_from_ct (paper 000 "Datasets": couch and background removed)."""
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(binary), sortByObjectSize=True)
    out = sitk.Cast(cc == 1, sitk.sitkUInt8)
    out.CopyInformation(binary)
    return out


def axial_axis(img: sitk.Image) -> int:
    """The numpy array axis (of GetArrayFromImage) closest to the physical S-I (LPS z) axis,
    from the image direction cosines (ITK/DICOM LPS convention); axial slices lie across it."""
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    itk_axis = int(np.argmax(np.abs(d[2, :])))  # column j = direction of index axis j
    return 2 - itk_axis


def _fill_holes(binary: sitk.Image) -> sitk.Image:
    filled = sitk.BinaryFillhole(binary, fullyConnected=False, foregroundValue=1)
    arr = sitk.GetArrayFromImage(filled).astype(bool)
    # In-plane structuring element only: each axial slice is filled on its own.
    axis = axial_axis(binary)
    struct = np.zeros((3, 3, 3), bool)
    sl = [slice(None)] * 3
    sl[axis] = 1
    struct[tuple(sl)] = ndimage.generate_binary_structure(2, 1)
    arr = ndimage.binary_fill_holes(arr, structure=struct)
    out = sitk.GetImageFromArray(arr.astype(np.uint8))
    out.CopyInformation(binary)
    return out


def _erode_mm(binary: sitk.Image, radius_mm: float) -> sitk.Image:
    # Erosion as the exact dual of _dilate_mm (removes every voxel with background within r),
    # so closing never shrinks and opening never grows the mask.
    inverse = sitk.Cast(binary == 0, sitk.sitkUInt8)
    out = sitk.Cast(_dilate_mm(inverse, radius_mm) == 0, sitk.sitkUInt8)
    out.CopyInformation(binary)
    return out


def dilate_mm(binary: sitk.Image, radius_mm: float) -> sitk.Image:
    """Ball dilation by ``radius_mm`` via a Euclidean distance map (Maurer et al. 2003)."""
    return _dilate_mm(sitk.Cast(binary > 0, sitk.sitkUInt8), radius_mm)


def _dilate_mm(binary: sitk.Image, radius_mm: float) -> sitk.Image:
    # Maurer's map is 0 on the object's border voxels and grows by the spacing per voxel outward
    s = min(binary.GetSpacing())
    if not sitk.GetArrayViewFromImage(binary).any():
        return sitk.Image(binary)
    dist = sitk.SignedMaurerDistanceMap(binary, insideIsPositive=False, squaredDistance=False,
                                        useImageSpacing=True)
    out = sitk.Cast(dist <= max(radius_mm, s) + 1e-3, sitk.sitkUInt8)
    out.CopyInformation(binary)
    return out


def _same_grid(a: sitk.Image, b: sitk.Image, na: str, nb: str) -> None:
    if a.GetSize() != b.GetSize() or not np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4) \
            or not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3) \
            or not np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5):
        raise MaskError(f"{na} and {nb} are on different grids ({a.GetSize()} vs {b.GetSize()}); "
                        f"resample the {na} first (resample_mask_to)")
