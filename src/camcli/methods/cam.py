"""Classic CAM."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import LayerError
from .base import CamMethod, Context


class ClassicCAM(CamMethod):
    r"""CAM: channels weighted by the classifier's weights for the class.

    .. math::  L^c = \mathrm{ReLU}\Big(\sum_k W_{c,k} A^k\Big)

    Only defined where the head is global average pooling followed by one linear layer, with the target layer
    feeding the pooling. Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016
    (arXiv:1512.04150).
    """

    name = "cam"
    summary = "classifier weights of a global-pool + linear head (no gradients)"
    paper = "Zhou et al., CVPR 2016, arXiv:1512.04150"
    needs_grad = False
    volumes = True

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        if ctx.scorer.concepts is not None:
            raise LayerError(
                "CAM reads a classifier's weights; a similarity to a reference or prompt has none: use gradcam"
            )
        linears = [m for m in ctx.model.modules() if isinstance(m, nn.Linear)]
        fc = linears[-1] if linears else None
        if (
            fc is None
            or fc.in_features != acts.shape[1]
            or any(isinstance(m, nn.Linear) and m is not fc and m.out_features == fc.in_features for m in linears)
        ):
            raise LayerError(
                f"CAM needs a global-pool + single linear head fed by the target layer; layer '{ctx.layer}' has "
                f"{acts.shape[1]} channels and the head is "
                f"{'missing' if fc is None else f'Linear({fc.in_features}→{fc.out_features})'}; "
                "use gradcam instead, or the last conv layer (see: camcli layers)"
            )
        w = ctx.signed(fc.weight.detach().float()[ctx.classes])  # (B, C), negated for a not: target
        return torch.einsum("bc,bchw->bhw", w, acts)
