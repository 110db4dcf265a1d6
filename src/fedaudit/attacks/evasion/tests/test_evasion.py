"""Test-time evasion (paper 004): FGSM / BIM / PGD against torchattacks on the slice classifier,
the attack on a briefly trained sCT UNet (monotone in ε and in steps, the targeted shift), the
ε-ball and [0, 1] guarantees, config errors, determinism, the local models rebuilt from a real
federation's server log, the evaluator's rates and the verdict."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchattacks
from fl_study import make_study, tiny_plan

from conftest import REPO
from fedaudit.attacks.evasion import metrics
from fedaudit.attacks.evasion.algorithm import (
    Attack,
    AttackSettingError,
    craft,
    cross_entropy,
    perturb,
    random_sign,
    random_start,
    sct_error,
    sct_region_target,
)
from fedaudit.attacks.evasion.local_models import last_round_models, log_holds_updates
from fedaudit.attacks.evasion.report import attack_table, evasion_finding, transfer_table
from fedaudit.attacks.evasion.run import Slices, attack_slices, constant_mae, craft_all, score
from fedaudit.attacks.evasion.sweep import settings_from_config
from fedaudit.attacks.views import ClientView
from fedaudit.catalog import catalog, fragment_defaults
from fedaudit.comparisons.evasion_dp.report import defense_finding, defense_rows, defense_table
from fedaudit.config import ConfigError, load_config
from fedaudit.data.slices import Volume
from fedaudit.defenses.dp_sgd.budget import epsilon as dp_sgd_epsilon
from fedaudit.defenses.noise_mod import noise_seed
from fedaudit.defenses.update_noise import perturb_update
from fedaudit.federation.run import train_federation
from fedaudit.intensity import hu_to_unit, unit_to_hu
from fedaudit.models.classifier import DLGConvNet
from fedaudit.models.unet import UNet2D
from fedaudit.scenarios import Scenario, noise_name

DEFAULTS = fragment_defaults(catalog().attacks["evasion"].folder)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------- (a) reference: torchattacks


@pytest.fixture(scope="module")
def classifier() -> tuple[DLGConvNet, torch.Tensor, torch.Tensor]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = DLGConvNet(num_classes=4)
    x = torch.rand(8, 1, 32, 32)  # batch 8: torchattacks' mean loss scales the gradient by 2^-3
    y = torch.randint(0, 4, (8,))
    return net, x, y


@pytest.mark.parametrize("eps", [0.01, 0.03, 0.1])
def test_fgsm_and_pgd_reproduce_torchattacks_bit_for_bit(classifier, eps: float) -> None:
    net, x, y = classifier
    ours = perturb(net, x, cross_entropy(y), Attack("fgsm", eps))
    assert torch.equal(ours, torchattacks.FGSM(net, eps=eps)(x, y))
    ours = perturb(net, x, cross_entropy(y), Attack("pgd", eps, eps / 4, 10, random_start=False))
    ref = torchattacks.PGD(net, eps=eps, alpha=eps / 4, steps=10, random_start=False)(x, y)
    assert torch.equal(ours, ref)
    # BIM is PGD without the random start (one code path); torchattacks' BIM writes Kurakin's
    # clip with other float operations, equal up to rounding
    bim = perturb(net, x, cross_entropy(y), Attack("bim", eps, eps / 4, 10))
    assert torch.equal(bim, ours)
    ta_bim = torchattacks.BIM(net, eps=eps, alpha=eps / 4, steps=10)(x, y)
    torch.testing.assert_close(bim, ta_bim, atol=1e-6, rtol=0)
    # the positive control: every sample's loss rises, more with a larger budget
    with torch.no_grad():
        rise = cross_entropy(y)(net(ours)) - cross_entropy(y)(net(x))
    assert (rise > 0).all()


def test_pgds_random_start_is_torchattacks_start_for_the_same_seed(classifier) -> None:
    net, x, y = classifier
    eps = 0.03
    torch.manual_seed(123)  # torchattacks draws from the global CPU generator
    ref = torchattacks.PGD(net, eps=eps, alpha=eps / 4, steps=5, random_start=True)(x, y)
    ours = perturb(net, x, cross_entropy(y), Attack("pgd", eps, eps / 4, 5),
                   generator=torch.Generator().manual_seed(123))
    assert torch.equal(ours, ref)
    # the start itself: uniform in the ball (mean 0, sd ε/√3 away from the clipped borders)
    inner = torch.full((20000,), 0.5)
    start = random_start(inner, eps, torch.Generator().manual_seed(1)) - inner
    assert start.abs().max() <= eps
    assert abs(float(start.mean())) < 3 * eps / np.sqrt(3) / np.sqrt(inner.numel())
    assert float(start.std()) == pytest.approx(eps / np.sqrt(3), rel=0.03)
    # and the random-sign null sits on the ball's corners
    corner = random_sign(inner, eps, torch.Generator().manual_seed(1)) - inner
    assert torch.allclose(corner.abs(), torch.full_like(corner, eps))
    assert abs(float((corner > 0).float().mean()) - 0.5) < 0.02


# --------------------------------------------------------------- (b) the sCT UNet, trained


def _phantom_slices(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Head-like slices: an ellipse with a bony rim (900 HU) around soft tissue whose HU
    follows the MR's texture, MR dark in bone (as a T1)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size].astype(np.float32) / (size - 1) - 0.5
    mr, ct, mask = [], [], []
    for _ in range(n):
        s = 1 + 0.1 * rng.random()
        r = np.sqrt((y / (0.42 * s)) ** 2 + (x / (0.36 * s)) ** 2)
        head, rim = r < 1, (r > 0.78) & (r < 1)
        tex = np.sin(9 * x + 6 * rng.random()) * np.cos(7 * y + 6 * rng.random())
        m = np.where(head, 0.55 + 0.25 * tex, 0.0)
        m[rim] = 0.1
        c = np.where(head, 40.0 + 60.0 * tex, -1000.0)
        c[rim] = 900.0
        mr.append(m), ct.append(c), mask.append(head)
    stack = [np.stack(a)[:, None] for a in (mr, ct, mask)]
    return stack[0].astype(np.float32), stack[1].astype(np.float32), stack[2]


@pytest.fixture(scope="module")
def sct_model() -> tuple[UNet2D, Slices]:
    """A base-4 UNet fitted (L1, Adam) on 24 phantom slices, attacked on 8 held-out ones."""
    torch.set_num_threads(1)  # module fixtures run before the per-test thread pin
    torch.manual_seed(0)
    mr, ct, mask = _phantom_slices(32)
    net = UNet2D(base=4)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(mr[:24]), torch.from_numpy(hu_to_unit(ct[:24]))
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, 24, (8,), generator=g)
        loss = (net(xt[idx]) - yt[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    held = Slices(mr[24:], ct[24:], mask[24:],
                  [{"patient": f"p{i // 4}", "axial_index": i} for i in range(8)])
    return net, held


def _delta_mae(net: UNet2D, data: Slices, attack: Attack, seed: int = 0) -> float:
    x = torch.from_numpy(data.mr)
    obj = sct_error(torch.from_numpy(hu_to_unit(data.ct_hu)), torch.from_numpy(data.mask))
    adv = perturb(net, x, obj, attack, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        clean, pert = (unit_to_hu(net(v)).numpy() for v in (x, adv))
    return float(np.mean(metrics.slice_mae(pert, data.ct_hu, data.mask)
                         - metrics.slice_mae(clean, data.ct_hu, data.mask)))


def test_the_untargeted_objective_is_the_evaluators_mae_in_unit_scale(sct_model) -> None:
    net, data = sct_model
    with torch.no_grad():
        out = net(torch.from_numpy(data.mr))
    obj = sct_error(torch.from_numpy(hu_to_unit(data.ct_hu)), torch.from_numpy(data.mask))(out)
    mae = metrics.slice_mae(unit_to_hu(out).numpy(), data.ct_hu, data.mask)
    # the true CT lies inside [-1024, 3000] HU, so the unit scale is HU / 4024 exactly
    np.testing.assert_allclose(obj.numpy() * 4024.0, mae, rtol=1e-4)


def test_whitebox_error_grows_with_epsilon_and_with_steps(sct_model) -> None:
    net, data = sct_model
    clean = metrics.slice_mae(predict(net, data.mr), data.ct_hu, data.mask)
    assert clean.mean() < 150, "the UNet learned the phantom (MAE well below its ~500 HU range)"
    by_eps = [_delta_mae(net, data, Attack("pgd", e, e / 4, 10)) for e in (0.01, 0.03, 0.1)]
    assert 0 < by_eps[0] < by_eps[1] < by_eps[2], by_eps
    # fixed α = ε/8: one step cannot reach the ball's surface, more steps climb further
    by_steps = [_delta_mae(net, data, Attack("bim", 0.03, 0.03 / 8, s)) for s in (1, 4, 16)]
    assert by_steps[0] < by_steps[1] <= by_steps[2] + 0.5, by_steps
    # every attack beats random noise of its budget
    x = torch.from_numpy(data.mr)
    noisy = random_sign(x, 0.03, torch.Generator().manual_seed(0)).numpy()
    null = float(np.mean(metrics.slice_mae(predict(net, noisy), data.ct_hu, data.mask) - clean))
    assert by_eps[1] > null + 1.0, (by_eps[1], null)
    assert _delta_mae(net, data, Attack("fgsm", 0.03)) > null


def predict(net: UNet2D, mr: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return unit_to_hu(net(torch.from_numpy(mr))).numpy()


def test_the_targeted_attack_moves_bone_toward_soft_tissue(sct_model) -> None:
    net, data = sct_model
    region = torch.from_numpy(data.mask & (data.ct_hu > 300))
    x = torch.from_numpy(data.mr)
    adv = perturb(net, x, sct_region_target(region, 40.0),
                  Attack("pgd", 0.05, 0.0125, 20, targeted=True),
                  generator=torch.Generator().manual_seed(0))
    r = region.numpy()
    before = metrics.region_mean(np.abs(predict(net, data.mr) - 40.0), r)
    after = metrics.region_mean(np.abs(predict(net, adv.numpy()) - 40.0), r)
    assert np.all(after < before) and np.mean(before - after) > 20, (before, after)


# ------------------------------------------------------- (c) the ball and the image range


@pytest.mark.parametrize("attack", [Attack("fgsm", 0.1), Attack("bim", 0.1, 0.05, 6),
                                    Attack("pgd", 0.1, 0.05, 6),
                                    Attack("pgd", 0.03, 0.03, 3, targeted=True)])
def test_a_perturbation_never_leaves_zero_one_or_the_ball(sct_model, attack: Attack) -> None:
    net, data = sct_model
    # pixels at 0 and 1 are where a step would leave the image range
    x = torch.from_numpy(data.mr).clone()
    x[:, :, :4] = 0.0
    x[:, :, -4:] = 1.0
    ct = torch.from_numpy(hu_to_unit(data.ct_hu))
    obj = (sct_region_target(torch.from_numpy(data.ct_hu > 300), 40.0) if attack.targeted
           else sct_error(ct, torch.from_numpy(data.mask)))
    adv = perturb(net, x, obj, attack, generator=torch.Generator().manual_seed(0))
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert float((adv - x).abs().max()) <= attack.epsilon + 1e-6
    assert float((adv - x).abs().max()) > attack.epsilon / 2  # it did move
    assert torch.isfinite(adv).all()


def test_the_model_is_left_in_its_mode_and_gets_no_parameter_gradient(sct_model) -> None:
    net, data = sct_model
    for p in net.parameters():
        p.grad = None  # left from fitting
    net.train()
    try:
        perturb(net, torch.from_numpy(data.mr[:2]),
                sct_error(torch.from_numpy(hu_to_unit(data.ct_hu[:2])),
                          torch.from_numpy(data.mask[:2])), Attack("bim", 0.03, 0.01, 2))
        assert net.training
        assert all(p.grad is None for p in net.parameters())
    finally:
        net.eval()


# --------------------------------------------------------------------- (d) config errors


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "cw", "epsilon": 0.03}, "unknown attack 'cw'"),
    ({"method": "pgd", "epsilon": 0.0, "alpha": 0.01}, "epsilon 0.0 must lie in (0, 1]"),
    ({"method": "pgd", "epsilon": 0.03}, "the step alpha must be positive"),
    ({"method": "fgsm", "epsilon": 0.03, "steps": 3}, "fgsm takes one step"),
    ({"method": "bim", "epsilon": 0.03, "alpha": 0.01, "steps": 0}, "steps must be >= 1"),
])
def test_an_impossible_attack_is_refused_with_the_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(AttackSettingError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        Attack(**kwargs)


def _config(**evasion) -> dict:
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["attacks"]["evasion"] = evasion
    return cfg


@pytest.mark.parametrize(("evasion", "message"), [
    ({"attacker": "E"}, "attacks.evasion.attacker': 'E' is not a training center"),
    ({"attacker": "Z"}, "attacks.evasion.attacker': 'Z' is not a training center"),
    ({"epsilon": 0.02}, "attacks.evasion.epsilon': 0.02 is not one of epsilons"),
    ({"alpha_fraction": 0.3}, "attacks.evasion.alpha_fraction': 0.3 is not one of"),
    ({"attacks": ["pgd", "cw"]}, "attacks.evasion.attacks"),
    ({"epsilons": [0.0]}, "attacks.evasion.epsilons"),
    ({"threshold_hu": -5}, "attacks.evasion.threshold_hu"),
    ({"targeted": {"region": 300}}, "attacks.evasion.targeted"),
    ({"scenarios": ["secagg", "nonexistent"]}, "attacks.evasion.scenarios"),
])
def test_config_errors_name_the_key(evasion: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(_config(**evasion))


def test_the_default_scenarios_are_baseline_fedmedian_and_the_noise_grid() -> None:
    cfg = load_config(REPO / "config" / "config.yaml")
    ev = cfg["attacks"]["evasion"]
    noise = [noise_name(d, level) for d, levels in cfg["scenarios"]["noise"].items()
             for level in levels]
    assert ev["scenarios"] == ["baseline", "fedmedian", *noise]


# ------------------------------------------------------------------------- (e) determinism


def test_crafting_is_deterministic_and_seeded_per_batch(sct_model) -> None:
    net, data = sct_model
    x = torch.from_numpy(data.mr)
    ct = torch.from_numpy(hu_to_unit(data.ct_hu))
    mask = torch.from_numpy(data.mask)

    def objective_for(part: slice):
        return sct_error(ct[part], mask[part])

    pgd = Attack("pgd", 0.03, 0.0075, 3)
    a, seconds = craft(net, x, objective_for, pgd, batch_size=3, seed=5)
    b, _ = craft(net, x, objective_for, pgd, batch_size=3, seed=5)
    assert torch.equal(a, b) and len(seconds) == 3 and all(s > 0 for s in seconds)
    c, _ = craft(net, x, objective_for, pgd, batch_size=3, seed=6)
    assert not torch.equal(a, c)  # another random start
    bim = Attack("bim", 0.03, 0.0075, 3)
    d, _ = craft(net, x, objective_for, bim, batch_size=3, seed=5)
    e, _ = craft(net, x, objective_for, bim, batch_size=3, seed=6)
    assert torch.equal(d, e)  # no randomness in BIM
    # batching does not change a sample's result (eval-mode BatchNorm, per-sample objective)
    f, _ = craft(net, x, objective_for, bim, batch_size=8, seed=5)
    torch.testing.assert_close(d, f, atol=1e-6, rtol=0)


# ------------------------------------------------------------------ sweep, slices, scoring


def test_the_sweep_covers_paper_004s_analyses_once_each() -> None:
    settings = settings_from_config(DEFAULTS)
    keys = [s.key for s in settings]
    assert len(keys) == len(set(keys))
    attacks = [s for s in settings if s.method != "random"]
    eps = {s.epsilon for s in attacks if s.sweep_epsilon}
    assert eps == {0.01, 0.03, 0.05, 0.1}
    table = sorted(s.label for s in attacks if s.sweep_steps)
    assert table == ["BIM-20", "BIM-40", "FGSM", "PGD-20", "PGD-40"]
    alphas = sorted(s.alpha for s in attacks if s.sweep_alpha and s.method == "pgd")
    assert alphas == pytest.approx([0.03 * f for f in (0.0625, 0.125, 0.25, 0.5, 1.0)])
    assert [s.label for s in attacks if s.headline] == ["PGD-40"]
    assert all(s.random_start == (s.method == "pgd") for s in attacks)
    assert {s.method for s in settings if s.goal == "targeted"} == {"fgsm", "bim", "pgd",
                                                                    "random"}
    nulls = [s for s in settings if s.method == "random" and s.goal == "untargeted"]
    assert sorted(s.epsilon for s in nulls) == [0.01, 0.03, 0.05, 0.1]
    # 25 crafted settings; 445 gradient steps per batch (what the demo and benchmark budget)
    assert len(attacks) == 25 and sum(s.steps for s in attacks) == 445


def test_test_slices_spread_over_patients_and_through_the_head() -> None:
    vols = []
    for i, depth in enumerate((20, 6)):
        mr = np.zeros((32, 32, 32), np.float32)
        mask = np.zeros((32, 32, 32), bool)
        mask[4:4 + depth, 8:24, 8:24] = True
        mr[mask] = 0.5
        vols.append(Volume(f"p{i}", mr, np.where(mask, 40.0, -1000.0), mask))
    data = attack_slices(vols, 10)
    per = pd.Series([q["patient"] for q in data.provenance]).value_counts().to_dict()
    assert per == {"p0": 5, "p1": 5}
    assert [q["axial_index"] for q in data.provenance if q["patient"] == "p0"] == \
        [4, 9, 14, 18, 23]
    # a patient with too few slices gives what it has; the rest come from the other one
    data = attack_slices(vols, 20)
    per = pd.Series([q["patient"] for q in data.provenance]).value_counts().to_dict()
    assert per == {"p0": 14, "p1": 6}
    assert data.mr.shape == (20, 1, 32, 32) and data.mask.dtype == bool


def _small_cfg() -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    cfg.update(epsilons=[0.03, 0.1], alpha_fractions=[0.25], steps=[2, 4], batch_size=4,
               attacker="A")
    cfg["targeted"]["min_voxels"] = 5
    return cfg


def test_craft_and_score_keep_the_parties_apart_and_fill_every_row(sct_model) -> None:
    net, data = sct_model
    torch.manual_seed(1)
    other = UNet2D(base=4).eval()  # an unrelated victim: its sCT is far off, but finite
    cfg = _small_cfg()
    settings = settings_from_config(cfg)
    dev = torch.device("cpu")
    crafted = craft_all(net, data, settings, cfg, 7, dev)
    again = craft_all(net, data, settings, cfg, 7, dev)
    assert all(np.array_equal(crafted[k][1], again[k][1]) for k in crafted)
    models = {"A": ("whitebox", net), "global": ("global", net), "B": ("victim", other)}
    rows, usable = score(models, data, settings, crafted, cfg, dev)
    assert usable == {"A": True, "global": True, "B": True}
    frame = pd.DataFrame(rows).assign(scenario="s", attacker="A")
    per_setting = frame.groupby(["setting", "model"]).size()
    assert set(per_setting.index.get_level_values(0)) == {s.key for s in settings}
    untargeted = frame[frame.goal == "untargeted"]
    assert (untargeted.groupby(["setting", "model"]).size() == len(data)).all()
    # the global model is the white-box model here: identical rows
    wb = frame[frame.model == "A"].reset_index(drop=True)
    gl = frame[frame.model == "global"].reset_index(drop=True)
    np.testing.assert_allclose(wb["adv_mae"], gl["adv_mae"])
    assert (frame.loc[frame.method != "random", "seconds_per_batch"] > 0).all()
    assert frame.loc[frame.method == "random", "seconds_per_batch"].isna().all()
    table = metrics.rates(frame, 30.0)
    g = table[table.model == "global"]
    assert (g.loc[g.method != "random", "transfer_rate"].dropna() == 1.0).all()
    # a model whose sCT is not finite is unusable: NaN rates, never a success
    broken = UNet2D(base=4).eval()
    with torch.no_grad():
        broken.head.weight.fill_(float("nan"))
    rows, usable = score({"A": ("whitebox", net), "X": ("victim", broken)}, data, settings,
                         crafted, cfg, dev)
    assert usable == {"A": True, "X": False}
    t = metrics.rates(pd.DataFrame(rows).assign(scenario="s", attacker="A"), 30.0)
    x = t[t.model == "X"]
    assert not x["usable"].any() and x["asr"].isna().all() and (x["successes"] == 0).all()
    # the trivial reference: a model no better than the constant predictor is not attacked
    c = float(np.median(data.ct_hu[data.mask]))
    assert constant_mae(data, c) == pytest.approx(np.abs(c - data.ct_hu)[data.mask].mean())
    _, usable = score(models, data, [], {}, cfg, dev, constant_hu=c)
    assert usable == {"A": True, "global": True, "B": False}
    _, usable = score(models, data, [], {}, cfg, dev, constant_hu=1e6)
    assert all(usable.values())
    gated, _ = score(models, data, settings, crafted, cfg, dev, constant_hu=c)
    t = metrics.rates(pd.DataFrame(gated).assign(scenario="s", attacker="A"), 30.0)
    assert not t[t.model == "B"]["usable"].any() and t[t.model == "B"]["asr"].isna().all()
    assert t[t.model == "A"]["usable"].all()


# --------------------------------------------------------------------------- rates, closed


def _rows(successes: dict[str, list[float]], *, setting: str = "untargeted/pgd/e0.03/a0.0075/s40",
          method: str = "pgd", epsilon: float = 0.03, scenario: str = "baseline",
          goal: str = "untargeted", **flags) -> list[dict]:
    roles = {"A": "whitebox", "global": "global"}
    out = []
    for model, deltas in successes.items():
        for i, d in enumerate(deltas):
            out.append({"scenario": scenario, "attacker": "A", "setting": setting, "goal": goal,
                        "method": method, "label": "PGD-40" if method == "pgd" else "random ±ε",
                        "epsilon": epsilon, "alpha": epsilon / 4, "alpha_fraction": 0.25,
                        "steps": 40 if method == "pgd" else 0, "random_start": method == "pgd",
                        "sweep_epsilon": True, "sweep_alpha": False, "sweep_steps": True,
                        "headline": True, **flags, "model": model,
                        "role": roles.get(model, "victim"), "slice": i,
                        "patient": f"p{i % 2}", "axial_index": i, "clean_mae": 100.0,
                        "adv_mae": 100.0 + d, "delta_mae": d, "shift": d,
                        "clean_region_hu": 800.0, "adv_region_hu": 800.0 - d,
                        "linf": epsilon, "mean_abs": epsilon, "psnr": 30.0,
                        "seconds_per_batch": 1.0 if method == "pgd" else np.nan,
                        "batch_size": 4})
    return out


def test_rates_transfer_and_the_null_in_closed_form() -> None:
    rows = pd.DataFrame(
        _rows({"A": [50, 50, 0, 0], "global": [50, 0, 50, 0], "B": [50, 50, 50, 0],
               "C": [0, 0, 0, 0]})
        + _rows({"A": [40, 0, 0, 0], "global": [0] * 4, "B": [0] * 4, "C": [0] * 4},
                setting="untargeted/random/e0.03", method="random"))
    table = metrics.rates(rows, 30.0).set_index(["setting", "model"])
    pgd = table.loc["untargeted/pgd/e0.03/a0.0075/s40"]
    assert pgd.loc["A", "asr"] == 0.5 and pgd.loc["B", "asr"] == 0.75
    lo, hi = metrics.clopper_pearson(2, 4)
    assert (pgd.loc["A", "ci_low"], pgd.loc["A", "ci_high"]) == pytest.approx((lo, hi))
    # transfer: of the white-box successes (slices 0, 1), those that also fool the model
    assert pgd.loc["global", "transfer_rate"] == 0.5 and pgd.loc["B", "transfer_rate"] == 1.0
    assert pgd.loc["C", "transfer_rate"] == 0.0 and pgd.loc["A", "transfer_n"] == 2
    # the null beside every model at the same ε and goal
    assert pgd.loc["A", "null_asr"] == 0.25 and pgd.loc["B", "null_asr"] == 0.0
    assert pgd.loc["A", "n_patients"] == 2 and pgd.loc["A", "delta_mae"] == 25.0
    agg = metrics.aasr(metrics.rates(rows, 30.0)).set_index("setting")
    assert agg.loc["untargeted/pgd/e0.03/a0.0075/s40", "aasr"] == pytest.approx(0.375)
    assert agg.loc["untargeted/pgd/e0.03/a0.0075/s40", "victims"] == 2
    # a higher threshold counts fewer slices: nothing in these rows clears 60 HU
    assert metrics.rates(rows, 60.0)["successes"].sum() == 0
    # a targeted row counts its shift toward the target, not the head's MAE
    t = pd.DataFrame(_rows({"A": [35]}, goal="targeted")).assign(delta_mae=-1.0)
    assert metrics.successes(t, 30.0).all()


def test_perturbation_stats_in_closed_form() -> None:
    x = np.full((2, 1, 4, 4), 0.5, np.float32)
    adv = x.copy()
    adv[0] += 0.1
    st = metrics.perturbation_stats(x, adv)
    assert st["linf"][0] == pytest.approx(0.1) and st["mean_abs"][1] == 0.0
    assert st["psnr"][0] == pytest.approx(20.0, abs=1e-4) and np.isinf(st["psnr"][1])


# -------------------------------------------------------------------- tables and verdict


def _table_rates(global_hits: int, wb_top: int = 4) -> pd.DataFrame:
    n = 10
    rows = []
    for eps, flags in ((0.03, {}), (0.1, {"sweep_steps": False, "headline": False})):
        deltas = {"A": [50] * (wb_top if eps == 0.1 else 8) + [0] * (n - (wb_top if eps == 0.1
                                                                          else 8)),
                  "global": [50] * global_hits + [0] * (n - global_hits),
                  "B": [50] * global_hits + [0] * (n - global_hits)}
        rows += _rows(deltas, setting=f"untargeted/pgd/e{eps:g}/a{eps / 4:g}/s40",
                      epsilon=eps, **flags)
        rows += _rows({"A": [0] * n, "global": [0] * n, "B": [0] * n},
                      setting=f"untargeted/random/e{eps:g}", method="random", epsilon=eps,
                      **flags)
    rows += _rows({"A": [200] * 6, "global": [150] * 6, "B": [150] * 6}, goal="targeted",
                  setting="targeted/pgd/e0.03/a0.0075/s20", sweep_epsilon=False,
                  sweep_steps=False, headline=False)
    return metrics.rates(pd.DataFrame(rows), 30.0)


def test_the_verdict_reads_the_global_models_lower_bound_minus_the_null() -> None:
    settings = {"threshold_hu": 30.0}
    high = evasion_finding(_table_rates(10), settings)
    assert high.level == "high", high.sentence
    assert "10/10 slices" in high.sentence and "random ±ε noise 0.00" in high.sentence
    assert "moves the global model's sCT in bone 150 HU toward soft tissue" in high.sentence
    # 1/10 slices above a null of 0: detected, below high
    low = evasion_finding(_table_rates(1), settings)
    assert low.level == "moderate", low.sentence
    # none on the global model while the white-box attack works: not detected, with its power
    unseen = evasion_finding(_table_rates(0), settings)
    assert unseen.level == "not detected" and "work white-box" in unseen.power, unseen.text
    # the white-box model is not fooled at the largest ε: the attack failed, not the model
    none = evasion_finding(_table_rates(0, wb_top=0), settings)
    assert none.level == "inconclusive" and "does not even work white-box" in none.sentence


def test_tables_have_paper_004s_layout_and_the_transfer_and_dp_views() -> None:
    data = _table_rates(6)
    models = pd.DataFrame([{"scenario": "baseline", "model": m, "usable": True}
                           for m in ("A", "global", "B")])
    t = attack_table(data, models, 30.0, {"min_voxels": 20, "region_hu": 300.0,
                                          "target_hu": 40.0})
    first = t.blocks[0].frame
    assert list(first.columns[:4]) == ["Scenario", "Attack type", "Clean MAE, clients (HU)",
                                       "White-box ASR [95% CI]"]
    assert "AASR (range)" in first.columns and "Time (s / batch)" in first.columns
    assert first["AASR (range)"].iloc[0].startswith("0.60")
    assert t.blocks[1].title.startswith("Targeted")
    tr = transfer_table(data, "baseline").blocks[0].frame
    assert "final global model" in set(tr["Model"])
    assert any(v.startswith("0.75") for v in tr["Transfer rate [95% CI]"])  # 6 of 8
    sgd = {"name": "dp_sgd", "noise_multiplier": 2.0, "max_grad_norm": 1.0, "delta": 1e-5,
           "groups": 32}
    meta = {"baseline": {"defenses": [{"name": "weight_audit"}]},
            "dp-z1.0": {"defenses": [{"name": "dp_fedavg", "noise_multiplier": 1.0, "clip": 5.0,
                                      "delta": 1e-5}]},
            "dpsgd-z2.0": {"defenses": [sgd]},
            "groupnorm": {"defenses": [{"name": "group_norm", "groups": 32}]}}
    history = pd.DataFrame([{"round": 1, "center": c, "dp_sgd_events": json.dumps([[q, 4]])}
                            for c, q in (("A", 0.5), ("B", 0.25))])
    with pytest.raises(ValueError, match="needs its training history"):
        defense_rows(data, meta, dict.fromkeys(meta, 35))
    dp = defense_rows(data, meta, dict.fromkeys(meta, 35), {"dpsgd-z2.0": history})
    assert dp.loc[0, "whitebox_asr"] == 0.8 and dp.loc[0, "aasr"] == 0.6
    assert np.isnan(dp.loc[0, "epsilon_dp"]) and dp.loc[1, "epsilon_dp"] > 0
    # DP-SGD's ε is its largest client's (A: q = 0.5), from the steps in the history
    assert dp.loc[2, "epsilon_dp"] == pytest.approx(dp_sgd_epsilon(2.0, [(0.5, 4)], 1e-5))
    frame = defense_table(dp).blocks[0].frame
    # a monitor (the weight audit) is not a noise defense
    assert list(frame["Noise defense"]) == ["none", "DP-FedAvg", "DP-SGD", "none"]
    assert list(frame["Level"]) == ["–", "z = 1", "σ = 2", "–"]
    # DP-SGD and its reference train the GroupNorm UNet
    assert list(frame["UNet"]) == ["BatchNorm", "BatchNorm", "GroupNorm", "GroupNorm"]
    assert frame.loc[1, "White-box ASR [95% CI]"] == "no usable model"
    assert "baseline: white-box 0.80, AASR 0.60 (clean MAE of the attacker's model 100 HU)" \
        in defense_finding(dp)[0].sentence


# --------------------------------------------------- local models from a real federation


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return make_study(tmp_path_factory.mktemp("study"), {"A": 1, "B": 1})


@pytest.mark.parametrize("scenario", [Scenario("baseline"), Scenario(
    # simulation noise: the test regenerates the client's noise
    "laplace", defenses=({"name": "laplace_noise", "scale": 0.01,
                          "noise_source": "simulation"},))])
def test_local_models_from_the_log_are_what_the_clients_recompute(
        study, tmp_path: Path, scenario: Scenario) -> None:
    plan = tiny_plan(study, tmp_path, scenario=scenario)
    train_federation(plan)
    view = ClientView("A", tmp_path / "server_log", tmp_path / "model.pt", plan.model_base)
    assert log_holds_updates(scenario) == (scenario.name == "baseline")
    rnd, recomputed = last_round_models(view, plan, ["A", "B"], from_log=False)
    logged = view.received(rnd)
    assert rnd == plan.rounds and [m.source for m in recomputed] == ["recomputed"] * 2
    for m in recomputed:
        update = [m.model.state_dict()[n].numpy() - logged.global_arrays[n]
                  for n in logged.names]
        sent = [logged.updates[m.center][n] for n in logged.names]
        if scenario.name == "baseline":
            # the log holds each client's own update: recomputing gives it back exactly
            _, from_log = last_round_models(view, plan, ["A", "B"], from_log=True)
            other = next(x for x in from_log if x.center == m.center)
            for n in logged.names:
                assert torch.equal(other.model.state_dict()[n], m.model.state_dict()[n]), n
        else:
            # the log holds the noised update: the client's own noise on the recomputed one
            clean = [np.asarray(u, np.float32) for u in _recomputed_update(plan, m.center,
                                                                           logged)]
            noisy = perturb_update(clean, scenario.defenses[0],
                                   noise_seed(plan.seed, "laplace_noise", m.center, rnd))
            for a, b in zip(noisy, sent, strict=True):
                np.testing.assert_array_equal(a, b)
            # and the local model differs from global + noisy update by that noise
            assert max(float(np.abs(u - s).max()) for u, s in zip(update, sent,
                                                                   strict=True)) > 1e-3


def _recomputed_update(plan, center, logged):
    from fedaudit.attacks.evasion.local_models import recompute_update

    return recompute_update(plan, center, logged)


def test_nothing_crafted_gives_a_table_that_says_why_not_a_failed_report() -> None:
    empty = metrics.rates(pd.DataFrame(), 30.0)
    models = pd.DataFrame([{"scenario": "dp-z1.0", "model": "A", "usable": False}])
    t = attack_table(empty, models, 30.0, DEFAULTS["targeted"])
    assert "no usable model: dp-z1.0: A" in t.blocks[0].frame.iloc[0, 0]
    assert "no evasion result" in transfer_table(empty, "baseline").blocks[0].frame.iloc[0, 0]
    assert evasion_finding(empty, {"threshold_hu": 30.0}).level == "inconclusive"
