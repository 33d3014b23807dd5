"""LeGrad."""

from __future__ import annotations

import torch

from ..engine.readout import block_head
from .transformer import TransformerMethod
from .whole import ModelContext


class LeGrad(TransformerMethod):
    r"""LeGrad: each block's own class score — its tokens, averaged, through the model's final norm and head —
    differentiated with respect to that block's attention probabilities; the positive gradients averaged over heads
    and queries give each key token's relevance, averaged over the blocks.

    .. math::  s^{(l)} = \mathrm{head}\Big(\mathrm{norm}\big(\tfrac1T \textstyle\sum_t z^{(l)}_t\big)\Big)_c, \qquad
               E^{(l)} = \mathbb{E}_{h,\,q}\Big(\frac{\partial s^{(l)}}{\partial A^{(l)}_{h,q,\cdot}}\Big)^+, \qquad
               M = \frac1L \sum_l E^{(l)}_{\mathrm{patches}}

    Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via Feature Formation
    Sensitivity", ICCV 2025 (arXiv:2404.03214). Follows torchcam 0.5's ``LeGrad``: the attention is not multiplied
    into the gradient; the tokens are averaged over all tokens (class token included) before the norm and head
    (torchcam's default for torchvision's ViT, which camcli applies with each library's own norm and head:
    :func:`camcli.engine.readout.block_head`); the prefix keys are dropped. camcli uses every block, as the paper
    aggregates over all layers (torchcam takes the blocks it is given).
    """

    name = "legrad"
    summary = "each block's own class score's positive gradient on its attention, over heads and queries"
    paper = "Bousselham et al., ICCV 2025, arXiv:2404.03214"
    cost = "1 forward + 1 short backward per block and class"

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        head = block_head(ctx.model)
        made = self.attention(ctx, graph=True)
        total: torch.Tensor | None = None
        for probs, tokens in zip(made.probs, made.blocks, strict=True):
            with torch.enable_grad():
                score = self.explained(ctx, ctx.scorer.scores(head(tokens)))
            (grad,) = torch.autograd.grad(score, probs, retain_graph=True)
            rel = grad.float().clamp_min(0).mean(dim=(1, 2))
            total = rel if total is None else total + rel
        assert total is not None
        return made.on_grid(total / len(made.probs))
