"""One figure style for every FedAudit plot, and the HU windows used to show CT.

Image montages (MR/CT slices) are plain matplotlib and call :func:`apply_style`; statistical
figures (heatmaps, curves, ROC) are drawn with seaborn under ``seaborn.set_theme(**STAT_THEME)``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # rules run headless; never try to open a display

import matplotlib.pyplot as plt  # noqa: E402

# CT display windows (level, width) in HU; labelled on every figure that uses them.
HU_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "bone": (500.0, 2000.0),
    "wide": (0.0, 2000.0),
}

# Shared by both kinds of figure, so sizes and fonts match across the report.
RC: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9,
    "image.interpolation": "nearest",
    "image.origin": "lower",
}

# Keyword arguments of seaborn.set_theme. Plain data, not a function calling seaborn: the
# montages import this module in envs without seaborn (data, preprocess, attacks).
# "colorblind": the per-center colours must stay distinguishable for colour-blind readers.
STAT_THEME: dict[str, Any] = {
    "context": "paper",
    "style": "whitegrid",
    "palette": "colorblind",
    "rc": RC,
}


def hu_limits(window: str) -> tuple[float, float]:
    level, width = HU_WINDOWS[window]
    return level - width / 2.0, level + width / 2.0


def apply_style() -> None:
    plt.rcParams.update(RC)


def _not_empty(tmp: Any) -> None:
    from fedaudit.atomic import WriteError

    if tmp.stat().st_size == 0:
        raise WriteError(tmp, "the figure file is empty")


# Set (to 1) by the tests that run the pipeline: every figure saved must pass text_overlaps.
CHECK_ENV = "FEDAUDIT_CHECK_FIGURES"


def save(fig: plt.Figure, path: str) -> None:
    """Write ``fig`` to ``path`` (PNG, for the report) and a vector PDF beside it (same name,
    ``.pdf``, for a paper), each atomically: a temporary file verified, then moved into place.
    With :data:`CHECK_ENV` set, a figure whose texts overlap (:func:`text_overlaps`) is refused,
    naming them."""
    import os
    from pathlib import Path

    from fedaudit.atomic import atomic_path

    if os.environ.get(CHECK_ENV):
        problems = text_overlaps(fig)
        if problems:
            plt.close(fig)
            raise ValueError(f"{path}: illegible text: " + "; ".join(problems[:10]))

    for target in (Path(path), Path(path).with_suffix(".pdf")):
        with atomic_path(target, _not_empty) as tmp:
            fig.savefig(tmp, format=target.suffix[1:])
    plt.close(fig)


def text_overlaps(fig: plt.Figure, tolerance_px: float = 1.0) -> list[str]:
    """Where two texts ``fig`` draws overlap (titles, tick labels, annotations, legend
    entries, colour-bar labels), or a text lies under a legend it is not part of, by more than
    ``tolerance_px`` pixels each way: one line each, naming both. The texts are those a draw
    really renders (a tick label outside the view or an annotation outside its axes is not);
    their extents are matplotlib's own. Empty: every label is legible."""
    from matplotlib.legend import Legend
    from matplotlib.text import Text

    drawn: list[Text] = []
    draw = Text.draw

    def recording(self: Text, renderer: Any) -> Any:
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return draw(self, renderer)

    if not hasattr(fig.canvas, "get_renderer"):  # a closed figure: give it a raster canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    Text.draw = recording  # type: ignore[method-assign]
    try:
        fig.canvas.draw()
    finally:
        Text.draw = draw  # type: ignore[method-assign]
    renderer = fig.canvas.get_renderer()
    legends = [leg for leg in fig.findobj(Legend) if leg.get_visible()]
    own = {id(t): leg for leg in legends for t in (*leg.get_texts(), leg.get_title())}
    boxes = [(t, t.get_window_extent(renderer)) for t in dict.fromkeys(drawn)]

    def cut(a: Any, b: Any) -> bool:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return w > tolerance_px and h > tolerance_px

    # each axes' drawing area: a text of another axes (a colour bar's tick label, a title, an
    # annotation) or of the figure that reaches into it is hidden or crowded by its content
    # (an empty panel, axis off and nothing drawn, hides nothing)
    areas = [(ax, ax.get_window_extent(renderer)) for ax in fig.axes
             if ax.get_visible() and (ax.has_data() or ax.axison)]
    out = []
    for i, (t, a) in enumerate(boxes):
        out += [f"{t.get_text()!r} overlaps {u.get_text()!r}" for u, b in boxes[i + 1:]
                if cut(a, b)]
        out += [f"{t.get_text()!r} lies under a legend" for leg in legends
                if own.get(id(t)) is not leg and cut(a, leg.get_window_extent(renderer))]
        home = own[id(t)].axes if id(t) in own else t.axes
        out += [f"{t.get_text()!r} reaches into the panel {ax.get_title()!r}"
                for ax, area in areas if ax is not home and cut(a, area)]
    return out
