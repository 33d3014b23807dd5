"""One context manager that captures layer outputs and, when asked, builds a graph only after them.

Design (after torchcam and captum): handles are kept and removed in ``finally``; gradients are taken with
``torch.autograd.grad`` on the captured tensors rather than full backward hooks (which break on in-place
ReLU, pytorch issue 61519); the caller's training flags are restored on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import LayerError


@dataclass
class Captured:
    """Outputs captured during one forward pass, by layer name."""

    acts: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    active: bool = True  # False: hooks stand aside (extra forwards of Score-CAM)

    def require(self, names: list[str]) -> list[torch.Tensor]:
        """The captured outputs of ``names``, in order; a :class:`LayerError` for a layer that did not run."""
        missing = [n for n in names if n not in self.acts]
        if missing:
            raise LayerError(f"layer '{missing[0]}' did not run in the forward pass; pick another (camcli layers)")
        return [self.acts[n] for n in names]

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.active = False
        try:
            yield
        finally:
            self.active = True


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode and restore each module's own ``training`` flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def capture(model: nn.Module, layers: dict[str, nn.Module], *, grad: bool) -> Iterator[Captured]:
    """Capture the outputs of ``layers`` during the forward passes run inside the block.

    With ``grad=True`` run the forward under ``torch.no_grad()`` inside the block: the first target layer to
    finish turns its output into a fresh leaf that requires grad and switches grad mode on, so only the part
    of the network after that layer records a graph (about the cost of a plain forward). Later target layers
    are captured as graph tensors. Each captured tensor is handed on as a clone, so in-place ops downstream
    (``ReLU(inplace=True)``, ``out += identity``) never modify what was captured.

    Grad mode is restored by the caller's ``no_grad`` block; every hook is removed on exit, also on error.
    """
    captured = Captured()
    handles: list[torch.utils.hooks.RemovableHandle] = []
    previous_grad = torch.is_grad_enabled()

    def make(name: str):
        def hook(_m: nn.Module, _inputs: object, output: object) -> object:
            if not captured.active:
                return None
            calls = captured.calls.get(name, 0) + 1
            captured.calls[name] = calls
            if calls > 1:
                raise LayerError(
                    f"layer '{name}' runs more than once in one forward pass (a shared module); "
                    "pick a layer that runs once (see: camcli layers)"
                )
            if not isinstance(output, torch.Tensor):
                raise LayerError(
                    f"layer '{name}' returns {type(output).__name__}, not a tensor; pick one of its "
                    "children or a layer that returns a tensor (see: camcli layers)"
                )
            if not grad:
                captured.acts[name] = output.detach()
                return None
            if output.requires_grad and torch.is_grad_enabled():
                captured.acts[name] = output
            else:
                leaf = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
                captured.acts[name] = leaf
                output = leaf
            return output.clone()

        return hook

    try:
        for name, module in layers.items():
            handles.append(module.register_forward_hook(make(name)))
        yield captured
    finally:
        for h in handles:
            h.remove()
        torch.set_grad_enabled(previous_grad)
