"""ShapleyCAM."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import LayerError
from .base import CamMethod, Context


def lacks_second_derivative(model: nn.Module) -> str | None:
    """What in ``model`` torch has no second derivative for (hard-sigmoid gates, fused attention kernels), or None.
    Read from the modules, anywhere in the model (the part after the layer is not known before a pass)."""
    for m in model.modules():
        kind = type(m).__name__
        if "hardsigmoid" in kind.lower():
            return f"hard-sigmoid ({kind})"
        if isinstance(m, nn.MultiheadAttention) or getattr(m, "fused_attn", None) is True:
            return f"fused attention ({kind})"
        implementation = getattr(getattr(m, "config", None), "_attn_implementation", None)
        if "Attention" in kind and implementation not in (None, "eager"):
            return f"fused attention ({kind}, {implementation})"
    return None


class ShapleyCAM(CamMethod):
    r"""ShapleyCAM: Grad-CAM's channel weights corrected by the second-order term of the score's Taylor expansion,
    an estimate of each activation's Shapley value.

    .. math::  w_k^c = \frac{1}{Z}\sum_{i,j} \Big(\nabla y^c - \tfrac{1}{2}\, \nabla^2 y^c\, A\Big)_{kij}, \qquad
               L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    where :math:`\nabla^2 y^c A` is the Hessian of the class score with respect to the layer's activations times
    the activations (a Hessian-vector product: the gradient of :math:`\nabla y^c \cdot A` with :math:`A` held
    fixed). Where the network after the layer is piecewise linear in it (ReLUs, max pooling, a linear head on a
    logit) the Hessian is zero and the map is Grad-CAM's; smooth activations (SiLU, GELU, hard-swish, softmax
    attention) make them differ.

    Cai, "CAMs as Shapley Value-based Explainers", 2025 (arXiv:2501.06261), as pytorch-grad-cam's ``ShapleyCAM``
    computes it: the product is taken on the layer's output as the model gives it and then laid out like the
    gradients (a transformer's class token is dropped after, not before); the explained scalar is camcli's target
    (a logit by default), summed over the batch.
    """

    name = "shapleycam"
    summary = "Grad-CAM weights minus half the Hessian-vector product with the activations"
    paper = "Cai, 2025, arXiv:2501.06261"
    needs_graph = True
    volumes = True
    cost = "≈1 forward + a gradient and a Hessian-vector product per class"

    def refusal(self, model: nn.Module, layers: list[str]) -> str | None:
        lacking = lacks_second_derivative(model)
        if lacking is not None:
            return f"needs second derivatives, which torch lacks for {lacking}"
        return super().refusal(model, layers)

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        if ctx.score is None or ctx.activation is None or ctx.grid is None:
            raise LayerError("shapleycam needs the graph after the layer, which this kind of model does not give")
        act = ctx.activation
        with torch.enable_grad():
            (g,) = torch.autograd.grad(ctx.score, act, retain_graph=True, create_graph=True)
            hvp = None
            if g.requires_grad:  # False: the score is linear in the layer, the Hessian is zero
                try:
                    (hvp,) = torch.autograd.grad(
                        g, act, grad_outputs=act.detach(), retain_graph=True, allow_unused=True
                    )
                except RuntimeError as e:
                    if "not implemented" not in str(e):
                        raise
                    said = str(e).splitlines()[0]
                    raise LayerError(
                        f"shapleycam needs second derivatives of the network after layer '{ctx.layer}', and torch "
                        f"has none for one of its operations ({said}); pick another method or layer"
                    ) from None
        second = torch.zeros_like(grads) if hvp is None else ctx.grid(hvp.detach()).float()
        w = (grads - 0.5 * second).mean(dim=(2, 3))
        return torch.einsum("bc,bchw->bhw", w, acts)
