"""Patient-level splits: disjoint, complete, seeded, reproducible; external centers test-only."""

from __future__ import annotations

import pytest

from fedaudit.splits import split_center, split_sizes


@pytest.mark.parametrize("n", range(1, 40))
def test_sizes_cover_every_patient(n: int) -> None:
    tr, va, te = split_sizes(n, (0.7, 0.1, 0.2))
    assert tr + va + te == n and tr >= 1
    if n >= 3:
        assert va >= 1 and te >= 1
    if n >= 20:  # close to 70/10/20 once rounding stops dominating
        assert abs(tr / n - 0.7) <= 0.06 and abs(te / n - 0.2) <= 0.05


def test_paper_center_sizes() -> None:
    # Paper 000 Table 1 counts of the training centers under 70/10/20.
    assert split_sizes(15, (0.7, 0.1, 0.2)) == (10, 2, 3)
    assert split_sizes(29, (0.7, 0.1, 0.2)) == (20, 3, 6)


def test_split_is_disjoint_complete_and_seeded() -> None:
    patients = [f"1BA{i:03d}" for i in range(1, 22)]
    a = split_center(patients, center="A", role="train", seed=7)
    assert set(a["train"]) | set(a["val"]) | set(a["test"]) == set(patients)
    assert not (set(a["train"]) & set(a["val"]) or set(a["train"]) & set(a["test"])
                or set(a["val"]) & set(a["test"]))
    assert a == split_center(list(reversed(patients)), center="A", role="train", seed=7)
    others = [split_center(patients, center="A", role="train", seed=s) for s in (8, 9, 10)]
    assert any(o != a for o in others), "the seed must change the split"
    assert split_center(patients, center="B", role="train", seed=7) != a, "per-center stream"


def test_external_center_never_trains() -> None:
    ext = split_center(["e1", "e2", "e3"], center="E", role="external", seed=1)
    assert ext == {"train": [], "val": [], "test": ["e1", "e2", "e3"]}


def test_duplicate_patients_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate patient ids"):
        split_center(["p1", "p1"], center="A", role="train", seed=1)
