"""Paper 003's attack target: DLG's 4-layer CNN, slice-level labels, FedAvg through Flower."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from fedaudit.data.levels import slice_dataset, slice_levels
from fedaudit.data.slices import Volume
from fedaudit.federation.classifier import (
    initial_classifier,
    load_classifier,
    load_global_models,
    local_batches,
    train_classifier_federation,
)
from fedaudit.federation.server_log import load_round, logged_rounds
from fedaudit.models.classifier import DLGConvNet, classifier_input
from fedaudit.models.weights import exchanged_names, get_arrays


def _head(size: int, z0: int, z1: int, seed: int = 0) -> Volume:
    """A cube whose head (a cylinder) spans axial slices z0..z1 and holds a bright band whose
    row moves with the axial index, so a slice's level is easy to tell from where the band is."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float32)
    c = (size - 1) / 2
    mask = ((y - c) ** 2 + (x - c) ** 2 < (0.45 * size) ** 2) & (z >= z0) & (z <= z1)
    frac = (z - z0) / max(z1 - z0, 1)
    band = np.abs(y - (0.15 + 0.7 * frac) * size) < 0.1 * size
    mr = np.where(mask, 0.2 + 0.7 * band + 0.03 * rng.standard_normal(mask.shape), 0.0)
    ct = np.where(mask, 40.0, -1000.0)
    return Volume(f"p{seed}", np.clip(mr, 0, 1), ct, mask)


def _write(vol: Volume, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in (("mr", vol.mr), ("ct", vol.ct), ("mask", vol.mask.astype(np.uint8))):
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(folder / f"{name}.nii.gz"))
    return str(folder)


# -- the network


