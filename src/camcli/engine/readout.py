"""How a vision transformer reads its answer out of its tokens, for the maps made from its attention: which tokens
are prefix tokens (class, distillation, registers) and which make the patch grid, which token rows its head reads
(the class token's, or the mean of those it pools), and — for LeGrad — its final norm and head applied to any
block's tokens.

What is known: torchvision's ``VisionTransformer``; timm's ``VisionTransformer``, ``VisionTransformerDistilled``
and ``Eva`` (and any timm model with their ``global_pool`` / ``norm`` / ``fc_norm`` / ``head`` attributes); Hugging
Face ``…ForImageClassification`` models with a ``layernorm`` and a ``classifier`` (ViT, DeiT, DeiT with teacher).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from ..errors import LayerError
from .layouts import declared_prefix_tokens, infer_layout, token_grid

#: timm pools that average (or take the maximum of) the patch tokens, leaving the prefix tokens out
PATCH_POOLS = ("avg", "max", "avgmax")


def patch_grid(model: nn.Module, tokens: int, input_size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """(prefix tokens, (h, w) patch grid) of a sequence of ``tokens`` for an input of ``input_size``: the prefix
    count the model declares (:func:`~camcli.engine.layouts.declared_prefix_tokens`), else the one the token count
    reads as (:func:`~camcli.engine.layouts.infer_layout`); a :class:`LayerError` when no grid fits."""
    prefix = declared_prefix_tokens(model)
    if prefix is None:
        found, _ = infer_layout((1, tokens, 1), input_size)
        prefix = found.prefix if found is not None and found.prefix is not None else 0
    grid = token_grid(tokens - prefix, input_size, exact=input_size[0] == input_size[1])
    if grid is None:
        raise LayerError(
            f"the attention's {tokens} tokens less {prefix} prefix token(s) make no grid of the "
            f"{input_size[0]}×{input_size[1]} input"
        )
    return prefix, grid


def _pooling(model: nn.Module) -> tuple[nn.Module, str | None]:
    """The module that pools the tokens (timm's ``global_pool``, open_clip's ``pool_type``) and how, or the model
    and None when none says."""
    for m in model.modules():
        if getattr(m, "attn_pool", None) is not None:
            return m, "map"
        for attr in ("global_pool", "pool_type"):
            if isinstance(getattr(m, attr, None), str):
                return m, str(getattr(m, attr))
    return model, None


def readout_rows(model: nn.Module, tokens: int, prefix: int) -> torch.Tensor:
    """(T,) weights of the token rows the model's head reads, summing to 1: the class token's row; the class and
    distillation tokens' rows averaged (DeiT distilled, whose two heads are averaged); the mean of the patch rows
    (timm's and open_clip's ``avg`` pools; for ``max`` the mean stands in for the maximum); the mean of every row (a
    model without a prefix token, or one that does not pool). A model that pools with attention, or in a way not
    known here, is refused in one line."""
    w = torch.zeros(tokens)
    pooler, pool = _pooling(model)
    kind = type(pooler).__name__
    distilled = hasattr(model, "head_dist") or type(model).__name__.endswith("WithTeacher")
    if pool == "map":
        raise LayerError(
            f"{kind} pools its tokens with attention (an attention-pooling head), which rollout, gradrollout and "
            "legrad do not read; use gradcam at a token layer"
        )
    if pool in PATCH_POOLS:
        w[prefix:] = 1.0
    elif pool in ("", "none", "avg_all") or prefix == 0:
        w[:] = 1.0
    elif pool not in (None, "token", "tok"):
        raise LayerError(f"{kind} pools its tokens as {pool!r}, which rollout, gradrollout and legrad do not read")
    elif distilled and prefix >= 2:
        w[:2] = 1.0
    else:
        w[0] = 1.0
    return w / w.sum()


def _timm_head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if getattr(model, "attn_pool", None) is not None:
        return None
    norm, head = getattr(model, "norm", None), getattr(model, "head", None)
    if not isinstance(norm, nn.Module) or not isinstance(head, nn.Module):
        return None
    fc_norm, drop = (getattr(model, a, None) for a in ("fc_norm", "head_drop"))
    fc_norm = fc_norm if isinstance(fc_norm, nn.Module) else nn.Identity()
    drop = drop if isinstance(drop, nn.Module) else nn.Identity()
    dist = getattr(model, "head_dist", None)

    def project(pooled: torch.Tensor) -> torch.Tensor:
        x = drop(fc_norm(norm(pooled)))
        return (head(x) + dist(x)) / 2 if isinstance(dist, nn.Module) else head(x)

    return project


def _hf_head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    base = getattr(model, str(getattr(model, "base_model_prefix", "")), None)
    norm = getattr(base, "layernorm", None)
    if not isinstance(norm, nn.Module):
        return None
    head = getattr(model, "classifier", None)
    cls, dist = getattr(model, "cls_classifier", None), getattr(model, "distillation_classifier", None)
    if isinstance(head, nn.Module):
        return lambda pooled: head(norm(pooled))
    if isinstance(cls, nn.Module) and isinstance(dist, nn.Module):
        return lambda pooled: (cls(norm(pooled)) + dist(norm(pooled))) / 2
    return None


def block_head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """LeGrad's score of one block: its tokens (B, T, D) averaged over every token, through the model's final norm
    and head (torchcam's ``LeGrad`` default for torchvision's ViT: ``heads(encoder.ln(tokens.mean(1)))``; the same
    for timm's and Hugging Face's ViTs with their own norm and head); a :class:`LayerError` for a model whose norm
    and head are not known."""
    if type(model).__name__ == "VisionTransformer" and hasattr(model, "class_token"):  # torchvision
        heads = cast(nn.Module, model.heads)
        ln = cast(nn.Module, cast(nn.Module, model.encoder).ln)
        project: Callable[[torch.Tensor], torch.Tensor] | None = lambda pooled: heads(ln(pooled))  # noqa: E731
    elif hasattr(model, "num_prefix_tokens") and hasattr(model, "forward_head"):
        project = _timm_head(model)
    else:
        project = _hf_head(model)
    if project is None:
        raise LayerError(
            f"legrad needs the final norm and classifier head of {type(model).__name__} to score each block "
            "(known: torchvision, timm and Hugging Face ViT/DeiT classifiers without attention pooling); "
            "rollout and gradrollout work on it"
        )

    def score(tokens: torch.Tensor) -> torch.Tensor:
        return project(tokens.mean(dim=1))

    return score
