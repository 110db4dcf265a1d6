"""Result figures (fedaudit.plots.sct and .training, the attacks' figures.py, the comparisons):
the values they draw, on inputs whose answers are known by construction, and their refusal of
bad input. The statistical figures (seaborn) are also checked on the drawn figure itself: cell
labels and colour scale, line styles and colours, curve points, and that their theme does not
leak into later figures."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from fedaudit.attacks.poisoning import figures as poisoning
from fedaudit.attacks.poisoning.figures import poisoning_heatmap_figure
from fedaudit.io import VolumeError
from fedaudit.plots import training
from fedaudit.plots.sct import sct_comparison_figure
from fedaudit.plots.training import constant_lines, training_curves_figure

N = 16
# Head mask occupies axial (z) slices 2..7: its middle, 4, is not the cube's middle, 8.
Z0, Z1 = 2, 7


def _assert_png(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 5_000
    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 200
    assert float(img[..., :3].std()) > 0.01  # not a blank canvas


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Callable[[ModuleType], list[plt.Figure]]:
    """``captured(module)``: the figures ``module`` saves from now on (still written to disk), so
    a test can read what was drawn, not just that a PNG exists."""
    figures: list[plt.Figure] = []

    def patch(module: ModuleType) -> list[plt.Figure]:
        real = module.save

        def keep(fig: plt.Figure, path: str) -> None:
            figures.append(fig)
            real(fig, path)

        monkeypatch.setattr(module, "save", keep)
        return figures

    return patch


def _write(arr: np.ndarray, path: Path, direction: tuple[float, ...] | None = None) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 1.5))
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def volumes(tmp_path: Path) -> dict[str, np.ndarray | Path]:
    """CT with integer HU (exact in float32) inside a box mask, -1000 outside, and two sCTs
    equal to the CT plus +100 HU and -50 HU inside the mask, -1000 outside."""
    rng = np.random.default_rng(0)
    mask = np.zeros((N, N, N), np.uint8)  # array order (z, y, x)
    mask[Z0:Z1 + 1, 4:12, 3:13] = 1
    inside = mask > 0
    ct = np.full((N, N, N), -1000.0, np.float32)
    ct[inside] = rng.integers(-200, 1500, size=int(inside.sum()))
    plus = np.where(inside, ct + 100.0, -1000.0).astype(np.float32)
    minus = np.where(inside, ct - 50.0, -1000.0).astype(np.float32)
    return {"ct_arr": ct, "mask_arr": mask,
            "ct": _write(ct, tmp_path / "ct.nii.gz"),
            "mask": _write(mask, tmp_path / "mask.nii.gz"),
            "plus": _write(plus, tmp_path / "plus.nii.gz"),
            "minus": _write(minus, tmp_path / "minus.nii.gz")}


def test_sct_figure_draws_known_differences_and_mae(volumes, tmp_path: Path) -> None:
    out = tmp_path / "fig" / "sct.png"
    rows = [("no poisoning", volumes["plus"], volumes["minus"]),
            ("poisoned center A", volumes["minus"], None)]
    drawn = sct_comparison_figure(volumes["ct"], volumes["mask"], rows, out, title="test")
    _assert_png(out)

    k = drawn["slice_index"]
    assert k == (Z0 + Z1) // 2 == 4  # middle of the mask, not of the cube (8)
    inside = volumes["mask_arr"][k] > 0
    np.testing.assert_array_equal(drawn["ct"], volumes["ct_arr"][k])
    np.testing.assert_array_equal(drawn["mask"], inside)
    # CT - sCT: -100 where the sCT is 100 HU too high, +50 where it is 50 HU too low, 0 outside.
    diff = drawn["no poisoning/fedavg/diff"]
    np.testing.assert_allclose(diff[inside], -100.0)
    np.testing.assert_allclose(diff[~inside], 0.0)
    np.testing.assert_allclose(drawn["no poisoning/fedmedian/diff"][inside], 50.0)
    np.testing.assert_allclose(drawn["poisoned center A/fedavg/diff"][inside], 50.0)
    assert drawn["no poisoning/fedavg/mae"] == pytest.approx(100.0)
    assert drawn["no poisoning/fedmedian/mae"] == pytest.approx(50.0)
    assert drawn["poisoned center A/fedavg/mae"] == pytest.approx(50.0)
    # The scenario that was not run has no panels' data at all.
    assert not any(key.startswith("poisoned center A/fedmedian") for key in drawn)


def test_sct_figure_slices_in_lps(tmp_path: Path, volumes) -> None:
    """A volume stored inferior-up (z direction -1) is flipped to LPS before slicing: its mask
    slices 2..7 become LPS slices 8..13, middle 10, which is stored slice 15 - 10 = 5."""
    flip = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    ct = _write(volumes["ct_arr"], tmp_path / "ct_flip.nii.gz", flip)
    mask = _write(volumes["mask_arr"], tmp_path / "mask_flip.nii.gz", flip)
    sct = _write(volumes["ct_arr"] + np.float32(10.0) * (volumes["mask_arr"] > 0),
                 tmp_path / "sct_flip.nii.gz", flip)
    drawn = sct_comparison_figure(ct, mask, [("no poisoning", sct, None)],
                                  tmp_path / "flip.png", title="flip", window="brain")
    assert drawn["slice_index"] == 10
    np.testing.assert_array_equal(drawn["ct"], volumes["ct_arr"][5])
    assert drawn["no poisoning/fedavg/mae"] == pytest.approx(10.0)


def test_sct_figure_all_not_run(volumes, tmp_path: Path) -> None:
    out = tmp_path / "empty.png"
    drawn = sct_comparison_figure(volumes["ct"], volumes["mask"], [("no poisoning", None, None)],
                                  out, title="nothing run")
    assert set(drawn) == {"slice_index", "ct", "mask"}
    assert out.exists()


def test_sct_figure_refuses_missing_and_mismatched_files(volumes, tmp_path: Path) -> None:
    out = tmp_path / "bad.png"
    missing = tmp_path / "nowhere" / "1BE001.nii.gz"
    with pytest.raises(VolumeError, match="nowhere/1BE001.nii.gz"):
        sct_comparison_figure(volumes["ct"], volumes["mask"],
                              [("no poisoning", volumes["plus"], missing)], out, title="t")
    small = _write(np.arange(8**3, dtype=np.float32).reshape(8, 8, 8), tmp_path / "small.nii.gz")
    with pytest.raises(ValueError, match=r"ct\.nii\.gz.*small\.nii\.gz"):
        sct_comparison_figure(volumes["ct"], volumes["mask"],
                              [("no poisoning", small, None)], out, title="t")
    assert not out.exists()  # nothing is drawn from bad input


def _grid() -> tuple[pd.DataFrame, dict[tuple, float]]:
    """Reference MAE per (aggregation, evaluated) and a known ΔMAE for every cell; the
    (fedmedian, 0.5, poisoned B) scenario is absent, as if the user had not run it."""
    ref = {("fedavg", "A"): 90.0, ("fedavg", "B"): 120.0, ("fedavg", "E"): 107.0,
           ("fedmedian", "A"): 89.0, ("fedmedian", "B"): 108.5, ("fedmedian", "E"): 108.0}
    want, rows = {}, []
    for agg in ("fedmedian", "fedavg"):
        for gamma in (1.0, 0.5):
            for p in ("A", "B"):
                if (agg, gamma, p) == ("fedmedian", 0.5, "B"):
                    continue
                for e in ("A", "B", "E"):
                    d = {"fedavg": 300.0, "fedmedian": -4.0}[agg] * gamma + (e == "E") * 10.0
                    if p == e:
                        d += 1000.0
                    want[(agg, gamma, p, e)] = d
                    rows.append({"aggregation": agg, "gamma": gamma, "poisoned": p,
                                 "evaluated": e, "mae": ref[(agg, e)] + d,
                                 "reference_mae": ref[(agg, e)]})
    return pd.DataFrame(rows), want


def test_poisoning_heatmap_values_self_cells_and_missing(tmp_path: Path) -> None:
    grid, want = _grid()
    out = tmp_path / "heat.png"
    drawn = poisoning_heatmap_figure(grid, out)
    _assert_png(out)
    assert list(drawn.columns) == ["aggregation", "gamma", "poisoned", "evaluated",
                                   "delta_mae", "self"]
    assert len(drawn) == len(want) == 7 * 3
    for r in drawn.itertuples():
        assert r.delta_mae == pytest.approx(want[(r.aggregation, r.gamma, r.poisoned,
                                                  r.evaluated)])
        assert r.self == (r.poisoned == r.evaluated)
    assert int(drawn["self"].sum()) == 7
    assert drawn.loc[(drawn.aggregation == "fedavg") & (drawn.gamma == 1.0)
                     & (drawn.poisoned == "A") & (drawn.evaluated == "E"),
                     "delta_mae"].item() == pytest.approx(310.0)
    assert drawn[(drawn.aggregation == "fedmedian") & (drawn.gamma == 0.5)
                 & (drawn.poisoned == "B")].empty


def test_poisoning_heatmap_cells_show_values_on_one_shared_scale(tmp_path: Path,
                                                                   captured) -> None:
    """What a reader sees: each panel prints ΔMAE per cell (self cells in parentheses, a missing
    scenario as "not run"), and every panel maps colour with the same RdBu_r scale centred at 0
    whose range is set by the largest non-self |ΔMAE| (310 HU), not by the self cells (1300)."""
    figs = captured(poisoning)
    grid, _ = _grid()
    poisoning_heatmap_figure(grid, tmp_path / "heat.png")
    _assert_png(tmp_path / "heat.png")
    (fig,) = figs
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert sorted(panels) == ["FedAvg, γ = 0.5", "FedAvg, γ = 1.0", "FedMedian, γ = 0.5",
                              "FedMedian, γ = 1.0"]

    def texts(title: str) -> list[str]:
        return sorted(t.get_text() for t in panels[title].texts)

    assert texts("FedAvg, γ = 1.0") == ["(+1300)", "(+1300)", "+300", "+300", "+310", "+310"]
    assert texts("FedMedian, γ = 0.5") == ["(+998)", "+8", "-2", "not run"]
    assert texts("FedMedian, γ = 1.0") == ["(+996)", "(+996)", "+6", "+6", "-4", "-4"]
    for ax in panels.values():
        mesh = ax.collections[0]
        assert mesh.cmap.name == "RdBu_r"  # red = worse than without poisoning
        assert (mesh.norm.vmin, mesh.norm.vmax) == pytest.approx((-310.0, 310.0))
        assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "E"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    # Readable labels: white on the saturated red of +310, dark on the near-white of -4.
    by_text = {t.get_text(): t for t in panels["FedAvg, γ = 1.0"].texts}
    assert by_text["+310"].get_color() in ("w", "white", (1.0, 1.0, 1.0))
    dark = {t.get_text(): t for t in panels["FedMedian, γ = 1.0"].texts}["-4"].get_color()
    assert dark not in ("w", "white", (1.0, 1.0, 1.0))


def test_statistical_figures_leave_the_global_style_alone(tmp_path: Path) -> None:
    """The seaborn theme is scoped to each figure: an image montage drawn later in the same
    process (the report rules draw several) must not inherit grids or seaborn's palette."""
    before = dict(plt.rcParams)
    poisoning_heatmap_figure(_grid()[0], tmp_path / "heat.png")
    training_curves_figure(_history(), tmp_path / "train.png", scenario="baseline")
    after = dict(plt.rcParams)
    assert {k: (before[k], after[k]) for k in before if before[k] != after[k]} == {}