def test_dlg_convnet_shapes_and_architecture() -> None:
    torch.manual_seed(0)
    net = DLGConvNet(num_classes=4)
    assert net(torch.rand(5, 1, 32, 32)).shape == (5, 4)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 12, (5, 5), (2, 2), (2, 2)), (12, 12, (5, 5), (2, 2), (2, 2)),
        (12, 12, (5, 5), (1, 1), (2, 2)), (12, 12, (5, 5), (1, 1), (2, 2))]
    assert sum(isinstance(m, torch.nn.Sigmoid) for m in net.modules()) == 4
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert (net.fc.in_features, net.fc.out_features) == (12 * 8 * 8, 4)
    assert DLGConvNet(num_classes=7)(torch.rand(2, 1, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="expects"):
        net(torch.rand(1, 3, 32, 32))


def test_dlg_convnet_matches_a_functional_reference() -> None:
    """The forward pass written out from DLG's description (conv/σ ×4, strides 2,2,1,1, fc)."""
    torch.manual_seed(1)
    net = DLGConvNet(num_classes=3)
    x = torch.rand(2, 1, 32, 32)
    p = dict(net.named_parameters())
    h = x
    for i, stride in zip((0, 2, 4, 6), (2, 2, 1, 1), strict=True):
        h = torch.sigmoid(torch.nn.functional.conv2d(h, p[f"body.{i}.weight"], p[f"body.{i}.bias"],
                                                     stride=stride, padding=2))
    ref = h.flatten(1) @ p["fc.weight"].T + p["fc.bias"]
    torch.testing.assert_close(net(x), ref)
    # DLG's weights_init: every weight and bias uniform in (-0.5, 0.5)
    values = torch.cat([q.detach().flatten() for q in net.parameters()])
    assert values.abs().max() <= 0.5 and values.std() > 0.25


def test_classifier_input_is_area_average_and_mask_majority() -> None:
    rng = np.random.default_rng(0)
    mr = rng.random((3, 64, 64)).astype(np.float32)
    mask = np.zeros((3, 64, 64), bool)
    mask[:, :, :33] = True  # columns 0..32: block column 16 is half head
    x, m = classifier_input(mr, mask)
    assert x.shape == (3, 1, 32, 32) and x.dtype == torch.float32
    ref = mr.reshape(3, 32, 2, 32, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(x[:, 0].numpy(), ref, rtol=1e-6)
    assert m.dtype == torch.bool and m.shape == (3, 1, 32, 32)
    assert m[:, 0, :, :17].all() and not m[:, 0, :, 17:].any()
    single, none = classifier_input(mr[0])
    assert single.shape == (1, 1, 32, 32) and none is None


# -- the labels


def test_levels_are_monotone_and_cover_every_class() -> None:
    vol = _head(32, z0=5, z1=26)
    idx, lev = slice_levels(vol, classes=4)
    np.testing.assert_array_equal(idx, np.arange(5, 27))  # only slices with head voxels
    assert np.all(np.diff(lev) >= 0)
    assert set(lev.tolist()) == {0, 1, 2, 3}
    counts = np.bincount(lev)
    assert counts.max() - counts.min() <= 1  # 22 slices -> 5/6 per class
    _, lev3 = slice_levels(vol, classes=3)
    assert set(lev3.tolist()) == {0, 1, 2} and np.all(np.diff(lev3) >= 0)


def test_slice_dataset_shapes_labels_and_provenance() -> None:
    vols = [_head(64, 10, 53, seed=1), _head(64, 4, 59, seed=2)]
    x, y, m, prov = slice_dataset(vols, classes=4)
    n = 44 + 56
    assert x.shape == (n, 1, 32, 32) and y.shape == (n,) and m.shape == (n, 1, 32, 32)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and m.dtype == torch.bool
    assert prov[0] == {"patient": "p1", "axial_index": 10}
    assert prov[-1] == {"patient": "p2", "axial_index": 59}
    for i in (0, 20, 60, n - 1):  # each sample is its slice, downsampled
        v = vols[0] if prov[i]["patient"] == "p1" else vols[1]
        ref, _ = classifier_input(v.mr[prov[i]["axial_index"]])
        torch.testing.assert_close(x[i], ref[0])
    # a subset keeps the labels of the full head extent
    xs, ys, _, ps = slice_dataset(vols, classes=4, max_slices_per_volume=7, seed=3)
    assert xs.shape[0] == 14
    full = {(p["patient"], p["axial_index"]): int(lab) for p, lab in zip(prov, y, strict=True)}
    assert all(full[(p["patient"], p["axial_index"])] == int(lab)
               for p, lab in zip(ps, ys, strict=True))


def test_local_batches_are_seeded_epochs() -> None:
    a = list(local_batches(10, epochs=2, batch_size=4, seed=5))
    b = list(local_batches(10, epochs=2, batch_size=4, seed=5))
    assert [t.tolist() for t in a] == [t.tolist() for t in b]
    assert [len(t) for t in a] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(a[:3]).tolist()) == list(range(10))


# -- the federation


@pytest.fixture(scope="module")
def centers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("clf_data")
    spans = {"A": [(2, 29), (4, 27)], "B": [(3, 28)]}
    train = {c: [_write(_head(32, *s, seed=10 * i + j), root / c / f"{c}{j}")
                 for j, s in enumerate(ss)] for i, (c, ss) in enumerate(spans.items())}
    val = {"A": [_write(_head(32, 3, 30, seed=99), root / "A" / "Aval")]}
    return {"train": train, "val": val}


def _train(centers, out: Path, seed: int = 3) -> dict:
    return train_classifier_federation(centers["train"], val_folders=centers["val"],
                                       test_folders=centers["val"], out_dir=out, rounds=3,
                                       local_epochs=3, lr=0.05, batch_size=4, seed=seed)


@pytest.fixture(scope="module")
def federation(centers, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("clf_run")
    return out, _train(centers, out)


def test_federation_outputs_and_learning(federation) -> None:
    out, res = federation
    for name in ("model.pt", "global_models.npz", "history.tsv", "accuracy.tsv", "samples.tsv",
                 "summary.json"):
        assert (out / name).is_file(), name
    hist = pd.read_csv(out / "history.tsv", sep="\t")
    assert sorted(hist["round"].unique()) == [1, 2, 3]
    assert sorted(hist["center"].unique()) == ["A", "B"]
    assert {"train_loss", "train_acc", "val_acc", "num_examples"} <= set(hist.columns)
    assert dict(zip(hist[hist["round"] == 1]["center"], hist[hist["round"] == 1]["num_examples"],
                    strict=True)) == {"A": 28 + 24, "B": 26}
    loss = hist.groupby("round")["train_loss"].mean()
    assert loss[3] < loss[1]
    acc = pd.read_csv(out / "accuracy.tsv", sep="\t").set_index(["split", "center"])
    for split in ("train", "val", "test"):
        row = acc.loc[(split, "all")]
        assert row["accuracy"] > row["majority_class_accuracy"] + 0.15, split
    samples = pd.read_csv(out / "samples.tsv", sep="\t")
    assert len(samples) == 78 and set(samples["label"]) == {0, 1, 2, 3}
    # the server log holds every round's per-client update (the attacks' input)
    assert logged_rounds(out / "server_log") == [1, 2, 3]
    r2 = load_round(out / "server_log", 2)
    assert set(r2.update_file) == {"A", "B"}
    final = load_classifier(out / "model.pt")
    assert final(torch.rand(1, 1, 32, 32)).shape == (1, 4)


def test_global_models_start_from_the_seeded_initial_model(federation) -> None:
    out, _ = federation
    models = load_global_models(out / "global_models.npz")
    assert sorted(models) == [1, 2, 3]
    init = initial_classifier(3)
    names = exchanged_names(init)
    for name, a in zip(names, get_arrays(init), strict=True):
        np.testing.assert_array_equal(models[1][name], a)
    assert not np.array_equal(models[2]["fc.weight"], models[1]["fc.weight"])
    # the server log's global model of round r is the same model
    r3 = load_round(out / "server_log", 3)
    for name in names:
        np.testing.assert_array_equal(r3.global_arrays[name], models[3][name])


def test_federation_is_deterministic(federation, centers, tmp_path: Path) -> None:
    out, _ = federation
    again = tmp_path / "again"
    _train(centers, again)
    a = load_global_models(out / "global_models.npz")
    b = load_global_models(again / "global_models.npz")
    for r in a:
        for name in a[r]:
            np.testing.assert_array_equal(a[r][name], b[r][name])
    fa, fb = load_classifier(out / "model.pt"), load_classifier(again / "model.pt")
    for (k, va), vb in zip(fa.state_dict().items(), fb.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_network_and_labels_do_not_load_flower() -> None:
    """Layers (CONTRIBUTING.md): an attack loads the network and the labels without Flower."""
    code = ("import sys, fedaudit.models.classifier, fedaudit.data.levels; "
            "sys.exit('flwr' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
