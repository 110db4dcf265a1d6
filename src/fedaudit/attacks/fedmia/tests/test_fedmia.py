"""FedMIA: per-sample gradients, similarity, scoring, evaluation, and its controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from fedaudit.attacks.fedmia.algorithm import (
    Candidates,
    batch_groups,
    fedmia_scores,
    per_sample_gradients,
    per_sample_gradients_loop,
    roc_metrics,
    similarity_matrix,
)
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


def test_batch_unit_gradients_match_one_backward_pass_per_batch():
    torch.manual_seed(0)
    model = UNet2D(base=4)
    mr, ct = _images(6, 32, 4)
    groups = [np.array([0, 2, 4]), np.array([1, 3, 5])]
    fast = torch.cat(list(per_sample_gradients(model, mr, ct, "l1", chunk_size=3,
                                               groups=groups)))
    ref = per_sample_gradients_loop(model, mr, ct, "l1", groups=groups)
    assert fast.shape[0] == 2
    assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-6)
    # BatchNorm normalises over the batch: a batch's gradient is not the mean of its slices'
    singles = per_sample_gradients_loop(model, mr, ct, "l1")
    assert not torch.allclose(fast[0], singles[[0, 2, 4]].mean(0), rtol=1e-2, atol=1e-5)


def test_batch_groups_take_one_patient_and_orientation_spread_through_the_head():
    n = 10
    cand = Candidates(torch.zeros(2 * n, 1, 4, 4), torch.zeros(2 * n, 1, 4, 4),
                      np.array(["X"] * 2 * n), np.array(["p"] * n + ["q"] * n),
                      np.array(["axial"] * 2 * n), np.tile(np.arange(n) * 3, 2))
    groups = batch_groups(cand, 4)
    assert len(groups) == 4  # 2 per patient; the remainder of 2 slices is left out
    for g in groups:
        assert len(g) == 4 and len(set(cand.patient[g])) == 1
        assert np.ptp(cand.index[g]) >= 6 * 3  # spans the head, not 4 neighbours
    with pytest.raises(ValueError, match="no patient has 11 candidate slices"):
        batch_groups(cand, 11)


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
    r = roc_metrics(labels, scores, fpr_points=(0.001, 0.25, 0.3))
    # Mann-Whitney: 15 of the 16 member/non-member pairs are ordered correctly
    assert r["auc"] == pytest.approx(15 / 16)
    # Before the first false positive (score 0.6) three members are found: TPR 0.75
    assert r["tpr@0.25"] == pytest.approx(0.75)
    assert r["tpr@0.3"] == pytest.approx(1.0)  # FPR 0.25 < 0.3 reaches the last member
    # four non-members cannot resolve an FPR of 0.1 %: no number rather than a misleading one
    assert np.isnan(r["tpr@0.001"])
    empty = roc_metrics(np.ones(3, bool), np.arange(3.0))
    assert np.isnan(empty["auc"])


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


# ------------------------------------------------------------- patient-level statistics


def _clustered(rng: np.random.Generator, n_mem: int, n_non: int, per: int, shift: float):
    patient = np.repeat([f"p{i}" for i in range(n_mem + n_non)], per)
    member = np.repeat(np.arange(n_mem + n_non) < n_mem, per)
    # a patient effect shared by its items: items of one patient are not independent
    effect = np.repeat(rng.normal(size=n_mem + n_non), per)
    return effect + shift * member + 0.3 * rng.normal(size=patient.size), member, patient


def test_cluster_auc_is_the_mann_whitney_auc_and_its_ci_resamples_patients():
    from sklearn.metrics import roc_auc_score

    from fedaudit.attacks.membership_stats import cluster_auc

    scores, member, patient = _clustered(np.random.default_rng(0), 4, 5, 6, 0.8)
    scores[3] = scores[4]  # a tie, counted 1/2 by both
    r = cluster_auc(scores, member, patient, rng=np.random.default_rng(1), n_boot=300,
                    n_perm=50)
    assert r.auc == pytest.approx(roc_auc_score(member, scores), abs=1e-12)
    assert (r.n_member_patients, r.n_nonmember_patients, r.n_member_items) == (4, 5, 24)
    # independent reference: the same patient draws, the resampled items concatenated and
    # scored by scikit-learn
    rng = np.random.default_rng(1)
    names = np.unique(patient)
    lab = np.array([member[patient == n][0] for n in names])
    draws = [rng.choice(np.flatnonzero(lab), size=(300, 4)),
             rng.choice(np.flatnonzero(~lab), size=(300, 5))]
    ref = []
    for b in range(300):
        pick = [names[i] for i in np.concatenate([draws[0][b], draws[1][b]])]
        sel = np.concatenate([np.flatnonzero(patient == n) for n in pick])
        ref.append(roc_auc_score(member[sel], scores[sel]))
    np.testing.assert_allclose([r.ci_low, r.ci_high], np.quantile(ref, [0.025, 0.975]),
                               atol=1e-12)


def test_cluster_auc_permutation_null_and_too_few_patients_for_a_ci():
    from fedaudit.attacks.membership_stats import cluster_auc

    # perfect separation of 3 vs 3 patients: 1 of the C(6,3) = 20 labellings is as extreme
    patient = np.repeat(list("abcdef"), 4)
    member = np.repeat([True] * 3 + [False] * 3, 4)
    scores = member + 0.01 * np.random.default_rng(2).random(member.size)
    r = cluster_auc(scores, member, patient, rng=np.random.default_rng(3), n_perm=4000)
    assert r.auc == 1.0
    assert r.p_value == pytest.approx(1 / 20, abs=0.012)
    # one member patient: the bootstrap would only repeat it, so there is no interval
    # two non-member patients: a bootstrap would mostly repeat them, so no interval either
    two = cluster_auc(scores[:20], member[:20], patient[:20], rng=np.random.default_rng(3))
    assert two.n_nonmember_patients == 2 and np.isnan(two.ci_low)
    assert np.isfinite(r.ci_low)  # three per class: an interval
    single = np.isin(patient, ["a", "d", "e", "f"])
    r1 = cluster_auc(scores[single], member[single], patient[single],
                     rng=np.random.default_rng(3))
    assert r1.auc == 1.0 and np.isnan(r1.ci_low) and np.isnan(r1.ci_high)
    assert r1.p_value == pytest.approx(0.25, abs=0.05)  # 1 of 4 labellings
    mixed = member.copy()
    mixed[0] = False
    with pytest.raises(ValueError, match="patient a has both member and non-member items"):
        cluster_auc(scores, mixed, patient, rng=np.random.default_rng(0))


# ------------------------------------------------------ the real measurement path, end to end


SIZE = 32


def _write_patient(folder, rng: np.random.Generator, gain: float, ct_offset: float,
                   patient_hu_sd: float, anatomy: np.random.Generator | None = None) -> str:
    """A 32^3 head: an ellipsoid with patient-specific texture; ``gain`` and ``ct_offset`` are
    the center's scanner style (the same for every patient of a center)."""
    import SimpleITK as sitk

    from fedaudit.io import write_volume

    folder.mkdir(parents=True, exist_ok=True)
    z, y, x = np.mgrid[:SIZE, :SIZE, :SIZE].astype(np.float32) / (SIZE - 1) - 0.5
    mask = (z / 0.45) ** 2 + (y / 0.42) ** 2 + (x / 0.4) ** 2 < 1
    # ``anatomy``: a center-wide template instead of the patient's own texture
    k = (anatomy or rng).uniform(4, 10, size=3)
    phase = (anatomy or rng).uniform(0, 2 * np.pi, size=3)
    texture = np.sin(k[0] * x + phase[0]) * np.sin(k[1] * y + phase[1]) + np.sin(k[2] * z
                                                                                  + phase[2])
    mr = np.where(mask, np.clip(gain * (0.5 + 0.2 * texture)
                                + 0.03 * rng.standard_normal(mask.shape), 0, 1), 0)
    # each patient's own HU level: a member's gradients pull the model towards its patient
    ct = np.where(mask, ct_offset + rng.normal(0, patient_hu_sd) + 300.0 * texture, -1000.0)
    for stem, arr in (("mr", mr), ("ct", ct), ("mask", mask.astype(np.uint8))):
        write_volume(sitk.GetImageFromArray(arr.astype(np.float32 if stem != "mask"
                                                      else np.uint8)),
                     folder / f"{stem}.nii.gz")
    return str(folder)