def test_poisoning_heatmap_refuses_empty_and_incomplete_grids(tmp_path: Path) -> None:
    grid, _ = _grid()
    with pytest.raises(ValueError, match="empty"):
        poisoning_heatmap_figure(grid.iloc[0:0], tmp_path / "e.png")
    with pytest.raises(ValueError, match="reference_mae"):
        poisoning_heatmap_figure(grid.drop(columns="reference_mae"), tmp_path / "m.png")
    with pytest.raises(ValueError, match="more than one row"):
        poisoning_heatmap_figure(pd.concat([grid, grid.iloc[:1]]), tmp_path / "d.png")
    assert not any(tmp_path.glob("*.png"))


def _history() -> pd.DataFrame:
    """Centers A (1 validation voxel), B (3 voxels) and C (no validation patients)."""
    nan = math.nan
    rows = [  # round, center, train_loss, val_mae, val_voxels
        (1, "A", 0.30, 100.0, 1.0), (1, "B", 0.20, 200.0, 3.0), (1, "C", 0.25, nan, 0.0),
        (2, "A", 0.20, nan, 0.0), (2, "B", 0.10, 80.0, 3.0), (2, "C", 0.15, nan, 0.0),
        (3, "A", 0.10, nan, 0.0), (3, "B", 0.05, nan, 0.0), (3, "C", 0.10, nan, 0.0),
    ]
    h = pd.DataFrame(rows, columns=["round", "center", "train_loss", "val_mae", "val_voxels"])
    h.insert(0, "scenario", "poison-B-g1.0-fedavg")
    h["num_examples"], h["train_seconds"], h["slices_per_s"], h["round_seconds"] = 8, 1.0, 8.0, 2
    return h


