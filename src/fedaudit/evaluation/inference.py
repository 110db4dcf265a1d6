"""Slice-wise synthetic-CT inference with a 2-D network.

Source: paper 000, "Federated Learning Framework" (a 2-D UNet maps MR slices to CT slices, as in
FedSynthCT-Brain [12]); the released FedSynthCT-Brain models predict a volume slice by slice and,
optionally, along the three orthogonal orientations and fuse them with the voxel-wise median
(``fusion="median3"``). Intensities follow :mod:`fedaudit.intensity`: the network outputs unit
intensity, mapped to HU with ``unit_to_hu``; voxels outside the head mask are exactly ``AIR_HU``
(paper 000 "Datasets": non-anatomical regions are -1000 HU).
"""

from __future__ import annotations

import numpy as np
import torch

from fedaudit.intensity import AIR_HU, unit_to_hu

FUSIONS = ("axial", "median3")


def _infer_orientation(model: torch.nn.Module, mr: torch.Tensor, mask: torch.Tensor, axis: int,
                       batch_size: int, amp: bool) -> torch.Tensor:
    """Run ``model`` on every slice along ``axis`` that holds mask voxels; HU volume on device.

    Slices without mask voxels stay ``AIR_HU``: the final masking would overwrite whatever the
    network predicted there, so running it would be wasted work.
    """
    out = torch.full_like(mr, AIR_HU)
    # movedim returns views: writing into out_s[idx] fills ``out`` in place.
    mr_s, out_s = mr.movedim(axis, 0), out.movedim(axis, 0)
    other = tuple(a for a in range(3) if a != axis)
    wanted = torch.nonzero(mask.any(dim=other)).flatten()
    channels_last = mr.device.type == "cuda"
    for start in range(0, wanted.numel(), batch_size):
        idx = wanted[start:start + batch_size]
        x = mr_s[idx].unsqueeze(1)  # [B, 1, H, W]; advanced indexing copies -> contiguous
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                            enabled=amp and mr.device.type == "cuda"):
            y = model(x)
        if y.shape != x.shape:
            raise ValueError(
                f"model must map [B, 1, H, W] to the same shape; got {tuple(x.shape)} -> "
                f"{tuple(y.shape)}"
            )
        out_s[idx] = unit_to_hu(y[:, 0].float())
    return out


def predict_volume(model: torch.nn.Module, mr: np.ndarray, mask: np.ndarray, *,
                   fusion: str = "axial", batch_size: int = 16,
                   device: str | torch.device = "cpu", amp: bool = False) -> np.ndarray:
    """Synthetic CT (HU, float32, shape of ``mr``) from a preprocessed MR volume.

    Source: paper 000 "Federated Learning Framework" / FedSynthCT-Brain [12] inference: 2-D
    slices of the (z, y, x) volume, axial slice = ``mr[k]``, fed as ``[B, 1, H, W]`` batches;
    output unit intensity -> HU via ``unit_to_hu``. ``fusion="median3"`` additionally predicts
    coronal (``mr[:, k, :]``) and sagittal (``mr[:, :, k]``) slices and takes the voxel-wise
    median of the three re-stacked volumes, as FedSynthCT-Brain's released models do. Voxels
    outside ``mask`` are set to exactly ``AIR_HU``.

    Side effects on ``model``: it is switched to eval mode (BatchNorm uses its running
    statistics, so a voxel's value does not depend on which slices share its batch) and left
    there, and moved to ``device``. ``amp=True`` runs the network under bfloat16 autocast on
    CUDA; it is ignored on CPU. The MR goes to the device once and the sCT comes back once, so
    batches never round-trip through the host.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; allowed: {', '.join(FUSIONS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mr = np.asarray(mr)
    mask = np.asarray(mask)
    if mr.ndim != 3:
        raise ValueError(f"MR must be a 3-D volume, got shape {mr.shape}")
    if mask.shape != mr.shape:
        raise ValueError(f"mask shape {mask.shape} differs from MR shape {mr.shape}")

    device = torch.device(device)
    model.eval()
    model.to(device)
    with torch.inference_mode():
        mr_t = torch.as_tensor(np.ascontiguousarray(mr, dtype=np.float32), device=device)
        mask_t = torch.as_tensor(np.ascontiguousarray(mask > 0), device=device)
        axes = (0,) if fusion == "axial" else (0, 1, 2)
        vols = [_infer_orientation(model, mr_t, mask_t, a, batch_size, amp) for a in axes]
        sct = vols[0] if len(vols) == 1 else torch.stack(vols).median(dim=0).values
        sct = torch.where(mask_t, sct, torch.tensor(AIR_HU, dtype=sct.dtype, device=device))
        return sct.cpu().numpy().astype(np.float32, copy=False)
