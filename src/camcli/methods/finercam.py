"""Finer-CAM: what sets a class apart from the classes the model finds closest to it."""

from __future__ import annotations

import dataclasses

import torch

from ..errors import TargetError
from .base import CamMethod, Context


def rivals(scores: torch.Tensor, classes: torch.Tensor, compare: int) -> torch.Tensor:
    """(B, T) the ``compare`` classes whose scores are closest to each row's class ``classes`` (B,), closest first
    (the class itself excluded; T is at most N − 1)."""
    n = scores.shape[1]
    if n < 2:
        raise TargetError(
            "finercam compares the class with the model's other classes, and this model gives one score; "
            "use another --method"
        )
    s = scores.detach().float()
    picked = classes.view(-1, 1).to(s.device)
    distance = (s - s.gather(1, picked)).abs().scatter_(1, picked, float("inf"))
    return distance.topk(min(compare, n - 1), dim=1, largest=False).indices


def refined(
    scores: torch.Tensor, classes: torch.Tensor, signs: torch.Tensor | None, alpha: float, compare: int
) -> torch.Tensor:
    """(B,) the scalar Finer-CAM explains (differentiable; see :class:`FinerCAM`), negated where ``signs`` is −1."""
    idx = rivals(scores, classes, compare)
    own = scores.gather(1, classes.view(-1, 1).to(scores.device))
    weight = scores.softmax(-1).gather(1, idx)  # in the graph, as pytorch-grad-cam's FinerWeightedTarget has them
    value = (weight * (own - alpha * scores.gather(1, idx))).sum(1) / (weight.sum(1) + 1e-9)
    return value if signs is None else value * signs.to(value.device, value.dtype)


class FinerCAM(CamMethod):
    r"""Finer-CAM: a base method (Grad-CAM by default) explaining the class's score less its closest rivals'.

    .. math::  \tilde y^c = \frac{\sum_{d \in D} p_d\,(y^c - \alpha\, y^d)}{\sum_{d \in D} p_d}, \qquad
               p = \mathrm{softmax}(y), \qquad
               L^c = \mathrm{base}\Big(A, \frac{\partial \tilde y^c}{\partial A}\Big)

    :math:`D` (``--finer-compare``, 3) are the classes whose scores are closest to :math:`y^c`
    (:math:`|y^d - y^c|` smallest, :math:`c` itself left out; at most :math:`N - 1`); α (``--finer-alpha``, 1) is
    the comparison strength. Features the class shares with its rivals cancel out; what is left separates it
    from them (an Egyptian cat from a tabby). The base method (``--finer-base``) is any layer method that uses
    gradients: it is called, unchanged, with the gradient of :math:`\tilde y^c` instead of :math:`y^c`'s.

    Zhang et al., "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation", CVPR 2025
    (arXiv:2501.11309). The paper leaves the weights of several rivals open; camcli follows pytorch-grad-cam
    1.5.7 (``FinerCAM`` with ``FinerWeightedTarget``, written by the paper's authors): the rivals are the classes
    next to :math:`c` by score (its ``comparison_categories`` 1, 2, 3), weighted by their softmax probabilities,
    which stay in the graph (their gradient is part of :math:`\partial \tilde y^c / \partial A`), α = 1.
    torchcam 0.5's ``FinerCAM`` takes the plain mean of the rivals' scores with α (its γ) = 0.6; with one rival
    the two are the same. Unlike pytorch-grad-cam, which explains each image's top class, camcli explains the
    classes asked for (``--target``, ``--top-k``), each against its own rivals.

    ``not:CLASS`` negates :math:`\tilde y^c`: where the rivals win over the class. With ``--reference`` or
    ``--prompt`` the scores are similarities and the rivals are the other references or prompts whose similarity
    is closest (there must be two or more).
    """

    name = "finercam"
    summary = "what sets the class apart from its closest rivals (its score less α × theirs), with a base method"
    paper = "Zhang et al., CVPR 2025, arXiv:2501.11309"
    family = "target refiner"
    needs_graph = True
    volumes = True
    cost = "≈1 forward (+1 backward to each layer)"
    params = ("finer_base", "finer_alpha", "finer_compare")

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        from . import get_method  # the registry holds this module: imported when it is needed

        if ctx.output_scores is None or ctx.activation is None or ctx.grid is None:
            raise TargetError("finercam needs the model's scores in the autograd graph (run it through explain)")
        p = ctx.params
        base = get_method(p.finer_base)
        with torch.enable_grad():
            value = refined(ctx.output_scores, ctx.classes, ctx.signs, p.finer_alpha, p.finer_compare).sum()
            (g,) = torch.autograd.grad(value, ctx.activation, retain_graph=True)
        return base.raw_map(acts, ctx.grid(g).float(), dataclasses.replace(ctx, score=value))
