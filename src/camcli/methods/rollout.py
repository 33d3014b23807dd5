"""Attention rollout."""

from __future__ import annotations

import torch

from .transformer import TransformerMethod
from .whole import ModelContext


def rollout(probs: list[torch.Tensor]) -> torch.Tensor:
    """(B, T, T) rollout of the blocks' attention probabilities (B, heads, T, T), first block first."""
    rel: torch.Tensor | None = None
    for p in probs:
        a = p.float().mean(dim=1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        rel = a if rel is None else a @ rel
    assert rel is not None
    return rel


class Rollout(TransformerMethod):
    r"""Attention rollout: the attention of every block, heads averaged and the residual connection added as an
    identity, multiplied through the blocks; the map is the class token's row over the patch tokens.

    .. math::  \hat A^{(l)} = \mathrm{rownorm}\big(0.5\,\mathbb{E}_h A^{(l)}_h + 0.5\,I\big), \qquad
               R = \hat A^{(L)} \cdots \hat A^{(1)}, \qquad M = R_{[\mathrm{CLS}],\,\mathrm{patches}}

    Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020 (arXiv:2005.00928), sec. 3 (the
    heads' mean; no max/min head fusion or discard ratio, which later code adds). Class-agnostic: one map serves
    every class. The row read is the one the model's head reads (:func:`camcli.engine.readout.readout_rows`): the
    class token's; the class and distillation tokens' averaged (DeiT distilled); the mean of the patch rows for a
    model that pools them (timm ``global_pool='avg'``); the mean of every row for a model without prefix tokens.
    """

    name = "rollout"
    summary = "attention of every block (heads averaged, plus identity) multiplied through; the class token's row"
    paper = "Abnar & Zuidema, ACL 2020, arXiv:2005.00928"
    needs_grad = False
    cost = "1 forward (attention computed explicitly)"

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        if "rollout" not in ctx.cache:
            made = self.attention(ctx, graph=False)
            ctx.cache["rollout"] = made.read(rollout([p.detach() for p in made.probs]))
        return ctx.cache["rollout"]
