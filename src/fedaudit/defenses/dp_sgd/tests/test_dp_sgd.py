"""Sample-level DP-SGD inside the clients (Abadi et al. 2016, Alg. 1, with Opacus): the GroupNorm
UNet and its model definition, per-sample clipping against a loop reference, the noise scale,
ε against Abadi et al.'s published value and Opacus' own accountant, the config grid, the
client's training (seeded, BatchNorm refused) and a tiny DP-SGD federation whose checkpoint and
server log the evaluation and the attacks rebuild."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fl_study import make_study, tiny_plan
from torch import nn

from conftest import REPO
from fedaudit.catalog import catalog
from fedaudit.config import ConfigError, validate_config
from fedaudit.data.slices import load_volume
from fedaudit.defenses.dp_sgd.budget import (
    client_epsilons,
    client_events,
    epsilon,
    scenario_epsilon,
)
from fedaudit.defenses.dp_sgd.private import DPSGDError, DPSGDTraining, local_training
from fedaudit.defenses.update_noise import perturb_update
from fedaudit.federation.local import train_local, training_batches
from fedaudit.models import definition
from fedaudit.models.store import load_model, save_model
from fedaudit.models.unet import UNet2D, count_parameters, group_count
from fedaudit.models.weights import exchanged_names, get_arrays, set_arrays
from fedaudit.scenarios import noise_name, noise_scenario, scenarios_from_config

# simulation noise: these tests compare seeded runs (the secure default is tested on its own)
DP = {"name": "dp_sgd", "noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5,
      "groups": 32, "noise_source": "simulation"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return make_study(tmp_path_factory.mktemp("study"), {"A": 1, "B": 1}, size=32)


# --------------------------------------------------------------------------- the GroupNorm UNet


def test_group_norm_unet_keeps_the_parameters_and_drops_the_batch_statistics() -> None:
    bn, gn = UNet2D(base=8), UNet2D(base=8, norm="group")
    norms = [m for m in gn.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 13
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    # gcd(32, C): widths 8..128 -> 8, 16, 32, 32, 32 groups
    assert {(m.num_channels, m.num_groups) for m in norms} == {
        (8, 8), (16, 16), (32, 32), (64, 32), (128, 32)}
    assert group_count(64) == 32 and group_count(48, 32) == 16 and group_count(12, 8) == 4
    # the same trainable tensors under the same names; no running statistics to exchange
    assert count_parameters(gn) == count_parameters(bn)
    assert [n for n, _ in gn.named_parameters()] == [n for n, _ in bn.named_parameters()]
    assert exchanged_names(gn) == [n for n, _ in gn.named_parameters()]
    with pytest.raises(ValueError, match="groups"):
        UNet2D(base=4, norm="group", groups=0)


def test_model_definitions_keep_batchnorm_fingerprints_and_build_group_norm() -> None:
    assert definition.agreed(8) == {"arch": "unet2d", "base": 8}  # as before the option
    gn = definition.agreed(8, "group", 16)
    assert gn == {"arch": "unet2d", "base": 8, "norm": "group", "groups": 16}
    assert definition.fingerprint(gn) != definition.fingerprint(definition.agreed(8))
    net = definition.build(gn)
    assert net.norm == "group" and net.groups == 16
    assert {m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)} == {8, 16}
    with pytest.raises(ValueError, match="norm"):
        definition.agreed(8, "layer")


def test_a_group_norm_checkpoint_loads_back_as_group_norm(tmp_path) -> None:
    torch.manual_seed(0)
    net = UNet2D(base=4, norm="group", groups=2)
    save_model(tmp_path / "model.pt", net, base=4, scenario={"name": "dpsgd-z1.0"})
    back = load_model(tmp_path / "model.pt")
    assert isinstance(back, UNet2D) and (back.norm, back.groups) == ("group", 2)
    for a, b in zip(get_arrays(net), get_arrays(back), strict=True):
        np.testing.assert_array_equal(a, b)
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(back(x), net.eval()(x))
    with pytest.raises(ValueError, match="base"):
        save_model(tmp_path / "bad.pt", net, base=8)


# --------------------------------------------------------------------------- the mechanism


class _Tiny(nn.Module):
    """Conv -> GroupNorm -> ReLU -> linear head: every Opacus path the UNet uses (a hook layer,
    a norm, and with ``transpose`` a torch.func layer)."""

    def __init__(self, transpose: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.act = nn.ReLU(inplace=True)
        self.up = nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1) if transpose else None
        self.head = nn.Linear((2 if transpose else 4) * (16 if transpose else 8) ** 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(self.conv(x)))
        if self.up is not None:
            h = self.up(h)
        return self.head(h.flatten(1))


def _per_sample_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The reference: each sample's gradient by its own backward pass, flattened."""
    out = []
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x[i:i + 1]), y[i:i + 1]).backward()
        out.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return out


