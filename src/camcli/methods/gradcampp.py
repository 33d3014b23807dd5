"""Grad-CAM++."""

from __future__ import annotations

import torch

from .base import CamMethod


class GradCAMPlusPlus(CamMethod):
    r"""Grad-CAM++: gradient-weighted channels with per-position weights α (paper eq. 19).

    .. math::  \alpha^{kc}_{ij} = \frac{g_{ij}^2}{2 g_{ij}^2 + \sum_{ab} A^k_{ab}\, g_{ij}^3}, \quad
               w^c_k = \sum_{ij} \alpha^{kc}_{ij}\,\mathrm{ReLU}(g_{ij})

    with :math:`g = \partial y^c / \partial A^k` and α = 0 where g = 0; a small ε (1e-6) in the denominator,
    as pytorch-grad-cam computes it. Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for
    Deep Convolutional Networks", WACV 2018 (arXiv:1710.11063). torchcam's denominator differs (it uses the
    gradient of exp(y)); camcli follows the paper.
    """

    name = "gradcam++"
    summary = "Grad-CAM with per-position weights α (better for several instances)"
    paper = "Chattopadhyay et al., WACV 2018, arXiv:1710.11063"
    on_objects = True
    volumes = True

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_a = acts.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * grads.clamp_min(0)).sum(dim=(2, 3))
