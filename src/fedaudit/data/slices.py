"""Random Multi-2D training slices and axial validation slices of preprocessed patients.

Source: FedSynthCT-Brain (Raggio et al., Comput. Biol. Med. 192:110160, 2025), "Random Multi-2D"
local training, as used by paper 000 ("Federated Learning Framework": local training with the
Random Multi-2D approach for 1 epoch per round, batch size 8, and MONAI data augmentation with
left-right flips, random rotations and random translations). A 2-D network is trained on slices
of all three orientations so that it sees every anatomical view of the 3-D volume.

Definition of one local epoch used here (:func:`plan_epoch`): every training volume draws ONE
orientation at random for this epoch and contributes all its head-containing slices in that
orientation (or a random subset of ``max_slices_per_volume`` of them, to keep the CPU demo small);
the slices of all volumes are then shuffled together. Over the rounds each volume is seen in
every orientation.

Conventions: volumes are cubes in SimpleITK array order ``(z, y, x)`` (canonical LPS, x =
left-right). Axial slice ``k`` is ``array[k, :, :]``, coronal ``array[:, k, :]`` and sagittal
``array[:, :, k]``; slices are taken as they are, without transposition, so an axial slice shows
as ``array[k]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from fedaudit.intensity import AIR_HU, hu_to_unit
from fedaudit.io import VolumeError, find_volume, read_volume

if TYPE_CHECKING:  # imported where a volume is read: training on given arrays needs no reader
    import SimpleITK as sitk

ORIENTATIONS = ("axial", "coronal", "sagittal")
_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
# Left-right is the last array axis (x) of axial and coronal slices; a sagittal slice lies
# in the left-right direction's normal plane, so mirroring it left-right is another slice.
_FLIPPABLE = ("axial", "coronal")
_AIR_UNIT = float(hu_to_unit(np.float32(AIR_HU)))


@dataclass
class Volume:
    """One preprocessed patient: MR in [0, 1], CT in HU, head mask; all the same cubic shape."""

    name: str
    mr: np.ndarray
    ct: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        self.mr = np.asarray(self.mr, dtype=np.float32)
        self.ct = np.asarray(self.ct, dtype=np.float32)
        self.mask = np.asarray(self.mask).astype(bool, copy=False)
        shapes = {"mr": self.mr.shape, "ct": self.ct.shape, "mask": self.mask.shape}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"{self.name}: MR, CT and mask shapes differ: {shapes}")
        if self.mr.ndim != 3 or len(set(self.mr.shape)) != 1:
            raise ValueError(f"{self.name}: volume must be a cube (N, N, N); got {self.mr.shape}")

    @property
    def size(self) -> int:
        return int(self.mr.shape[0])


def load_volume(folder: str | os.PathLike[str], name: str | None = None) -> Volume:
    """Read ``folder/{mr,ct,mask}.nii.gz``; every error names the offending file.

    ``name`` defaults to the folder's name (the patient id in the preprocessed layout).
    """
    import SimpleITK as sitk

    folder = Path(folder)
    paths: dict[str, Path] = {}
    images: dict[str, sitk.Image] = {}
    for stem, role in (("mr", "MR"), ("ct", "CT"), ("mask", "mask")):
        paths[stem] = find_volume(folder, stem) or folder / f"{stem}.nii.gz"
        images[stem] = read_volume(paths[stem], role)
    mr_size = images["mr"].GetSize()
    if len(set(mr_size)) != 1:
        raise VolumeError(paths["mr"], f"MR size {mr_size} is not a cube; preprocessing "
                                       "resamples every patient to N x N x N")
    for stem in ("ct", "mask"):
        size = images[stem].GetSize()
        if size != mr_size:
            raise VolumeError(paths[stem], f"{stem} size {size} differs from the MR size "
                                           f"{mr_size} ({paths['mr']})")
    return Volume(
        name=name if name is not None else folder.name,
        mr=sitk.GetArrayFromImage(images["mr"]).astype(np.float32, copy=False),
        ct=sitk.GetArrayFromImage(images["ct"]).astype(np.float32, copy=False),
        mask=sitk.GetArrayFromImage(images["mask"]) > 0,
    )


def _check_orientation(orientation: str) -> int:
    if orientation not in _AXIS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}; got {orientation!r}")
    return _AXIS[orientation]


def take_slice(array: np.ndarray, orientation: str, index: int) -> np.ndarray:
    """Slice ``index`` of a ``(z, y, x)`` volume in ``orientation`` (module conventions)."""
    return np.take(array, index, axis=_check_orientation(orientation))


def slice_indices(volume: Volume, orientation: str, min_mask_voxels: int = 1) -> np.ndarray:
    """Indices of the slices in ``orientation`` with at least ``min_mask_voxels`` head voxels.

    Empty slices are left out because they carry no MR->CT information (all 0 -> all air) and
    would dominate a cube whose head fills only its middle.
    """
    axis = _check_orientation(orientation)
    other = tuple(a for a in range(3) if a != axis)
    counts = volume.mask.sum(axis=other)
    return np.flatnonzero(counts >= max(1, int(min_mask_voxels)))


@dataclass(frozen=True)
class SliceRef:
    """One training sample: which slice of which volume, and how to augment it."""

    volume: int
    orientation: str
    index: int
    flip: bool
    aug_seed: int


def plan_epoch(volumes: Sequence[Volume], rng: np.random.Generator,
               max_slices_per_volume: int | None) -> list[SliceRef]:
    """The shuffled sample list of one Random Multi-2D local epoch (see the module docstring).

    All randomness (orientation, subset, flip, augmentation seed, order) comes from ``rng``, so
    a (seed, client, round)-derived generator fixes the whole epoch; the per-sample ``aug_seed``
    makes each sample's augmentation independent of which DataLoader worker draws it, and when.
    """
    if max_slices_per_volume is not None and max_slices_per_volume < 1:
        raise ValueError(f"max_slices_per_volume must be None or >= 1; got "
                         f"{max_slices_per_volume}")
    refs: list[SliceRef] = []
    for vi, volume in enumerate(volumes):
        orientation = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
        idx = slice_indices(volume, orientation)
        if max_slices_per_volume is not None and idx.size > max_slices_per_volume:
            idx = np.sort(rng.choice(idx, size=max_slices_per_volume, replace=False))
        if orientation in _FLIPPABLE:
            flips = rng.random(idx.size) < 0.5
        else:
            flips = np.zeros(idx.size, dtype=bool)
        # numpy/MONAI seeds must lie in [0, 2**32)
        seeds = rng.integers(0, 2**32, size=idx.size, dtype=np.uint64)
        refs.extend(SliceRef(vi, orientation, int(k), bool(f), int(s))
                    for k, f, s in zip(idx, flips, seeds, strict=True))
    order = rng.permutation(len(refs))
    return [refs[i] for i in order]


class SliceDataset(Dataset):
    """(MR, unit CT) slice pairs, each ``float32 [1, H, W]``, for the refs of :func:`plan_epoch`.

    With ``augment`` (paper 000, "Federated Learning Framework": MONAI left-right flip, random
    rotation and translation): the pair is mirrored along its last axis when ``ref.flip``, then
    one MONAI random affine (rotation uniform in +-``rotate_deg``, translation uniform in
    +-``translate_frac`` of the slice size per axis, bilinear) is applied identically to MR and
    CT. A fresh transform is seeded from ``ref.aug_seed`` for every item, so an item is the same
    whichever worker loads it and in whatever order. Without ``augment`` slices are returned as
    stored (no flip) -- the setting for validation.

    Padding: MR is padded with 0 (its background). CT is padded with exactly air (-1000 HU, the
    value preprocessing writes outside the head) rather than 0 in unit range (-1024 HU), so the
    target has a single background value; this is done by resampling ``ct_unit - air_unit`` with
    zero padding and adding ``air_unit`` back, which is the same interpolation.
    """

    def __init__(self, volumes: Sequence[Volume], refs: Sequence[SliceRef], augment: bool,
                 rotate_deg: float = 10.0, translate_frac: float = 0.05) -> None:
        if rotate_deg < 0 or translate_frac < 0:
            raise ValueError(f"rotate_deg and translate_frac must be >= 0; got {rotate_deg}, "
                             f"{translate_frac}")
        n = len(volumes)
        for ref in refs:
            if not 0 <= ref.volume < n:
                raise ValueError(f"slice ref {ref} points to volume {ref.volume}; only {n} given")
            _check_orientation(ref.orientation)
        self.volumes = list(volumes)
        self.refs = list(refs)
        self.augment = augment
        self.rotate_deg = float(rotate_deg)
        self.translate_frac = float(translate_frac)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        ref = self.refs[i]
        vol = self.volumes[ref.volume]
        mr = take_slice(vol.mr, ref.orientation, ref.index)
        ct = hu_to_unit(take_slice(vol.ct, ref.orientation, ref.index))
        if self.augment and ref.flip:
            mr, ct = mr[:, ::-1], ct[:, ::-1]
        mr_t = torch.from_numpy(np.ascontiguousarray(mr, dtype=np.float32))[None]
        ct_t = torch.from_numpy(np.ascontiguousarray(ct, dtype=np.float32))[None]
        if self.augment and (self.rotate_deg > 0 or self.translate_frac > 0):
            mr_t, ct_t = self._random_affine(mr_t, ct_t, ref.aug_seed)
        # Bilinear weights are convex, but float rounding can step a hair outside the unit range
        # of the CT target. MR is not clamped: a poisoned MR is legitimately outside [0, 1].
        return mr_t, ct_t.clamp_(0.0, 1.0)

    def _random_affine(self, mr: torch.Tensor, ct: torch.Tensor,
                       seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Imported here: MONAI's import costs ~1 s and only augmented training needs it.
        from monai.transforms import RandAffine

        h, w = mr.shape[-2:]
        # MONAI defaults are prob=0.1 and padding_mode="reflection"; both must be overridden.
        # MR and CT travel as the two channels of one tensor: one resampling grid for both, and
        # the array transform is ~15x cheaper per item than the dictionary one.
        transform = RandAffine(
            prob=1.0, rotate_range=(float(np.deg2rad(self.rotate_deg)),),
            translate_range=(self.translate_frac * h, self.translate_frac * w),
            mode="bilinear", padding_mode="zeros",
        )
        transform.set_random_state(seed=seed)
        out = transform(torch.cat([mr, ct - _AIR_UNIT]))
        # MONAI returns a MetaTensor carrying a transform history; plain tensors collate cheaply.
        out = out.as_subclass(torch.Tensor)
        return out[:1].contiguous(), out[1:].contiguous() + _AIR_UNIT


def axial_slices(volume: Volume, max_slices: int | None,
                 rng: np.random.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head-containing axial slices for per-round validation: ``mr, ct_unit, mask``, each
    ``[N, 1, H, W]`` (float32, float32, bool).

    With ``max_slices`` the subset is evenly spaced through the head, so every round is scored
    on the same slices and the curve over rounds compares like with like; passing ``rng`` draws
    a random (sorted) subset instead.
    """
    idx = slice_indices(volume, "axial")
    if max_slices is not None:
        if max_slices < 1:
            raise ValueError(f"max_slices must be None or >= 1; got {max_slices}")
        if idx.size > max_slices:
            if rng is None:
                idx = idx[np.round(np.linspace(0, idx.size - 1, max_slices)).astype(int)]
            else:
                idx = np.sort(rng.choice(idx, size=max_slices, replace=False))
    mr = torch.from_numpy(np.ascontiguousarray(volume.mr[idx]))[:, None]
    ct = torch.from_numpy(hu_to_unit(volume.ct[idx]))[:, None]
    mask = torch.from_numpy(np.ascontiguousarray(volume.mask[idx]))[:, None]
    return mr, ct, mask
