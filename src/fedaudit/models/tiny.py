"""A tiny BatchNorm-free image-to-image network: the gradient-inversion attack's positive control.

Why it is a positive control: for a fully connected first layer ``h = W x + b`` the gradient of
any loss w.r.t. ``W`` is ``δ xᵀ`` and w.r.t. ``b`` is ``δ`` (δ = ∂L/∂h), so for one sample every
row of ∂L/∂W is the input scaled by one entry of ∂L/∂b: the input is recoverable from the shared
gradient in closed form (Phong et al., "Privacy-Preserving Deep Learning via Additively
Homomorphic Encryption", IEEE TIFS 2018, ePrint 2017/715). The sigmoid MLPs and LeNets
without normalisation on which Zhu, Liu and Han ("Deep Leakage from Gradients", NeurIPS 2019)
demonstrated near-exact reconstruction belong to this family. If the DLG implementation cannot
reconstruct an image through this network, a failure on the paper's UNet says nothing about the
UNet; if it can, a failure on the UNet is evidence about the UNet (BatchNorm, depth, ReLU) and
not about the attack code.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyMLPTranslator(nn.Module):
    """``[N, 1, S, S]`` -> flatten -> Linear(S², hidden) -> Sigmoid -> Linear(hidden, S²) ->
    ``[N, 1, S, S]``.

    No normalisation layer, so the per-sample gradient is not mixed with batch statistics, and a
    smooth activation (sigmoid, as in DLG's experiments) so the double backpropagation of the
    gradient-matching objective has non-zero curvature everywhere.
    """

    def __init__(self, size: int, hidden: int = 64) -> None:
        super().__init__()
        if size < 1 or hidden < 1:
            raise ValueError(f"size and hidden must be >= 1, got {size}, {hidden}")
        self.size = size
        self.hidden = hidden
        self.encode = nn.Linear(size * size, hidden)
        self.act = nn.Sigmoid()
        self.decode = nn.Linear(hidden, size * size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, self.size, self.size):
            raise ValueError(f"TinyMLPTranslator({self.size}) expects [N, 1, {self.size}, "
                             f"{self.size}]; got {tuple(x.shape)}")
        out = self.decode(self.act(self.encode(x.flatten(1))))
        return out.view(x.shape[0], 1, self.size, self.size)
