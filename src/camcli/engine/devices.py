"""``--device``: turning ``auto|cpu|cuda|cuda:N|mps`` into a usable ``torch.device``."""

from __future__ import annotations

import torch

from ..errors import UsageError


def resolve_device(spec: str) -> torch.device:
    """``auto|cpu|cuda|cuda:N|mps`` → a usable ``torch.device`` or a :class:`UsageError` with the fix."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device '{spec}'; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device '{spec}' asked for, but CUDA is not available here; use --device cpu")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"device '{spec}' does not exist: {torch.cuda.device_count()} CUDA device(s) here "
                f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})"
            )
    elif dev.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UsageError("device 'mps' asked for, but MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise UsageError(f"unsupported device '{spec}'; use auto, cpu, cuda, cuda:N or mps")
    return dev
