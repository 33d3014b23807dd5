"""Guided backpropagation and guided Grad-CAM.

Springenberg et al., "Striving for Simplicity: The All Convolutional Net", ICLR-W 2015 (arXiv:1412.6806):
the gradient of the class score with respect to the input, where every ReLU passes back only positive
gradients at positions where its output was positive. Guided Grad-CAM (Selvaraju et al. 2017) multiplies that
image by the CAM upsampled to the input size.

Done with forward hooks on the model's ``nn.ReLU`` and ``nn.ReLU6`` modules (each output is routed through a
function with the guided backward); the hooks are removed in ``finally``, so the user's modules are exactly as before.
ReLUs applied functionally (``F.relu`` inside ``forward``) are not modules and are not guided.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..engine.hooks import eval_mode
from ..engine.scoring import Scorer


class _GuidedReLU(torch.autograd.Function):
    """Identity forward on a (clamped) ReLU's output; backward passes positive gradients where the unit was
    in its linear part: 0 < out (< upper for ReLU6)."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, upper: float) -> torch.Tensor:
        ctx.save_for_backward(out)
        ctx.upper = upper
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        active = (out > 0) & (out < ctx.upper)
        return grad.clamp_min(0) * active.to(grad.dtype), None


def _guide(module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
    upper = 6.0 if isinstance(module, nn.ReLU6) else float("inf")
    return _GuidedReLU.apply(output, upper)


def guided_backprop(
    model: nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    signs: torch.Tensor | None = None,
    scorer: Scorer | None = None,
) -> torch.Tensor:
    """(B, K, C, H, W) guided-backprop gradients of each class score in ``classes`` (B, K) w.r.t. ``x`` (negated
    where ``signs`` is −1; the scores as ``scorer`` makes them)."""
    scorer = scorer or Scorer()
    handles = []
    inp = x.detach().clone().requires_grad_(True)
    out = []
    with eval_mode(model):
        try:
            for m in model.modules():
                if isinstance(m, (nn.ReLU, nn.ReLU6)):
                    handles.append(m.register_forward_hook(_guide))
            with torch.enable_grad():
                logits = scorer.scores(model(inp))
                for k in range(classes.shape[1]):
                    sign = signs[:, k] if signs is not None else None
                    score = scorer.explained(logits, classes[:, k], sign).sum()
                    (g,) = torch.autograd.grad(score, inp, retain_graph=k < classes.shape[1] - 1)
                    out.append(g.detach())
        finally:
            for h in handles:
                h.remove()
    return torch.stack(out, dim=1).cpu()


def gradient_to_image(g: torch.Tensor) -> torch.Tensor:
    """(C, H, W) gradient → (H, W, C) values in [0, 1] for display: standardise, scale by 0.1, centre at 0.5.

    The usual visualisation (as in the Keras and pytorch-grad-cam examples).
    """
    g = g - g.mean()
    g = g / (g.std() + 1e-5) * 0.1 + 0.5
    return g.clamp(0, 1).permute(1, 2, 0)