@pytest.mark.parametrize("transpose", [False, True])
def test_per_sample_clipping_matches_a_loop_and_bounds_every_slice(transpose) -> None:
    torch.manual_seed(1)
    model = _Tiny(transpose)
    x, y = torch.randn(6, 1, 8, 8), torch.randn(6, 3) * 5
    x[0] *= 20  # one sample far above the clip, others below it
    reference = _per_sample_loop(model, x, y)
    norms = torch.stack([g.norm() for g in reference])
    clip = float(norms.median())
    assert (norms > clip).any() and (norms < clip).any()
    # Abadi et al. Alg. 1 without noise: mean over the lot of g_i / max(1, |g_i| / C)
    clipped = [g / max(1.0, float(g.norm()) / clip) for g in reference]
    assert all(float(c.norm()) <= clip * (1 + 1e-6) for c in clipped)
    expected = torch.stack(clipped).sum(0) / x.shape[0]

    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
    dp = DPSGDTraining({"noise_multiplier": 0.0, "max_grad_norm": clip}, seed=3)
    net, opt = dp.attach(model, torch.optim.SGD(model.parameters(), lr=1.0), batch_size=6)
    dp.events.append([1.0, 0])  # the lot is given here, not drawn
    opt.zero_grad(set_to_none=True)
    nn.functional.mse_loss(net(x), y).backward()
    # Opacus' per-sample gradients are the loop's
    got = torch.cat([p.grad_sample.reshape(6, -1) for p in model.parameters()], dim=1)
    torch.testing.assert_close(got, torch.stack(reference), rtol=1e-4, atol=1e-6)
    dp.step(opt)
    report = dp.detach()
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(before - after, expected, rtol=1e-4, atol=1e-6)
    assert json.loads(report["dp_sgd_events"]) == [[1.0, 1]]
    # unwrapped: no hooks, no per-sample attributes, in-place activations back on
    assert model.act.inplace and not any(hasattr(p, "grad_sample") for p in model.parameters())
    assert not model._forward_hooks and not model.conv._forward_hooks


def test_noise_has_std_sigma_c_over_the_lot_and_an_empty_lot_still_steps() -> None:
    torch.manual_seed(0)
    model = nn.Linear(200, 100)  # 20,100 coordinates of noise
    start = [p.detach().clone() for p in model.parameters()]
    sigma, clip, lot = 2.0, 0.5, 4
    dp = DPSGDTraining({"noise_multiplier": sigma, "max_grad_norm": clip}, seed=11)
    net, opt = dp.attach(model, torch.optim.SGD(model.parameters(), lr=1.0), batch_size=lot)
    dp.events.append([0.5, 0])
    opt.zero_grad(set_to_none=True)
    # an empty lot: no backward, pure noise (Alg. 1 still takes the step); plus a
    # data-independent gradient (FedProx's pull) of norm ~42 >> C, added after the clip
    pull = [torch.full_like(p, 0.3) for p in model.parameters()]
    dp.step(opt, pull)
    dp.detach()
    moved = torch.cat([(s - p.detach()).reshape(-1) for s, p in
                       zip(start, model.parameters(), strict=True)])
    assert float(moved.mean()) == pytest.approx(0.3, abs=0.01)
    assert float(moved.std()) == pytest.approx(sigma * clip / lot, rel=0.03)


def test_a_batchnorm_unet_is_refused_with_the_reason() -> None:
    dp = DPSGDTraining(DP, seed=0)
    model = UNet2D(base=2)
    with pytest.raises(DPSGDError, match="BatchNorm.*GroupNorm"):
        dp.attach(model, torch.optim.SGD(model.parameters(), lr=0.1), batch_size=4)


