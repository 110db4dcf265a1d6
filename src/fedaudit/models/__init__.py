"""Networks: the paper's 2-D UNet (:mod:`fedaudit.models.unet`)."""

from fedaudit.models.unet import UNet2D, count_parameters

__all__ = ["UNet2D", "count_parameters"]
