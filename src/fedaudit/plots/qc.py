"""QC figure of one preprocessed cube: mid-slices of MR, CT and their overlay.

Not in paper 000; the audit adds it so a failed registration or a bad mask is visible before
training (paper 000, "Datasets", describes the preprocessing being checked here). The numbers
behind the QC table are in :mod:`fedaudit.preprocess.qc`; this module only draws, so the
preprocessing library does not depend on the plotting layer. An image montage, hence plain
matplotlib (seaborn is for the statistical figures).
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from fedaudit.plots.style import apply_style, hu_limits, plt, save

BONE_HU = 300.0
CT_WINDOW = "wide"

# (name, how to take the mid-slice from a z, y, x array of an identity-direction cube, origin)
# Axial shown anterior up ("upper" origin on the A->P axis); coronal/sagittal superior up.
_VIEWS = (
    ("axial", lambda a: a[a.shape[0] // 2, :, :], "upper"),
    ("coronal", lambda a: a[:, a.shape[1] // 2, :], "lower"),
    ("sagittal", lambda a: a[:, :, a.shape[2] // 2], "lower"),
)


def qc_png(mr: sitk.Image, ct: sitk.Image, mask: sitk.Image, out_png: str | Path, *,
           title: str) -> None:
    """Axial/coronal/sagittal mid-slices of the final cube: MR, CT (window and colourbar
    labelled, HU) and the MR with the CT bone contour (> 300 HU) and the mask contour overlaid --
    the overlay shows MR/CT registration quality at a glance. Radiological convention (patient
    right on image left). Source: preprocessing of paper 000 "Datasets"; HU windows from
    fedaudit.plots.style."""
    apply_style()
    mr_a = sitk.GetArrayViewFromImage(mr)
    ct_a = sitk.GetArrayViewFromImage(ct)
    m_a = sitk.GetArrayViewFromImage(mask)
    vmin, vmax = hu_limits(CT_WINDOW)
    # constrained layout: the colour bar (ticks down to -1000, its "HU" label) gets its own room
    # instead of running under the overlay panel beside it
    fig, axes = plt.subplots(3, 3, figsize=(10.5, 10), layout="constrained")
    for row, (view, take, origin) in enumerate(_VIEWS):
        mr_s, ct_s, m_s = take(mr_a), take(ct_a), take(m_a)
        ax = axes[row, 0]
        ax.imshow(mr_s, cmap="gray", vmin=0.0, vmax=1.0, origin=origin)
        ax.set_title(f"MR [0,1] - {view}")
        ax = axes[row, 1]
        im = ax.imshow(ct_s, cmap="gray", vmin=vmin, vmax=vmax, origin=origin)
        ax.set_title(f"CT - {view} (window {vmin:.0f}..{vmax:.0f} HU)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="HU")
        ax = axes[row, 2]
        ax.imshow(mr_s, cmap="gray", vmin=0.0, vmax=1.0, origin=origin)
        if (ct_s > BONE_HU).any() and (ct_s <= BONE_HU).any():
            ax.contour(ct_s > BONE_HU, levels=[0.5], colors="tab:red", linewidths=0.7,
                       origin=origin)
        if (m_s > 0).any() and (m_s == 0).any():
            ax.contour(m_s > 0, levels=[0.5], colors="tab:cyan", linewidths=0.7, origin=origin)
        ax.set_title(f"MR + CT bone >{BONE_HU:.0f} HU (red), mask (cyan)")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    size = "x".join(str(s) for s in mr.GetSize())
    fig.suptitle(f"{title}  ({size} @ {mr.GetSpacing()[0]:.2f} mm; patient right = image left)")
    save(fig, str(out_png))


def failed_png(record: dict, out_png: str | Path) -> None:
    """The QC figure of a patient who failed preprocessing (a quarantine record of
    :mod:`fedaudit.preprocess.quarantine`): no cube to show, so the figure says which step
    failed and why, where the report's QC gallery would show the cube."""
    import textwrap

    apply_style()
    fig, ax = plt.subplots(figsize=(8, 2.5), layout="constrained")
    ax.set_axis_off()
    error = "\n".join(textwrap.wrap(str(record["error"]), 90))
    ax.text(0.0, 1.0, f"Step that failed: {record['step']}\n\n{error}", va="top", ha="left",
            family="monospace", fontsize=9, wrap=True, transform=ax.transAxes)
    fig.suptitle(f"{record['center']}/{record['patient']}: could not be preprocessed "
                 "(preprocess.on_error decides at the QC table)")
    save(fig, str(out_png))
