"""The gradient-inversion suite (paper 003): its objectives against closed forms, iDLG's label
rule, the positive control on paper 003's classifier, scoring, and the verdict's reading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fedaudit.attacks import gradient_inversion as engine
from fedaudit.attacks.gradient_inversion import (
    Method,
    client_gradient,
    extract_label,
    initial_dummy,
    invert,
    matching_distance,
    total_variation,
)
from fedaudit.attacks.gradinv.report import (
    classifier_table,
    suite_finding,
    suite_table,
    summarise,
)
from fedaudit.attacks.gradinv.scoring import match_batch, slice_scores
from fedaudit.catalog import catalog, fragment_defaults, resolve
from fedaudit.comparisons.privacy_utility.report import defense_finding, privacy_utility
from fedaudit.federation.classifier import initial_classifier


@pytest.fixture(autouse=True)
def _flush_denormals(one_torch_thread):
    """One torch thread per test worker (conftest); sigmoid tails produce denormal floats,
    which slow CPUs tenfold unless flushed (as the attack step does)."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def _image(size: int = 32, phase: float = 0.0) -> np.ndarray:
    """A smooth head-like slice in [0, 1]: an ellipse with inner structure, background 0."""
    yy, xx = np.mgrid[:size, :size] / size
    head = ((xx - 0.5) / 0.4) ** 2 + ((yy - 0.5) / 0.45) ** 2 < 1
    inner = 0.55 + 0.35 * np.sin(7 * xx + phase) * np.cos(5 * yy)
    return (head * inner).astype(np.float32)


# ------------------------------------------------------------------ objectives vs closed forms


class _Linear(nn.Module):
    def __init__(self, w: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.from_numpy(w))
            self.lin.bias.copy_(torch.from_numpy(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _closed_form_grads(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray
                       ) -> list[np.ndarray]:
    """Cross-entropy on softmax(Wx + b) with a (soft) label y, one sample:
    ∂L/∂W = (p − y) xᵀ, ∂L/∂b = p − y (the identity iDLG's §3.1 builds on)."""
    p = _softmax(w @ x + b)
    return [np.outer(p - y, x), p - y]


def test_client_gradient_and_objectives_match_the_closed_form_of_a_softmax_layer() -> None:
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 16)), rng.normal(size=3)
    model = _Linear(w, b)
    x_true, x_dummy = rng.uniform(size=16), rng.uniform(size=16)
    y_true, y_dummy = np.eye(3)[1], _softmax(rng.normal(size=3))
    shared = client_gradient(model, torch.from_numpy(x_true)[None], torch.tensor([1]),
                             task="classification")
    ref = _closed_form_grads(w, b, x_true, y_true)
    for g, r in zip(shared, ref, strict=True):
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-10, atol=1e-12)
    # DLG's dummy soft label and the two distances, against numpy over the closed form
    dummy = client_gradient(model, torch.from_numpy(x_dummy)[None],
                            torch.from_numpy(y_dummy)[None], task="classification")
    d_ref = _closed_form_grads(w, b, x_dummy, y_dummy)
    l2 = sum(((d - s) ** 2).sum() for d, s in zip(d_ref, ref, strict=True))
    flat_d = np.concatenate([a.ravel() for a in d_ref])
    flat_s = np.concatenate([a.ravel() for a in ref])
    cos = 1 - flat_d @ flat_s / (np.linalg.norm(flat_d) * np.linalg.norm(flat_s))
    assert float(matching_distance(dummy, shared, "l2")) == pytest.approx(l2, rel=1e-10)
    assert float(matching_distance(dummy, shared, "cosine")) == pytest.approx(cos, rel=1e-10)


def test_the_objectives_gradient_wrt_the_dummy_matches_finite_differences() -> None:
    """Double backpropagation: d(objective)/dx' against central differences of the numpy
    closed-form objective (the quantity the attacks descend)."""
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(3, 8)), rng.normal(size=3)
    model = _Linear(w, b)
    x_true, y = rng.uniform(size=8), np.eye(3)[2]
    ref = _closed_form_grads(w, b, x_true, y)
    shared = [torch.from_numpy(a) for a in ref]
    for objective in ("l2", "cosine"):
        def numpy_objective(x: np.ndarray, objective: str = objective) -> float:
            d = _closed_form_grads(w, b, x, y)
            if objective == "l2":
                return float(sum(((a - s) ** 2).sum() for a, s in zip(d, ref, strict=True)))
            fd = np.concatenate([a.ravel() for a in d])
            fs = np.concatenate([a.ravel() for a in ref])
            return float(1 - fd @ fs / (np.linalg.norm(fd) * np.linalg.norm(fs)))

        x0 = rng.uniform(size=8)
        xt = torch.from_numpy(x0)[None].requires_grad_()
        grads = torch.autograd.grad(engine.task_loss("classification", model(xt),
                                                     torch.tensor([2])),
                                    list(model.parameters()), create_graph=True)
        value = matching_distance(grads, shared, objective)
        (dx,) = torch.autograd.grad(value, xt)
        h = 1e-6
        fd = np.array([(numpy_objective(x0 + h * e) - numpy_objective(x0 - h * e)) / (2 * h)
                       for e in np.eye(8)])
        np.testing.assert_allclose(dx.numpy()[0], fd, rtol=1e-5, atol=1e-9)


