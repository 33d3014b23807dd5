"""Progress inside one batch: slow per-image work (Score-CAM's masked batches, smoothing passes, evaluate's
perturbed inputs) says how far it is, and whoever listens (the CLI's progress display) shows it.

Torch-free and cheap when nobody listens: :func:`report` is one context-variable lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

StepListener = Callable[[str, int, int], None]  # (what, done, total)

_listener: ContextVar[StepListener | None] = ContextVar("camcli_step_listener", default=None)
_stop = [False]  # a stop was asked for (SIGTERM): see request_stop


def request_stop() -> None:
    """A stop was asked for (the CLI's SIGTERM handler, which also raises KeyboardInterrupt where the signal
    lands). Python drops an exception raised inside some callbacks (an import lock's, a finaliser: "Exception
    ignored in …"), so the request is also kept, and the next :func:`check_stop` raises it again."""
    _stop[0] = True


def clear_stop() -> None:
    _stop[0] = False


def check_stop() -> None:
    """Raise KeyboardInterrupt when a stop was asked for (called between batches and by :func:`report`)."""
    if _stop[0]:
        raise KeyboardInterrupt


def report(what: str, done: int, total: int) -> None:
    """``done`` of ``total`` units of ``what`` are finished (``done == total``: that work is over)."""
    check_stop()
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


_count: ContextVar[list[int] | None] = ContextVar("camcli_step_count", default=None)  # [done, total]
_count_what: ContextVar[str] = ContextVar("camcli_step_count_what", default="")


@contextmanager
def counting(what: str, total: int) -> Iterator[None]:
    """Count the units :func:`advance` is told about in this context as ``what``, ``done`` of ``total``: for work
    whose parts are counted far below the code that knows the whole (evaluate's perturbed inputs, counted as
    they go through the model). Its end reports the work over."""
    tally_token, what_token = _count.set([0, max(1, total)]), _count_what.set(what)
    try:
        report(what, 0, max(1, total))
        yield
    finally:
        _count.reset(tally_token)
        _count_what.reset(what_token)
        report(what, max(1, total), max(1, total))


def advance(n: int = 1) -> None:
    """``n`` more units of the work being counted (:func:`counting`) are done; nothing when none is counted."""
    tally = _count.get()
    if tally is not None:
        tally[0] += n
        report(_count_what.get(), min(tally[0], tally[1] - 1), tally[1])  # its end says that it is over
