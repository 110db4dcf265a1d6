"""Paper 002 Figs. 2-3 for the trap-weight attack: each client's attacked slices above what the
malicious server reconstructed (recovered ones framed, failed ones left blank), and a
reassembled volume in three orthogonal planes beside the original."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib import patches

from fedaudit.plots.style import apply_style, plt, save

FAILED = "#8c564b"  # paper 002 marks failed reconstructions with a brown block
RECOVERED = "#2ca02c"


def slices_figure(examples: Mapping[str, np.ndarray], path: str, title: str,
                  threshold: float, volume: Mapping[str, np.ndarray] | None = None,
                  max_slices: int = 8) -> None:
    """``examples``: ``<client>__truth`` (N, H, W), ``<client>__recon`` (M, H, W),
    ``<client>__index`` (N,: matched reconstruction or -1), ``<client>__ssim`` (N,), as the
    ``slices`` step saves them; ``volume``: ``truth`` and ``oracle`` (D, H, W) and
    ``recovered`` (D,)."""
    apply_style()
    clients = sorted({k.split("__")[0] for k in examples})
    n = min(max_slices, max(len(examples[f"{c}__truth"]) for c in clients))
    extra = 2 if volume is not None and len(volume) else 0
    # constrained layout: the suptitle and the first row's titles get rows of their own
    fig, axes = plt.subplots(2 * len(clients) + extra, n,
                             figsize=(1.1 * n, 1.15 * (2 * len(clients) + extra)),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, c in enumerate(clients):
        truth, recon = examples[f"{c}__truth"], examples[f"{c}__recon"]
        index, ssim = examples[f"{c}__index"], examples[f"{c}__ssim"]
        for j in range(min(n, len(truth))):
            top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
            top.imshow(truth[j], cmap="gray", vmin=0, vmax=1)
            ok = index[j] >= 0 and ssim[j] >= threshold
            if ok:
                bottom.imshow(recon[index[j]], cmap="gray", vmin=0, vmax=1)
            else:
                bottom.imshow(np.zeros_like(truth[j]), cmap="gray", vmin=0, vmax=1)
            bottom.add_patch(patches.Rectangle((0, 0), 1, 1, transform=bottom.transAxes,
                                               fill=not ok, alpha=0.85 if not ok else 1,
                                               facecolor=FAILED, edgecolor=RECOVERED if ok
                                               else FAILED, linewidth=2))
            bottom.set_axis_on()
            bottom.set_xticks([])
            bottom.set_yticks([])
            if j == 0:
                top.set_title(f"client {c}: original", loc="left")
                bottom.set_title("reconstructed", loc="left")
    if extra:
        truth, oracle = volume["truth"], volume["oracle"]
        planes = (("axial", lambda v: v[v.shape[0] // 2]),
                  ("coronal", lambda v: v[:, v.shape[1] // 2]),
                  ("sagittal", lambda v: v[:, :, v.shape[2] // 2]))
        rec = np.asarray(volume["recovered"])
        # the recovered count goes under the first reassembled plane's name: a panel of its own
        # would share a row with narrow neighbours when few slices are shown
        count = f"\n{int(rec.sum())}/{rec.size} slices recovered"
        for k, (name, cut) in enumerate(planes):
            if k and 2 * k >= n:
                break
            for row, (label, vol) in enumerate((("original", truth),
                                                ("reassembled", oracle))):
                ax = axes[2 * len(clients) + row, 2 * k]
                ax.imshow(cut(vol), cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"{label} {name}" + (count if row and not k else ""), loc="left")
    fig.suptitle(title)
    save(fig, path)
