"""The 2-D UNet of FedSynthCT-Brain, the model every attack in the audit targets.

Source: paper 000 (Raggio, Bucher et al., "Security Analysis of a Federated Learning Framework
for Medical Image-to-Image Translation"), section "Federated Learning Framework", which follows
the original FedSynthCT-Brain implementation (Raggio et al., Comput. Biol. Med. 192:110160, 2025,
ref. [12]) and the UNet of Li et al. (ref. [41]); skip connections by concatenation as in
Ronneberger et al., "U-Net", MICCAI 2015.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEPTH = 4  # encoder levels; the input size must be divisible by 2**DEPTH
LEAKY_SLOPE = 0.01  # PyTorch's default; paper 000 names LeakyReLU without a slope


NORMS = ("batch", "group", "none")
# GroupNorm's group count G (Wu & He, "Group Normalization", ECCV 2018, §3.1: G = 32 is their
# default, and their Table 3 finds it the best of G in {1, 2, 4, 8, 16, 32, 64}). A layer of C
# channels gets gcd(G, C) groups, so every width divides evenly: for widths base·2^i with base a
# power of two that is min(G, C) (it is also Opacus' rule when it replaces BatchNorm).
GROUPS = 32


def group_count(channels: int, groups: int = GROUPS) -> int:
    """The number of GroupNorm groups of a layer with ``channels`` channels: gcd(G, C)."""
    return math.gcd(int(groups), int(channels))


def _norm_layer(channels: int, norm: str, groups: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(group_count(channels, groups), channels)
    return nn.Identity()


def _conv_bn(in_ch: int, out_ch: int, act: nn.Module, norm: str = "batch",
             groups: int = GROUPS) -> list[nn.Module]:
    # Every norm sits at the same Sequential index (norm="none" puts an Identity there), so the
    # convolutions' state_dict names are the same whatever the normalisation.
    return [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), _norm_layer(out_ch, norm, groups),
            act]


class UNet2D(nn.Module):
    """MR slice -> unit-range CT slice (paper 000, "Federated Learning Framework").

    What the paper states, and how it is built here:

    * four encoder levels of width ``base, 2b, 4b, 8b`` (64, 128, 256, 512), each two
      3x3 conv (padding 1) -> BatchNorm -> LeakyReLU(0.01); max-pool 2x2 between levels;
    * a bottleneck that doubles the channel count to ``16b`` (1024);
    * upsampling by transposed convolutions, kernel 4, stride 2 (padding 1, so the size doubles
      exactly), halving the channels; the encoder feature map of the same level is concatenated;
    * BatchNorm after every convolution; LeakyReLU in the encoder, ReLU in the decoder;
    * a final 1x1 convolution with a linear output (the target is unit-range CT, see
      :mod:`fedaudit.intensity`; no activation so the loss sees unclipped values).

    The paper gives the size, ~2.68e7 trainable parameters, but not the number of
    convolutions per block. Two convolutions in the bottleneck and in every decoder level would
    give 3.94e7 parameters; ONE 3x3 convolution in the bottleneck (8b -> 16b) and ONE per
    decoder level (2c -> c after the concatenation) gives 26,821,633 at ``base=64``, which
    matches the paper. That reading is the one implemented.
    Convolutions keep their bias (PyTorch default) although BatchNorm follows: it changes the
    count by 0.01 % and keeps the layer layout of a stock PyTorch UNet.

    ``norm="none"`` is not the paper's model: it replaces every BatchNorm by an identity (same
    module indices, so the convolutions keep their state_dict names) and is the gradient-
    inversion attack's positive control (:mod:`fedaudit.attacks.dlg.inversion`). In train mode with
    batch 1, BatchNorm makes the shared gradient almost invariant to a positive rescaling of the
    input; without it the gradient determines the input's scale as well as its structure.

    ``norm="group"`` is not the paper's model either: GroupNorm (Wu & He, ECCV 2018) with
    gcd(``groups``, C) groups (:data:`GROUPS`) in place of every BatchNorm, same indices and the
    same trainable parameters (a per-channel weight and bias), no running statistics. It is the
    UNet of the DP-SGD federations (:mod:`fedaudit.defenses.dp_sgd`): a BatchNorm output mixes
    every sample of the batch, so a sample's own gradient is undefined and per-sample clipping
    (Abadi et al. 2016, Alg. 1) cannot bound what one slice contributes; GroupNorm normalises
    each sample on its own. Its synthesis quality is therefore not BatchNorm-identical to the
    baseline's.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base: int = 64,
                 norm: str = "batch", groups: int = GROUPS) -> None:
        super().__init__()
        if min(in_channels, out_channels, base) < 1:
            raise ValueError(f"in_channels, out_channels and base must be >= 1, got "
                             f"{in_channels}, {out_channels}, {base}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.base = base
        self.norm = norm
        self.groups = int(groups)
        widths = [base * 2**i for i in range(DEPTH)]

        self.encoders = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.encoders.append(nn.Sequential(
                *_conv_bn(prev, w, nn.LeakyReLU(LEAKY_SLOPE, inplace=True), norm, groups),
                *_conv_bn(w, w, nn.LeakyReLU(LEAKY_SLOPE, inplace=True), norm, groups),
            ))
            prev = w
        self.pool = nn.MaxPool2d(2)
        # The bottleneck sits below the deepest encoder, so it belongs to the encoder side
        # (LeakyReLU), and doubles the width as the paper states.
        self.bottleneck = nn.Sequential(
            *_conv_bn(prev, 2 * prev, nn.LeakyReLU(LEAKY_SLOPE, inplace=True), norm, groups))
        prev = 2 * prev

        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w in reversed(widths):
            self.ups.append(nn.ConvTranspose2d(prev, w, kernel_size=4, stride=2, padding=1))
            self.decoders.append(nn.Sequential(*_conv_bn(2 * w, w, nn.ReLU(inplace=True), norm,
                                                         groups)))
            prev = w
        self.head = nn.Conv2d(prev, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"UNet2D expects a batch (N, C, H, W); got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet2D was built for {self.in_channels} input channel(s); got "
                             f"{x.shape[1]}")
        h, w = x.shape[-2:]
        factor = 2**DEPTH
        if h % factor or w % factor:
            # Max-pooling floors odd sizes, after which the skip and upsampled maps no longer
            # align; failing here names the cause instead of a concatenation size error.
            raise ValueError(f"UNet2D needs H and W divisible by {factor} ({DEPTH} poolings); "
                             f"got H={h}, W={w}. Pad or crop the slices first.")
        skips: list[torch.Tensor] = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``), the figure paper 000 reports."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
