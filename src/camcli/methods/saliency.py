"""Saliency (vanilla gradient)."""

from __future__ import annotations

import torch

from .whole import ModelContext, ModelMethod


class Saliency(ModelMethod):
    r"""Saliency: how much each pixel's colour moves the class score, the gradient's largest absolute value over
    the colour channels.

    .. math::  M_{ij} = \max_c \left| \frac{\partial y^c}{\partial x_{cij}} \right|

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image Classification Models
    and Saliency Maps", ICLR-W 2014 (arXiv:1312.6034), sec. 3.1. captum's ``Saliency`` returns the absolute
    gradient per channel; its maximum over channels is this map.
    """

    name = "saliency"
    summary = "largest absolute input gradient over the colour channels, per pixel"
    paper = "Simonyan et al., ICLR-W 2014, arXiv:1312.6034"
    cost = "1 forward + 1 backward per class"

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        return ctx.input_gradient(ctx.x).abs().amax(dim=1)