def test_the_one_step_form_for_the_attacks_is_a_clipped_noised_single_gradient() -> None:
    rng = np.random.default_rng(0)
    g = [rng.standard_normal((30, 40)).astype(np.float32) * 3]
    free = perturb_update(g, {**DP, "noise_multiplier": 0.0, "max_grad_norm": 2.0}, 1)
    assert float(np.linalg.norm(free[0])) == pytest.approx(2.0, rel=1e-5)
    noisy = perturb_update(g, {**DP, "noise_multiplier": 3.0, "max_grad_norm": 2.0}, 1)
    assert float(np.std(noisy[0] - free[0])) == pytest.approx(6.0, rel=0.05)


# --------------------------------------------------------------------------- ε


def test_epsilon_reproduces_abadi_et_al_2016_and_opacus_accountant() -> None:
    """Abadi et al. 2016, §3.1: q = 0.01, σ = 4, δ = 1e-5, T = 10,000 steps gives ε ≈ 1.26
    with the moments accountant (their tail bound); dp-accounting's RDP with the tighter
    conversion of Canonne et al. 2020 must land below it by ~0.2 (measured 1.0355), and
    Opacus' RDP accountant -- a second implementation -- must agree with it."""
    from opacus.accountants import RDPAccountant

    eps = epsilon(4.0, [(0.01, 10_000)], 1e-5)
    assert 1.26 - 0.30 < eps < 1.26
    acc = RDPAccountant()
    acc.history = [(4.0, 0.01, 10_000)]
    assert acc.get_epsilon(1e-5) == pytest.approx(eps, rel=1e-3)
    # epochs of different sizes (different q), composed step by step by Opacus
    events = [(0.25, 4), (0.2, 5), (1 / 3, 3), (0.25, 4)]
    acc = RDPAccountant()
    for q, n in events:
        for _ in range(n):
            acc.step(noise_multiplier=1.3, sample_rate=q)
    assert acc.get_epsilon(1e-5) == pytest.approx(epsilon(1.3, events, 1e-5), rel=1e-3)