STYLES = {"A": (1.0, 0.0), "B": (0.8, 200.0), "C": (1.2, -150.0), "D": (0.9, 100.0),
          "X": (0.6, 400.0)}


def _study(root, n_patients: int = 4, per_orientation: int = 2, *, planted: bool):
    """Four training centers of ``n_patients`` (half members) and an external center X.

    ``planted``: each client's update is minus the summed gradient of exactly its members'
    candidate slices (they are found or the path is broken). Otherwise it is made from two
    *other* patients of the same center, not among the candidates: the update then carries the
    center's style and nothing of the members (a center-shift-only federation).
    """
    from fedaudit.attacks.fedmia.algorithm import candidate_slices, flat_update, trainable_names
    from fedaudit.data.slices import load_volume
    from fedaudit.federation.server_log import write_round
    from fedaudit.models.weights import exchanged_names, get_arrays

    rng = np.random.default_rng(11 if planted else 12)
    # planted: patients differ (their own HU level) so that members are findable; center shift:
    # the center's style dominates and patients of one center are interchangeable
    sd = 300.0 if planted else 20.0

    def template(center: str) -> np.random.Generator | None:
        return None if planted else np.random.default_rng(ord(center))
    torch.manual_seed(0)
    model = UNet2D(base=4)
    names = exchanged_names(model)
    trainable = trainable_names(model)
    folders, records, received = [], {}, []
    for c, (gain, offset) in STYLES.items():
        pats = [f"{c}{i}" for i in range(n_patients if c != "X" else 3)]
        for p in pats:
            folders.append((c, _write_patient(root / "pre" / c / p, rng, gain, offset, sd,
                                              template(c))))
        if c == "X":
            records[c] = {"role": "external", "train": [], "val": [], "test": pats}
            continue
        half = n_patients // 2
        records[c] = {"role": "train", "train": pats[:half], "val": pats[half:half + 1],
                      "test": pats[half + 1:]}
        sources = (pats[:half] if planted else
                   [_write_patient(root / "fresh" / c / f"f{i}", rng, gain, offset, sd,
                                   template(c)) for i in range(2)])
        vols = [(c, load_volume(root / "pre" / c / p if planted else p)) for p in sources]
        cand = candidate_slices(vols, per_orientation)
        g = per_sample_gradients_loop(model, cand.mr, cand.ct).sum(0)
        arrays, offset_i = [], 0
        params = dict(model.named_parameters())
        for n, a in zip(names, get_arrays(model), strict=True):
            if n in trainable:
                size = params[n].numel()
                arrays.append(-0.01 * g[offset_i:offset_i + size].reshape(a.shape).numpy())
                offset_i += size
            else:  # BatchNorm running statistics: exchanged, not trained
                arrays.append(np.zeros_like(a))
        received.append({"center": c, "num_examples": 8, "metrics": {}, "arrays": arrays})
        assert flat_update(dict(zip(names, arrays, strict=True)), trainable).shape == g.shape
    write_round(root / "server_log", 1, names, get_arrays(model), received)
    return folders, records


