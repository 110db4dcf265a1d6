"""A fully-connected block in front of an image network, and the network it makes.

The block is what a malicious server inserts to imprint clients' inputs into its own gradients
(paper 002, "Method": "inserts a linear layer with ReLU activation before the first original
network layer"; Fowl et al., "Robbing the Fed", ICLR 2022, §3 "imprint module"): ``x ->
x + V·ReLU(W·flatten(x) + b)``, reshaped back to the slice. The residual path gives the network
behind it the slice it expects (V small), and V carries the loss's gradient back to each neuron
so that ``∂L/∂W_i`` and ``∂L/∂b_i`` are non-zero exactly for the samples that activate neuron i.

Only the architecture lives here; the malicious initialisations and the reconstruction are the
attack's (:mod:`fedaudit.attacks.trap_weights.imprint`).
"""

from __future__ import annotations

import torch
from torch import nn


class LinearFront(nn.Module):
    """``x (B, C, H, W) -> x + back(ReLU(linear(flatten(x))))`` with ``d = C·H·W`` inputs and
    ``k`` neurons."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.d, self.k = int(d), int(k)
        self.linear = nn.Linear(self.d, self.k)
        self.back = nn.Linear(self.k, self.d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        if flat.shape[1] != self.d:
            raise ValueError(f"front block expects {self.d} inputs per sample, got "
                             f"{flat.shape[1]} ({tuple(x.shape[1:])})")
        h = torch.relu(self.linear(flat))
        return x + self.back(h).view_as(x)


class FrontedModel(nn.Module):
    """``net(front(x))``: parameter names are ``front.*`` then ``net.*``."""

    def __init__(self, front: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.front = front
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.front(x))
