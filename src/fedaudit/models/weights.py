"""What a client and the server exchange: the model's floating-point state as named arrays.

Trainable parameters and BatchNorm running statistics travel; integer buffers
(``num_batches_tracked``) do not: SecAgg+ quantises every exchanged value as a float and would
mangle them (DESIGN.md), and with a fixed BN momentum they do not affect the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def exchanged_names(model: nn.Module) -> list[str]:
    """State-dict keys of floating-point tensors, in state-dict order (the wire order)."""
    return [k for k, v in model.state_dict().items() if torch.is_floating_point(v)]


def get_arrays(model: nn.Module) -> list[np.ndarray]:
    """The exchanged state as float32 numpy arrays (copies, on the host)."""
    state = model.state_dict()
    return [state[k].detach().to("cpu", torch.float32).numpy().copy()
            for k in exchanged_names(model)]


def set_arrays(model: nn.Module, arrays: list[np.ndarray]) -> None:
    """Load exchanged arrays into ``model`` in place (shapes are checked)."""
    names = exchanged_names(model)
    if len(arrays) != len(names):
        raise ValueError(f"got {len(arrays)} arrays for a model with {len(names)} exchanged "
                         "tensors: the server and client models differ")
    state = model.state_dict()
    with torch.no_grad():
        for name, arr in zip(names, arrays, strict=True):
            t = state[name]
            if tuple(arr.shape) != tuple(t.shape):
                raise ValueError(f"{name}: array shape {arr.shape} != model shape "
                                 f"{tuple(t.shape)}")
            t.copy_(torch.from_numpy(np.ascontiguousarray(arr)).to(t.dtype))


def subtract(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    return [(x - y).astype(np.float32, copy=False) for x, y in zip(a, b, strict=True)]


def add(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    return [(x + y).astype(np.float32, copy=False) for x, y in zip(a, b, strict=True)]
