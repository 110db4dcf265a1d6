"""Per-center summaries and paired Wilcoxon tests (paper 000 Table 3).

Exact p-values are checked against hand-computed values and against a brute-force enumeration
of the signed-rank null distribution (all 2^n sign assignments), independent of scipy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fedaudit.evaluation.stats import summarize, wilcoxon_vs_reference


def _frame(scenario: str, center: str, values: dict[str, list[float]],
           patients: list[str] | None = None) -> pd.DataFrame:
    n = len(values["mae"])
    return pd.DataFrame({
        "scenario": scenario, "center": center,
        "patient": patients or [f"p{i}" for i in range(n)], **values,
    })


def _exact_two_sided_p(diff: list[float]) -> float:
    """Brute force: ranks of |d| (no ties here), W+ over every sign pattern, two-sided."""
    d = np.asarray(diff, float)
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    w_obs = ranks[d > 0].sum()
    total = ranks.sum()
    w_all = [sum(r for r, s in zip(ranks, signs, strict=True) if s)
             for signs in itertools.product([0, 1], repeat=d.size)]
    extreme = min(w_obs, total - w_obs)
    hits = sum(1 for w in w_all if min(w, total - w) <= extreme)
    return hits / len(w_all)


def test_summarize_matches_numpy() -> None:
    a = {"mae": [80.0, 95.0, 70.0], "psnr": [27.0, 26.1, 28.4], "ssim": [0.88, 0.85, 0.9]}
    b = {"mae": [120.0], "psnr": [24.0], "ssim": [0.8]}
    df = pd.concat([_frame("fedavg", "A", a), _frame("fedavg", "B", b),
                    _frame("poison", "A", {k: [x + 5 for x in v] for k, v in a.items()})])
    out = summarize(df).set_index(["scenario", "center"])
    assert list(out.index) == [("fedavg", "A"), ("fedavg", "B"), ("poison", "A")]
    row = out.loc[("fedavg", "A")]
    assert row["n"] == 3
    for metric, vals in a.items():
        assert row[f"{metric}_mean"] == pytest.approx(np.mean(vals), rel=1e-12)
        assert row[f"{metric}_sd"] == pytest.approx(np.std(vals, ddof=1), rel=1e-12)
    single = out.loc[("fedavg", "B")]
    assert single["n"] == 1 and single["mae_mean"] == 120.0 and np.isnan(single["mae_sd"])
    assert out.loc[("poison", "A"), "mae_mean"] == pytest.approx(np.mean(a["mae"]) + 5)


def _pair_frame(diffs: list[float], base: float = 100.0) -> pd.DataFrame:
    ref = {m: [base + i for i in range(len(diffs))] for m in ("mae", "psnr", "ssim")}
    att = {m: [v + d for v, d in zip(ref[m], diffs, strict=True)] for m in ref}
    return pd.concat([_frame("fedavg", "A", ref), _frame("poison", "A", att)])


def test_exact_p_all_positive_differences() -> None:
    out = wilcoxon_vs_reference(_pair_frame([1.0, 2.0, 3.0, 4.0, 5.0]), {"poison": "fedavg"})
    assert list(out["metric"]) == ["mae", "psnr", "ssim"]
    row = out.iloc[0]
    assert (row["scenario"], row["reference"], row["center"]) == ("poison", "fedavg", "A")
    assert row["n"] == 5 and row["median_diff"] == pytest.approx(3.0)
    # only the all-positive and all-negative sign patterns are as extreme: 2 / 2^5
    assert row["p_value"] == pytest.approx(2 / 32, abs=1e-12)
    assert row["statistic"] == 0.0 and row["note"] == ""


MIXED_SIGNS = [[1.0, -2.0, 3.0, 4.0, 5.0], [-0.5, 1.5, -2.5, 3.5, 4.5, -5.5, 6.5, 7.5]]


@pytest.mark.parametrize("diffs", MIXED_SIGNS)
def test_exact_p_matches_enumeration(diffs: list[float]) -> None:
    out = wilcoxon_vs_reference(_pair_frame(diffs), {"poison": "fedavg"})
    assert out.iloc[0]["p_value"] == pytest.approx(_exact_two_sided_p(diffs), abs=1e-12)
    assert out.iloc[0]["median_diff"] == pytest.approx(np.median(diffs))


def test_pairing_is_by_patient_not_row_order() -> None:
    df = _pair_frame([1.0, -2.0, 3.0, 4.0, 5.0])
    shuffled = pd.concat([df[df.scenario == "fedavg"], df[df.scenario == "poison"].iloc[::-1]])
    pd.testing.assert_frame_equal(wilcoxon_vs_reference(shuffled, {"poison": "fedavg"}),
                                  wilcoxon_vs_reference(df, {"poison": "fedavg"}))


def test_mismatched_patients_raise_with_names() -> None:
    df = _pair_frame([1.0, 2.0, 3.0])
    df.loc[(df.scenario == "poison") & (df.patient == "p2"), "patient"] = "p9"
    with pytest.raises(ValueError, match=r"'poison'.*'fedavg'.*center 'A'.*p9.*p2"):
        wilcoxon_vs_reference(df, {"poison": "fedavg"})
    with pytest.raises(ValueError, match="'secagg'"):
        wilcoxon_vs_reference(_pair_frame([1.0, 2.0]), {"secagg": "fedavg"})


def test_degenerate_cases_give_nan_with_note() -> None:
    zeros = wilcoxon_vs_reference(_pair_frame([0.0, 0.0, 0.0, 0.0]), {"poison": "fedavg"})
    assert zeros["p_value"].isna().all() and zeros["statistic"].isna().all()
    assert set(zeros["note"]) == {"all differences zero"}
    assert (zeros["median_diff"] == 0.0).all()
    single = wilcoxon_vs_reference(_pair_frame([3.0]), {"poison": "fedavg"})
    assert single["p_value"].isna().all() and set(single["note"]) == {"n<2"}
    assert (single["n"] == 1).all()


def test_duplicate_patient_rows_raise() -> None:
    df = _pair_frame([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="duplicate"):
        summarize(pd.concat([df, df.iloc[[0]]]))
