"""DLG reconstruction across federated centers: the analogue of paper 000's Fig. 2.

Paper 000, Fig. 2 caption: reconstructions "evolved from a uniform initialization to coarse
anatomical shapes within the first 5,000 iterations". One row per center: the dummy MR at evenly
spaced iterations, the true slice, the positive control's final reconstruction (same slice, same
attack, BatchNorm-free network; :mod:`fedaudit.models.tiny`), and the gradient-matching loss of
both networks. Slices are shown as stored (rows = posterior direction of the LPS volume) with
``origin="upper"``, so anterior is up as in :mod:`fedaudit.plots.montage`; grey scale on the MR's
own range [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedaudit.plots.style import apply_style, save


def _img(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(np.clip(image, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, origin="upper")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _quality(q: dict[str, float]) -> str:
    psnr = "inf" if not np.isfinite(q["psnr"]) else f"{q['psnr']:.1f}"
    return f"SSIM {q['ssim']:.2f}, PSNR {psnr} dB"


def dlg_evolution_figure(results: dict[str, str | Path], out_png: str | Path,
                         title: str) -> None:
    """Write the evolution figure for ``results`` (center -> a :func:`save_result` npz, all from
    one optimiser). The first image of each slice in the batch is shown."""
    import matplotlib.pyplot as plt

    from fedaudit.attacks.dlg import load_result

    if not results:
        raise ValueError(f"{out_png}: no DLG results to plot")
    apply_style()
    loaded = {c: load_result(p) for c, p in results.items()}
    n_snap = max(len(r["unet"].snapshot_iterations) for r in loaded.values())
    ncol = n_snap + 3
    fig, axes = plt.subplots(len(loaded), ncol, squeeze=False,
                             figsize=(1.55 * ncol + 1.4, 1.9 * len(loaded) + 0.6),
                             gridspec_kw={"width_ratios": [1] * (ncol - 1) + [1.9]})
    for row, (center, res) in zip(axes, loaded.items(), strict=True):
        unet, control = res["unet"], res["control"]
        for j in range(n_snap):
            ax = row[j]
            if j < len(unet.snapshot_iterations):
                it = int(unet.snapshot_iterations[j])
                _img(ax, unet.snapshots[j, 0, 0], f"it {it:,}")
            else:
                ax.axis("off")
        prov = res["provenance"][0]
        _img(row[n_snap], res["true_mr"][0, 0],
             f"true MR\n{prov['patient']} z={prov['axial_index']}")
        _img(row[n_snap + 1], control.reconstruction[0, 0],
             f"control, it {control.final_iteration:,}")
        q = res["quality"]
        row[0].set_ylabel(f"Center {center} (round {res['round']})\n"
                          f"UNet: {_quality(q['unet'])}\n"
                          f"control: {_quality(q['control'])}", fontsize=7)
        ax = row[-1]
        for label, r, color in (("UNet", unet, "C0"), ("control", control, "C1")):
            loss = np.where(r.loss > 0, r.loss, np.nan)  # log axis: exact zeros are not drawn
            ax.plot(np.arange(loss.size), loss, color=color, lw=0.8, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("gradient-matching loss")
        ax.legend(fontsize=7, frameon=False)
        if unet.stopped_early:
            ax.set_title(f"UNet stopped at it {unet.final_iteration:,} (non-finite)",
                         fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, str(out_png))
