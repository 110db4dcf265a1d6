"""What a client accepts of the training settings a server sends with a round.

In paper 002's threat model the server ships the training code: each round's config may set the
local training (``config["local"]``: :class:`fedaudit.federation.local.LocalConfig` fields and
``max_batches``) and the model to build (``config["model"]``, :mod:`fedaudit.models.definition`).
Unchecked, a server could make a client train for 10⁹ epochs, allocate a 10⁶-slice batch, fork
4,096 workers or build a trap layer larger than its memory. Every value is checked here against
its type, the config schema's own range for that key, and the client's policy
(``train.server_settings``: upper bounds from the client's own config); a value outside them is
refused with a :class:`ServerSettingError` naming the field, the value and the range.

The default policy is permissive: it admits every setting the built-in attacks send (one SGD
step, a trap layer of up to 4,096 neurons, slabs of a volume's slices), so the audit measures the
attacks; a strict policy that refuses them is a defense, audited as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from fedaudit.catalog import schema_defaults
from fedaudit.federation.local import LOSSES, LR_SCHEDULES, OPTIMIZERS, LocalConfig

POLICY_DEFAULTS: dict[str, Any] = schema_defaults("train")["server_settings"]


class ServerSettingError(ValueError):
    """A round setting the client refuses; ``field`` is its key."""

    def __init__(self, rnd: Any, field: str, value: Any, allowed: str) -> None:
        self.field = field
        super().__init__(f"round {rnd}: the server set {field} = {value!r}, outside what this "
                         f"client accepts ({allowed}; train.server_settings)")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(float(v))


def _int_in(lo: int, hi: int | None, nullable: bool = False) -> tuple[Callable[[Any], bool], str]:
    rng = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer ≥ {lo}"
    return ((lambda v: (nullable and v is None)
             or (_is_int(v) and v >= lo and (hi is None or v <= hi))),
            f"{rng}{' or null' if nullable else ''}")


def _number_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False
               ) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if not _is_number(v):
            return False
        x = float(v)
        return (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)
    return ok, f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def _one_of(*values: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, str) and v in values), f"one of {', '.join(values)}"


def _slab(v: Any) -> bool:
    return v is None or (isinstance(v, list | tuple) and len(v) == 3
                         and all(_is_int(i) and i >= 0 for i in v) and v[1] < v[2])


def rules(policy: dict[str, Any]) -> dict[str, tuple[Callable[[Any], bool], str]]:
    """field -> (check, the range in words): the schema's ranges of the ``train`` keys with the
    policy's upper bounds."""
    p = {**POLICY_DEFAULTS, **policy}
    slab = (_slab, "null or [volume index, first slice, stop slice], integers ≥ 0, first < stop")
    return {
        "lr": _number_in(0.0, float(p["lr_max"]), lo_open=True),
        "batch_size": _int_in(1, int(p["batch_size_max"])),
        "local_epochs": _int_in(1, int(p["local_epochs_max"])),
        "max_batches": _int_in(1, int(p["max_batches_max"]), nullable=True),
        "num_workers": _int_in(0, int(p["num_workers_max"])),
        "proximal_mu": _number_in(0.0, float(p["proximal_mu_max"])),
        "momentum": _number_in(0.0, 1.0, hi_open=True),
        "loss": _one_of(*LOSSES),
        "optimizer": _one_of(*OPTIMIZERS),
        "lr_schedule": _one_of(*LR_SCHEDULES),
        "max_slices_per_volume": _int_in(1, None, nullable=True),
        "val_max_slices": _int_in(1, None, nullable=True),
        "augment": ((lambda v: isinstance(v, bool)), "true or false"),
        "rotate_deg": _number_in(0.0, 45.0),
        "translate_frac": _number_in(0.0, 0.5),
        "slab": slab,
    }


# every LocalConfig field and ``max_batches`` (the number of local steps) has its rule: a new
# LocalConfig field is refused until it gets one
SETTABLE = frozenset(f.name for f in fields(LocalConfig)) | {"max_batches"}


def check_local(overrides: dict[str, Any], policy: dict[str, Any], rnd: Any = "?"
                ) -> dict[str, Any]:
    """``overrides`` (a round's ``config["local"]``) if every field is known and in range."""
    allowed = {k: v for k, v in rules(policy).items() if k in SETTABLE}
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ServerSettingError(rnd, unknown[0], overrides[unknown[0]],
                                 f"known fields: {', '.join(sorted(allowed))}")
    for field, value in overrides.items():
        ok, words = allowed[field]
        if not ok(value):
            raise ServerSettingError(rnd, field, value, words)
    return overrides


def check_model(defn: dict[str, Any], policy: dict[str, Any], sample_size: int | None,
                rnd: Any = "?") -> dict[str, Any]:
    """A server-sent model definition the client can build: a UNet no wider than
    ``model_base_max``, and a front layer (paper 002's trap layer) of at most
    ``front_neurons_max`` neurons whose input is one of this client's samples (``sample_size``
    values, when known)."""
    p = {**POLICY_DEFAULTS, **policy}
    ok, words = _int_in(1, int(p["model_base_max"]))
    if not ok(defn.get("base")):
        raise ServerSettingError(rnd, "model.base", defn.get("base"), words)
    front = defn.get("front")
    if front is None:
        return defn
    if not isinstance(front, dict):
        raise ServerSettingError(rnd, "model.front", front, "an object {kind, d, k}")
    ok, words = _int_in(1, int(p["front_neurons_max"]))
    if not ok(front.get("k")):
        raise ServerSettingError(rnd, "model.front.k", front.get("k"), words)
    d = front.get("d")
    if not _is_int(d) or (sample_size is not None and d != sample_size):
        raise ServerSettingError(rnd, "model.front.d", d,
                                 f"one sample's size, {sample_size}" if sample_size
                                 else "an integer")
    return defn
