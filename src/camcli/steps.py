"""Progress inside one batch: slow per-image work (Score-CAM's masked batches, smoothing passes) says how far it
is, and whoever listens (the CLI's progress display) shows it.

Torch-free and cheap when nobody listens: :func:`report` is one context-variable lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

StepListener = Callable[[str, int, int], None]  # (what, done, total)

_listener: ContextVar[StepListener | None] = ContextVar("camcli_step_listener", default=None)


def report(what: str, done: int, total: int) -> None:
    """``done`` of ``total`` units of ``what`` are finished (``done == total``: that work is over)."""
    listener = _listener.get()
    if listener is not None:
        listener(what, done, total)


@contextmanager
def listening(listener: StepListener) -> Iterator[None]:
    """Send the :func:`report` calls made in this context (this thread) to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
