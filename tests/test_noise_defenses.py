"""The update-noise defenses: Laplace gradient perturbation (paper 003 §V) and DP-FedAvg with
client-side noise (McMahan et al. 2018, Alg. 1): the transform, the client mod in a real Flower
round (alone and inside SecAgg+), the scenario grid and the ε accountant."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from fl_study import make_study, tiny_plan

from conftest import REPO
from fedaudit.config import ConfigError, validate_config
from fedaudit.defenses.dp_fedavg.budget import epsilon, scenario_epsilon
from fedaudit.defenses.noise_mod import noise_seed
from fedaudit.defenses.update_noise import clip_update, global_norm, perturb_update
from fedaudit.federation import apps
from fedaudit.federation.client import SCTClient
from fedaudit.federation.run import train_federation
from fedaudit.federation.server_log import load_round
from fedaudit.scenarios import (
    NoiseSettingError,
    Scenario,
    ScenarioError,
    noise_defense,
    noise_name,
    scenarios_from_config,
)

if TYPE_CHECKING:
    import pandas as pd

LAP = {"name": "laplace_noise", "scale": 0.01}


def _arrays(rng: np.random.Generator, scale: float = 1.0) -> list[np.ndarray]:
    shapes = [(64, 32, 3, 3), (64,), (500, 400), (7,)]
    return [(scale * rng.standard_normal(s)).astype(np.float32) for s in shapes]


def _flat(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(a).astype(np.float64) for a in arrays])


# --------------------------------------------------------------------------- the transform


def test_laplace_noise_has_mean_zero_and_mean_absolute_value_b() -> None:
    arrays = _arrays(np.random.default_rng(0))
    out = perturb_update(arrays, LAP, seed=1)
    assert [a.shape for a in out] == [a.shape for a in arrays]
    assert all(a.dtype == np.float32 for a in out)
    noise = _flat(out) - _flat(arrays)
    n, b = noise.size, LAP["scale"]
    # Lap(0, b): sd √2·b, |X| ~ Exp(1/b) with sd b; by the CLT the sample means lie within 5
    # standard errors with probability 1 - 6e-7 (float32 rounding is ~1e-9, negligible)
    assert abs(noise.mean()) < 5 * math.sqrt(2) * b / math.sqrt(n)
    assert abs(np.abs(noise).mean() - b) < 5 * b / math.sqrt(n)
    assert abs(noise.std() - math.sqrt(2) * b) < 0.02 * b  # Laplace spread (a Gaussian: 1.25b)


def test_dp_fedavg_clips_to_exactly_c_above_and_keeps_updates_below() -> None:
    arrays = _arrays(np.random.default_rng(0))
    norm = global_norm(arrays)
    assert norm > 100
    clipped = perturb_update(arrays, {"name": "dp_fedavg", "clip": 3.0,
                                      "noise_multiplier": 0.0}, seed=1)
    assert global_norm(clipped) == pytest.approx(3.0, rel=1e-6)  # float32 rounding only
    # clipping scales every array by the same factor (the direction is kept)
    assert np.allclose(_flat(clipped) * norm / 3.0, _flat(arrays), rtol=1e-5, atol=1e-6)
    small = [a * np.float32(1e-3) for a in arrays]
    kept = perturb_update(small, {"name": "dp_fedavg", "clip": 3.0, "noise_multiplier": 0.0}, 1)
    assert all(np.array_equal(a, b) for a, b in zip(kept, small, strict=True))
    assert global_norm(clip_update(small, 3.0)) < 3.0


def test_dp_fedavg_noise_has_std_z_times_c() -> None:
    zeros = [np.zeros(s, np.float32) for s in [(300, 1000), (17,)]]
    z, c = 0.5, 2.0
    noise = _flat(perturb_update(zeros, {"name": "dp_fedavg", "clip": c, "noise_multiplier": z,
                                         "delta": 1e-5}, seed=3))
    sd = z * c
    # sample sd of n normals: standard error sd/√(2n); 5 of them
    assert abs(noise.std() - sd) < 5 * sd / math.sqrt(2 * noise.size)
    assert abs(noise.mean()) < 5 * sd / math.sqrt(noise.size)


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    arrays = _arrays(np.random.default_rng(0), 1e-3)
    for d in (LAP, {"name": "dp_fedavg", "clip": 1.0, "noise_multiplier": 1.0, "delta": 1e-5}):
        a, b, c = (perturb_update(arrays, d, s) for s in (5, 5, 6))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not np.array_equal(a[2], c[2])
    assert noise_seed(7, "laplace_noise", "A", 1) == noise_seed(7, "laplace_noise", "A", 1)
    assert len({noise_seed(7, "laplace_noise", c, r) for c in "AB" for r in (1, 2)}) == 4


def test_noise_defense_finds_one_entry_and_refuses_two() -> None:
    assert noise_defense([{"name": "secagg"}]) is None
    assert noise_defense([{"name": "secagg"}, LAP]) == LAP
    with pytest.raises(NoiseSettingError, match="laplace_noise and dp_fedavg"):
        noise_defense([LAP, {"name": "dp_fedavg", "clip": 1.0, "noise_multiplier": 1.0}])
    with pytest.raises(NoiseSettingError, match="not a noise defense"):
        perturb_update([np.zeros(3)], {"name": "secagg"}, 0)
    with pytest.raises(NoiseSettingError, match="scale"):
        perturb_update([np.zeros(3)], {"name": "laplace_noise", "scale": -1.0}, 0)


# --------------------------------------------------------------------------- a real Flower round


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return make_study(tmp_path_factory.mktemp("study"))


def _train_recorded(plan, monkeypatch) -> dict[str, list[np.ndarray]]:
    """Train ``plan``; center -> the clean update its client computed in round 1."""
    clean: dict[str, list[np.ndarray]] = {}
    orig_fit = SCTClient.fit

    def spy_fit(self, parameters, config):
        res = orig_fit(self, parameters, config)
        if int(config["round"]) == 1:
            clean[self.center] = [a.copy() for a in res[0]]
        return res

    monkeypatch.setattr(SCTClient, "fit", spy_fit)
    train_federation(plan)
    return clean


@pytest.mark.parametrize(("defense", "source"), [
    ({"name": "laplace_noise", "scale": 0.01}, "os_entropy"),
    # a clip far below the tiny federation's update norms (~0.3), so every update is clipped
    ({"name": "dp_fedavg", "clip": 0.01, "noise_multiplier": 2.0, "delta": 1e-5}, "os_entropy"),
    ({"name": "dp_fedavg", "clip": 0.01, "noise_multiplier": 2.0, "delta": 1e-5}, "simulation")],
    ids=["laplace", "dp_fedavg", "dp_fedavg-simulation"])
def test_the_server_receives_the_noised_update(study, tmp_path, monkeypatch, defense,
                                               source) -> None:
    defense = {**defense, "noise_source": source}
    plan = tiny_plan(study, tmp_path, Scenario("noisy", defenses=(defense,)), rounds=1)
    clean = _train_recorded(plan, monkeypatch)
    got = load_round(tmp_path / "server_log", 1)
    assert set(clean) == set(got.updates) == {"A", "B", "C"}
    for center, upd in clean.items():
        received = [got.updates[center][n] for n in got.names]
        # what the server can compute: the client's noise function on the seed it can derive
        derivable = perturb_update(upd, defense,
                                   noise_seed(plan.seed, defense["name"], center, 1))
        same = all(np.array_equal(r, e) for r, e in zip(received, derivable, strict=True))
        # simulation noise is exactly the derivable draw; OS-entropy noise is not
        assert same == (source == "simulation")
        if defense["name"] == "laplace_noise":
            noise = _flat(received) - _flat(upd)
            assert abs(np.abs(noise).mean() - 0.01) < 5 * 0.01 / math.sqrt(noise.size)
        else:
            assert global_norm(upd) > 10 * defense["clip"]
            noise = _flat(received) - _flat(clip_update(upd, defense["clip"]))
            sd = defense["noise_multiplier"] * defense["clip"]
            assert abs(noise.std() - sd) < 5 * sd / math.sqrt(2 * noise.size)


def test_noise_is_added_inside_secagg_and_the_wrong_order_is_refused(study, tmp_path,
                                                                      monkeypatch) -> None:
    from fedaudit.catalog import catalog, fragment_defaults
    from fedaudit.defenses.secagg.workflow import max_examples

    sa = {"name": "secagg", **fragment_defaults(catalog().defenses["secagg"].folder)}
    # simulation noise: the test re-draws each client's noise to check the aggregate
    lap = {"name": "laplace_noise", "scale": 0.05, "noise_source": "simulation"}
    wrong = tiny_plan(study, tmp_path / "wrong", Scenario("w", defenses=(lap, sa)), rounds=1)
    with pytest.raises(ScenarioError, match="listed before secagg"):
        apps.make_client_app(wrong)

    plan = tiny_plan(study, tmp_path / "ok", Scenario("ok", defenses=(sa, lap)), rounds=1)
    clean = _train_recorded(plan, monkeypatch)
    got = load_round(tmp_path / "ok" / "server_log", 1)
    total = sum(got.num_examples.values())
    noisy = {c: perturb_update(u, lap, noise_seed(plan.seed, "laplace_noise", c, 1))
             for c, u in clean.items()}
    agg = _flat([got.updates["A"][n] for n in got.names])
    fedavg_noisy = sum(got.num_examples[c] / total * _flat(noisy[c]) for c in clean)
    fedavg_clean = sum(got.num_examples[c] / total * _flat(clean[c]) for c in clean)
    # the unmasked aggregate is FedAvg of the *noised* updates within SecAgg+'s quantisation
    # step (as in test_federation's SecAgg+ test) ...
    step = 2 * sa["clipping_range"] / sa["quantization_range"]
    tol = 3 * step * max_examples(plan, None) / total
    assert np.abs(agg - fedavg_noisy).max() < tol
    # ... and far from FedAvg of the clean ones: the weighted sum of three Laplace draws has
    # mean |.| of the order of the scale
    assert np.abs(agg - fedavg_clean).mean() > 0.3 * lap["scale"]


# --------------------------------------------------------------------------- the scenario grid


@pytest.fixture
def demo() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_noise_grid_names_levels_and_references(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["noise"] = {"laplace_noise": [0.001, 0.1], "dp_fedavg": [0.5, 2]}
    cfg["defenses"] = {"dp_fedavg": {"clip": 1.2}}
    sc = scenarios_from_config(validate_config(cfg))
    assert {"laplace-b0.001", "laplace-b0.1", "dp-z0.5", "dp-z2.0"} <= set(sc)
    lap, dp = sc["laplace-b0.001"], sc["dp-z2.0"]
    assert (lap.aggregation, lap.reference, dp.aggregation, dp.reference) == (
        "fedavg", "baseline", "fedavg", "baseline")
    # the secure noise source is the default, and every noise entry names its source
    assert noise_defense(lap.defenses) == {"name": "laplace_noise", "scale": 0.001,
                                           "noise_source": "os_entropy"}
    assert noise_defense(dp.defenses) == {"name": "dp_fedavg", "clip": 1.2,
                                          "noise_multiplier": 2.0, "delta": 1e-5,
                                          "noise_source": "os_entropy"}
    cfg["noise_source"] = "simulation"
    sim = scenarios_from_config(validate_config(cfg))
    assert all(d["noise_source"] == "simulation" for s in sim.values() for d in s.defenses
               if d["name"] in ("laplace_noise", "dp_fedavg"))
    assert sim["baseline"] == sc["baseline"]  # a scenario without noise does not change
    assert noise_name("laplace_noise", 1e-4) == "laplace-b0.0001"
    assert noise_name("dp_fedavg", 1) == "dp-z1.0"
    # no grid without levels (the schema's default; the demo config sets four)
    plain = copy.deepcopy(demo)
    plain["scenarios"].pop("noise", None)
    assert not any(n.startswith(("laplace-", "dp-")) for n in
                   scenarios_from_config(validate_config(plain)))


@pytest.mark.parametrize("level", [0, -0.5, "big"])
def test_a_bad_noise_level_is_a_config_error(demo, level) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["noise"] = {"dp_fedavg": [level]}
    with pytest.raises(ConfigError, match="scenarios.noise.dp_fedavg"):
        validate_config(cfg)


def test_custom_scenarios_name_noise_defenses_with_their_defaults(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg.pop("defenses", None)  # the schema's defaults (the demo config sets its own clip)
    cfg["scenarios"]["custom"] = {"lap-sa": {"defenses": ["laplace_noise", "secagg"]},
                                  "dp": {"defenses": ["dp_fedavg"]}}
    sc = scenarios_from_config(validate_config(cfg))
    # SecAgg+ first, so the noise mod runs inside its mod (noise before masking)
    assert sc["lap-sa"].defense_names[:2] == ["secagg", "laplace_noise"]
    assert sc["lap-sa"].defense("laplace_noise") == {"name": "laplace_noise", "scale": 0.001,
                                                     "noise_source": "os_entropy"}
    assert sc["dp"].defense("dp_fedavg") == {"name": "dp_fedavg", "clip": 1.0,
                                             "noise_multiplier": 1.0, "delta": 1e-5,
                                             "noise_source": "os_entropy"}
    cfg["scenarios"]["custom"] = {"both": {"defenses": ["laplace_noise", "dp_fedavg"]}}
    with pytest.raises(ConfigError, match="'both'.*one way only"):
        validate_config(cfg)


# --------------------------------------------------------------------------- ε


def test_rdp_epsilon_reproduces_abadi_et_al_2016() -> None:
    """Abadi et al. 2016, "Deep Learning with Differential Privacy", §3.1 and §5: q = 0.01,
    σ = 4, T = 10,000 steps, δ = 1e-5 gives ε ≈ 1.26 with the moments accountant."""
    from dp_accounting import dp_event
    from dp_accounting.rdp import RdpAccountant

    eps = epsilon(4.0, 10_000, 1e-5, sampling_rate=0.01)
    # Measured: 1.0355. The moments accountant is RDP at integer orders λ+1 (Mironov 2017,
    # §3.3) turned into (ε, δ) by the tail bound ε = min_α RDP(α) + log(1/δ)/(α−1) (Abadi et al.
    # Thm. 2; Mironov Prop. 3). dp-accounting's get_epsilon uses the tighter conversion of
    # Canonne et al. 2020 Prop. 12, which subtracts log(α)/(α−1) − log(1−1/α) ≈ 0.22 at the
    # optimal α ≈ 17-20. So the library's ε must be *below* 1.26, by about that gap:
    assert 1.26 - 0.30 < eps < 1.26
    # and the library's RDP curve with the paper's own conversion and orders (λ ≤ 32) gives
    # the published number to its two decimals (measured 1.2586).
    acc = RdpAccountant(orders=list(range(2, 34)))
    acc.compose(dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(0.01, dp_event.GaussianDpEvent(4.0)), 10_000))
    tail = min(acc.rdp - math.log(1e-5) / (acc.orders - 1))
    assert abs(tail - 1.26) < 0.005


def test_epsilon_falls_with_noise_and_grows_with_rounds() -> None:
    by_z = [epsilon(z, 35, 1e-5) for z in (0.5, 1.0, 2.0, 8.0)]
    assert all(a > b for a, b in zip(by_z, by_z[1:], strict=False))
    by_t = [epsilon(2.0, t, 1e-5) for t in (1, 10, 35, 100)]
    assert all(a < b for a, b in zip(by_t, by_t[1:], strict=False))
    assert epsilon(1.0, 0, 1e-5) == 0.0
    # one round of the Gaussian mechanism (q = 1): the classical σ ≥ √(2 ln(1.25/δ))/ε
    # (Dwork & Roth 2014, Thm. A.1) is an upper bound the accountant must not exceed
    z = 5.0
    assert epsilon(z, 1, 1e-5) < math.sqrt(2 * math.log(1.25 / 1e-5)) / z
    assert scenario_epsilon([LAP], 35) is None
    assert scenario_epsilon([{"name": "secagg"}], 35) is None
    dp = {"name": "dp_fedavg", "clip": 1.0, "noise_multiplier": 2.0, "delta": 1e-5}
    assert scenario_epsilon([dp], 35) == epsilon(2.0, 35, 1e-5)


def test_the_noise_families_are_declared_in_their_folders_and_load_no_code() -> None:
    """Each noise defense declares its family in its plugin.py (level key, prefix, symbol,
    hooks); the scenarios find a family by name without importing the defenses' code (the
    federation's client asks), and every hook resolves."""
    import subprocess
    import sys

    from fedaudit.catalog import catalog, noise_hook

    families = catalog().noise_families()
    assert list(families) == ["laplace_noise", "dp_fedavg", "dp_sgd"]  # rank order
    assert [(f.prefix, f.level_key, f.symbol) for f in families.values()] == [
        ("laplace-b", "scale", "b"), ("dp-z", "noise_multiplier", "z"),
        ("dpsgd-z", "noise_multiplier", "σ")]
    for name, family in families.items():
        for hook in ("perturb", "update_std", "budget", "budget_text", "budget_note",
                     "reference"):
            assert (noise_hook(name, hook) is None) == (getattr(family, hook) is None)
    code = ("import sys; from fedaudit import scenarios; "
            "assert [scenarios.is_noise(n) for n in ('dp_sgd', 'secagg')] == [True, False]; "
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'flwr', "
            "'fedaudit.defenses.dp_sgd.private', 'fedaudit.defenses.update_noise'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_epsilon_is_cross_checked_by_the_pld_accountant() -> None:
    """A second method for every ε the tables print: dp-accounting's privacy-loss-distribution
    accountant (Koskela et al. 2020; pessimistic discretisation, so still an upper bound) is
    tighter than RDP's conversion, so RDP ≥ PLD must hold, and the two agree within 15 % at the
    demo's settings. DP-FedAvg both adjacencies (z and z/2); DP-SGD's per-slice ε; and the
    patient-level group bound must cover the exact group ε of the Gaussian mechanism (a group of
    k units under sensitivity-1 noise z is one unit under noise z/k)."""
    from dp_accounting import dp_event
    from dp_accounting.pld import PLDAccountant

    from fedaudit.defenses.dp_fedavg.budget import ADD_REMOVE, REPLACE_ONE, epsilons
    from fedaudit.defenses.dp_sgd.budget import epsilon as sgd_epsilon
    from fedaudit.defenses.dp_sgd.budget import group_privacy, vacuous

    def pld(event, count: int) -> float:
        acc = PLDAccountant(value_discretization_interval=1e-3)
        acc.compose(event, count)
        return acc.get_epsilon(1e-5)

    both = epsilons(1.0, 35, 1e-5)
    for key, z in ((ADD_REMOVE, 1.0), (REPLACE_ONE, 0.5)):
        second = pld(dp_event.GaussianDpEvent(z), 35)
        assert second <= both[key] <= 1.15 * second, key
    # the demo's DP-FedAvg (z = 1, 35 rounds): replacing a hospital costs ~2.8x adding one
    assert both[ADD_REMOVE] == pytest.approx(44.3, abs=0.1)
    assert both[REPLACE_ONE] == pytest.approx(124.7, abs=0.1)
    per_slice = sgd_epsilon(1.0, [(0.05, 20), (0.05, 20)], 1e-5)
    second = pld(dp_event.PoissonSampledDpEvent(0.05, dp_event.GaussianDpEvent(1.0)), 40)
    assert second <= per_slice <= 1.3 * second
    # group privacy: k = 1 is the unit itself; the bound covers the exact Gaussian group ε
    assert group_privacy(0.7, 1e-5, 1) == (0.7, 1e-5)
    for k in (2, 4):
        eps_k, delta_k = group_privacy(epsilon(8.0, 1, 1e-5), 1e-5, k)
        assert epsilon(8.0 / k, 1, delta_k) <= eps_k
    # at a per-slice ε of a few, 192 slices give δ far above 1: no patient-level guarantee
    assert vacuous(group_privacy(per_slice, 1e-5, 192))
    assert not vacuous(group_privacy(0.01, 1e-5, 10))


def _canary_rows() -> pd.DataFrame:
    """The privacy audit's per-canary rows (fedaudit.attacks.privacy_audit.steps), which its
    table summarises, of the control (no noise: every score separates) and of DP-FedAvg at
    z = 1 (μ = 1)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frames = []
    for scenario, defense, m, mu, claimed in (("baseline", "none", 150, 1e3, np.nan),
                                              ("dp-z1.0", "dp_fedavg", 300, 1.0, 4.73)):
        included = rng.random(m) < 0.5
        score = rng.standard_normal(m) + mu * included
        frames.append(pd.DataFrame({
            "scenario": scenario, "defense": defense, "level": 1.0,
            "noise_source": "os_entropy", "canaries": m, "rounds": 10, "canary_norm": 50.0,
            "norm_basis": "x", "clip": 5.0, "noise_std": 0.0 if defense == "none" else 5.0,
            "parameters": 100, "epsilon_claimed": claimed, "epsilon_run": np.nan,
            "delta": 1e-5, "canary": range(m), "round": 1, "included": included,
            "score_direct": score, "score_replay": score}))
    return pd.concat(frames, ignore_index=True)


def test_a_noise_family_is_one_folder(demo, tmp_path: Path) -> None:
    """tests/plugins/uniform_noise declares a family (U(−a, a) on the update) in its folder
    only; the config grid, the scenario, the transform, the privacy-utility table, figure and
    the front page's defense line take it from the catalog."""
    import pandas as pd

    from fedaudit.attacks.privacy_audit.report import summarise
    from fedaudit.comparisons.privacy_utility.figures import legend_labels, privacy_utility_figure
    from fedaudit.comparisons.privacy_utility.report import (
        defense_finding,
        privacy_utility,
        privacy_utility_table,
    )
    from fedaudit.defenses.update_noise import level_of, update_noise_std

    plugin = Path(__file__).parent / "plugins" / "uniform_noise"
    cfg = copy.deepcopy(demo)
    cfg["plugins"] = [str(plugin)]
    cfg["scenarios"]["noise"] = {"uniform_noise": [0.01], "dp_fedavg": [1.0]}
    scenarios = scenarios_from_config(validate_config(copy.deepcopy(cfg)))
    entry = noise_defense(scenarios["unif-a0.01"].defenses)
    assert entry["name"] == "uniform_noise" and level_of(entry) == 0.01
    # the config rejects a bad level of the plugin's grid like a built-in one's
    with pytest.raises(ConfigError, match="uniform_noise"):
        validate_config({**cfg, "scenarios": {"noise": {"uniform_noise": [-1.0]}}})
    # the transform: bounded by a, std a/√3 (closed form), the same draws for the same seed
    zeros = [np.zeros((200, 100), np.float32), np.zeros(5000, np.float32)]
    noisy = perturb_update(zeros, entry, 3)
    flat = np.concatenate([a.ravel() for a in noisy])
    assert np.abs(flat).max() <= 0.01 and abs(flat.mean()) < 3 * 0.01 / np.sqrt(3 * flat.size)
    assert flat.std() == pytest.approx(update_noise_std(entry), rel=0.02)
    assert all(np.array_equal(a, b) for a, b in zip(noisy, perturb_update(zeros, entry, 3),
                                                    strict=True))
    # the privacy-utility rows, table, findings and figure
    names = ["baseline", "unif-a0.01", "dp-z1.0"]
    meta = {n: {"defenses": [dict(d) for d in scenarios[n].defenses]} for n in names}
    gradinv = pd.DataFrame([
        {"scenario": n, "target": "classifier", "network": "classifier", "method": "cpl",
         "batch_size": 1, "center": "AB"[i % 2], "success": ok, "ssim": 0.95 if ok else 0.2,
         "mse": 0.01, "psnr": 20.0, "null_success": False, "null_ssim": 0.2,
         "seconds_per_image": 1.0, "evaluations": 100.0, "label_correct": True,
         "noise": None}
        for n, flags in zip(names, ([True] * 4, [True, False, False, False], [False] * 4),
                            strict=True) for i, ok in enumerate(flags)])
    quality = pd.DataFrame({"scenario": names, "center": "A", "n": 2,
                            "mae_mean": [100.0, 140.0, 300.0], "ssim_mean": [0.9, 0.8, 0.5]})
    acc = pd.DataFrame({"scenario": names, "split": "test", "center": "all",
                        "accuracy": [0.8, 0.6, 0.3], "majority_class_accuracy": 0.26})
    data = privacy_utility(gradinv, quality, acc, None, meta, dict.fromkeys(names, 10), 5,
                           plugins=[str(plugin)], audit=summarise(_canary_rows()))
    # ranked after the built-ins: baseline, DP-FedAvg (rank 2), the toy (rank 50)
    assert list(data["scenario"]) == ["baseline", "dp-z1.0", "unif-a0.01"]
    table = privacy_utility_table(data)
    frame = table.blocks[0].frame.set_index("Defense")
    assert frame.loc["Uniform", "Level"] == "a = 0.01"
    # the privacy audit's measured ε beside the claim: the control at its ceiling, DP-FedAvg
    # consistent, the toy not audited
    measured = frame["ε measured (≥, 95 %, one round)"]
    assert measured["none"] == "3.39 of 150 canaries' 3.39; no noise (control)"
    assert measured["DP-FedAvg"].endswith("claimed 4.73: consistent")
    assert measured["Uniform"] == "–"
    eps_col = next(c for c in frame.columns if c.startswith("ε (sCT)"))
    assert frame.loc["Uniform", eps_col] == "no ε (bounded noise, no clipping)"
    assert any("Uniform (a toy family)" in n for n in table.notes)
    lines = {f.topic: f.sentence for f in defense_finding(data)}
    assert "1.00 → 0.25" in lines["Defense: Uniform noise on client updates"]
    assert "measured in one run (95 % lower bound, one round): ε ≥ " in lines[
        "Defense: DP-FedAvg noise on client updates"]
    assert legend_labels()["uniform_noise"] == "Uniform"
    privacy_utility_figure(data, str(tmp_path / "pu.png"))
    assert (tmp_path / "pu.png").stat().st_size > 10_000
