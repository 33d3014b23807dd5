"""Pictures from maps: colormaps (matplotlib's registry, no pyplot state), overlays, gradient images, feature grids."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import numpy as np
from PIL import Image

from .errors import UsageError

SHIPPED_LUTS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma")


@lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colormap.

    The common ones (:data:`SHIPPED_LUTS`) are read from tables shipped with camcli (``luts/NAME.rgb``: matplotlib's
    colours at 256 evenly spaced points, rounded; a test checks them against matplotlib), so the default path
    needs no matplotlib import; any other name is looked up in matplotlib's registry.
    """
    if name in SHIPPED_LUTS:
        data = (resources.files("camcli") / "luts" / f"{name}.rgb").read_bytes()
        return np.frombuffer(data, dtype=np.uint8).reshape(256, 3)
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(matplotlib.colormaps), n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UsageError(f"unknown colormap '{name}'{hint} (any matplotlib colormap name works)") from None
    rgba = cmap(np.linspace(0.0, 1.0, 256))
    return np.rint(rgba[:, :3] * 255).astype(np.uint8)


def check_colormap(name: str) -> None:
    colormap_lut(name)


def colorize_image(cam: np.ndarray, colormap: str) -> Image.Image:
    """(H, W) map in [0, 1] → RGB picture of the colormap (a palette lookup in Pillow's C code)."""
    scaled = np.asarray(cam, dtype=np.float32) * 255.0
    np.clip(scaled, 0.0, 255.0, out=scaled)
    idx = np.rint(scaled, out=scaled).astype(np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette(colormap_lut(colormap).tobytes())
    return pal.convert("RGB")


def colorize(cam: np.ndarray, colormap: str) -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) uint8 colours."""
    return np.asarray(colorize_image(cam, colormap))


def overlay(image: Image.Image, cam: np.ndarray, colormap: str = "jet", alpha: float = 0.5) -> Image.Image:
    """Blend the coloured map over the picture: ``(1 - alpha) * image + alpha * colour(map)``.

    ``cam`` must already have the image's size (H, W) and values in [0, 1]; ``alpha`` is in [0, 1] (the range is
    checked with the other options, :meth:`camcli.options.CamOptions.check`). The blend is Pillow's (C code).
    """
    base = image.convert("RGB")
    if cam.shape != (base.height, base.width):
        raise ValueError(f"map of shape {cam.shape} does not match image of size {(base.height, base.width)}")
    return Image.blend(base, colorize_image(cam, colormap), alpha)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def feature_grid(
    picture: Image.Image,
    maps: np.ndarray,
    labels: list[str],
    *,
    colormap: str = "viridis",
    normalize: Literal["tile", "layer"] = "tile",
    tile: int = 128,
    columns: int | None = None,
) -> Image.Image:
    """A grid: the input picture first, then one coloured tile per channel map with its label underneath.

    Args:
        picture: the input image (drawn as the first tile, labelled "input").
        maps: (N, h, w) channel maps; upsampled (nearest, so the layer's cells stay visible) to the tile size.
        labels: one caption per map.
        normalize: ``tile`` (each map min-max on its own) or ``layer`` (one min-max over all maps shown).
        columns: tiles per row (default: about square).
    """
    import math

    import torch
    from PIL import ImageDraw

    m = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    if normalize == "layer":
        lo, hi = m.min(), m.max()
        m = (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)
    else:
        flat = m.flatten(1)
        lo = flat.min(1).values[:, None, None]
        hi = flat.max(1).values[:, None, None]
        span = hi - lo
        m = torch.where(span > 0, (m - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(m))
    h, w = maps.shape[-2:]
    th = max(1, round(tile * h / w)) if w >= h else tile
    tw = tile if w >= h else max(1, round(tile * w / h))
    up = torch.nn.functional.interpolate(m[:, None], size=(th, tw), mode="nearest")[:, 0].numpy()
    label_h = 16
    font = _font(11)
    tiles = []
    for img, text in [(np.asarray(picture.convert("RGB").resize((tw, th), Image.Resampling.BILINEAR)), "input")] + [
        (colorize(up[i], colormap), labels[i]) for i in range(len(labels))
    ]:
        canvas = Image.new("RGB", (tw, th + label_h), (255, 255, 255))
        canvas.paste(Image.fromarray(img), (0, 0))
        ImageDraw.Draw(canvas).text((3, th + 2), text, fill=(0, 0, 0), font=font)
        tiles.append(canvas)
    return tile_grid(tiles, columns or max(1, math.ceil(math.sqrt(len(tiles)))))


def tile_grid(tiles: list[Image.Image], columns: int, padding: int = 3) -> Image.Image:
    """Equal-sized tiles in rows of ``columns`` on white, ``padding`` pixels around and between them (the layout
    of ``torchvision.utils.make_grid``, done in Pillow so this path needs no torchvision)."""
    w, h = tiles[0].size
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    grid = Image.new("RGB", (cols * (w + padding) + padding, rows * (h + padding) + padding), (255, 255, 255))
    for k, t in enumerate(tiles):
        grid.paste(t, (padding + (k % cols) * (w + padding), padding + (k // cols) * (h + padding)))
    return grid


def gradient_picture(rgb01: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """(h, w, 3) values in [0, 1] (an input gradient made displayable) → an RGB picture of ``size`` (H, W)."""
    arr = (np.asarray(rgb01) * 255).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
