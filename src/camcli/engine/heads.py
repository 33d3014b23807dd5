"""The feature maps a detector's or segmenter's head reads, found by running the model once (no level names are
written down: R-CNN's FPN has a ``pool`` level, RetinaNet's and FCOS's ``p6``/``p7``, SSD none of them).

The backbone of every torchvision detector and segmenter returns a dict of feature maps. A module whose output
*is* one of those tensors produces that level (an FPN's per-level ``layer_blocks.N``, ``extra_blocks.p6``); a
level made by a function rather than a module (R-CNN's max-pooled ``pool``, SSD's rescaled first map) is taken
from the last module before it with the same shape, or left out when there is none.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .hooks import eval_mode


def head_inputs(model: nn.Module, run: Callable[[], object], keys: tuple[str, ...] | None = None) -> list[str]:
    """Dotted names of the modules that produce the tensors ``model.backbone`` returns (only ``keys`` of its
    dict when given), in the dict's order; ``run`` runs one forward pass."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        return []
    produced: list[tuple[str, torch.Tensor]] = []
    levels: dict[str, torch.Tensor] = {}
    handles = []

    def keep(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                produced.append((name, out))

        return hook

    def keep_levels(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, dict):
            levels.update({str(k): v for k, v in out.items() if isinstance(v, torch.Tensor)})
        elif isinstance(out, torch.Tensor):
            levels["0"] = out

    try:
        for name, module in model.named_modules():
            if name and not name.startswith("transform"):
                handles.append(module.register_forward_hook(keep(name)))
        handles.append(backbone.register_forward_hook(keep_levels))
        with torch.no_grad(), eval_mode(model):
            run()
    finally:
        for h in handles:
            h.remove()
    out: list[str] = []
    for key, tensor in levels.items():
        if keys is not None and key not in keys:
            continue
        calls: dict[str, int] = {}
        for n, _ in produced:
            calls[n] = calls.get(n, 0) + 1
        same = [n for n, t in produced if t is tensor and n != "backbone" and calls[n] == 1]
        if not same:  # made by a function: the last module before the backbone's end with that shape
            shaped = [n for n, t in produced if tuple(t.shape) == tuple(tensor.shape) and n.startswith("backbone.")]
            same = shaped[-1:]
        # the last module to finish with it (the outermost: ``backbone.layer4``, not its last BatchNorm whose
        # output an in-place sum and ReLU turned into this tensor), among those that run once
        if same and tensor.dim() == 4 and tensor.shape[-1] * tensor.shape[-2] > 1:
            name = same[-1]
            if name not in out:
                out.append(name)
    return out
