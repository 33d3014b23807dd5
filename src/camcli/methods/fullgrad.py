"""FullGrad."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .whole import ModelContext, ModelMethod


def biases(model: nn.Module) -> list[tuple[nn.Module, torch.Tensor]]:
    """(module, bias (C,)) for every Conv2d and BatchNorm2d with a bias, in the model's module order. A batch norm's
    bias is the one its eval-mode affine map adds, ``β − μ γ / √(σ² + ε)``; one without running statistics
    (normalising by each batch's own) has no fixed bias and is left out.

    The types are matched exactly, as pytorch-grad-cam picks them: a subclass such as timm's ``BatchNormAct2d``
    applies an activation after its bias, so its output's gradient is not the bias's."""
    out: list[tuple[nn.Module, torch.Tensor]] = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and type(m) is nn.BatchNorm2d and m.bias is not None:
            if m.running_mean is None or m.running_var is None or m.weight is None:
                continue
            out.append((m, (m.bias - m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps)).detach()))
        elif isinstance(m, nn.Conv2d) and type(m) is nn.Conv2d and m.bias is not None:
            out.append((m, m.bias.detach()))
    return out


def scaled(maps: torch.Tensor, rel_eps: float = 1e-6) -> torch.Tensor:
    """Each (h, w) map of ``maps`` (..., h, w) min-max scaled to [0, 1]; a constant map → zeros (the constancy is
    relative, as in :func:`~camcli.methods.base.normalize`)."""
    lo, inv = _scale(maps, rel_eps)
    return (maps - lo[..., None, None]) * inv[..., None, None]


def scaled_sum_(maps: torch.Tensor, rel_eps: float = 1e-6) -> torch.Tensor:
    """``scaled(maps).sum(1)`` for (B, C, h, w) maps, scaling ``maps`` in place (no second (B, C, h, w) tensor)."""
    lo, inv = _scale(maps, rel_eps)
    return maps.sub_(lo[..., None, None]).mul_(inv[..., None, None]).sum(1)


def _scale(maps: torch.Tensor, rel_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map's minimum and 1 / (max − min), 0 for a map whose span is within ``rel_eps`` of its maximum."""
    lo, hi = torch.aminmax(maps.flatten(-2), dim=-1)
    span = hi - lo
    flat_enough = span <= rel_eps * hi.abs()
    return lo, torch.where(flat_enough, 0.0, 1.0 / torch.where(flat_enough, 1.0, span))


class FullGrad(ModelMethod):
    r"""FullGrad: the input-gradient × input map plus every bias's gradient map, each scaled, resized to the input
    and summed.

    .. math::  M = \sum_{c} \psi\big(|\nabla_{x} y \odot x|_c\big)
               + \sum_{l \in \text{biased}} \sum_{k} \psi\big(|\nabla_{z_l} y \odot b_l|_k\big)

    where :math:`z_l` is a biased layer's output, :math:`b_l` its bias (broadcast over positions), and
    :math:`\psi` min-max scales each channel's map to [0, 1] and resizes it (bilinearly) to the input.

    Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization", NeurIPS 2019
    (arXiv:1905.00780), FullGrad saliency with ψ = abs then scale, as pytorch-grad-cam's ``FullGrad`` computes it:
    the biased layers are the model's ``Conv2d`` and ``BatchNorm2d`` modules (exact types) with a bias, a batch
    norm's bias is its eval-mode one (:func:`biases`), each input channel and each bias channel is scaled on its own
    before the sum. Differences on purpose: a map whose values are all equal scales to zeros with a relative
    tolerance (as camcli's normalisation does) where pytorch-grad-cam divides by ``max + 1e-7`` (which shrinks the
    maps of a network whose gradients are tiny); a module called several times contributes each call's map. The
    map is a sum of many scaled maps, not a few peaked values, so no outliers are clipped (``outliers = 0``, as
    pytorch-grad-cam). The absolute values make a ``not:`` target's map the target's own.
    """

    name = "fullgrad"
    family = "CAM"
    summary = "|input gradient × input| plus every conv/batch-norm bias's |gradient × bias|, each scaled, summed"
    paper = "Srinivas & Fleuret, NeurIPS 2019, arXiv:1905.00780"
    cost = "1 forward + 1 backward per class (through the whole network)"
    outliers = 0.0

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        found = biases(ctx.model)
        outputs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (bias, the layer's output) per call

        def keep(bias: torch.Tensor):
            def hook(_m: nn.Module, _inputs: object, output: object) -> object:
                if not isinstance(output, torch.Tensor) or output.dim() != 4:
                    return None
                outputs.append((bias, output))
                return output.clone()  # an in-place op downstream (ReLU(inplace=True)) leaves the kept tensor alone

            return hook

        with torch.enable_grad():
            x = ctx.x.detach().requires_grad_(True)
            handles = [m.register_forward_hook(keep(b)) for m, b in found]
            try:
                score = ctx.explained(x).sum()
            finally:
                for h in handles:
                    h.remove()
            grads = torch.autograd.grad(score, [x, *[o for _, o in outputs]], allow_unused=True)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        total = scaled((grads[0] * x.detach()).abs().float()).sum(dim=1)  # each colour channel on its own
        for (bias, _out), g in zip(outputs, grads[1:], strict=True):
            if g is None:  # a layer the score does not depend on
                continue
            per_layer = scaled_sum_((g.float() * bias.float().view(1, -1, 1, 1)).abs())[:, None]
            # resizing is linear: resizing the channels' sum is the sum of the resized channels
            total += F.interpolate(per_layer, size=size, mode="bilinear", align_corners=False)[:, 0]
        return total