def test_training_curves_pooled_validation_mae(tmp_path: Path) -> None:
    out = tmp_path / "train.png"
    pooled = training_curves_figure(_history(), out, scenario="poison-B-g1.0-fedavg",
                                    poisoned="B")
    _assert_png(out)
    assert list(pooled.columns) == ["round", "val_mae_pooled"]
    assert pooled["round"].tolist() == [1, 2, 3]
    # (100*1 + 200*3) / 4; only B validated in round 2; nobody in round 3.
    assert pooled["val_mae_pooled"].iloc[0] == pytest.approx(175.0)
    assert pooled["val_mae_pooled"].iloc[1] == pytest.approx(80.0)
    assert math.isnan(pooled["val_mae_pooled"].iloc[2])


def test_training_curves_missing_column(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_loss"):
        training_curves_figure(_history().drop(columns="train_loss"), tmp_path / "t.png",
                               scenario="baseline")
    # a federation without validation patients logs no validation columns: loss only
    pooled = training_curves_figure(_history().drop(columns=["val_mae", "val_voxels"]),
                                    tmp_path / "noval.png", scenario="baseline")
    _assert_png(tmp_path / "noval.png")
    assert pooled["val_mae_pooled"].isna().all()
    with pytest.raises(ValueError, match="empty"):
        training_curves_figure(_history().iloc[0:0], tmp_path / "t.png", scenario="baseline")


def test_training_curves_draw_the_constant_predictor_per_center(tmp_path: Path,
                                                                captured) -> None:
    h = _history()
    assert constant_lines(h) == {}
    h["val_mae_constant"] = h["center"].map({"A": 210.0, "B": 250.0, "C": math.nan})
    assert constant_lines(h) == {"A": 210.0, "B": 250.0}  # C has no validation patients
    figs = captured(training)
    training_curves_figure(h, tmp_path / "c.png", scenario="poison-B-g1.0-fedavg", poisoned="B")
    _assert_png(tmp_path / "c.png")
    (fig,) = figs
    ax_loss, ax_mae = fig.axes
    # Each center's loss line, found by its values; the attacker's is dashed, the others solid.
    loss = {c: next(ln for ln in ax_loss.lines if list(ln.get_ydata()) == list(
        h.loc[h["center"] == c, "train_loss"])) for c in ("A", "B", "C")}
    assert loss["B"].get_linestyle() == "--"
    assert loss["A"].get_linestyle() == loss["C"].get_linestyle() == "-"
    assert len({tuple(loss[c].get_color()) for c in loss}) == 3
    # The constant predictor: one dotted horizontal line per validated center, in its colour.
    dotted = {float(ln.get_ydata()[0]): ln.get_color() for ln in ax_mae.lines
              if ln.get_linestyle() == ":"}
    assert dotted == {210.0: loss["A"].get_color(), 250.0: loss["B"].get_color()}
    pooled = next(ln for ln in ax_mae.lines if ln.get_color() == "black")
    assert list(pooled.get_ydata()) == [175.0, 80.0]  # round 3: nobody validated, no point
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:3] == ["A", "B (poisoned)", "C"]
    assert "constant predictor\n(per center, dotted)" in legend
    h.loc[h.index[-2], "val_mae_constant"] = 1.0  # B's reference must not change over rounds
    with pytest.raises(ValueError, match="center B: the constant predictor's validation MAE"):
        constant_lines(h)


