"""FedMIA: per-sample gradients, similarity, scoring, evaluation, and its controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from fedaudit.attacks.fedmia import (
    Candidates,
    balanced_indices,
    cosine_scores,
    fedmia_scores,
    per_sample_gradients,
    per_sample_gradients_loop,
    roc_metrics,
    similarity_matrix,
)
from fedaudit.attacks.fedmia_run import evaluate_scenario
from fedaudit.federation.server_log import resolve_rounds
from fedaudit.models.unet import UNet2D


def _images(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g), torch.rand(n, 1, size, size, generator=g)


def test_vmap_gradients_match_a_loop_of_backward_passes_on_the_bn_unet():
    torch.manual_seed(0)
    model = UNet2D(base=4)
    mr, ct = _images(5, 32, 1)
    fast = torch.cat(list(per_sample_gradients(model, mr, ct, "l1", chunk_size=2)))
    ref = per_sample_gradients_loop(model, mr, ct, "l1")
    assert fast.shape == ref.shape == (5, sum(p.numel() for p in model.parameters()))
    # float32 summation order differs between the batched and the looped kernels
    assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-6)
    # per sample means per sample: the gradients of different slices differ
    assert not torch.allclose(fast[0], fast[1])


def test_gradients_leave_the_model_untouched():
    model = UNet2D(base=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mr, ct = _images(3, 32, 2)
    list(per_sample_gradients(model, mr, ct))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def _candidates(mr: torch.Tensor, ct: torch.Tensor, patients: list[str]) -> Candidates:
    n = mr.shape[0]
    return Candidates(mr, ct, np.array(["X"] * n), np.array(patients),
                      np.array(["axial"] * n), np.arange(n))


def test_an_update_that_is_one_samples_descent_step_has_similarity_one_with_it():
    torch.manual_seed(0)
    model = UNet2D(base=4)
    mr, ct = _images(3, 32, 3)
    g = per_sample_gradients_loop(model, mr, ct)
    sims = similarity_matrix(model, [-0.01 * g[0], 0.01 * g[0]], _candidates(mr, ct, ["a"] * 3))
    assert sims.shape == (2, 3)
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)  # Δ = −lr·g_0: the descent direction
    assert sims[1, 0] == pytest.approx(-1.0, abs=1e-5)
    assert abs(sims[0, 1]) < 0.999


def _fedmia_reference(sims: np.ndarray, target: int) -> np.ndarray:
    """Loop-by-loop reading of paper 000 steps 2-3 and DESIGN.md (an independent rewrite)."""
    r_n, k_n, n_n = sims.shape
    out = np.zeros(n_n)
    for i in range(n_n):
        acc = 0.0
        for r in range(r_n):
            others = [sims[r, k, i] for k in range(k_n) if k != target]
            mu = sum(others) / len(others)
            sd = (sum((x - mu) ** 2 for x in others) / len(others) + 1e-8) ** 0.5
            kept = [x for x in others if x <= mu + 3 * sd]
            mu = sum(kept) / len(kept)
            sd = (sum((x - mu) ** 2 for x in kept) / len(kept) + 1e-8) ** 0.5
            acc += norm.cdf((sims[r, target, i] - mu) / sd)
        out[i] = acc / r_n
    return out


def test_fedmia_score_matches_a_loop_reference_including_the_3_sigma_drop():
    rng = np.random.default_rng(0)
    sims = rng.normal(0.0, 0.01, size=(2, 12, 6))
    # with 11 other clients a single outlier can exceed μ + 3σ (impossible below 11: the
    # largest z-score of n values is sqrt(n − 1))
    sims[0, 5, 2] = 0.5
    ref = _fedmia_reference(sims, target=0)
    got = fedmia_scores(sims, target=0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    # the drop matters: keeping the outlier widens sample 2's null and moves its score
    kept_all = fedmia_scores(sims, target=0, drop_sigma=np.inf)
    assert abs(kept_all[2] - got[2]) > 0.05
    np.testing.assert_allclose(np.delete(kept_all, 2), np.delete(got, 2))
    assert np.all((got >= 0) & (got <= 1))


def test_identical_updates_give_every_sample_a_score_of_one_half():
    """SecAgg+: the server has the aggregate for every client, so target == null exactly."""
    rng = np.random.default_rng(1)
    row = rng.normal(size=(3, 1, 50))
    sims = np.repeat(row, 4, axis=1)
    scores = fedmia_scores(sims, target=2)
    np.testing.assert_allclose(scores, 0.5)
    labels = np.arange(50) < 25
    assert roc_metrics(labels, scores)["auc"] == 0.5


def test_fedmia_rejects_bad_shapes():
    with pytest.raises(ValueError, match="rounds, clients, samples"):
        fedmia_scores(np.zeros((3, 4)), 0)
    with pytest.raises(ValueError, match="at least 2 clients"):
        fedmia_scores(np.zeros((1, 1, 4)), 0)
    with pytest.raises(ValueError, match="out of range"):
        fedmia_scores(np.zeros((1, 3, 4)), 3)


def test_roc_metrics_tpr_at_fpr_follows_fedmias_reading():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.1, 0.05])
    r = roc_metrics(labels, scores, fpr_points=(0.001, 0.3))
    # Mann-Whitney: 15 of the 16 member/non-member pairs are ordered correctly
    assert r["auc"] == pytest.approx(15 / 16)
    # Before the first false positive (score 0.6) three members are found: TPR 0.75
    assert r["tpr@0.001"] == pytest.approx(0.75)
    assert r["tpr@0.3"] == pytest.approx(1.0)  # FPR 0.25 < 0.3 reaches the last member
    empty = roc_metrics(np.ones(3, bool), np.arange(3.0))
    assert np.isnan(empty["auc"])


def test_balanced_indices_are_balanced_and_seeded():
    mem, non = np.arange(10), np.arange(10, 40)
    a = balanced_indices(mem, non, np.random.default_rng(3))
    b = balanced_indices(mem, non, np.random.default_rng(3))
    assert a[0].size == a[1].size == 10
    np.testing.assert_array_equal(a[1], b[1])
    assert set(a[1]) <= set(non)


class _TinyTranslator(nn.Module):
    """BN-free 16x16 image-to-image MLP: distinct samples get distinct gradients. Not the DLG
    control (:class:`fedaudit.models.tiny.TinyMLPTranslator`): its sigmoid is not zero-centred,
    which gives every sample's gradient a shared component and hides the aggregate's
    federation-level signal that the SecAgg+ test below checks."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.Tanh(), nn.Linear(32, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, 1, 16, 16)


