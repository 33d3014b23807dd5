"""HiRes-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod, Context


class HiResCAM(CamMethod):
    r"""HiRes-CAM: element-wise gradient × activation, summed over channels (no spatial averaging).

    .. math::  L^c = \mathrm{ReLU}\Big(\sum_k g^{kc} \odot A^k\Big)

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
    networks", 2020 (arXiv:2011.08891).
    """

    name = "hirescam"
    summary = "element-wise gradient × activation: faithful to what the model computes"
    paper = "Draelos & Carin, 2020, arXiv:2011.08891"
    on_objects = True
    volumes = True

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        return (grads * acts).sum(dim=1)
