"""What a map costs, counted: the model's forward passes (input rows through the whole model) spent on each method.

:func:`counting_forwards` puts a forward pre-hook on the model for the length of a block; :func:`charged` says which
method the passes inside it are for (the framework wraps each method's own work in it; the pass that every method
shares — the forward that scores the batch and records the layers — is charged to :data:`SHARED`). The counts are
rows: a batch of 32 masked copies is 32 forward passes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

SHARED = ""  # the passes every method of the batch shares
_CHARGED: ContextVar[str] = ContextVar("camcli_charged_method", default=SHARED)


class ForwardCounter:
    """Input rows through ``model``'s top-level forward, per method (:func:`charged`)."""

    def __init__(self) -> None:
        self.rows: Counter[str] = Counter()

    def __call__(self, _module: nn.Module, args: tuple[object, ...]) -> None:
        first = args[0] if args else None
        if isinstance(first, torch.Tensor):
            rows = int(first.shape[0]) if first.dim() else 1
        elif isinstance(first, (list, tuple)):  # detectors take a list of pictures
            rows = len(first)
        else:
            rows = 1
        self.rows[_CHARGED.get()] += rows

    def per_image(self, method: str, images: int) -> float:
        """The passes one image costs with ``method``: its own and the shared ones, per image."""
        return (self.rows[method] + self.rows[SHARED]) / max(images, 1)


@contextmanager
def counting_forwards(model: nn.Module) -> Iterator[ForwardCounter]:
    """Count the model's forward passes inside the block (the hook is removed on the way out, always)."""
    counter = ForwardCounter()
    handle = model.register_forward_pre_hook(counter)
    try:
        yield counter
    finally:
        handle.remove()


@contextmanager
def charged(method: str) -> Iterator[None]:
    """The forward passes inside the block are ``method``'s own."""
    token = _CHARGED.set(method)
    try:
        yield
    finally:
        _CHARGED.reset(token)
