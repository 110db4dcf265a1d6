"""Networks: the paper's 2-D UNet (:mod:`fedaudit.models.unet`) and the BatchNorm-free
positive-control network of the gradient-inversion attack (:mod:`fedaudit.models.tiny`)."""

from fedaudit.models.tiny import TinyMLPTranslator
from fedaudit.models.unet import UNet2D, count_parameters

__all__ = ["TinyMLPTranslator", "UNet2D", "count_parameters"]
