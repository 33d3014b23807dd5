"""Registry of CAM methods: the names are the CLI choices (one small module per method)."""

from __future__ import annotations

from ..errors import UsageError
from .base import CamMethod, Explanation, normalize, upsample, upsample_normalized
from .cam import ClassicCAM
from .eigencam import EigenCAM
from .explain import explain, explain_smooth
from .gradcam import GradCAM
from .gradcampp import GradCAMPlusPlus
from .hirescam import HiResCAM
from .ig import IntegratedGradients
from .layercam import LayerCAM
from .occlusion import Occlusion
from .rise import RISE
from .saliency import Saliency
from .scorecam import ScoreCAM
from .smoothgrad import SmoothGrad
from .xgradcam import XGradCAM

REGISTRY: dict[str, type[CamMethod]] = {
    cls.name: cls
    for cls in (
        # CAMs
        GradCAM,
        GradCAMPlusPlus,
        XGradCAM,
        HiResCAM,
        LayerCAM,
        ScoreCAM,
        EigenCAM,
        ClassicCAM,
        # pixel attribution
        Saliency,
        IntegratedGradients,
        SmoothGrad,
        Occlusion,
        RISE,
    )
}
_ALIASES = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++", "classiccam": "cam"}


def get_method(name: str) -> CamMethod:
    """A method instance by name (case, '-' and '_' ignored; ``gradcampp`` = ``gradcam++``)."""
    key = name.strip().lower().replace("_", "").replace("-", "")
    key = _ALIASES.get(key, key)
    for registered, cls in REGISTRY.items():
        if registered == key:
            return cls()
    raise UsageError(f"unknown method '{name}'; choose one of: {', '.join(REGISTRY)} (see: camcli methods)")


def get_methods(names: list[str]) -> list[CamMethod]:
    """``--method`` values (each once) → method instances; :class:`UsageError` for an unknown or repeated one."""
    methods = [get_method(n) for n in names]
    if len({m.name for m in methods}) != len(methods):
        raise UsageError("a method is listed twice in --method")
    return methods


__all__ = [
    "REGISTRY",
    "CamMethod",
    "Explanation",
    "explain",
    "explain_smooth",
    "get_method",
    "get_methods",
    "normalize",
    "upsample",
    "upsample_normalized",
]
