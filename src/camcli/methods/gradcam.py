"""Grad-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod


class GradCAM(CamMethod):
    r"""Grad-CAM: channels weighted by their average gradient.

    .. math::  w_k^c = \frac{1}{Z}\sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
               L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
    ICCV 2017 (arXiv:1610.02391), eq. 1–2.
    """

    name = "gradcam"
    summary = "channels weighted by the spatial mean of the class-score gradient"
    paper = "Selvaraju et al., ICCV 2017, arXiv:1610.02391"
    on_objects = True
    volumes = True

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=(2, 3))
