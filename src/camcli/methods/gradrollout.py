"""Gradient-weighted attention rollout (Chefer et al.'s generic attention explainability)."""

from __future__ import annotations

import torch

from .transformer import TransformerMethod
from .whole import ModelContext


def grad_rollout(probs: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """(B, T, T) relevance from the blocks' attention (B, heads, T, T) and its gradients, first block first."""
    rel: torch.Tensor | None = None
    for p, g in zip(probs, grads, strict=True):
        a = (g.float() * p.float()).clamp_min(0).mean(dim=1)
        if rel is None:
            rel = torch.eye(a.shape[-1], device=a.device).expand_as(a)
        rel = rel + a @ rel
    assert rel is not None
    return rel


class GradRollout(TransformerMethod):
    r"""Gradient-weighted attention rollout: each block's attention weighted by the class score's gradient (positive
    part, heads averaged), accumulated from the identity through the blocks; the class token's row.

    .. math::  \bar A^{(l)} = \mathbb{E}_h\big(\nabla A^{(l)}_h \odot A^{(l)}_h\big)^+, \qquad
               R^{(0)} = I, \quad R^{(l)} = R^{(l-1)} + \bar A^{(l)} R^{(l-1)}, \qquad
               M = R^{(L)}_{[\mathrm{CLS}],\,\mathrm{patches}}

    Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
    Transformers", ICCV 2021 (arXiv:2103.15679), the self-attention update rule. The gradient is of the class
    score (the logit, as in the reference code's one-hot product), negated for a ``not:`` target; the rows read are
    rollout's (:class:`~camcli.methods.rollout.Rollout`). Only the blocks record a graph: the forward pass runs
    without one up to the first attention module.
    """

    name = "gradrollout"
    summary = "attention times its positive class-score gradient, heads averaged, accumulated through the blocks"
    paper = "Chefer et al., ICCV 2021, arXiv:2103.15679"
    cost = "1 forward + 1 backward per class"

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        made = self.attention(ctx, graph=True)
        score = self.explained(ctx, made.scores)
        got = torch.autograd.grad(score, made.probs, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(made.probs, got, strict=True)]
        return made.read(grad_rollout([p.detach() for p in made.probs], grads))
