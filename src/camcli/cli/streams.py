"""Where camcli's results go: the real stdout, while ``sys.stdout`` points at stderr for everything else a command
runs (a model's ``forward``, a library, the user's module), so that ``--json`` stdout holds records only."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_results: list[Any] = []  # the real stdout while a command runs (sys.stdout then points at stderr)


def results() -> Any:
    """Where results go (``--json`` records, tables asked for on stdout): the real stdout, also while a command
    runs and ``sys.stdout`` is stderr (:func:`stdout_for_results`)."""
    return _results[-1] if _results else sys.stdout


@contextmanager
def stdout_for_results() -> Iterator[None]:
    """While a command runs, ``sys.stdout`` is stderr: what a model's ``forward``, a library or the user's module
    prints lands among the messages, never among the records on stdout; camcli's results go to :func:`results`."""
    real = sys.stdout
    _results.append(real)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = real
        _results.pop()


class ResultsFile:
    """A file for rich that is always :func:`results` (the console is made once; the stream may change: tests)."""

    def write(self, text: str) -> int:
        return int(results().write(text))

    def flush(self) -> None:
        results().flush()

    def isatty(self) -> bool:
        return bool(results().isatty())

    def fileno(self) -> int:
        return int(results().fileno())

    @property
    def encoding(self) -> str:
        return str(getattr(results(), "encoding", None) or "utf-8")