def _measured(tmp_path, planted: bool):
    from fedaudit.attacks.fedmia.evaluation import evaluate_scenario, measure, membership_truth

    folders, records = _study(tmp_path, planted=planted)
    m = measure(server_log=tmp_path / "server_log", rounds="last", patients=folders,
                model_base=4, per_orientation=2, units=("slice", "batch"), batch_size=2)
    truth = membership_truth(records)
    metrics, scores, curves = evaluate_scenario(m, truth, seed=42, scenario="toy", secagg=False)
    return metrics.set_index(["view", "score", "unit", "level", "test", "target"]), scores, curves


def test_planted_members_are_found_through_the_real_measurement_path(tmp_path):
    metrics, scores, curves = _measured(tmp_path, planted=True)
    pooled = metrics.loc[("update", "fedmia", "slice", "patient", "membership", "all")]
    # 8 member vs 8 same-center non-member patients, 2 vs 2 per center: 16 pairs are compared
    # (within a center), at most one misordered
    assert (pooled.n_member_patients, pooled.n_nonmember_patients) == (8, 8)
    assert pooled.auc >= 15 / 16 and pooled.ci_low >= 0.75 and pooled.p_value < 0.01
    # the update is planted from single-slice gradients: a batch's gradient (BatchNorm over
    # the batch) is a different vector, so batches find the members less sharply
    for unit, bound in (("slice", 15 / 16), ("batch", 0.75)):
        patients = metrics.loc[("update", "fedmia", unit, "patient", "membership", "all")]
        assert patients.auc >= bound, unit
        # single units are noisier (a slice at the edge of the head carries little gradient),
        # but clearly above chance
        units = metrics.loc[("update", "fedmia", unit, "unit", "membership", "all")]
        assert units.auc > 0.6 and units.ci_low > 0.5, unit
    assert set(scores["target"]) == set("ABCD")
    assert "update/fedmia/slice/membership/fpr" in curves


def test_center_shift_alone_is_center_inference_not_membership(tmp_path):
    """The update knows the center's style, not its patients: same-center membership is at
    chance while members vs another center's patients look "leaked" -- the confusion the
    same-center null exists to prevent."""
    metrics, _, _ = _measured(tmp_path, planted=False)
    for unit in ("slice", "batch"):
        same = metrics.loc[("update", "fedmia", unit, "patient", "membership", "all")]
        center = metrics.loc[("update", "fedmia", unit, "patient", "center", "all")]
        # 8 vs 8 patients: a null AUC has sd ~0.15, and its CI must cover chance
        assert abs(same.auc - 0.5) < 0.3 and same.ci_low <= 0.5 <= same.ci_high, unit
        assert same.p_value > 0.05, unit
        # 8 members vs 3 external patients per target: the style alone separates them
        assert center.auc > 0.85 and center.p_value < 0.01, unit