def test_total_variation_and_the_patterned_initialisation() -> None:
    ramp = torch.arange(8.0).repeat(8, 1)[None, None] / 8  # x[i, j] = j / 8
    assert float(total_variation(ramp)) == pytest.approx(1 / 8)  # |dx| = 1/8, dy = 0
    gen = torch.Generator().manual_seed(0)
    x = initial_dummy((2, 1, 10, 10), Method("cpl", init="pattern", pattern=4), gen)
    tile = x[..., :4, :4]
    for i in range(10):
        for j in range(10):
            assert torch.equal(x[..., i, j], tile[..., i % 4, j % 4])


def test_idlg_extracts_every_label_exactly_on_the_classifier() -> None:
    """iDLG §3.1 on paper 003's CNN (sigmoid features ≥ 0): the label is the row with negative
    gradient sum, exactly, for every class and for random inputs."""
    net = initial_classifier(5, classes=4)
    gen = torch.Generator().manual_seed(1)
    for label in range(4):
        for _ in range(3):
            x = torch.rand((1, 1, 32, 32), generator=gen)
            g = client_gradient(net, x, torch.tensor([label]), task="classification")
            assert extract_label(g, net) == label


# ------------------------------------------------------------------------- positive control


@pytest.mark.parametrize("name", ["dlg", "cpl", "idlg", "inverting_gradients"])
def test_every_method_recovers_a_slice_from_paper_003s_classifier(name: str) -> None:
    """The positive control: on the freshly initialised classifier (DLG's initialisation, the
    network of paper 003's Table II) each method, as the suite builds it, reconstructs the slice
    at SSIM ≥ 0.9, with the right label."""
    spec = catalog().attacks[name]
    settings = fragment_defaults(spec.folder)  # the shipped settings
    # 600 evaluations: DLG's joint soft label reaches 0.95 there (0.77 at 300) on this slice
    suite = {"evaluations": {"classification": 600, "translation": 10}, "sct_target": "known"}
    method = resolve(spec.method, spec.package)(settings, "classification", suite, 1)
    net = initial_classifier(7, classes=4)
    x = torch.from_numpy(_image())[None, None]
    g = client_gradient(net, x, torch.tensor([3]), task="classification")
    res = invert(net, g, method, task="classification", shape=(1, 1, 32, 32), seed=2,
                 num_classes=4, known_target=np.array([3]) if method.target == "known"
                 else None)
    score = slice_scores(x[0, 0].numpy(), res.reconstruction[0, 0], np.ones((32, 32), bool))
    assert score["ssim"] >= 0.9, (name, score)
    assert res.label.tolist() == [3]
    assert res.evaluations <= 600 + 25  # one L-BFGS line search may overshoot the budget
    if method.box:
        assert res.reconstruction.min() >= 0 and res.reconstruction.max() <= 1


def test_restarts_keep_the_lowest_objective_and_the_mask_holds() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Sigmoid(), nn.Conv2d(2, 1, 1))
    x = torch.from_numpy(_image(8))[None, None]
    ct = torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    mask = x.numpy() > 0
    g = client_gradient(net, x, ct, task="translation")
    m = Method("ig", objective="cosine", optimizer="signed_adam", lr=0.05, evaluations=20,
               restarts=3, box=True)
    res = invert(net, g, m, task="translation", shape=(1, 1, 8, 8), seed=0, mask=mask,
                 known_target=ct.numpy())
    assert len(res.restart_objectives) == 3
    assert res.objective == min(res.restart_objectives)
    assert np.all(res.reconstruction[~mask] == 0)
    with pytest.raises(ValueError, match="ground truth"):
        invert(net, g, Method("j", target="joint"), task="translation", shape=(1, 1, 8, 8),
               seed=0, mask=mask, known_target=ct.numpy())
    with pytest.raises(ValueError, match="does not apply"):
        invert(net, g, Method("i", target="extracted"), task="translation",
               shape=(1, 1, 8, 8), seed=0, mask=mask)