def test_fedmia_roc_draws_each_curve_as_computed(tmp_path: Path, captured) -> None:
    """Every (scenario, view) curve appears in both test panels with its points as computed
    (the vertical step at fpr 0.2 intact: seaborn's default estimator would average the two tpr
    values there), labelled with the area under that curve and, named, its pooled patient AUC
    and CI; a view without a curve is left out."""
    from fedaudit.attacks.fedmia import figures as roc

    figs = captured(roc)
    view, other = list(roc.VIEW_LABELS)[:2]
    fpr = np.array([0.0, 0.0, 0.2, 0.2, 0.6, 1.0])
    tpr = np.array([0.0, 0.3, 0.3, 0.8, 0.9, 1.0])
    files, rows = {}, []
    for scenario, shift in (("baseline", 0.0), ("memorise", 0.1)):
        arrays = {}
        for test in roc.TEST_TITLES:
            key = f"{view}/{roc.PRIMARY_SCORE[view]}/slice/{test}"
            arrays[f"{key}/fpr"], arrays[f"{key}/tpr"] = fpr, np.minimum(tpr + shift, 1.0)
            rows.append({"scenario": scenario, "view": view, "score": roc.PRIMARY_SCORE[view],
                         "test": test, "target": "all", "level": "patient", "unit": "slice",
                         "auc": 0.71 + shift, "ci_low": 0.52, "ci_high": 0.88})
        files[scenario] = tmp_path / f"{scenario}.npz"
        np.savez(files[scenario], **arrays)
    out = tmp_path / "roc.png"
    roc.fedmia_roc_figure(files, pd.DataFrame(rows), str(out))
    _assert_png(out)
    (fig,) = figs
    assert len(fig.axes) == len(roc.TEST_TITLES)
    for ax in fig.axes:
        curves = {ln.get_label(): ln for ln in ax.lines}
        # each curve's own area (by hand: 0.2·0.3 + 0.4·0.85 + 0.4·0.95 = 0.78; shifted by 0.1,
        # 0.2·0.4 + 0.4·0.95 + 0.4·1 = 0.86) beside the verdict's patient-level AUC, named
        assert set(curves) == {"chance (AUC 0.5)",
                               f"baseline, {view}: slice AUC 0.78; patients 0.71 [0.52, 0.88]",
                               f"memorise, {view}: slice AUC 0.86; patients 0.81 [0.52, 0.88]"}
        assert not any(f", {other}" in label for label in curves)
        base = curves[f"baseline, {view}: slice AUC 0.78; patients 0.71 [0.52, 0.88]"]
        np.testing.assert_array_equal(base.get_xdata(), fpr)
        np.testing.assert_array_equal(base.get_ydata(), tpr)
        assert [t.get_text() for t in ax.get_legend().get_texts()] == list(curves)


