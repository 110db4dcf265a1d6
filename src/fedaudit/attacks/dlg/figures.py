"""DLG reconstruction across federated centers: the analogue of paper 000's Fig. 2.

Paper 000, Fig. 2 caption: reconstructions "evolved from a uniform initialization to coarse
anatomical shapes within the first 5,000 iterations". One row per center: the UNet's dummy MR at
evenly spaced iterations, the true slice, the final reconstructions of the two controls (same
slice, same attack; :func:`fedaudit.attacks.dlg.inversion.run_dlg`): the same UNet without
BatchNorm (the positive control) and the MLP code check (:mod:`fedaudit.models.tiny`), and the
gradient-matching loss of all three networks. Every reconstruction is shown after its
least-squares gain/offset fit inside the mask
(:func:`fedaudit.attacks.dlg.results.fit_gain_offset`):
with train-mode BatchNorm the gradient hides the MR's scale, and a dummy whose scale drifted to
~1e3 would otherwise show as a flat white head. Slices are shown as stored (rows = posterior
direction of the LPS volume) with ``origin="upper"``, so anterior is up as in
:mod:`fedaudit.plots.montage`; grey scale on the MR's own range [0, 1].
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


def _fitted(image: np.ndarray, true_mr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` after its gain/offset fit to ``true_mr`` inside ``mask`` (the evaluator's view)."""
    from fedaudit.attacks.dlg.results import fit_gain_offset

    k = mask.astype(bool)
    if not np.isfinite(image[k]).all():
        return image
    gain, offset = fit_gain_offset(true_mr, image, k)
    return np.where(k, gain * image + offset, image)


def _quality(q: dict[str, float]) -> str:
    psnr = "inf" if not np.isfinite(q["psnr_fit"]) else f"{q['psnr_fit']:.1f}"
    # two short lines: one long line runs past a row's height into the next center's row
    return f"SSIM {q['ssim_raw']:.2f} raw, {q['ssim_fit']:.2f} fit\nPSNR fit {psnr} dB"


def dlg_evolution_figure(results: dict[str, str | Path], out_png: str | Path,
                         title: str) -> None:
    """Write the evolution figure for ``results`` (center -> a :func:`save_result` npz, all from
    one optimiser). The first image of each slice in the batch is shown."""
    import matplotlib.pyplot as plt

    from fedaudit.attacks.dlg.results import load_result

    if not results:
        raise ValueError(f"{out_png}: no DLG results to plot")
    apply_style()
    loaded = {c: load_result(p) for c, p in results.items()}
    n_snap = max(len(r["unet"].snapshot_iterations) for r in loaded.values())
    ncol = n_snap + 4  # snapshots, true MR, BN-free control, code check, loss curves
    # constrained layout: the controls' two-line titles keep clear of the loss panel's label
    fig, axes = plt.subplots(len(loaded), ncol, squeeze=False,
                             figsize=(1.55 * ncol + 1.4, 1.9 * len(loaded) + 0.6),
                             gridspec_kw={"width_ratios": [1] * (ncol - 1) + [1.9]},
                             layout="constrained")
    for row, (center, res) in zip(axes, loaded.items(), strict=True):
        unet, control, check = res["unet"], res["control"], res["code_check"]
        true, mask = res["true_mr"][0, 0], res["mask"][0, 0]
        for j in range(n_snap):
            ax = row[j]
            if j < len(unet.snapshot_iterations):
                it = int(unet.snapshot_iterations[j])
                _img(ax, _fitted(unet.snapshots[j, 0, 0], true, mask), f"it {it:,}")
            else:
                ax.axis("off")
        prov = res["provenance"][0]
        _img(row[n_snap], res["true_mr"][0, 0],
             f"true MR\n{prov['patient']} z={prov['axial_index']}")
        q = res["quality"]
        # the controls' scores go in their titles: a third and fourth y-label line would run
        # into the next center's row
        for col, (name, r, key) in enumerate((("UNet w/o BN", control, "control"),
                                              ("MLP check", check, "code_check")), n_snap + 1):
            _img(row[col], _fitted(r.reconstruction[0, 0], true, mask),
                 f"{name}, it {r.final_iteration:,}\nSSIM {q[key]['ssim_raw']:.2f} raw, "
                 f"{q[key]['ssim_fit']:.2f} fit")
            row[col].title.set_fontsize(7)
        row[0].set_ylabel(f"Center {center} (round {res['round']})\n"
                          f"UNet {_quality(q['unet'])}", fontsize=7)
        ax = row[-1]
        for label, r, color in (("UNet", unet, "C0"), ("UNet w/o BN", control, "C1"),
                                ("MLP check", check, "C2")):
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
    save(fig, str(out_png))