# ------------------------------------------------------------------------------------ scoring


def test_scores_are_affine_invariant_and_a_shuffled_batch_is_matched_back() -> None:
    a, b = _image(32, 0.0), _image(32, 1.7)
    mask = a > 0
    s = slice_scores(a, np.where(mask, 2.5 * a - 0.3, 0.0), mask)  # background stays 0
    assert s["ssim"] == pytest.approx(1.0) and s["mse"] == pytest.approx(0.0, abs=1e-12)
    assert s["ssim_raw"] < 0.9
    bad = slice_scores(a, np.full_like(a, np.nan), mask)
    assert bad["ssim"] == -1 and bad["mse"] == np.inf
    order, scores = match_batch(np.stack([a, b]), np.stack([b, a]), np.stack([mask, b > 0]))
    assert order == [1, 0] and all(x["ssim"] == pytest.approx(1.0) for x in scores)


def _rows(successes: dict[tuple[str, str], list[bool]], scenario: str = "baseline",
          noise: str | None = None) -> pd.DataFrame:
    out = []
    for (network, method), flags in successes.items():
        for i, ok in enumerate(flags):
            out.append({"scenario": scenario, "target": "classifier" if network == "classifier"
                        else "unet", "network": network, "method": method,
                        "batch_size": 1, "center": "AB"[i % 2], "success": ok,
                        "ssim": 0.95 if ok else 0.2, "mse": 1e-4 if ok else 0.05,
                        "psnr": 40.0 if ok else 13.0, "null_success": False, "null_ssim": 0.2,
                        "seconds_per_image": 1.0, "evaluations": 100.0, "noise": noise,
                        "label_correct": True if network == "classifier" else None})
    return pd.DataFrame(out)


def test_the_verdict_reads_a_lower_bound_and_needs_the_control() -> None:
    clf = {("classifier", m): [True] * 8 for m in ("dlg", "cpl")}
    # UNet and control both fail: inconclusive, whatever the classifier shows
    frame = _rows({**clf, ("unet", "dlg"): [False] * 8, ("control", "dlg"): [False] * 8})
    f = suite_finding(summarise(frame))
    assert f.level == "inconclusive" and "without BatchNorm" in f.sentence
    # the control recovered, the UNet not: it resists at this budget, the control its power
    frame = _rows({**clf, ("unet", "dlg"): [False] * 8, ("control", "dlg"): [True] * 8})
    f = suite_finding(summarise(frame))
    assert f.level == "resists at this budget" and "without BatchNorm" in f.power
    # 8/8 on the UNet with two methods: the Bonferroni lower bound (level 0.975) of 8/8 is
    # 0.025^(1/8) = 0.63 ≥ 0.5: high; 3/8 gives a bound of about 0.06 above a null of 0:
    # detected, below high: moderate
    frame = _rows({**clf, ("unet", "dlg"): [True] * 8, ("unet", "cpl"): [False] * 8,
                   ("control", "dlg"): [True] * 8})
    assert suite_finding(summarise(frame)).level == "high"
    frame = _rows({**clf, ("unet", "dlg"): [True] * 3 + [False] * 5,
                   ("unet", "cpl"): [False] * 8, ("control", "dlg"): [True] * 8})
    assert suite_finding(summarise(frame)).level == "moderate"
    table = suite_table(frame)
    assert "3/8" not in table.blocks[0].frame.to_string()  # per center: 2/4 and 1/4
    assert {"A", "B"} <= set(table.blocks[0].frame.columns)