def test_pooled_auc_compares_patients_within_a_stratum_only():
    """Two targets whose scores live on different scales and carry no membership signal: the
    stratified AUC sits at chance; pooling all pairs across targets does not."""
    from sklearn.metrics import roc_auc_score

    from fedaudit.attacks.membership_stats import cluster_auc

    rng = np.random.default_rng(4)
    # target 1: one member of 3 patients, scores ~0; target 2: one member of 7, scores ~5
    strat = np.repeat(["t1"] * 3 + ["t2"] * 7, 10)
    patient = np.repeat([f"p{i}" for i in range(10)], 10)
    member = np.repeat([True, False, False, True] + [False] * 6, 10)
    scores = rng.normal(size=100) + 5.0 * (strat == "t2")
    r = cluster_auc(scores, member, patient, strat, rng=np.random.default_rng(0), n_perm=500)
    naive = roc_auc_score(member, scores)
    # independent reference: the stratified Mann-Whitney from scikit-learn per stratum
    ref = [(roc_auc_score(member[strat == t], scores[strat == t]),
            member[strat == t].sum() * (~member[strat == t]).sum()) for t in ("t1", "t2")]
    assert r.auc == pytest.approx(sum(a * n for a, n in ref) / sum(n for _, n in ref))
    # naive: a t1 member (low scale) loses to t2's non-members, a t2 member beats t1's
    assert abs(naive - 0.5) > 0.1 and abs(r.auc - 0.5) < abs(naive - 0.5)
    assert r.p_value > 0.05


def test_fedmia_ties_at_probability_one_are_broken_by_z():
    from scipy.stats import rankdata

    from fedaudit.attacks.fedmia.evaluation import _lexrank

    x = np.array([0.3, 1.0, 1.0, 0.2, 1.0, 0.3])
    np.testing.assert_array_equal(_lexrank(x), rankdata(x))  # one column: scipy's average ranks
    z = np.array([0.5, 9.0, 30.0, -1.0, 12.0, 0.5])
    np.testing.assert_array_equal(_lexrank(np.stack([x, z], axis=1)), [2.5, 4, 6, 1, 5, 2.5])
    # in float64 Φ(z) is exactly 1 beyond z ≈ 8.3: FedMIA's probability alone ties such units
    sims = np.zeros((1, 4, 2))
    sims[0, 0] = [1.0, 2.0]  # the target; the three others vary a little
    sims[0, 1:, :] = [[0.0, 0.0], [1e-4, 1e-4], [-1e-4, -1e-4]]
    assert np.all(fedmia_scores(sims, 0) == 1.0)
    from fedaudit.attacks.fedmia.algorithm import fedmia_z

    assert fedmia_z(sims, 0)[0, 1] > fedmia_z(sims, 0)[0, 0] > 8.3


def test_the_detectable_auc_is_what_a_rank_test_finds_four_times_in_five() -> None:
    """The power statement of a membership result not detected, against a simulation of the
    one-sided Mann-Whitney test (scipy's, exact p) on binormal scores whose AUC is the
    detectable one: about 80 % rejections."""
    from scipy.stats import mannwhitneyu

    from fedaudit.attacks.membership_stats import detectable_auc

    n1, n2 = 20, 16
    auc = detectable_auc(n1, n2)
    sd0 = ((n1 + n2 + 1) / (12 * n1 * n2)) ** 0.5
    assert auc == pytest.approx(0.5 + (norm.ppf(0.95) + norm.ppf(0.8)) * sd0)
    rng = np.random.default_rng(0)
    shift = np.sqrt(2) * norm.ppf(auc)  # binormal, equal variances: AUC = Φ(d / √2)
    trials = 2000
    hits = sum(mannwhitneyu(rng.normal(shift, 1, n1), rng.normal(0, 1, n2),
                            alternative="greater").pvalue < 0.05 for _ in range(trials))
    # the approximation keeps the null's variance; under the alternative it is smaller, so the
    # true power is at least the nominal 0.8 (binomial sd of the estimate: 0.009)
    assert 0.78 <= hits / trials <= 0.9
    assert detectable_auc(2, 2) == 1.0  # too few patients: no AUC is detected reliably
    with pytest.raises(ValueError, match="one patient per class"):
        detectable_auc(0, 5)
