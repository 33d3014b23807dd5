"""Where a layer's output keeps its spatial grid: channels first (NCHW), channels last (NHWC), or tokens.

A layer's layout is told from its output's shape and the input's size, with what the model says: its number of
prefix tokens (class, distillation and register tokens: timm's ``num_prefix_tokens``, a Hugging Face config, a
torchvision ViT's class token) and, to break a tie, the module's type. A grid's side follows the input's: a
(B, 768, 7, 7) output of a 224 × 224 input is NCHW, (B, 7, 7, 768) is NHWC (Swin, ConvNeXt's MLP); (B, 197, 384)
is 1 class token and a 14 × 14 grid. When the shape fits both readings (a (B, 7, 7, 7) output) or none, the
layout is not guessed: the layer is reported with the ``--layout`` that resolves it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import LayerError
from ..options import Layout

NCHW = Layout("nchw")
NHWC = Layout("nhwc")
MAX_PREFIX = 8  # prefix tokens tried when the model does not say (class + distillation + up to 6 registers)
# module types whose 4-D output is channels first whatever its shape (breaks a tie such as (B, 7, 7, 7))
CHANNELS_FIRST_TYPES = frozenset(
    {
        "Conv2d",
        "ConvTranspose2d",
        "BatchNorm2d",
        "MaxPool2d",
        "AvgPool2d",
        "Conv2dNormActivation",
        "BasicBlock",
        "Bottleneck",
        "InvertedResidual",
        "MBConv",
        "FusedMBConv",
        "GroupNorm",
        "BatchNormAct2d",
        "ConvNormAct",
    }
)
# outputs of a fixed size that are still the picture's grid, pooled: they do not grow with a taller input
FIXED_GRID_TYPES = frozenset({"AdaptiveAvgPool2d", "AdaptiveMaxPool2d"})
Size = tuple[int, int]
# the input size an output is read against when none is given: large and square (a grid's proportions count)
SQUARE_LIKE: Size = (4096, 4096)


def grid_fit(h: int, w: int, input_size: Size) -> int:
    """How well an (h, w) grid follows the input's (H, W): 2 the same proportions, 1 one cell off (strides
    that round), 0 not a grid of this input."""
    big_h, big_w = input_size
    if h < 1 or w < 1 or h * w <= 1 or h > big_h or w > big_w:
        return 0
    off = abs(h * big_w - w * big_h)
    return 2 if off == 0 else 1 if off <= max(big_h, big_w) else 0


def token_grid(n: int, input_size: Size, exact: bool = False) -> Size | None:
    """The (h, w) grid of ``n`` tokens laid out like the input, or None."""
    if n < 2:
        return None
    big_h, big_w = input_size
    guess = max(1, round(math.sqrt(n * big_h / big_w)))
    best: tuple[int, Size] | None = None
    for h in (guess, guess - 1, guess + 1):
        if h >= 1 and n % h == 0:
            fit = grid_fit(h, n // h, input_size)
            if fit and (best is None or fit > best[0]):
                best = (fit, (h, n // h))
    if best is None or (exact and best[0] < 2):
        return None
    return best[1]


def _grown(shape: tuple[int, ...], taller: tuple[int, ...]) -> list[str]:
    """The layouts under which ``taller`` (the output for a taller input) grew the way a grid does: more rows,
    the same columns and channels."""
    if len(taller) != len(shape):
        return []
    same = [a == b for a, b in zip(shape, taller, strict=True)]
    if len(shape) == 4:
        kinds = []
        if taller[2] > shape[2] and same[1] and same[3]:
            kinds.append("nchw")
        if taller[1] > shape[1] and same[2] and same[3]:
            kinds.append("nhwc")
        return kinds
    if len(shape) == 3 and taller[1] > shape[1] and same[2]:
        return ["tokens"]
    return []


def infer_layout(
    shape: tuple[int, ...] | None,
    input_size: Size,
    prefix: int | None = None,
    module_type: str = "",
    taller: tuple[int, ...] | None = None,
) -> tuple[Layout | None, str]:
    """(layout, problem) of an output ``shape`` (batch first) for an input of ``input_size``.

    ``prefix``: the prefix tokens the model declares (None: read from the shape). ``taller``: the output's shape
    for an input 64 rows taller, when the model took one: a grid must grow with it (which dimension grew says
    NCHW or NHWC), and an output that does not grow is no grid of the picture. The layout is None when the
    output has no grid; ``problem`` then says why the layout cannot be told when the shape looks spatial
    (empty when it plainly is not: a vector, a 1 × 1 map, a table of its own).
    """
    if shape is None:
        return None, ""
    if taller is not None and len(shape) in (3, 4) and module_type not in FIXED_GRID_TYPES:
        kinds = _grown(shape, taller)
        if not kinds:
            return None, ""
        if kinds == ["nchw"] and grid_fit(shape[2], shape[3], input_size):
            return NCHW, ""
        if kinds == ["nhwc"] and grid_fit(shape[1], shape[2], input_size):
            return NHWC, ""
    if len(shape) == 4:
        first, last = grid_fit(shape[2], shape[3], input_size), grid_fit(shape[1], shape[2], input_size)
        if first > last:
            return NCHW, ""
        if last > first:
            return NHWC, ""
        if first and module_type in CHANNELS_FIRST_TYPES:
            return NCHW, ""
        if first:
            return None, (
                f"shape {list(shape)} reads as channels first ({shape[1]} channels) or channels last ({shape[3]})"
            )
        if shape[2] * shape[3] > 1:
            return None, f"no side of shape {list(shape)} follows the input's {input_size[0]}×{input_size[1]}"
        return None, ""
    if len(shape) == 3:
        tokens = shape[1]
        if prefix is not None:
            if token_grid(tokens - prefix, input_size):
                return Layout("tokens", prefix), ""
            if prefix and token_grid(tokens, input_size, exact=True):  # patch tokens alone (before the class token)
                return Layout("tokens", 0), ""
            return None, f"{tokens} tokens less the model's {prefix} prefix token(s) make no grid of the input"
        for exact in (True, False):
            for p in range(min(MAX_PREFIX, tokens - 2) + 1):
                if token_grid(tokens - p, input_size, exact=exact):
                    return Layout("tokens", p), ""
        return None, ""
    return None, ""


def grid_shape(shape: tuple[int, ...], layout: Layout, input_size: Size) -> Size:
    """(h, w) of an output of ``shape`` read with ``layout``; a :class:`LayerError` when it does not fit."""
    if layout.kind == "nchw" and len(shape) == 4 and grid_fit(shape[2], shape[3], input_size):
        return shape[2], shape[3]
    if layout.kind == "nhwc" and len(shape) == 4 and grid_fit(shape[1], shape[2], input_size):
        return shape[1], shape[2]
    if layout.kind == "tokens" and len(shape) == 3:
        prefix = layout.prefix
        if prefix is None:
            found, _ = infer_layout(shape, input_size)
            prefix = found.prefix if found is not None else 0
        # a square input has square grids: a grid one row off is a wrong prefix count, not a grid
        grid = token_grid(shape[1] - (prefix or 0), input_size, exact=input_size[0] == input_size[1])
        if grid is not None:
            return grid
    raise LayerError(f"an output of shape {list(shape)} cannot be read as --layout {layout}")


def resolved(layout: Layout, shape: tuple[int, ...], input_size: Size) -> Layout:
    """``layout`` with its prefix count filled in from the shape (``tokens`` → ``tokens:1``)."""
    if layout.kind != "tokens" or layout.prefix is not None:
        return layout
    found, _ = infer_layout(shape, input_size)
    return found if found is not None and found.kind == "tokens" else Layout("tokens", 0)


def to_grid(
    t: torch.Tensor, layout: Layout | None = None, input_size: Size | None = None, module_type: str = ""
) -> torch.Tensor:
    """A layer output → (N, C, h, w). ``layout`` None: inferred from the shape (``input_size`` None: a square
    input; ``module_type`` breaks a tie, see :func:`infer_layout`), a :class:`LayerError` when it cannot be
    told."""
    shape = tuple(t.shape)
    size = input_size or SQUARE_LIKE
    if layout is None:
        layout, problem = infer_layout(shape, size, module_type=module_type)
        if layout is None:
            raise LayerError(
                f"cannot tell where the grid is in an output of shape {list(shape)}"
                f"{': ' + problem if problem else ''}; pass --layout nchw|nhwc|tokens[:N]"
            )
    h, w = grid_shape(shape, layout, size)
    if layout.kind == "nchw":
        return t
    if layout.kind == "nhwc":
        return t.permute(0, 3, 1, 2)
    prefix = shape[1] - h * w
    return t[:, prefix:, :].transpose(1, 2).reshape(shape[0], shape[2], h, w)


def declared_prefix_tokens(module: nn.Module) -> int | None:
    """The prefix tokens (class, distillation, registers) a model declares: timm's ``num_prefix_tokens``, a
    Hugging Face config's model type, torchvision ViT's class token; None when it declares none."""
    declared = getattr(module, "num_prefix_tokens", None)
    if isinstance(declared, int):
        return declared
    inner = getattr(module, "timm_model", None)  # a timm model wrapped by transformers
    if isinstance(getattr(inner, "num_prefix_tokens", None), int):
        return int(inner.num_prefix_tokens)  # type: ignore[union-attr]
    if type(module).__name__ == "VisionTransformer" and hasattr(module, "class_token"):
        return 1  # torchvision
    config = getattr(module, "config", None)
    kind = getattr(config, "model_type", None)
    if kind in ("vit", "beit", "data2vec-vision", "vit_msn", "dinov2", "dinov2_with_registers", "deit"):
        extra = int(getattr(config, "num_register_tokens", 0) or 0)
        return (2 if kind == "deit" else 1) + extra
    return None
