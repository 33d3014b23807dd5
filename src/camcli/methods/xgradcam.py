"""XGrad-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod


class XGradCAM(CamMethod):
    r"""XGrad-CAM: channels weighted by activation-weighted gradients.

    .. math::  w^c_k = \frac{\sum_{ij} A^k_{ij}\, g_{ij}}{\sum_{ij} A^k_{ij} + \varepsilon}, \quad \varepsilon=10^{-7}

    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs", BMVC 2020
    (arXiv:2008.02312), eq. 11.
    """

    name = "xgradcam"
    summary = "weights from activation-weighted gradients (sensitivity/conservation axioms)"
    paper = "Fu et al., BMVC 2020, arXiv:2008.02312"
    on_objects = True
    volumes = True

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads * acts).sum(dim=(2, 3)) / (acts.sum(dim=(2, 3)) + 1e-7)
