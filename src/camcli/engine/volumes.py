"""Where a 5-D layer output keeps its grid in time (or depth) and space: channels first (B, C, d, h, w), as 3-D
convolutions give it (torchvision's r3d_18, mc3_18, r2plus1d_18, s3d; MONAI's 3-D networks), or channels last
(B, d, h, w, C), as Video Swin gives it (torchvision's ``swin3d_t`` after its patch embedding).

The layout is read from evidence, as :mod:`camcli.engine.layouts` reads 2-D ones, never guessed: under a reading
the (h, w) pair must follow the input's (H, W) (the same proportions, or one cell off: :func:`layouts.grid_fit`) and
d must lie between 1 and the input's D (time and depth are strided on their own, often more or less than space:
r3d_18 takes 8 frames to 1 and 64 pixels to 4, so d is not held to H's proportions). When both readings fit as
well (a (B, 8, 8, 8, 8) output of an 8 × 64 × 64 clip), a module whose output is channels first whatever its shape
(a 3-D convolution, batch norm or pooling, a video ResNet block) decides; otherwise the layer is reported with the
``--layout ncdhw|ndhwc`` that resolves it.

A token output (B, N, C) of a video transformer (torchvision's ``mvit_v1_b``/``mvit_v2_s``) is not read: N is
1 + t·h·w and its factors cannot be told from the shape (392 is 8·7·7 and 2·14·14).

Methods see a volume *folded*: (B, C, d, h, w) → (B, C, d·h, w) (:func:`fold`), so every sum and mean over a
map's positions, every per-position product and every principal component over positions is the 3-D one.
"""

from __future__ import annotations

import torch

from ..errors import LayerError, UsageError
from .layouts import grid_fit

NCDHW = "ncdhw"
NDHWC = "ndhwc"
VOLUME_LAYOUTS = (NCDHW, NDHWC)
Size3 = tuple[int, int, int]
# module types whose 5-D output is channels first whatever its shape (breaks a tie such as (B, 8, 8, 8, 8)):
# torch's 3-D layers and torchvision's video blocks (torchvision.models.video.resnet, .s3d)
CHANNELS_FIRST_TYPES_3D = frozenset(
    {
        "Conv3d",
        "ConvTranspose3d",
        "BatchNorm3d",
        "InstanceNorm3d",
        "MaxPool3d",
        "AvgPool3d",
        "Conv3dNormActivation",
        "BasicBlock",
        "Bottleneck",
        "BasicStem",
        "R2Plus1dStem",
        "Conv3DSimple",
        "Conv2Plus1D",
        "Conv3DNoTemporal",
        "TemporalSeparableConv",
        "SepInceptionBlock3D",
    }
)


def _fit3(grid: tuple[int, ...], input_size: Size3) -> int:
    """How well a (d, h, w) grid follows the input's (D, H, W): 0 not at all, else :func:`layouts.grid_fit` of (h, w)
    (2 the same proportions, 1 one cell off); d only has to lie in 1..D. A grid of one spatial cell that still
    spans several frames or slices ((B, C, 4, 1, 1): a map in time alone) counts as 1."""
    d, h, w = grid
    big_d, big_h, big_w = input_size
    if not 1 <= d <= big_d or h > big_h or w > big_w or d * h * w <= 1:
        return 0
    if h == w == 1:
        return 1
    return grid_fit(h, w, (big_h, big_w))


def infer_volume_layout(shape: tuple[int, ...], input_size: Size3, module_type: str = "") -> tuple[str | None, str]:
    """(layout, problem) of a 5-D output ``shape`` (batch first) for an input of ``input_size`` (D, H, W):
    ``ncdhw`` or ``ndhwc`` when the evidence decides (see the module's text), else None and why (one clause)."""
    if len(shape) != 5:
        return None, f"shape {list(shape)} is not a (B, C, D, H, W) or (B, D, H, W, C) grid"
    first = _fit3(shape[2:5], input_size)
    last = _fit3(shape[1:4], input_size)
    if first > last:
        return NCDHW, ""
    if last > first:
        return NDHWC, ""
    if first and module_type in CHANNELS_FIRST_TYPES_3D:
        return NCDHW, ""
    if first:
        return None, (
            f"shape {list(shape)} reads as channels first ({shape[1]} channels) or channels last ({shape[4]})"
        )
    d, h, w = input_size
    return None, f"no reading of shape {list(shape)} follows the input's {d}×{h}×{w}"


def check_volume_layout(text: str | None) -> str | None:
    """``--layout`` for a video or volume layer: ``ncdhw``, ``ndhwc`` or None; a :class:`UsageError` otherwise."""
    if text is None:
        return None
    kind = str(text).strip().lower()
    if kind not in VOLUME_LAYOUTS:
        raise UsageError(f"--layout {str(text)!r} for a video or volume layer: use {' or '.join(VOLUME_LAYOUTS)}")
    return kind


def volume_layout(shape: tuple[int, ...], layout: str | None, input_size: Size3, layer: str, module_type: str) -> str:
    """The layout of layer ``layer``'s output ``shape``: ``layout`` when given (checked against the shape), else
    read from the shape; a one-line :class:`LayerError` when it cannot be."""
    if len(shape) == 3:
        raise LayerError(
            f"layer '{layer}' gives tokens (shape {list(shape)}) whose (T, H, W) grid cannot be read from their count "
            "(video transformers such as mvit are not supported); pick a layer with a (B, C, T, H, W) or "
            "(B, T, H, W, C) output (see: camcli layers)"
        )
    if len(shape) != 5:
        raise LayerError(
            f"layer '{layer}' gives shape {list(shape)}, not a (B, C, D, H, W) or (B, D, H, W, C) grid of the "
            "video or volume; pick a layer with one (see: camcli layers)"
        )
    if layout is not None:
        grid = shape[2:5] if layout == NCDHW else shape[1:4]
        if not _fit3(grid, input_size):
            d, h, w = input_size
            raise LayerError(
                f"layer '{layer}''s output of shape {list(shape)} cannot be read as --layout {layout} for an input of "
                f"{d}×{h}×{w}"
            )
        return layout
    found, problem = infer_volume_layout(shape, input_size, module_type)
    if found is None and not (_fit3(shape[2:5], input_size) or _fit3(shape[1:4], input_size)):
        raise LayerError(
            f"layer '{layer}' has no grid of the video or volume: {problem}; pick an earlier layer (see: camcli layers)"
        )
    if found is None:
        raise LayerError(
            f"cannot tell where the grid is in layer '{layer}''s output: {problem}; pass --layout ncdhw|ndhwc"
        )
    return found


def volume_grid(shape: tuple[int, ...], layout: str) -> Size3:
    """(d, h, w) of a 5-D output of ``shape`` laid out as ``layout``."""
    d, h, w = shape[2:5] if layout == NCDHW else shape[1:4]
    return int(d), int(h), int(w)


def fold(t: torch.Tensor, layout: str) -> torch.Tensor:
    """A 5-D layer output (or its gradient) laid out as ``layout`` → (B, C, d·h, w): frames (slices) stacked
    along the rows, so that a method written for (B, C, h, w) grids sees every voxel once."""
    if layout == NDHWC:
        t = t.permute(0, 4, 1, 2, 3)
    b, c, d, h, w = t.shape
    return t.reshape(b, c, d * h, w)
