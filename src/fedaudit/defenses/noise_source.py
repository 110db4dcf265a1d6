"""Where a client's privacy noise comes from: a source the server cannot reproduce, or the
seeded simulation source of tests and reproducibility studies.

The audited adversary is the server, and it holds the whole config: the seed, the seed
derivation (:func:`fedaudit.runtime.derive_seed`), every round number and center name. Noise
drawn from ``derive_seed(seed, defense, center, round)`` is therefore noise the server can
regenerate and subtract -- the replay attack (:mod:`fedaudit.attacks.noise_replay`) does exactly
that and recovers every clipped DP-FedAvg update. Such noise protects nobody against the server;
the ε printed for it is the ε of a mechanism the server undoes.

Two sources, set by the config's ``noise_source`` (carried in every noise defense entry of a
scenario, :func:`fedaudit.scenarios.scenarios_from_config`):

- ``os_entropy`` (the default): every client-side noise (Laplace, DP-FedAvg, DP-SGD's noise and
  its Poisson lots) comes from a generator seeded per client and round with 256 bits from the
  operating system (``os.urandom``), held by the client alone and never written anywhere. Numbers
  that depend on it are not bit-reproducible between runs.
- ``simulation``: today's seeded noise, so a run reproduces bit for bit. Every table cell,
  verdict line and ε of a scenario using it carries :data:`SIMULATION_NOTE`.

Why 256 bits and these generators: numpy's ``PCG64`` is seeded through ``SeedSequence`` from the
whole entropy (its 128-bit state is a hash of all of it); torch's CPU generator (MT19937) gets its
624 state words straight from ``os.urandom``
(:func:`fedaudit.defenses.dp_sgd.private.torch_generator`), since ``manual_seed``
takes at most 64 bits. Neither is a cryptographic generator: the guarantee here is that the server
cannot reproduce the noise from what it holds, not resistance to an adversary that observes raw
generator output (it never does; it sees noise added to an update). The floating-point attack on
Gaussian sampling (Mironov 2012) is countered for DP-SGD by Opacus' ``secure_mode`` (on with this
source; :mod:`fedaudit.defenses.dp_sgd.private`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedaudit.runtime import derive_seed

OS_ENTROPY = "os_entropy"
SIMULATION = "simulation"
NOISE_SOURCES = (OS_ENTROPY, SIMULATION)
KEY = "noise_source"
# what every table cell, verdict line and ε of a simulation-noise scenario says
SIMULATION_NOTE = "simulation noise — no guarantee against this server"
ENTROPY_BYTES = 32


def source_of(defense: Mapping[str, Any]) -> str:
    """The defense entry's noise source. An entry built from the config always names it; one
    built by hand (a test, an attack's what-if) gets the secure source, so a missing key can
    never weaken a defense."""
    source = str(defense.get(KEY, OS_ENTROPY))
    if source not in NOISE_SOURCES:
        raise ValueError(f"defense {defense.get('name')!r}: {KEY} {source!r} is not one of "
                         f"{', '.join(NOISE_SOURCES)}")
    return source


def is_simulation(defense: Mapping[str, Any] | None) -> bool:
    """Whether the entry's noise is the seeded simulation noise the server can regenerate."""
    return defense is not None and source_of(defense) == SIMULATION


def entropy() -> int:
    """256 fresh bits from the operating system, as an integer (never logged or stored)."""
    return int.from_bytes(os.urandom(ENTROPY_BYTES), "little")


def noise_seed(seed: int, name: str, center: str, rnd: int) -> int:
    """The seed of center ``center``'s simulation noise in round ``rnd`` under defense ``name``
    (``derive_seed(seed, name, center, rnd)``: everything in it is known to the server, so only
    the ``simulation`` source uses it)."""
    return derive_seed(seed, name, center, int(rnd))


def numpy_generator(defense: Mapping[str, Any], simulation_seed: int) -> np.random.Generator:
    """The generator a client draws ``defense``'s noise from for one round: seeded with
    ``simulation_seed`` (which the server can derive) under ``simulation``, from
    :func:`entropy` otherwise."""
    if is_simulation(defense):
        return np.random.default_rng(simulation_seed)
    return np.random.default_rng(np.random.SeedSequence(entropy()))


def simulation_scenarios(config: dict[str, Any]) -> list[str]:
    """The scenarios of a validated config whose noise is the server-regenerable simulation
    noise (empty under ``os_entropy``): the verdict lines that read no scenario metadata name
    them with :data:`SIMULATION_NOTE`."""
    if config["noise_source"] != SIMULATION:
        return []
    from fedaudit.scenarios import is_noise, scenarios_from_config

    return [name for name, s in scenarios_from_config(config).items()
            if any(is_noise(d) for d in s.defense_names)]
