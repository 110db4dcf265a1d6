"""A slice classification task every volume can label: the axial slice's anatomical level.

Paper 003 (MedPFL, Table I/II) attacks a classifier of 4-class brain MRI slices (pituitary,
glioma, meningioma, no tumour). SynthRAD2023 carries no lesion labels, so the label here is one
that every preprocessed volume carries: which of ``K`` equal parts of the head's axial extent a
slice lies in. The head's extent is the first to the last axial slice with head-mask voxels
(``z0 .. z1``, ``n = z1 − z0 + 1`` slices) and slice ``k`` has level
``min(K − 1, ⌊K·(k − z0)/n⌋)``: non-decreasing in ``k``, every level 0..K−1 present once the head
spans at least ``K`` slices, and the classes as balanced as ``n`` allows (each part holds
⌊n/K⌋ or ⌈n/K⌉ slices). In canonical LPS array order (:mod:`fedaudit.data.slices`) the axial
index grows towards superior, so level 0 is the most inferior part (neck/skull base on SynthRAD).

Samples are only axial slices with head voxels (:func:`fedaudit.data.slices.slice_indices`),
downsampled to the classifier's input by area averaging
(:func:`fedaudit.models.classifier.classifier_input`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fedaudit.data.slices import Volume, slice_indices
from fedaudit.models.classifier import classifier_input


def slice_levels(volume: Volume, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, levels)``: the axial slices with head voxels and the level of each (module
    docstring), both int64 and sorted by index. Empty when the mask is empty."""
    if classes < 2:
        raise ValueError(f"classes must be >= 2; got {classes}")
    idx = slice_indices(volume, "axial").astype(np.int64)
    if idx.size == 0:
        return idx, idx.copy()
    z0, n = int(idx[0]), int(idx[-1] - idx[0] + 1)
    levels = np.minimum(classes - 1, (classes * (idx - z0)) // n)
    return idx, levels.astype(np.int64)


def slice_dataset(volumes: Sequence[Volume], classes: int = 4, size: int = 32,
                  max_slices_per_volume: int | None = None, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict[str, object]]]:
    """The level-classification samples of ``volumes``.

    Returns ``x`` float32 ``[N, 1, size, size]`` (MR in [0, 1]), ``y`` int64 ``[N]`` (levels),
    ``mask`` bool ``[N, 1, size, size]`` (head mask at the input's resolution) and
    ``provenance``: per sample ``{"patient": volume.name, "axial_index": k}``, in volume order
    then axial order. With ``max_slices_per_volume`` a volume contributes a random subset
    (drawn from ``seed`` and the volume's position, sorted), labelled by its level in the
    full head extent.
    """
    if max_slices_per_volume is not None and max_slices_per_volume < 1:
        raise ValueError(f"max_slices_per_volume must be None or >= 1; got "
                         f"{max_slices_per_volume}")
    rng = np.random.default_rng(seed)
    xs, ys, ms, prov = [], [], [], []
    for vol in volumes:
        idx, lev = slice_levels(vol, classes)
        if max_slices_per_volume is not None and idx.size > max_slices_per_volume:
            keep = np.sort(rng.choice(idx.size, size=max_slices_per_volume, replace=False))
            idx, lev = idx[keep], lev[keep]
        if idx.size == 0:
            continue
        x, m = classifier_input(vol.mr[idx], vol.mask[idx], size)
        xs.append(x)
        ms.append(m)
        ys.append(torch.from_numpy(lev))
        prov.extend({"patient": vol.name, "axial_index": int(k)} for k in idx)
    if not xs:
        return (torch.zeros(0, 1, size, size), torch.zeros(0, dtype=torch.int64),
                torch.zeros(0, 1, size, size, dtype=torch.bool), [])
    return torch.cat(xs), torch.cat(ys), torch.cat(ms), prov
