"""The constant predictor (the reference every sCT number is read against) and the cosine lr."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fedaudit.data.slices import Volume
from fedaudit.evaluation.metrics import mae
from fedaudit.evaluation.reference import ConstantModel, constant_hu, constant_sct
from fedaudit.evaluation.stats import summarize, with_constant_ratio
from fedaudit.federation.local import LocalConfig, round_lr, validate
from fedaudit.intensity import AIR_HU


def _volume(name: str, values: list[float], size: int = 16) -> Volume:
    """A cube whose first len(values) mask voxels hold ``values`` (the rest of the mask 0 HU)."""
    ct = np.full((size,) * 3, AIR_HU, np.float32)
    mask = np.zeros((size,) * 3, bool)
    mask[4:12, 4:12, 4:12] = True
    inside = np.zeros(int(mask.sum()), np.float32)
    inside[: len(values)] = values
    ct[mask] = inside
    return Volume(name, np.where(mask, 0.5, 0.0), ct, mask)


def test_constant_is_the_pooled_median_and_minimises_the_mae() -> None:
    a = _volume("a", [1000.0] * 100)  # 100 bone voxels, 412 at 0 HU
    b = _volume("b", [-100.0] * 300)
    pooled = np.concatenate([a.ct[a.mask], b.ct[b.mask]])
    value = constant_hu([a, b])
    assert value == float(np.median(pooled)) == 0.0  # 412 + 212 of 1024 voxels at 0 HU
    # the median is the best constant for the MAE: any shift makes it worse
    base = np.abs(pooled - value).mean()
    for shift in (-50.0, -1.0, 1.0, 50.0):
        assert np.abs(pooled - (value + shift)).mean() > base
    with pytest.raises(ValueError, match="at least one head-mask voxel"):
        constant_hu([])


def test_constant_sct_is_masked_like_a_model_sct_and_scores_its_closed_form_mae() -> None:
    v = _volume("v", [40.0, 140.0, -60.0])
    sct = constant_sct(v.mask, 40.0)
    assert np.all(sct[~v.mask] == AIR_HU) and np.all(sct[v.mask] == 40.0)
    # |0 - 40| on 509 voxels, |140 - 40| and |-60 - 40| on one each, 0 on one
    expected = (509 * 40.0 + 100.0 + 100.0) / 512
    assert mae(v.ct, sct, v.mask) == pytest.approx(expected)


def test_constant_model_validates_to_the_same_mae_as_its_sct() -> None:
    """The training curves' reference line uses validate() with ConstantModel: on an axial
    slice set it must equal the MAE of the constant sCT on those slices (HU, in the mask)."""
    v = _volume("v", list(np.linspace(-200, 900, 200)))
    value = 35.0
    res = validate(ConstantModel(value), [v], LocalConfig(val_max_slices=None),
                   device=torch.device("cpu"))
    assert res["val_mae"] == pytest.approx(mae(v.ct, constant_sct(v.mask, value), v.mask),
                                           rel=1e-5)


def test_summary_puts_each_mae_beside_the_constants() -> None:
    rows = []
    for scenario, shift in (("baseline", 0.0), ("constant", 100.0)):
        for center, pids in {"A": ["a1", "a2"], "B": ["b1"]}.items():
            for i, pid in enumerate(pids):
                rows.append({"scenario": scenario, "center": center, "patient": pid,
                             "mae": 50.0 + 10 * i + shift, "psnr": 20.0, "ssim": 0.5})
    s = with_constant_ratio(summarize(pd.DataFrame(rows))).set_index(["scenario", "center"])
    assert s.loc[("baseline", "A"), "mae_vs_constant"] == pytest.approx(55.0 / 155.0)
    assert s.loc[("baseline", "B"), "mae_vs_constant"] == pytest.approx(50.0 / 150.0)
    assert s.loc[("constant", "A"), "mae_vs_constant"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no rows for the 'constant' predictor"):
        with_constant_ratio(summarize(pd.DataFrame(rows[:3])))


def test_cosine_lr_schedule_closed_form() -> None:
    cfg = LocalConfig(lr=0.01, lr_schedule="cosine")
    assert round_lr(cfg, 1, 10) == pytest.approx(0.01)  # the full lr in round 1
    assert round_lr(cfg, 6, 10) == pytest.approx(0.005)  # half way: cos(pi/2) = 0
    assert round_lr(cfg, 10, 10) == pytest.approx(0.01 * 0.5 * (1 + math.cos(0.9 * math.pi)))
    lrs = [round_lr(cfg, r, 10) for r in range(1, 11)]
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:], strict=False))
    assert round_lr(LocalConfig(lr=0.01), 7, 10) == 0.01  # constant: the paper
    with pytest.raises(ValueError, match="outside 1..10"):
        round_lr(cfg, 11, 10)