def test_privacy_utility_lines_start_at_the_federation_without_noise_of_their_unet(
        tmp_path: Path, captured) -> None:
    """DP-SGD's line starts at groupnorm (the same GroupNorm UNet without DP), DP-FedAvg's at
    the BatchNorm baseline; the two federations without noise are points with their names."""
    from fedaudit.comparisons.privacy_utility import figures as pu

    figs = captured(pu)
    table = pd.DataFrame([
        {"scenario": "baseline", "defense": "none", "model": "BatchNorm", "level": 0.0,
         "mae": 100.0, "accuracy": 0.8, "fedmia_auc": 0.60, "classifier_dlg_asr": 0.5},
        {"scenario": "dp-z1.0", "defense": "dp_fedavg", "model": "BatchNorm", "level": 1.0,
         "epsilon": 44.0, "mae": 150.0, "accuracy": 0.3, "fedmia_auc": 0.50,
         "classifier_dlg_asr": 0.0},
        {"scenario": "groupnorm", "defense": "none", "model": "GroupNorm", "level": 0.0,
         "mae": 110.0, "accuracy": 0.8, "fedmia_auc": 0.58, "classifier_dlg_asr": 0.5},
        {"scenario": "dpsgd-z1.0", "defense": "dp_sgd", "model": "GroupNorm", "level": 1.0,
         "epsilon": 9.0, "mae": 130.0, "accuracy": 0.7, "fedmia_auc": 0.52,
         "classifier_dlg_asr": 0.25}])
    out = tmp_path / "pu.png"
    pu.privacy_utility_figure(table, str(out))
    _assert_png(out)
    (fig,) = figs
    lines = {ln.get_label(): ln for ln in fig.axes[0].lines}
    assert list(lines["DP-SGD (GroupNorm UNet)"].get_xdata()) == [110.0, 130.0]
    assert list(lines["DP-FedAvg"].get_xdata()) == [100.0, 150.0]
    assert lines["no noise"].get_linestyle() == "None"  # points, not a line
    names = {t.get_text() for t in fig.axes[0].texts}
    assert {"baseline", "groupnorm", "σ=1, ε=9", "z=1, ε=44"} <= names