def _planted_federation(n_clients: int = 4, per_patient: int = 4, patients: int = 4):
    """Clients take one SGD step on exactly their member slices; the attacker queries their
    slices and as many non-member slices."""
    torch.manual_seed(0)
    model = _TinyTranslator()
    n_mem = n_clients * patients * per_patient
    # zero-mean noise images: distinct samples without a shared component, the clearest case
    g = torch.Generator().manual_seed(7)
    mr, ct = (torch.randn(2 * n_mem, 1, 16, 16, generator=g) for _ in range(2))
    names = [f"c{k}p{p}" for k in range(n_clients) for p in range(patients)
             for _ in range(per_patient)]
    names += [f"out{p}" for p in range(n_clients * patients) for _ in range(per_patient)]
    grads = per_sample_gradients_loop(model, mr, ct, "mse")
    block = patients * per_patient
    updates = [-0.1 * grads[k * block:(k + 1) * block].mean(0) for k in range(n_clients)]
    cand = _candidates(mr, ct, names)
    sims = similarity_matrix(model, updates, cand, loss="mse")[None]
    m = {"similarity": sims, "rounds": np.array([1]),
         "centers": np.array([f"c{k}" for k in range(n_clients)]),
         "center": np.array(["X"] * len(names)), "patient": np.array(names),
         "orientation": cand.orientation, "index": cand.index}
    members = {f"c{k}": [f"c{k}p{p}" for p in range(patients)] for k in range(n_clients)}
    outsiders = [f"out{p}" for p in range(n_clients * patients)]
    return m, members, {c: outsiders for c in members}, (model, updates, cand)


