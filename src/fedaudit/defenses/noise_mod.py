"""The Flower client mod of the noise defenses: the client perturbs its update before sending.

The transform is :func:`fedaudit.defenses.update_noise.perturb_update` (its docstring cites the
sources: paper 003 §V for Laplace gradient perturbation, McMahan et al. 2018 Alg. 1 for
DP-FedAvg's clip and Gaussian noise). The mod intercepts the client's fit reply (the FitRes
parameters are the update Δw_k, :mod:`fedaudit.federation.client`) and replaces its arrays with
the perturbed ones, so the server -- the attacker of our threat model -- never receives the
clean update.

Randomness (:mod:`fedaudit.defenses.noise_source`): by default every round's noise comes from
a generator seeded with fresh OS entropy that only this client ever holds, so the server -- who
knows the config, the seed derivation, the round and the center -- cannot regenerate it. Under
``noise_source: simulation`` the noise of center ``c`` in round ``r`` is drawn from
``derive_seed(plan.seed, <defense name>, c, r)`` (:func:`noise_seed`): a re-run reproduces the
same federation, and the server can subtract the noise (the replay attack,
:mod:`fedaudit.attacks.noise_replay`, shows it).

Order with SecAgg+: Flower applies ``ClientApp(mods=[m1, m2])`` as ``m1(m2(client))`` (mods
listed first wrap outermost; ``flwr.client.mod.utils.make_ffn``). ``secaggplus_mod`` calls the
inner app for the FitRes and masks its parameters, so the noise mod must be *inside* it, i.e.
listed after it: the scenario composition puts ``secagg`` before a noise defense
(:func:`fedaudit.scenarios.scenarios_from_config`), :func:`client_mods` refuses a scenario that
lists them the other way round, and the mod itself fails loudly if it ever sees a SecAgg+ reply
(it would otherwise pass the masked vector through un-noised).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat

# noise_seed: the simulation source's seed derivation, imported by the attacks from here too
from fedaudit.defenses.noise_source import noise_seed, numpy_generator
from fedaudit.defenses.update_noise import perturb_update
from fedaudit.scenarios import NoiseSettingError, noise_on_update

SECAGG = "secagg"


class NoiseOrderError(RuntimeError):
    """The noise mod found itself outside SecAgg+'s mod (it would noise nothing)."""


def noise_mod(defense: dict[str, Any], seed: int
              ) -> Callable[[Message, Context, Callable], Message]:
    """A Flower client mod adding ``defense``'s noise (a scenario's defense entry) to every fit
    reply's parameters: fresh OS entropy per round, or under ``noise_source: simulation``
    seeded per (``seed``, defense, center, round)."""
    name = str(defense["name"])
    if not noise_on_update(name):
        raise NoiseSettingError(f"{name} adds no noise to the update a client sends (a "
                                "family with on_update False noises inside the local steps): "
                                "it is not a client mod")

    def mod(msg: Message, context: Context, call_next: Callable) -> Message:
        content = msg.content
        if not (msg.metadata.message_type == MessageType.TRAIN
                and "fitins.parameters" in content.array_records):
            return call_next(msg, context)
        rnd = int(compat.recorddict_to_fitins(content, keep_input=True).config["round"])
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        if RECORD_KEY_CONFIGS in reply.content.config_records:
            raise NoiseOrderError(f"{name}: the noise mod wraps SecAgg+'s mod, so it would see "
                                  "only the masked vector; list secagg before it")
        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        # the client names its center in its metrics (fedaudit.federation.client); a client
        # that does not is keyed by its partition id, equally stable across runs
        center = str(fitres.metrics.get(
            "center", f"partition{context.node_config.get('partition-id', '?')}"))
        rng = numpy_generator(defense, noise_seed(seed, name, center, rnd))
        noisy = perturb_update(parameters_to_ndarrays(fitres.parameters), defense, rng)
        reply.content.array_records["fitres.parameters"] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters(noisy), keep_input=True)
        return reply

    return mod


def _client_mods(plan: Any, name: str) -> list[Callable]:
    from fedaudit.scenarios import ScenarioError

    names = plan.scenario.defense_names
    if SECAGG in names and names.index(name) < names.index(SECAGG):
        raise ScenarioError(
            f"scenario {plan.scenario.name!r}: {name} is listed before secagg, so its mod would "
            "wrap SecAgg+'s and see only masked vectors; list secagg first (the noise must be "
            "added before masking)")
    return [noise_mod(plan.scenario.defense(name), plan.seed)]


def client_mods(plan: Any) -> list[Callable]:
    """The client-mod hook of every family that noises the update a client sends
    (:class:`fedaudit.catalog.DefenseSpec`): the mod of the scenario's one noise defense."""
    from fedaudit.scenarios import noise_defense

    entry = noise_defense(plan.scenario.defenses)
    if entry is None:
        raise NoiseSettingError(f"scenario {plan.scenario.name!r} has no noise defense")
    return _client_mods(plan, str(entry["name"]))
