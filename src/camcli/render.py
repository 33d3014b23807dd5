"""Colormaps (matplotlib's registry, no pyplot state), overlays and image panels."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from .errors import UsageError


@lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colormap."""
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


def colorize(cam: np.ndarray, colormap: str) -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) uint8 colours."""
    idx = np.clip(np.rint(cam * 255.0), 0, 255).astype(np.uint8)
    return colormap_lut(colormap)[idx]


def overlay(image: Image.Image, cam: np.ndarray, colormap: str = "jet", alpha: float = 0.5) -> Image.Image:
    """Blend the coloured map over the picture: ``(1 - alpha) * image + alpha * colour(map)``.

    ``cam`` must already have the image's size (H, W) and values in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha {alpha} is out of range; use a value from 0 to 1")
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if cam.shape != base.shape[:2]:
        raise ValueError(f"map of shape {cam.shape} does not match image of size {base.shape[:2]}")
    heat = colorize(cam, colormap).astype(np.float32)
    out = (1.0 - alpha) * base + alpha * heat
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")
