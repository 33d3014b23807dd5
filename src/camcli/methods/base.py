"""The shared steps of every CAM method: forward with hooks, gradients, weighted sum, ReLU, normalise.

A method subclasses :class:`CamMethod` and supplies its channel weights (or, for methods that are not a
weighted sum of channels, its raw map). Everything else lives here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LayerError, TargetError
from ..hooks import capture, eval_mode
from ..layers import resolve, tokens_to_grid


class CamMethod:
    """A class-activation-map method.

    Subclasses set the class attributes and override :meth:`weights` (channel weights, shape (B, C)) or,
    when the map is not a weighted sum of channels, :meth:`raw_map`.
    """

    name: str = ""
    summary: str = ""
    paper: str = ""
    needs_grad: bool = True
    cost: str = "1 forward + a backward through the layers after the target"

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) activations and gradients → (B, h, w) map before ReLU and normalisation."""
        w = self.weights(acts, grads)
        return torch.einsum("bc,bchw->bhw", w, acts)


@dataclass
class Explanation:
    """Result of :func:`explain` for one batch.

    Attributes:
        logits: (B, num_classes) model outputs.
        probs: (B, num_classes) softmax of the logits.
        classes: (B, K) class index explained in each slot.
        maps: (B, K, h, w) maps in [0, 1] at the layer's resolution (float32, CPU).
    """

    logits: torch.Tensor
    probs: torch.Tensor
    classes: torch.Tensor
    maps: torch.Tensor


def normalize(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """ReLU, then min-max normalise each map over its last two dims to [0, 1]; a constant map → zeros."""
    m = maps.clamp_min(0)
    flat = m.flatten(-2)
    lo = flat.min(-1).values[..., None, None]
    hi = flat.max(-1).values[..., None, None]
    span = hi - lo
    out = torch.where(span > eps, (m - lo) / span.clamp_min(eps), torch.zeros_like(m))
    return out


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (..., h, w) maps to ``size`` (H, W), staying in [0, 1]."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size).clamp_(0, 1)


def model_logits(output: object) -> torch.Tensor:
    """The class scores from a model's output (a tensor, a tuple/list starting with it, or a dict)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for key in ("logits", "out", "output"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    raise LayerError(f"cannot find class scores in the model's output ({type(output).__name__})")


def choose_classes(logits: torch.Tensor, targets: Sequence[int] | None, top_k: int) -> torch.Tensor:
    """(B, K) classes to explain: the given targets for every image, or each image's top-k."""
    num = logits.shape[1]
    if targets:
        for t in targets:
            if not 0 <= t < num:
                raise TargetError(f"class {t} is out of range: the model has classes 0…{num - 1}")
        return torch.tensor(list(targets), device=logits.device).expand(logits.shape[0], -1)
    k = max(1, min(top_k, num))
    return logits.topk(k, dim=1).indices


def explain(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    method: CamMethod,
    *,
    targets: Sequence[int] | None = None,
    top_k: int = 1,
) -> Explanation:
    """Run ``method`` on a batch ``x`` (already preprocessed, on the model's device) at ``layer``.

    Only the layers after ``layer`` record a graph; gradients come from ``torch.autograd.grad`` on the
    captured activation, so no parameter's ``.grad`` is touched. Training flags are restored afterwards.
    """
    module = resolve(model, layer)
    with eval_mode(model), capture(model, {layer: module}, grad=method.needs_grad) as cap:
        with torch.no_grad():
            output = model(x)
        logits = model_logits(output)
        if layer not in cap.acts:
            raise LayerError(f"layer '{layer}' did not run in the forward pass; pick another (camcli layers)")
        acts = cap.acts[layer]
        classes = choose_classes(logits.detach(), targets, top_k)
        slots = []
        for k in range(classes.shape[1]):
            grads = None
            if method.needs_grad:
                if not logits.requires_grad:
                    raise LayerError(f"the model's output does not depend on layer '{layer}'")
                score = logits.gather(1, classes[:, k : k + 1]).sum()
                (grads,) = torch.autograd.grad(score, acts, retain_graph=k < classes.shape[1] - 1)
            with torch.no_grad():
                a = tokens_to_grid(acts.detach())
                g = tokens_to_grid(grads) if grads is not None else torch.zeros(0)
                slots.append(normalize(method.raw_map(a.float(), g.float())))
    with torch.no_grad():
        logits = logits.detach().float()
        maps = torch.stack(slots, dim=1).cpu()
        return Explanation(logits.cpu(), logits.softmax(1).cpu(), classes.cpu(), maps)
