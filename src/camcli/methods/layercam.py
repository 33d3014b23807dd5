"""Layer-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod, Context


class LayerCAM(CamMethod):
    r"""Layer-CAM: positive gradients as per-position weights.

    .. math::  L^c = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}(g^{kc}) \odot A^k\Big)

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization", IEEE TIP 2021,
    eq. 4–5. Works on shallow layers too; combine several with repeated ``--layer``.
    """

    name = "layercam"
    summary = "positive gradients as per-position weights; good on early layers"
    paper = "Jiang et al., IEEE TIP 2021"
    on_objects = True
    volumes = True

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        return (grads.clamp_min(0) * acts).sum(dim=1)
