"""What one input of a model is: a picture (C, H, W), a clip (C, T, H, W) or a volume (C, D, H, W).

A network whose first convolution is 3-D (``nn.Conv3d``: the user's own class, a MONAI network, a pickled model)
takes volumes; its channels are that convolution's ``in_channels``. Its input size is read from the model when it
says one (an ``img_size``/``input_size``/``volume_size``/``roi_size`` of three sides, as an attribute or in
``--arch-args``: MONAI's ViT and UNETR take ``img_size``), else from ``--input-size D,H,W``; without either camcli
cannot trace its layers or count its outputs, and says so in one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..errors import UsageError
from .base import LoadedModel

SIZE_KEYS = ("input_size", "volume_size", "img_size", "image_size", "roi_size")
MAX_SIDE = 4096


def parse_input_size(value: str | Sequence[int] | None) -> tuple[int, int, int] | None:
    """``--input-size D,H,W`` (or ``DxHxW``; a sequence of three ints from Python) → (D, H, W); None stays None."""
    if value is None:
        return None
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    parts = [p.strip() for p in text.replace("x", ",").replace("×", ",").split(",")]
    fix = "give D,H,W: three sides in voxels, e.g. --input-size 96,96,96"
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise UsageError(f"--input-size {text!r}: {fix}")
    sides = tuple(int(p) for p in parts)
    if not all(1 <= s <= MAX_SIDE for s in sides):
        raise UsageError(f"--input-size {text!r}: each side from 1 to {MAX_SIDE}; {fix}")
    return sides[0], sides[1], sides[2]


def first_conv(module: nn.Module) -> nn.Module | None:
    """The first convolution of ``module`` in registration order (2-D or 3-D), None when it has none."""
    kinds = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    return next((m for m in module.modules() if isinstance(m, kinds)), None)


def is_3d(module: nn.Module) -> bool:
    """Does ``module`` take volumes: is its first convolution a 3-D one?"""
    return isinstance(first_conv(module), (nn.Conv3d, nn.ConvTranspose3d))


def declared_size(module: nn.Module, arch_args: Mapping[str, Any] | None = None) -> tuple[int, int, int] | None:
    """The (D, H, W) a 3-D network says it takes: three sides under one of :data:`SIZE_KEYS`, on the module or
    in its ``--arch-args``; None when it says none."""
    for source in (arch_args or {}, vars(module)):
        for key in SIZE_KEYS:
            value = source.get(key)
            if isinstance(value, (tuple, list)) and len(value) == 3 and all(isinstance(v, int) for v in value):
                return value[0], value[1], value[2]
    return None


def with_input_size(
    model: LoadedModel,
    input_size: str | Sequence[int] | None,
    arch_args: Mapping[str, Any] | None = None,
    detect: bool = True,
) -> LoadedModel:
    """Set what one input of ``model`` is when it is a 3-D network (``kind`` volume, its channels, its
    (D, H, W) from ``--input-size`` or the model); ``--input-size`` on a model of pictures or clips is refused.
    ``detect``: tell a 3-D network by its first convolution (the user's class, a MONAI network, a pickled model;
    not a named model, whose kind its source says)."""
    sides = parse_input_size(input_size)
    if model.kind == "image" and detect and is_3d(model.module):
        model.kind = "volume"
    if model.kind != "volume":
        if sides is not None:
            h, w = model.input_size
            if model.kind == "video":
                raise UsageError(
                    f"--input-size: {model.name} takes clips of {model.clip_length} frames of {h}×{w} (its weights'); "
                    "drop --input-size"
                )
            raise UsageError(f"--input-size D,H,W is for a 3-D network; {model.name} takes {h}×{w} pictures")
        return model
    conv = first_conv(model.module)
    model.in_channels = int(getattr(conv, "in_channels", 1))
    model.volume_size = sides or declared_size(model.module, arch_args)
    if model.volume_size is None:
        raise UsageError(
            f"{model.name} is a 3-D network and camcli cannot read its input size from it: pass --input-size D,H,W "
            "(the size volumes are resampled to)"
        )
    model.input_size = model.volume_size[1:]
    model.mean, model.std = (0.0,) * model.in_channels, (1.0,) * model.in_channels
    d, h, w = model.volume_size
    how = "--input-size" if sides else "the model's own size"
    model.notes.append(f"a 3-D network: input {model.in_channels}×{d}×{h}×{w} ({how}), no mean/std normalization")
    return model
