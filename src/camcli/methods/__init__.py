"""Registry of CAM methods: the names are the CLI choices."""

from __future__ import annotations

from ..errors import UsageError
from .base import CamMethod, Explanation, explain, normalize, upsample
from .gradcam import GradCAM

REGISTRY: dict[str, type[CamMethod]] = {cls.name: cls for cls in (GradCAM,)}


def get_method(name: str) -> CamMethod:
    key = name.strip().lower().replace("_", "").replace("-", "")
    for registered, cls in REGISTRY.items():
        if registered.replace("-", "") == key:
            return cls()
    raise UsageError(f"unknown method '{name}'; choose one of: {', '.join(REGISTRY)} (see: camcli methods)")


__all__ = ["REGISTRY", "CamMethod", "Explanation", "explain", "get_method", "normalize", "upsample"]
