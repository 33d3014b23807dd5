"""``CAMCLI_PROFILE=1``: time the phases of a command (imports, model, layers, run) and report them on stderr.

Plain Python and nearly free when the switch is off: :func:`phase` is a context manager that records nothing.
The CLI prints :func:`report` at exit; it ends with a line naming which heavy libraries were imported, so a
test (or a curious user) can see that, e.g., the bundled model's path never loads torchvision.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENABLED = bool(os.environ.get("CAMCLI_PROFILE"))
HEAVY = ("torch", "torchvision", "matplotlib", "numpy", "PIL", "safetensors", "rich")
_started = time.perf_counter()
_phases: list[tuple[str, float]] = []


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as phase ``name`` (when profiling is on)."""
    if not ENABLED:
        yield
        return
    t = time.perf_counter()
    try:
        yield
    finally:
        _phases.append((name, time.perf_counter() - t))


def report() -> list[str]:
    """One line per phase (milliseconds), the total since camcli was imported, and the heavy imports."""
    lines = [f"profile: {name:<24} {seconds * 1000:8.1f} ms" for name, seconds in _phases]
    lines.append(f"profile: {'total since import':<24} {(time.perf_counter() - _started) * 1000:8.1f} ms")
    loaded = " ".join(f"{m}={'yes' if m in sys.modules else 'no'}" for m in HEAVY)
    lines.append(f"profile: imported {loaded}")
    return lines