def test_the_text_check_sees_a_label_under_a_neighbour_and_a_legend(tmp_path: Path) -> None:
    """fedaudit.plots.style.text_overlaps itself: two texts on one spot, a text under a legend,
    a colour bar's tick label under the next panel are each named; a clean figure gives none."""
    from fedaudit.plots.style import text_overlaps

    fig, (a, b) = plt.subplots(1, 2, figsize=(4, 2))
    a.plot([0, 1], [0, 1], label="a line with a long legend entry")
    a.legend(loc="center")
    a.text(0.5, 0.5, "under the legend", transform=a.transAxes, ha="center")
    a.text(0.1, 0.9, "twin", transform=a.transAxes)
    a.text(0.1, 0.9, "twin", transform=a.transAxes)
    problems = text_overlaps(fig)
    assert "'twin' overlaps 'twin'" in problems
    assert "'under the legend' lies under a legend" in problems
    plt.close(fig)
    # the QC montage's old layout: a colour bar beside an image, the next image close by
    fig, (a, b) = plt.subplots(1, 2, figsize=(4, 2))
    im = a.imshow(np.zeros((4, 4)), vmin=-1000, vmax=1000)
    b.imshow(np.zeros((4, 4)))
    fig.colorbar(im, ax=a, fraction=0.046, pad=0.02, label="HU")
    problems = text_overlaps(fig)
    assert "'−1000' reaches into the panel ''" in problems
    assert "'HU' reaches into the panel ''" in problems
    plt.close(fig)
    fig, ax = plt.subplots(layout="constrained")
    ax.plot([0, 1], [0, 1], label="x")
    ax.legend(loc="upper left")
    ax.set_title("clean")
    assert text_overlaps(fig) == []
    plt.close(fig)