def test_positive_control_planted_members_are_found_and_shuffled_labels_are_chance():
    m, members, nonmembers, _ = _planted_federation()
    metrics, scores, curves = evaluate_scenario(m, members=members, nonmembers=nonmembers,
                                                seed=42, scenario="toy", secagg=False)
    auc = metrics[metrics.metric == "auc"].set_index(["target", "score", "level"])["value"]
    # The null comes from only 3 other clients per sample, so a member now and then scores
    # below a non-member: each target >= 0.9, and on average ~1.
    fed = auc.xs("fedmia", level="score")
    assert (fed >= 0.9).all(), fed
    assert fed.xs("slice", level="level").mean() >= 0.95
    # negative control: 16 + 16 samples per target give chance AUCs with sd ~0.10; pooled over
    # the four targets sd ~0.05, so 0.15 is a 3-sigma band
    pooled = auc.xs("fedmia_shuffled", level="score").mean()
    assert abs(pooled - 0.5) < 0.15
    assert set(scores["member"]) == {True, False}
    assert scores.groupby("target")["member"].mean().eq(0.5).all()  # balanced
    assert "c0/fedmia/slice/fpr" in curves


def test_secagg_measurement_gives_chance_for_every_target():
    m, members, nonmembers, (model, updates, cand) = _planted_federation()
    aggregate = torch.stack(updates).mean(0)  # equal sample counts: FedAvg is the mean
    # what the server holds under SecAgg+: the aggregate, for every client
    m["similarity"] = similarity_matrix(model, [aggregate] * 4, cand, loss="mse")[None]
    metrics, _, _ = evaluate_scenario(m, members=members, nonmembers=nonmembers, seed=42,
                                      scenario="toy-secagg", secagg=True)
    fed = metrics[(metrics.metric == "auc") & (metrics.score == "fedmia")]
    np.testing.assert_allclose(fed["value"], 0.5)
    # the raw cosine with the aggregate still tells federation members from outsiders here:
    # SecAgg+ hides which client holds a sample, not that some client does
    cos = metrics[(metrics.metric == "auc") & (metrics.score == "cosine") &
                  (metrics.level == "slice")]
    assert (cos["value"] > 0.9).all(), cos
    assert np.allclose(cosine_scores(m["similarity"], 0), cosine_scores(m["similarity"], 3))


def test_a_patient_cannot_be_member_and_nonmember():
    m, members, nonmembers, _ = _planted_federation()
    nonmembers["c0"] = nonmembers["c0"] + ["c0p0"]
    with pytest.raises(ValueError, match="both members and non-members of c0"):
        evaluate_scenario(m, members=members, nonmembers=nonmembers, seed=0, scenario="x",
                          secagg=False)


def test_resolve_rounds_names_the_log_and_the_logged_rounds(tmp_path):
    with pytest.raises(FileNotFoundError, match="no logged round"):
        resolve_rounds(tmp_path, "last")
    for r in (1, 3):
        (tmp_path / f"round_{r:03d}").mkdir()
        (tmp_path / f"round_{r:03d}" / "round.json").write_text("{}")
    assert resolve_rounds(tmp_path, "last") == [3]
    assert resolve_rounds(tmp_path, "all") == [1, 3]
    assert resolve_rounds(tmp_path, [1]) == [1]
    with pytest.raises(FileNotFoundError, match=r"round 2 is not logged \(logged: \[1, 3\]"):
        resolve_rounds(tmp_path, 2)
