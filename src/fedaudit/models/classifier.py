"""The 4-layer CNN of the gradient-inversion literature: paper 003's (MedPFL) attack target.

Source: Zhu, Liu and Han, "Deep Leakage from Gradients" (DLG, NeurIPS 2019), the "LeNet" of
their Section 4 / official code (``models/vision.py``): four 5×5 convolutions with 12 channels,
padding 2 (= 5 // 2), strides 2, 2, 1, 1, each followed by a Sigmoid, then one fully connected
layer on the flattened 12·8·8 feature map of a 32×32 input. The same network is the target of
iDLG (Zhao, Mopuri and Bilen, "iDLG: Improved Deep Leakage from Gradients", arXiv 2001.02610,
2020) and CPL (Wei et al., "A Framework for Evaluating Gradient Leakage Attacks in Federated
Learning", ESORICS 2020), and paper 003 (MedPFL, "Experimental Setup": "a 4-layer CNN
architecture, incorporating a fully connected layer ... as outlined in CPL", images resized to
32×32; Table II: Brain Tumor MRI, 4 classes) attacks it with CPL, DLG and iDLG.

Differences from paper 003, on purpose: one input channel (an MR slice, not RGB), and inputs
kept in the MR's [0, 1] range rather than standardised (a reconstruction is then scored on the
scale of the preprocessed MR). No normalisation layer (as in DLG): a sample's gradient is not
mixed with batch statistics.

Initialisation: ``init="dlg"`` draws every weight and bias from U(−0.5, 0.5), the
``weights_init`` of DLG's official code that iDLG and CPL reuse; ``init="torch"`` keeps PyTorch's
defaults (much smaller weights: through four Sigmoids the logits then hardly depend on the input).

The classifier's input (:func:`classifier_input`): an axial MR slice downsampled to ``size×size``
by area averaging (``torch.nn.functional.adaptive_avg_pool2d``: each output pixel is the mean of
its block of input pixels, exact for integer factors such as 64→32 or 256→32, i.e. anti-aliased),
and the head mask downsampled the same way and kept where at least half of a block is head.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

INITS = ("dlg", "torch")


class DLGConvNet(nn.Module):
    """DLG's 4-layer Sigmoid CNN (module docstring): ``[N, C, S, S]`` -> logits ``[N, K]``.

    ``body``: Conv(C→12, 5, s2, p2) → σ → Conv(12→12, 5, s2, p2) → σ → Conv(12→12, 5, s1, p2) →
    σ → Conv(12→12, 5, s1, p2) → σ; ``fc``: Linear(12·(S/4)², K) (12·8·8 = 768 at S = 32).
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 1, size: int = 32,
                 channels: int = 12, init: str = "dlg") -> None:
        super().__init__()
        if num_classes < 2 or in_channels < 1 or channels < 1:
            raise ValueError(f"need num_classes >= 2, in_channels >= 1, channels >= 1; got "
                             f"{num_classes}, {in_channels}, {channels}")
        if size < 4 or size % 4:
            raise ValueError(f"size must be a positive multiple of 4 (two stride-2 layers); "
                             f"got {size}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {init!r}")
        self.num_classes, self.in_channels, self.size = num_classes, in_channels, size
        self.channels, self.init = channels, init
        layers: list[nn.Module] = []
        c_in = in_channels
        for stride in (2, 2, 1, 1):
            layers += [nn.Conv2d(c_in, channels, kernel_size=5, stride=stride, padding=2),
                       nn.Sigmoid()]
            c_in = channels
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * (size // 4) ** 2, num_classes)
        if init == "dlg":
            with torch.no_grad():
                for p in self.parameters():
                    p.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, self.size, self.size):
            raise ValueError(f"DLGConvNet expects [N, {self.in_channels}, {self.size}, "
                             f"{self.size}]; got {tuple(x.shape)}")
        return self.fc(self.body(x).flatten(1))

    def config(self) -> dict[str, int | str]:
        """The constructor's arguments (what :func:`fedaudit.federation.classifier.
        load_classifier` needs to rebuild the network)."""
        return {"num_classes": self.num_classes, "in_channels": self.in_channels,
                "size": self.size, "channels": self.channels, "init": self.init}


def classifier_input(mr: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None = None,
                     size: int = 32) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The classifier's input from preprocessed axial MR slices (already in [0, 1]).

    ``mr``: one slice ``[H, W]`` or a stack ``[N, H, W]``; returns ``x`` float32
    ``[N, 1, size, size]`` (area-averaged with ``adaptive_avg_pool2d``, values stay in [0, 1])
    and, with ``mask`` (same shape as ``mr``), the head mask at the same resolution, bool
    ``[N, 1, size, size]``: a pixel is head when at least half of its block is (the area average
    of the binary mask ≥ 0.5). The attacker scores reconstructions inside this mask.
    """
    t = torch.as_tensor(np.asarray(mr, dtype=np.float32) if isinstance(mr, np.ndarray) else mr,
                        dtype=torch.float32)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ValueError(f"expected an MR slice [H, W] or a stack [N, H, W]; got {tuple(t.shape)}")
    x = nn.functional.adaptive_avg_pool2d(t[:, None], size).contiguous()
    if mask is None:
        return x, None
    m = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
    if m.ndim == 2:
        m = m[None]
    if tuple(m.shape) != tuple(t.shape):
        raise ValueError(f"mask shape {tuple(m.shape)} differs from the MR's {tuple(t.shape)}")
    frac = nn.functional.adaptive_avg_pool2d(m.to(torch.float32)[:, None], size)
    return x, (frac >= 0.5).contiguous()