def test_privacy_utility_rows_epsilon_and_the_defense_line() -> None:
    clf = {("classifier", "cpl"): [True] * 4}
    frames = [_rows(clf), _rows({("classifier", "cpl"): [True, True, False, False]},
                                "dp-z0.5", "dp_fedavg"),
              _rows({("classifier", "cpl"): [False] * 4}, "dp-z2.0", "dp_fedavg"),
              _rows({("classifier", "cpl"): [True, False, False, False]}, "laplace-b0.01",
                    "laplace_noise")]
    gradinv = pd.concat(frames)
    dp = {"name": "dp_fedavg", "clip": 1.0, "delta": 1e-5}
    scenarios = {"baseline": {"defenses": []},
                 "dp-z0.5": {"defenses": [{**dp, "noise_multiplier": 0.5}]},
                 "dp-z2.0": {"defenses": [{**dp, "noise_multiplier": 2.0}]},
                 "laplace-b0.01": {"defenses": [{"name": "laplace_noise", "scale": 0.01}]}}
    quality = pd.DataFrame({"scenario": list(scenarios), "center": "A", "n": 2,
                            "mae_mean": [100.0, 150.0, 300.0, 200.0],
                            "ssim_mean": [0.9, 0.8, 0.5, 0.7]})
    acc = pd.DataFrame({"scenario": list(scenarios), "split": "test", "center": "all",
                        "accuracy": [0.8, 0.6, 0.3, 0.5], "majority_class_accuracy": 0.26})
    data = privacy_utility(gradinv, quality, acc, None, scenarios,
                           dict.fromkeys(scenarios, 10), 5)
    assert list(data["scenario"]) == ["baseline", "laplace-b0.01", "dp-z0.5", "dp-z2.0"]
    eps = data.set_index("scenario")["epsilon"]
    assert np.isnan(eps["baseline"]) and np.isnan(eps["laplace-b0.01"])
    assert eps["dp-z0.5"] > eps["dp-z2.0"] > 0  # more noise, smaller ε
    assert data.set_index("scenario").loc["dp-z2.0", "classifier_cpl_asr"] == 0
    lines = {f.topic: f.sentence for f in defense_finding(data)}
    dp_line = lines["Defense: DP-FedAvg noise on client updates"]
    assert "1.00 → 0.50 → 0.00" in dp_line and "(monotone)" in dp_line and "ε" in dp_line
    assert "no DP guarantee" in lines["Defense: Laplace noise on client updates"]


def test_classifier_table_has_paper_003s_layout() -> None:
    frame = _rows({("classifier", m): [True, False, True, True] for m in ("cpl", "idlg")})
    acc = pd.DataFrame({"scenario": ["baseline"], "split": ["test"], "center": ["all"],
                        "accuracy": [0.78], "majority_class_accuracy": [0.26]})
    t = classifier_table(frame, acc)
    block = t.blocks[0].frame
    assert list(block.columns) == ["Dataset", "Method", "Model", "ASR", "SSIM", "MSE",
                                   "Time (s)"]
    assert "75% (3/4)" in block["ASR"].tolist()  # pooled over both centers
    assert "0.78" in " ".join(t.notes)


def test_noisy_unet_attacks_run_only_where_the_noise_free_one_recovers_a_slice(tmp_path) -> None:
    """The suite does not run a method on a noisy scenario's UNet when the same method recovers
    no slice of the noise-free reference's UNet (batch 1): there is nothing for noise to
    degrade. One success anywhere, or no reference rows, runs it."""
    from fedaudit.attacks.gradinv.steps import _nothing_to_degrade
    from fedaudit.io import write_json

    def ref(successes: list[bool], network: str = "unet") -> str:
        path = tmp_path / f"{network}_{len(successes)}_{sum(successes)}.json"
        write_json({"results": [{"scenario": "baseline", "network": network, "batch_size": 1,
                                 "success": s} for s in successes]}, path)
        return str(path)

    reason = _nothing_to_degrade([ref([False] * 4)], "dlg")
    assert reason is not None and "0/4" in reason and "baseline" in reason
    assert _nothing_to_degrade([ref([False, False, True, False])], "dlg") is None
    # the BatchNorm-free control's rows do not count: only the audited UNet's
    assert _nothing_to_degrade([ref([True] * 4, network="control")], "dlg") is None
    assert _nothing_to_degrade([], "dlg") is None


def test_a_noisy_scenario_is_read_against_the_noise_free_one_that_trains_its_unet() -> None:
    from fedaudit.defenses.budgets import reference_scenario

    d = {"baseline": [], "groupnorm": [{"name": "group_norm", "groups": 32}],
         "dpsgd-z1.0": [{"name": "dp_sgd", "noise_multiplier": 1.0, "max_grad_norm": 1.0,
                         "delta": 1e-5, "groups": 32}],
         "laplace-b0.01": [{"name": "laplace_noise", "scale": 0.01}]}
    refs = {s: reference_scenario(s, list(d), d) for s in d}
    assert refs == {"baseline": None, "groupnorm": None, "dpsgd-z1.0": "groupnorm",
                    "laplace-b0.01": "baseline"}
    # without the GroupNorm reference, the first noise-free scenario; none without one
    assert reference_scenario("dpsgd-z1.0", ["baseline", "dpsgd-z1.0"], d) == "baseline"
    assert reference_scenario("laplace-b0.01", ["laplace-b0.01"], d) is None
