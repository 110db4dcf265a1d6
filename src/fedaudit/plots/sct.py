"""Synthetic CT under data poisoning, FedAvg against FedMedian: the analogue of paper 000 Fig. 4.

Paper 000, Fig. 4 caption: "Visual comparison of sCT for a representative patient ... under a
100% noise data poisoning attack (gamma = 1.0) ... The first row represents the no-poisoning
baseline, while the other rows correspond to a different poisoned training center (Centers A-D).
Columns show, from left to right, the reference CT, the sCT generated with FedAvg and FedMedian
aggregation, and the corresponding pixel-wise difference maps (CT - sCT)."

One patient, one row per scenario: reference CT | sCT FedAvg | sCT FedMedian | CT - sCT FedAvg |
CT - sCT FedMedian. The reference CT is drawn in every row, as in the paper, so each row reads
on its own. Every panel shows the same axial slice: the middle of the head mask's axial
(inferior-superior) extent, not of the cube, so the slice always cuts through the head. Volumes
are reoriented to LPS first and shown with ``origin="upper"`` (anterior up, patient left on the
image right), as in :mod:`fedaudit.plots.montage`. Each sCT panel's title carries that sCT's 3-D
in-mask MAE (:func:`fedaudit.evaluation.metrics.mae`, paper 000 Eq. 3), so the picture and the
number Table 3 is built from sit side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fedaudit.evaluation.metrics import mae
from fedaudit.io import read_volume
from fedaudit.plots.style import HU_WINDOWS, apply_style, hu_limits, plt, save

AGGREGATIONS = (("fedavg", "FedAvg"), ("fedmedian", "FedMedian"))

SctRow = tuple[str, str | Path | None, str | Path | None]  # label, FedAvg sCT, FedMedian sCT


def _lps(img: sitk.Image) -> tuple[np.ndarray, float]:
    """Voxels in LPS array order (axis 0 inferior -> superior, rows anterior -> posterior) and
    the in-plane pixel aspect (row spacing / column spacing) for ``imshow``."""
    lps = sitk.DICOMOrient(img, "LPS")
    sx, sy, _ = lps.GetSpacing()
    return sitk.GetArrayFromImage(lps).astype(np.float32), sy / sx


def _mask_mid_slice(mask: np.ndarray, path: Path) -> int:
    """Middle of the axial extent of the mask (first to last axial slice holding a mask voxel)."""
    occupied = np.flatnonzero(mask.any(axis=(1, 2)))
    if occupied.size == 0:  # read_volume rejects empty masks; kept for arrays built elsewhere
        raise ValueError(f"{path}: mask is empty, no axial slice holds the head")
    return int((occupied[0] + occupied[-1]) // 2)


def _blank(ax: plt.Axes, text: str = "") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if text:
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
                fontsize=10, color="0.35", style="italic")


def sct_comparison_figure(ct: str | Path, mask: str | Path, rows: list[SctRow],
                          out_png: str | Path, *, title: str, window: str = "wide",
                          diff_limit: float = 1000.0) -> dict[str, np.ndarray | float | int]:
    """Write the Fig. 4 style comparison for one patient and return what was drawn.

    ``rows``: (row label, FedAvg sCT path or None, FedMedian sCT path or None), the no-poisoning
    row first; a None path is a scenario that was not run and its panels say "not run".
    ``window`` is a key of :data:`fedaudit.plots.style.HU_WINDOWS` for the CT and sCT panels;
    difference maps use a diverging map fixed to +-``diff_limit`` HU (values beyond saturate).

    Returned keys (2-D arrays are the drawn axial slice, LPS array order, HU):

    * ``"slice_index"`` (int): the axial index into the LPS-reoriented volumes (axis 0,
      inferior -> superior), the middle of the mask's axial extent;
    * ``"ct"``: the reference CT slice; ``"mask"``: the head-mask slice (bool);
    * ``"<row label>/<agg>/sct"``, ``"<row label>/<agg>/diff"`` (CT - sCT) and
      ``"<row label>/<agg>/mae"`` (float, 3-D in-mask MAE in HU), with ``<agg>`` ``fedavg`` or
      ``fedmedian``, present only for the panels that have an sCT.

    Every volume is read (and so validated) before anything is drawn: a missing or unreadable
    file raises :class:`fedaudit.io.VolumeError` naming it, and an sCT or mask whose grid
    differs from the CT's raises ValueError naming both files.
    """
    if not rows:
        raise ValueError(f"{out_png}: no rows (scenarios) given for the sCT comparison")
    labels = [r[0] for r in rows]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{out_png}: row labels must be unique, got {labels}")
    if window not in HU_WINDOWS:
        raise ValueError(f"unknown HU window {window!r}; choose one of {sorted(HU_WINDOWS)}")
    if not diff_limit > 0:
        raise ValueError(f"diff_limit must be positive, got {diff_limit}")

    ct_path, mask_path = Path(ct), Path(mask)
    ct_vol, aspect = _lps(read_volume(ct_path, "CT"))
    mask_vol = _lps(read_volume(mask_path, "mask"))[0] > 0
    if mask_vol.shape != ct_vol.shape:
        raise ValueError(f"shape mismatch: CT {ct_path} is {ct_vol.shape[::-1]} but mask "
                         f"{mask_path} is {mask_vol.shape[::-1]} (x, y, z)")
    k = _mask_mid_slice(mask_vol, mask_path)

    drawn: dict[str, np.ndarray | float | int] = {
        "slice_index": k, "ct": ct_vol[k], "mask": mask_vol[k]}
    for label, *paths in rows:
        for (agg, _), path in zip(AGGREGATIONS, paths, strict=True):
            if path is None:
                continue
            sct_vol = _lps(read_volume(Path(path), "sCT"))[0]
            if sct_vol.shape != ct_vol.shape:
                raise ValueError(f"shape mismatch: CT {ct_path} is {ct_vol.shape[::-1]} but sCT "
                                 f"{path} is {sct_vol.shape[::-1]} (x, y, z)")
            drawn[f"{label}/{agg}/sct"] = sct_vol[k]
            drawn[f"{label}/{agg}/diff"] = ct_vol[k] - sct_vol[k]
            drawn[f"{label}/{agg}/mae"] = mae(ct_vol, sct_vol, mask_vol)

    apply_style()
    vmin, vmax = hu_limits(window)
    level, width = HU_WINDOWS[window]
    n = len(rows)
    fig, axes = plt.subplots(n, 5, figsize=(11.0, 2.25 * n + 1.3), squeeze=False,
                             layout="constrained")
    headers = ["reference CT", "sCT FedAvg", "sCT FedMedian", "CT − sCT FedAvg",
               "CT − sCT FedMedian"]
    gray = diverging = None
    for r, label in enumerate(labels):
        row = axes[r]
        gray = row[0].imshow(drawn["ct"], cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect,
                             origin="upper")
        row[0].set_title(headers[0] if r == 0 else "")
        _blank(row[0])
        row[0].set_ylabel(label, fontsize=10)
        for j, (agg, pretty) in enumerate(AGGREGATIONS):
            ax_sct, ax_diff = row[1 + j], row[3 + j]
            key = f"{label}/{agg}"
            if f"{key}/sct" not in drawn:
                _blank(ax_sct, "not run")
                _blank(ax_diff, "not run")
                ax_sct.set_title(headers[1 + j] if r == 0 else "")
                ax_diff.set_title(headers[3 + j] if r == 0 else "")
                continue
            ax_sct.imshow(drawn[f"{key}/sct"], cmap="gray", vmin=vmin, vmax=vmax,
                          aspect=aspect, origin="upper")
            head = f"sCT {pretty}\n" if r == 0 else ""
            ax_sct.set_title(f"{head}MAE {drawn[f'{key}/mae']:.1f} HU")
            diverging = ax_diff.imshow(drawn[f"{key}/diff"], cmap="RdBu_r", vmin=-diff_limit,
                                       vmax=diff_limit, aspect=aspect, origin="upper")
            ax_diff.set_title(headers[3 + j] if r == 0 else "")
            _blank(ax_sct)
            _blank(ax_diff)

    fig.colorbar(gray, ax=axes[:, :3].ravel().tolist(), location="bottom", shrink=0.7,
                 aspect=35, pad=0.02, extend="both",
                 label=f"CT / sCT (HU), {window} window L{level:g} W{width:g}")
    if diverging is None:  # nothing but "not run" panels: still show the scale they would use
        diverging = plt.cm.ScalarMappable(norm=plt.Normalize(-diff_limit, diff_limit),
                                          cmap="RdBu_r")
    fig.colorbar(diverging, ax=axes[:, 3:].ravel().tolist(), location="bottom", shrink=0.9,
                 aspect=25, pad=0.02, extend="both",
                 label=f"CT − sCT (HU), clipped to ±{diff_limit:g}")
    fig.suptitle(f"{title}\naxial slice {k} (middle of the head mask), radiological view "
                 "(anterior up, patient left on the right); MAE over the 3-D head mask",
                 fontsize=10)
    save(fig, str(out_png))
    return drawn