def test_the_crowded_figures_have_legible_text_and_a_pdf_beside(tmp_path: Path, volumes,
                                                                 captured) -> None:
    """The QC montage, the evasion example, the privacy-utility plot and the FedMIA ROC: no
    two texts overlap, none runs under a legend or into another panel (colour-bar ticks down
    to -1000 included), and each PNG has its vector PDF beside it."""
    from fedaudit.attacks.evasion import figures as ev
    from fedaudit.attacks.fedmia import figures as roc
    from fedaudit.comparisons.privacy_utility import figures as pu
    from fedaudit.plots import qc
    from fedaudit.plots.style import text_overlaps

    figs = [captured(m) for m in (qc, ev, pu, roc)][0]  # one list, in drawing order
    ct = sitk.ReadImage(str(volumes["ct"]))
    mask = sitk.ReadImage(str(volumes["mask"]))
    mr = sitk.GetImageFromArray(np.clip((volumes["ct_arr"] + 1000) / 2500, 0, 1))
    mr.CopyInformation(ct)
    qc.qc_png(mr, ct, mask, tmp_path / "qc.png", title="A/P1: preprocessed cube")
    rng = np.random.default_rng(1)
    img = rng.random((32, 32)).astype(np.float32)
    sct = (img * 2000 - 1000).astype(np.float32)
    ev.example_figure({"mr": img, "mr_adv": np.clip(img + 0.03, 0, 1), "mask": img > 0.2,
                       "epsilon": 0.03, "label": "PGD-40", "whitebox_name": "A",
                       "whitebox_sct": sct, "whitebox_sct_adv": sct + 300,
                       "global_sct": sct, "global_sct_adv": sct - 400, "patient": "1BA003",
                       "axial_index": 35}, "baseline", str(tmp_path / "example.png"))
    pu.privacy_utility_figure(pd.DataFrame([
        {"scenario": "baseline", "defense": "none", "model": "BatchNorm", "level": 0.0,
         "mae": 104.2, "accuracy": 0.71, "fedmia_auc": 0.35, "classifier_dlg_asr": 0.5},
        {"scenario": "laplace-b0.0001", "defense": "laplace_noise", "model": "BatchNorm",
         "level": 0.0001, "mae": 106.0, "accuracy": 0.71, "fedmia_auc": 0.60,
         "classifier_dlg_asr": 0.5},
        {"scenario": "laplace-b0.01", "defense": "laplace_noise", "model": "BatchNorm",
         "level": 0.01, "mae": 105.9, "accuracy": 0.72, "fedmia_auc": 0.55,
         "classifier_dlg_asr": 0.0},
        {"scenario": "dp-z1.0", "defense": "dp_fedavg", "model": "BatchNorm", "level": 1.0,
         "epsilon": 44.3, "mae": 300.0, "accuracy": 0.26, "fedmia_auc": 0.45,
         "classifier_dlg_asr": 0.0}]), str(tmp_path / "pu.png"))
    view = list(roc.VIEW_LABELS)[0]
    files, rows = {}, []
    fpr = np.linspace(0, 1, 50)
    for i, scenario in enumerate(("baseline", "secagg", "laplace-b0.0001", "laplace-b0.01",
                                  "dp-z1.0", "memorise")):
        arrays = {}
        for test in roc.TEST_TITLES:
            key = f"{view}/{roc.PRIMARY_SCORE[view]}/slice/{test}"
            arrays[f"{key}/fpr"], arrays[f"{key}/tpr"] = fpr, fpr ** (1 - 0.05 * i)
            rows.append({"scenario": scenario, "view": view, "score": roc.PRIMARY_SCORE[view],
                         "test": test, "target": "all", "level": "patient", "unit": "slice",
                         "auc": 0.6, "ci_low": 0.35, "ci_high": 0.90})
        files[scenario] = tmp_path / f"{scenario}.npz"
        np.savez(files[scenario], **arrays)
    roc.fedmia_roc_figure(files, pd.DataFrame(rows), str(tmp_path / "roc.png"))
    for name, fig in zip(("qc", "example", "pu", "roc"), figs, strict=True):
        assert text_overlaps(fig) == [], name
        _assert_png(tmp_path / f"{name}.png")
        pdf = (tmp_path / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 5_000, name
