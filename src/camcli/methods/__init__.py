"""Registry of CAM methods: the names are the CLI choices (one small module per method)."""

from __future__ import annotations

from torch import nn

from ..errors import UsageError
from .ablationcam import AblationCAM
from .base import CamMethod, Explanation, normalize, upsample, upsample_normalized
from .cam import ClassicCAM
from .eigencam import EigenCAM
from .eigengradcam import EigenGradCAM
from .explain import check_layers, explain, explain_smooth
from .finercam import FinerCAM
from .fullgrad import FullGrad
from .gradcam import GradCAM
from .gradcamelementwise import GradCAMElementWise
from .gradcampp import GradCAMPlusPlus
from .gradrollout import GradRollout
from .hirescam import HiResCAM
from .ig import IntegratedGradients
from .iscam import ISCAM
from .kpcacam import KPCACAM
from .layercam import LayerCAM
from .legrad import LeGrad
from .occlusion import Occlusion
from .randomcam import RandomCAM
from .refinecam import RefineCAM
from .rise import RISE
from .rollout import Rollout
from .saliency import Saliency
from .scorecam import ScoreCAM
from .segeigencam import SegEigenCAM
from .shapleycam import ShapleyCAM
from .smoothgrad import SmoothGrad
from .sscam import SSCAM
from .volume import explain_volume, volume_methods
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
        SSCAM,
        ISCAM,
        AblationCAM,
        SegEigenCAM,
        RefineCAM,
        EigenGradCAM,
        GradCAMElementWise,
        KPCACAM,
        ShapleyCAM,
        FullGrad,
        RandomCAM,
        # target refiners
        FinerCAM,
        # transformer
        Rollout,
        GradRollout,
        LeGrad,
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


ALL = "all"  # --method all: every method that applies to the model (see usable)


def get_methods(names: list[str], objects: bool = False) -> list[CamMethod]:
    """``--method`` values (each once) → method instances; :class:`UsageError` for an unknown or repeated one.
    ``all`` alone: every registered method (``objects``: every one that explains detectors' objects); the job
    leaves out those that do not apply to its model (:func:`usable`)."""
    if any(n.strip().lower() == ALL for n in names):
        if len(names) > 1:
            raise UsageError("--method all names every method; give it alone")
        return [cls() for cls in REGISTRY.values() if cls.on_objects or not objects]
    methods = [get_method(n) for n in names]
    if len({m.name for m in methods}) != len(methods):
        raise UsageError("a method is listed twice in --method")
    return methods


def usable(methods: list[CamMethod], model: nn.Module, layers: list[str]) -> tuple[list[CamMethod], dict[str, str]]:
    """The methods that apply to ``model`` at ``layers``, and {name: why not} for the others (``--method all``)."""
    kept, left = [], {}
    for m in methods:
        why = m.refusal(model, layers)
        if why is None:
            kept.append(m)
        else:
            left[m.name] = why
    if not kept:
        raise UsageError(f"--method all: no method applies to this model ({'; '.join(sorted(set(left.values())))})")
    return kept, left


def for_model(
    names: list[str], methods: list[CamMethod], model: nn.Module, layers: list[str]
) -> tuple[list[CamMethod], dict[str, str]]:
    """A job's methods once its model and layers are known: with ``--method all`` those that apply (and why the
    others do not); the layers each needs checked (:func:`check_layers`)."""
    left: dict[str, str] = {}
    if [n.strip().lower() for n in names] == [ALL]:
        methods, left = usable(methods, model, layers)
    check_layers(methods, layers)
    return methods, left


def left_out_note(left: dict[str, str]) -> str:
    """`` · left out: rollout, legrad (needs a transformer's attention blocks)`` for the run's header."""
    if not left:
        return ""
    by_reason: dict[str, list[str]] = {}
    for name, why in left.items():
        by_reason.setdefault(why, []).append(name)
    return " · left out: " + "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items())


__all__ = [
    "ALL",
    "REGISTRY",
    "CamMethod",
    "Explanation",
    "check_layers",
    "explain",
    "explain_smooth",
    "explain_volume",
    "for_model",
    "get_method",
    "get_methods",
    "left_out_note",
    "normalize",
    "upsample",
    "upsample_normalized",
    "usable",
    "volume_methods",
]