def test_epsilon_falls_with_noise_grows_with_steps_and_is_per_client() -> None:
    by_sigma = [epsilon(s, [(0.1, 100)], 1e-5) for s in (0.7, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(by_sigma, by_sigma[1:], strict=False))
    by_steps = [epsilon(1.0, [(0.1, n)], 1e-5) for n in (1, 10, 100, 1000)]
    assert all(a < b for a, b in zip(by_steps, by_steps[1:], strict=False))
    assert epsilon(1.0, [(0.1, 0)], 1e-5) == 0.0
    assert epsilon(0.0, [(0.1, 3)], 1e-5) == math.inf
    with pytest.raises(ValueError, match="q <= 1"):
        epsilon(1.0, [(1.5, 3)], 1e-5)
    # a history as the federation writes it: the smaller client (larger q) has the larger ε
    hist = pd.DataFrame([
        {"round": 1, "center": "A", "dp_sgd_events": json.dumps([[0.5, 2]])},
        {"round": 1, "center": "B", "dp_sgd_events": json.dumps([[0.1, 10]])},
        {"round": 2, "center": "A", "dp_sgd_events": json.dumps([[0.4, 2]])},
        {"round": 2, "center": "B", "dp_sgd_events": json.dumps([[0.1, 10]])}])
    assert client_events(hist) == {"A": [(0.5, 2), (0.4, 2)], "B": [(0.1, 10), (0.1, 10)]}
    eps = client_epsilons(DP, hist)
    assert eps["A"] == epsilon(1.0, [(0.5, 2), (0.4, 2)], 1e-5) > eps["B"]
    assert scenario_epsilon([{"name": "secagg"}, DP], hist) == eps["A"]
    assert scenario_epsilon([{"name": "dp_fedavg"}], hist) is None
    with pytest.raises(ValueError, match="re-train"):
        scenario_epsilon([DP], hist.drop(columns="dp_sgd_events"))


# --------------------------------------------------------------------------- config


@pytest.fixture
def demo() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_the_noise_grid_adds_dp_sgd_federations_with_group_norm(demo) -> None:
    assert not any(n.startswith("dpsgd-") for n in scenarios_from_config(validate_config(
        copy.deepcopy(demo))))  # an option: not in the demo
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["noise"] = {"dp_sgd": [0.8, 2]}
    cfg["defenses"] = {"dp_sgd": {"max_grad_norm": 0.5, "groups": 16}}
    valid = validate_config(cfg)
    sc = scenarios_from_config(valid)
    assert {"dpsgd-z0.8", "dpsgd-z2.0"} <= set(sc) and noise_name("dp_sgd", 1) == "dpsgd-z1.0"
    s = sc["dpsgd-z0.8"]
    # compared with the GroupNorm UNet trained without DP, which is compared with the baseline
    assert (s.aggregation, s.reference) == ("fedavg", "groupnorm")
    gn_scenario = sc["groupnorm"]
    assert gn_scenario.reference == "baseline" and "dp_sgd" not in gn_scenario.defense_names
    assert gn_scenario.defense("group_norm") == {"name": "group_norm", "groups": 16}
    assert s.defense("dp_sgd") == {"name": "dp_sgd", "noise_multiplier": 0.8,
                                   "max_grad_norm": 0.5, "delta": 1e-5, "groups": 16,
                                   "noise_source": "os_entropy"}
    # the attacks that default to the noise grid attack it and its reference
    for attack in ("gradinv", "fedmia", "evasion"):
        got = valid["attacks"][attack]["scenarios"]
        assert got[got.index("groupnorm"):][:3] == ["groupnorm", "dpsgd-z0.8", "dpsgd-z2.0"]
    # its federation's model is the GroupNorm UNet, as is its reference's (which trains without
    # DP-SGD's local training); the baseline's stays BatchNorm
    plan = tiny_plan((), "out", scenario=s)
    gn = {"arch": "unet2d", "base": 2, "norm": "group", "groups": 16}
    assert plan.model_definition() == gn
    ref = tiny_plan((), "out", scenario=sc["groupnorm"])
    assert ref.model_definition() == gn
    assert catalog().defense_hook(sc["groupnorm"], "local_training") is None
    assert tiny_plan((), "out", scenario=sc["baseline"]).model_definition() == \
        definition.agreed(2)
    # a custom scenario may name the reference setting itself
    cfg["scenarios"]["custom"] = {"gn8": {"defenses": ["group_norm"]}}
    cfg["defenses"]["group_norm"] = {"groups": 8}
    custom = scenarios_from_config(validate_config(cfg))["gn8"]
    assert tiny_plan((), "out", scenario=custom).model_definition()["groups"] == 8


@pytest.mark.parametrize(("key", "value", "where"), [
    ("noise", {"dp_sgd": [0]}, "scenarios.noise.dp_sgd"),
    ("noise", {"dp_sgd": [-1.0]}, "scenarios.noise.dp_sgd"),
    ("defenses", {"dp_sgd": {"max_grad_norm": 0}}, "defenses.dp_sgd.max_grad_norm"),
    ("defenses", {"dp_sgd": {"delta": 1.0}}, "defenses.dp_sgd.delta"),
    ("defenses", {"dp_sgd": {"groups": 0}}, "defenses.dp_sgd.groups"),
    ("defenses", {"dp_sgd": {"clip": 1.0}}, "defenses.dp_sgd"),
])
def test_bad_dp_sgd_settings_are_config_errors(demo, key, value, where) -> None:
    cfg = copy.deepcopy(demo)
    if key == "noise":
        cfg["scenarios"]["noise"] = value
    else:
        cfg["defenses"] = value
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        validate_config(cfg)


def test_dp_sgd_with_another_update_noise_is_refused(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["custom"] = {"both": {"defenses": ["dp_fedavg", "dp_sgd"]}}
    with pytest.raises(ConfigError, match="'both'.*one way only"):
        validate_config(cfg)


# --------------------------------------------------------------------------- client training


def _train(study, seed: int, norm: str = "group", **settings):
    plan = tiny_plan(study, "unused")
    vols = [load_volume(f) for f in plan.client("A").train]
    torch.manual_seed(0)
    model = UNet2D(base=2, norm=norm)
    start = get_arrays(model)
    cfg = dataclasses.replace(plan.local, max_slices_per_volume=8, batch_size=2)
    stats = train_local(model, vols, cfg, seed=seed, device=torch.device("cpu"),
                        private=local_training({**DP, **settings}, seed))
    return model, start, stats


def test_dp_sgd_without_clipping_or_noise_steps_along_the_unets_per_slice_gradients(
        study) -> None:
    """The positive control on the real network and training path: with σ = 0, a clip no
    slice reaches and q = 1 (every slice of the epoch in the one lot), a DP-SGD step of plain
    SGD is the sum of the slices' own gradients over the expected lot size L (Alg. 1), the
    reference being one backward pass per slice of the same UNet. Opacus' per-sample Conv2d
    gradients were wrong on channels_last activations (relative error ~1 on the UNet's 3x3
    convolutions, and the demo's DP-SGD federations did not learn), which the small networks
    above could not show."""
    plan = tiny_plan(study, "unused")
    vols = [load_volume(f) for f in plan.client("A").train]
    lot = 4096  # above the epoch's slice count: q = 1
    cfg = dataclasses.replace(plan.local, max_slices_per_volume=8, batch_size=lot,
                              optimizer="sgd", momentum=0.0, proximal_mu=0.0)
    (mr, ct), = training_batches(vols, cfg, seed=3, device=torch.device("cpu"), max_batches=1)
    torch.manual_seed(0)
    model = UNet2D(base=2, norm="group")
    start = get_arrays(model)
    reference = [np.zeros_like(a) for a in start]
    for i in range(mr.shape[0]):
        model.zero_grad(set_to_none=True)
        nn.functional.l1_loss(model(mr[i:i + 1]), ct[i:i + 1]).backward()
        for r, p in zip(reference, model.parameters(), strict=True):
            r -= p.grad.numpy() / lot
    train_local(model, vols, cfg, seed=3, device=torch.device("cpu"), lr=1.0, max_batches=1,
                private=local_training({**DP, "noise_multiplier": 0.0, "max_grad_norm": 1e9},
                                       seed=3))
    step = [b - a for a, b in zip(start, get_arrays(model), strict=True)]
    scale = max(float(np.abs(r).max()) for r in reference)
    for (name, _), got, want in zip(model.named_parameters(), step, reference, strict=True):
        # atol: a conv bias right before GroupNorm has a gradient of ~0 (the norm removes it);
        # rtol: float32 sums in another order, and L1 kinks (sign(pred - ct) near 0)
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-4 * scale, err_msg=name)


def test_the_group_norm_unet_trains_with_dp_sgd_and_is_seeded(study) -> None:
    model, start, stats = _train(study, seed=5)
    events = json.loads(stats["dp_sgd_events"])
    # one epoch of 8 slices at lot size 2: q = 0.25, ⌊1/q⌋ = 4 steps
    assert events == [[0.25, 4]] and stats["dp_sgd_steps"] == 4
    assert stats["num_examples"] == 8.0  # expected lot size × steps, not the sampled count
    assert math.isnan(stats["train_loss"])  # an un-noised function of the data: withheld
    moved = [float(np.abs(a - b).max()) for a, b in zip(get_arrays(model), start, strict=True)]
    assert min(moved) > 0
    again, _, _ = _train(study, seed=5)
    for a, b in zip(get_arrays(model), get_arrays(again), strict=True):
        np.testing.assert_array_equal(a, b)
    other, _, _ = _train(study, seed=6)
    assert any(not np.array_equal(a, b) for a, b in
               zip(get_arrays(model), get_arrays(other), strict=True))
    # the model is a plain module again: a normal step works on it
    model(torch.rand(2, 1, 32, 32)).mean().backward()


def test_dp_sgd_noise_from_os_entropy_is_not_the_seeded_noise(study) -> None:
    """The default source: the same round seed gives other lots and other noise every time
    (the server, who can derive the seed, cannot regenerate them), with the same accounting."""
    seeded, start, seeded_stats = _train(study, seed=5)
    one, _, stats = _train(study, seed=5, noise_source="os_entropy")
    two, _, _ = _train(study, seed=5, noise_source="os_entropy")
    assert stats["dp_sgd_events"] == seeded_stats["dp_sgd_events"]
    for other in (seeded, two):
        assert all(not np.array_equal(a, b) for a, b in
                   zip(get_arrays(one), get_arrays(other), strict=True)
                   if a.size > 16)


def test_dp_sgd_refuses_a_batchnorm_unet_in_train_local(study) -> None:
    with pytest.raises(DPSGDError, match="BatchNorm"):
        _train(study, seed=5, norm="batch")


# --------------------------------------------------------------------------- a federation


def test_a_dp_sgd_federation_trains_and_its_outputs_rebuild_the_group_norm_unet(
        study, tmp_path) -> None:
    from fedaudit.attacks.dlg.inversion import bn_free_control
    from fedaudit.attacks.fedmia.evaluation import measure
    from fedaudit.attacks.gradient_inversion import client_gradient
    from fedaudit.attacks.views import ServerView
    from fedaudit.federation.run import train_federation

    scenario = noise_scenario("dp_sgd", 1.0, {k: v for k, v in DP.items()
                                               if k not in ("name", "noise_multiplier")})
    plan = dataclasses.replace(tiny_plan(study, tmp_path, scenario=scenario), rounds=1)
    res = train_federation(plan)
    # the server's history holds no per-client loss or accounting events (a privacy defense:
    # q = L/N would give each client's slice count away); the clients' own records do
    assert not {"train_loss", "dp_sgd_events", "slices_per_s"} & set(res["history"].columns)
    hist = res["records"]
    assert hist["train_loss"].isna().all() and hist["dp_sgd_events"].notna().all()
    eps = scenario_epsilon(scenario.defenses, hist)
    assert 0 < eps < math.inf
    # what the privacy-utility table reads: clients.tsv, the events' JSON intact
    assert scenario_epsilon(scenario.defenses,
                            pd.read_csv(tmp_path / "clients.tsv", sep="\t")) == eps
    model = load_model(tmp_path / "model.pt")
    assert model.norm == "group"
    log = tmp_path / "server_log"
    assert json.loads((log / "model.json").read_text())["norm"] == "group"
    view = ServerView(log, 2)
    net = view.global_model(view.round(1))
    assert isinstance(net, UNet2D) and net.norm == "group"
    # the gradient-inversion suite's client gradient and its normalisation-free control
    x = torch.rand(1, 1, 32, 32)
    assert len(client_gradient(net, x, x, task="translation")) == len(exchanged_names(net))
    bn_free_control(net)
    # FedMIA reads the same log
    m = measure(server_log=log, rounds="last", patients=[("A", plan.client("A").train[0])],
                model_base=2, per_orientation=1, units=("slice",))
    assert np.isfinite(m["slice/similarity/update"]).all()
    with pytest.raises(ValueError, match="model_base"):
        ServerView(log, 4)
    # the round's update is the GroupNorm model's, parameters only
    set_arrays(net, list(view.round(1).updates["A"].values()))


def test_the_classifier_federation_runs_dp_sgd_in_its_clients(study, tmp_path) -> None:
    """Paper 003's classifier target of a DP-SGD scenario: the same defense in its local steps
    (Poisson lots over the in-memory slices), the steps reported for its ε."""
    from fedaudit.federation.classifier import train_classifier_federation

    folders = {c.center: list(c.train) for c in study}
    res = train_classifier_federation(folders, out_dir=tmp_path, rounds=2, local_epochs=1,
                                      batch_size=4, seed=1, classes=2, max_slices_per_volume=8,
                                      local_training=lambda seed: local_training(DP, seed))
    hist = res["history"]
    assert hist["train_loss"].isna().all() and hist["train_acc"].isna().all()
    events = client_events(hist)
    # 8 slices per center at lot size 4: q = 0.5, ⌊1/q⌋ = 2 steps per round
    assert events == {"A": [(0.5, 2), (0.5, 2)], "B": [(0.5, 2), (0.5, 2)]}
    assert scenario_epsilon([DP], hist) == epsilon(1.0, [(0.5, 4)], 1e-5)


def test_the_privacy_utility_table_shows_dp_sgd_with_its_slice_level_epsilon() -> None:
    from fedaudit.comparisons.privacy_utility.report import (
        defense_finding,
        privacy_utility,
        privacy_utility_table,
    )

    def rows(scenario: str, noise: str | None, ok: list[bool]) -> pd.DataFrame:
        return pd.DataFrame([{"scenario": scenario, "target": "classifier",
                              "network": "classifier", "method": "cpl", "batch_size": 1,
                              "center": "AB"[i % 2], "success": v, "ssim": 0.95 if v else 0.2,
                              "mse": 0.01, "psnr": 20.0, "null_success": False,
                              "null_ssim": 0.2, "seconds_per_image": 1.0,
                              "evaluations": 10.0, "noise": noise, "label_correct": True}
                             for i, v in enumerate(ok)])

    gradinv = pd.concat([rows("baseline", None, [True] * 4),
                         rows("groupnorm", None, [True, True, True, False]),
                         rows("dpsgd-z1.0", "dp_sgd", [True, False, False, False])])
    scenarios = {"baseline": {"defenses": []},
                 "groupnorm": {"defenses": [{"name": "group_norm", "groups": 32}]},
                 "dpsgd-z1.0": {"defenses": [DP]}}
    quality = pd.DataFrame({"scenario": [*scenarios, "constant"], "center": "A", "n": 2,
                            "mae_mean": [100.0, 120.0, 280.0, 250.0],
                            "ssim_mean": [0.9, 0.85, 0.2, 0.6]})
    acc = pd.DataFrame({"scenario": list(scenarios), "split": "test", "center": "all",
                        "accuracy": [0.8, 0.8, 0.5], "majority_class_accuracy": 0.26})
    hist = pd.DataFrame([{"round": r, "center": c, "dp_sgd_events": json.dumps([[q, 3]])}
                         for r in (1, 2) for c, q in (("A", 0.2), ("B", 0.1))])
    clf_hist = pd.DataFrame([{"round": 1, "center": "A", "dp_sgd_events": "[[0.5, 2]]"}])
    data = privacy_utility(gradinv, quality, acc, None, scenarios,
                           dict.fromkeys(scenarios, 2), 1, {"dpsgd-z1.0": hist},
                           {"dpsgd-z1.0": clf_hist}, slices_per_patient=192
                           ).set_index("scenario")
    assert data.loc["dpsgd-z1.0", "epsilon"] == epsilon(1.0, [(0.2, 3), (0.2, 3)], 1e-5)
    assert data.loc["dpsgd-z1.0", "epsilon_classifier"] == epsilon(1.0, [(0.5, 2)], 1e-5)
    assert data.loc["dpsgd-z1.0", "level"] == 1.0 and math.isnan(data.loc["baseline",
                                                                          "epsilon"])
    table = privacy_utility_table(data.reset_index())
    util = table.blocks[0].frame
    # DP is simulation noise here: every cell of its row says what that is worth
    sim = "simulation noise — no guarantee against this server"
    assert list(zip(util["Defense"], util["Level"], util["UNet"], strict=True)) == [
        ("none", "–", "BatchNorm"), ("none", "–", "GroupNorm"),
        (f"DP-SGD ({sim})", "σ = 1", "GroupNorm")]
    # ε per slice, and the patient's group bound over 192 slices: (192ε, 192·e^{191ε}·δ) is
    # far beyond δ = 1 at this ε, so no patient-level guarantee
    eps_cell = util.filter(like="ε (sCT)").iloc[2, 0]
    assert eps_cell.startswith(f"{data.loc['dpsgd-z1.0', 'epsilon']:.3g} per slice")
    assert "no meaningful patient-level guarantee" in eps_cell and sim in eps_cell
    assert bool(data.loc["dpsgd-z1.0", "patient_vacuous"])
    # beside the constant predictor on the same patients: 280 HU does not beat its 250 HU
    assert list(util["MAE ÷ constant"]) == ["0.40", "0.48",
                                           "1.12 (not beaten: no usable model)"]
    notes = " ".join(table.notes)
    assert "GroupNorm" in notes and "not a patient" in notes
    line = {f.topic: f.sentence for f in defense_finding(data.reset_index())}
    dp_line = line["Defense: DP-SGD noise in every local step (sample level)"]
    # read against the same UNet without DP, not the BatchNorm baseline
    assert "per 2-D slice" in dp_line and "from groupnorm" in dp_line
    assert "sCT MAE 120 → 280 HU (constant predictor 250 HU)" in dp_line
    assert "compared with groupnorm)" in dp_line
    without_reference = privacy_utility(
        gradinv[gradinv["scenario"] != "groupnorm"], quality, acc, None,
        {k: v for k, v in scenarios.items() if k != "groupnorm"}, dict.fromkeys(scenarios, 2),
        1, {"dpsgd-z1.0": hist}, {"dpsgd-z1.0": clf_hist})
    fallback = " ".join(f.sentence for f in defense_finding(without_reference))
    assert "sCT MAE 100 → 280 HU" in fallback and "mixes DP's cost with GroupNorm's" in fallback
    # a DP-SGD row needs its history: ε is never guessed
    with pytest.raises(Exception, match="history"):
        privacy_utility(gradinv, quality, acc, None, scenarios, dict.fromkeys(scenarios, 2), 1)
