"""MONAI networks (an optional extra): ``--arch monai:NAME --arch-args JSON`` builds ``monai.networks.nets.NAME``
with those keyword arguments, for a state_dict checkpoint (``--model net.pt --arch monai:DenseNet121 --arch-args
'{"spatial_dims": 3, "in_channels": 1, "out_channels": 2}'``); ``--model monai:NAME --arch-args JSON`` builds it
with its random initial weights (MONAI ships no trained weights with its classes), which the run's header says.

monai is imported here only, when a MONAI network is asked for.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from torch import nn

from ..caches import package_version
from ..errors import ModelError, UsageError
from .base import LoadedModel
from .custom import parse_arch_args, said

PREFIX = "monai:"
MISSING = "MONAI networks need monai: pip install 'camcli[monai]'"


def is_monai(spec: str | None) -> bool:
    return bool(spec) and str(spec).strip().lower().startswith(PREFIX)


def _nets() -> Any:
    try:
        from monai.networks import nets
    except ImportError:
        raise UsageError(MISSING) from None
    return nets


def build_monai(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """``monai.networks.nets.NAME(**kwargs)``; a one-line error for an unknown name or arguments it refuses."""
    nets = _nets()
    cls = getattr(nets, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        known = [n for n in dir(nets) if isinstance(getattr(nets, n), type) and issubclass(getattr(nets, n), nn.Module)]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else "; e.g. DenseNet121, ResNet, SEResNet50, UNet, ViT"
        raise UsageError(f"monai:{name}: monai.networks.nets has no network '{name}'{hint}")
    try:
        return cls(**kwargs)
    except Exception as e:
        raise ModelError(
            f"monai:{name} with --arch-args {json.dumps(kwargs)} raised {said(e)}; pass its arguments as JSON, e.g. "
            '\'{"spatial_dims": 3, "in_channels": 1, "out_channels": 2}\''
        ) from None


def build_spec(spec: str, arch_args: str | None) -> nn.Module:
    """The network ``--arch monai:NAME --arch-args JSON`` names."""
    return build_monai(spec.strip()[len(PREFIX) :].strip(), parse_arch_args(arch_args))


def load_monai(spec: str, weights: str | None, arch_args: str | None) -> LoadedModel:
    """``--model monai:NAME``: the network with its random initial weights (``--weights`` none or not given)."""
    name = spec.strip()[len(PREFIX) :].strip()
    if weights is not None and weights.strip().lower() != "none":
        raise UsageError(
            f"--weights {weights}: MONAI networks come without trained weights; pass your checkpoint as --model "
            f"net.pt --arch monai:{name}, or --weights none for random weights"
        )
    kwargs = parse_arch_args(arch_args)
    module = build_monai(name, kwargs).eval()

    def builder() -> nn.Module:
        return build_monai(name, kwargs)

    key = f"monai:{name}-{json.dumps(kwargs, sort_keys=True)}-monai{package_version('monai')}"
    return LoadedModel(f"monai:{name}", module, builder=builder, layer_key=key, weights="random")
