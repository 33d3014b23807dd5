"""Grad-CAM element-wise."""

from __future__ import annotations

import torch

from .base import CamMethod, Context


class GradCAMElementWise(CamMethod):
    r"""Grad-CAM element-wise: each activation weighted by its own gradient, the negative products dropped before
    the channels are summed.

    .. math::  L^c_{ij} = \sum_k \mathrm{ReLU}\!\left(\frac{\partial y^c}{\partial A^k_{ij}} A^k_{ij}\right)

    HiResCAM (``hirescam``) sums the same products before the ReLU, so a channel's negative evidence cancels
    another's positive evidence there; here it does not. The variant is pytorch-grad-cam's ``GradCAMElementWise``
    (no paper of its own); it builds on Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful
    explanations of convolutional neural networks", arXiv:2011.08891.
    """

    name = "gradcamelementwise"
    summary = "sum over channels of ReLU(gradient × activation)"
    paper = "Draelos & Carin, 2020 (element-wise variant: pytorch-grad-cam), arXiv:2011.08891"
    on_objects = True
    volumes = True

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        return (grads * acts).clamp_min(0).sum(dim=1)
