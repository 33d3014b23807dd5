"""Pictures from maps: colormaps (matplotlib's registry, no pyplot state), overlays, gradient images, feature grids."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from .checks import one_line
from .errors import UsageError
from .options import BLENDS

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


def _levels(cam: np.ndarray) -> np.ndarray:
    """(H, W) map in [0, 1] → uint8 levels 0…255 (rounded), with one full-size float temporary."""
    scaled = np.asarray(cam, dtype=np.float32) * 255.0
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _colour_of_levels(idx: np.ndarray, colormap: str) -> Image.Image:
    pal = Image.fromarray(idx, "P")
    pal.putpalette(colormap_lut(colormap).tobytes())
    return pal.convert("RGB")


def colorize_image(cam: np.ndarray, colormap: str) -> Image.Image:
    """(H, W) map in [0, 1] → RGB picture of the colormap (a palette lookup in Pillow's C code)."""
    return _colour_of_levels(_levels(cam), colormap)


def colorize(cam: np.ndarray, colormap: str) -> np.ndarray:
    """(H, W) map in [0, 1] → (H, W, 3) uint8 colours."""
    return np.asarray(colorize_image(cam, colormap))


def overlay(
    image: Image.Image, cam: np.ndarray, colormap: str = "jet", alpha: float = 0.5, blend: str = "weighted"
) -> Image.Image:
    """Blend the coloured map over the picture.

    ``uniform``: every pixel ``(1 - alpha) * image + alpha * colour(map)`` (Pillow's blend, C code).
    ``weighted``: each pixel's opacity is ``alpha * map``, so where the map is 0 the photo is left as it was and
    only the regions the map points at are tinted.

    ``cam`` must already have the image's size (H, W) and values in [0, 1]; ``alpha`` is in [0, 1] (the range is
    checked with the other options, :meth:`camcli.options.CamOptions.check`).
    """
    base = image.convert("RGB")
    if cam.shape != (base.height, base.width):
        raise ValueError(f"map of shape {cam.shape} does not match image of size {(base.height, base.width)}")
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}; use one of {', '.join(BLENDS)}")
    idx = _levels(cam)  # the map as 8-bit levels, once: the colours and the mask are both looked up from them
    colour = _colour_of_levels(idx, colormap)
    if blend == "uniform":
        return Image.blend(base, colour, alpha)
    # opacity alpha × map as an 8-bit mask, by a table on the levels (Pillow's point, C code); the composite is
    # Pillow's too: no full-size float work beyond the levels
    mask = Image.fromarray(idx, "L").point([round(level * alpha) for level in range(256)])
    return Image.composite(colour, base, mask)


# ------------------------------------------------------------------------------ the same pictures, as tensor work
# With --device cuda the overlay is drawn on the GPU (the CPU cores are what limits a GPU run): the functions below
# are the tensor form of :func:`overlay`, with Pillow's rounding, so that they give the same pixels (tests compare
# the two on the CPU, and on a GPU when one is present).


def lut_tensor(colormap: str, device: Any) -> Any:
    """The colormap's (256, 3) uint8 table as a tensor on ``device`` (cached per colormap and device)."""
    return _lut_tensor(colormap, str(device))


@lru_cache(maxsize=64)
def _lut_tensor(colormap: str, device: str) -> Any:
    import torch

    return torch.from_numpy(colormap_lut(colormap).copy()).to(device)


def overlay_tensor(base: Any, cam: Any, colormap: str = "jet", alpha: float = 0.5, blend: str = "weighted") -> Any:
    """:func:`overlay` as tensor operations on ``base``'s device: ``base`` (H, W, 3) uint8, ``cam`` (H, W) in [0, 1]
    on the same device → (H, W, 3) uint8.

    The arithmetic is Pillow's: levels ``rint(255 * map)``; ``weighted`` takes the mask ``round(alpha * level)``
    and composites as Pillow's paste does (``(a * (255 - m) + b * m + 128)``, divided by 255 with its shifts);
    ``uniform`` is Pillow's blend, ``trunc(base + alpha * (colour - base))`` in float32.
    """
    import torch

    if cam.shape != base.shape[:2]:
        raise ValueError(f"map of shape {tuple(cam.shape)} does not match image of size {tuple(base.shape[:2])}")
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}; use one of {', '.join(BLENDS)}")
    idx = (cam.to(torch.float32) * 255.0).clamp_(0.0, 255.0).round_().to(torch.uint8)
    colour = lut_tensor(colormap, base.device)[idx.long()]  # (H, W, 3)
    if blend == "uniform":
        b = base.to(torch.float32)
        return b.add_(colour.to(torch.float32).sub_(b).mul_(alpha)).to(torch.uint8)
    table = torch.tensor([round(level * alpha) for level in range(256)], dtype=torch.int32, device=base.device)
    m = table[idx.long()].unsqueeze(-1)  # (H, W, 1)
    t = base.to(torch.int32) * (255 - m) + colour.to(torch.int32) * m + 128
    return ((t >> 8) + t).bitwise_right_shift_(8).to(torch.uint8)


def annotate(picture: Image.Image, caption: str, colormap: str) -> Image.Image:
    """The picture with a caption strip underneath: ``caption`` on the left, the colormap's scale (low → high)
    on the right. The picture itself is not covered; the strip is about 1/20 of the width high (at least 21
    pixels)."""
    w, h = picture.size
    size = max(11, min(40, round(w / 40)))
    strip = round(size * 1.9)
    pad = max(3, size // 3)
    canvas = Image.new("RGB", (w, h + strip), (24, 24, 24))
    canvas.paste(picture.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    small = _font(max(9, round(size * 0.8)))
    # the colour scale: a ramp of the colormap, "low" and "high" at its ends
    bar_w = min(w // 4, size * 8)
    if bar_w >= 16:
        low_w = draw.textlength("low", font=small)
        high_w = draw.textlength("high", font=small)
        x1 = w - pad - int(high_w) - pad
        x0 = x1 - bar_w
        bar_h = max(4, size // 2)
        ramp = colorize(np.tile(np.linspace(0.0, 1.0, bar_w, dtype=np.float32), (bar_h, 1)), colormap)
        canvas.paste(Image.fromarray(ramp), (x0, h + (strip - bar_h) // 2))
        y = h + (strip - round(size * 0.8)) // 2
        draw.text((x0 - pad - low_w, y), "low", fill=(220, 220, 220), font=small)
        draw.text((x1 + pad, y), "high", fill=(220, 220, 220), font=small)
        room = x0 - 3 * pad - low_w
    else:
        room = w - 2 * pad
    text = fit_caption(draw, caption, font, room)  # cut the end that matters least, visibly
    draw.text((pad, h + (strip - size) // 2), text, fill=(255, 255, 255), font=font)
    return canvas


def fit_text(draw: Any, text: str, font: Any, room: float) -> str:
    """``text`` on one line (:func:`~camcli.checks.one_line`) as it fits in ``room`` pixels: whole, or its
    longest beginning that fits with "…" after it ("…" alone when nothing does).

    The work is bounded whatever the text's length: no character is narrower than 1 pixel but a few (combining
    marks, zero-width spaces), so the text is first cut to ``room`` characters, and the cut is then found by
    bisection (about log2(room) measurements, not one per character dropped).
    """
    text = one_line(text)
    limit = max(1, int(room))
    if not text or (len(text) <= limit and draw.textlength(text, font=font) <= room):
        return text
    lo, hi = 0, min(len(text), limit)  # text[:lo] + "…" fits (lo = 0: "…" alone is what is left); text[:hi + 1] not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid] + "…", font=font) <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def fit_caption(draw: Any, text: str, font: Any, room: float) -> str:
    """:func:`fit_text` with gaps that read as gaps: the default font's space is a fifth of its size (2 pixels at
    11), so "281 tabby" and "class_1 0.47" read "281tabby" and "class_10.47"; where a font's space is under a
    quarter of its size, each space is doubled."""
    font = font or draw.getfont()
    size = getattr(font, "size", 0)
    if size and draw.textlength(" ", font=font) < size / 4:
        text = text.replace(" ", "  ")
    return fit_text(draw, text, font, room)


PANEL_COLUMNS = 7  # maps per line of a --panel picture (more go on the next line)


def panel(
    picture: Image.Image,
    rows: list[list[tuple[str, Image.Image]]],
    colormap: str,
    *,
    tile: int = 320,
    title: str = "",
) -> Image.Image:
    """One picture that compares maps: a row per class, the input first and then a tile per map (method, layer),
    every tile the same size (``tile`` pixels wide, the input's aspect) with its title above it; ``title`` on
    top and the colormap's scale (low → high) at the bottom. More than :data:`PANEL_COLUMNS` maps go on over
    several lines, under the input."""
    w = min(tile, picture.width) if picture.width >= 16 else tile
    h = max(1, round(w * picture.height / picture.width))
    size, pad = 13, 6
    head = size + 8  # a tile's title strip
    step = PANEL_COLUMNS  # (first line of its class?, its maps)
    lines = [(i == 0, r[i : i + step]) for r in rows for i in range(0, max(len(r), 1), step)]
    cols = 1 + max((len(r) for _, r in lines), default=0)
    top = size + 14 if title else 0
    foot = 30
    width = max(pad + cols * (w + pad), 400)  # at least wide enough for the colour scale
    canvas = Image.new("RGB", (width, top + len(lines) * (head + h + pad) + pad + foot), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(size)

    def put(img: Image.Image, text: str, col: int, row: int) -> None:
        x = pad + col * (w + pad)
        y = top + pad + row * (head + h + pad)
        canvas.paste(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), (x, y + head))
        draw.text((x, y + 2), fit_caption(draw, text, font, w), fill=(0, 0, 0), font=font)

    for r, (first, maps) in enumerate(lines):
        if first:
            put(picture, f"input · {picture.width}x{picture.height}", 0, r)  # (the default font has no ×)
        for c, (text, img) in enumerate(maps, start=1):
            put(img, text, c, r)
    if title:
        draw.text((pad, 6), fit_caption(draw, title, font, canvas.width - 2 * pad), fill=(0, 0, 0), font=font)
    colour_scale(canvas, colormap, pad, foot)
    return canvas


def colour_scale(canvas: Image.Image, colormap: str, pad: int, foot: int) -> None:
    """The colormap's scale (low → high) in the bottom ``foot`` pixels of ``canvas`` (400 or more wide), at most 256
    wide, right-aligned, shortened to leave room for "map: NAME" at the left: the foot of --panel and of sheets."""
    draw, small = ImageDraw.Draw(canvas), _font(11)
    bar_w, bar_h = min(canvas.width - 2 * pad - 82 - int(draw.textlength(f"map: {colormap}", font=small)), 256), 10
    y = canvas.height - foot + (foot - bar_h) // 2
    x = canvas.width - pad - bar_w - 40
    ramp = colorize(np.tile(np.linspace(0.0, 1.0, bar_w, dtype=np.float32), (bar_h, 1)), colormap)
    canvas.paste(Image.fromarray(ramp), (x, y))
    draw.text((x - 8 - draw.textlength("low", font=small), y - 2), "low", fill=(60, 60, 60), font=small)
    draw.text((x + bar_w + 8, y - 2), "high", fill=(60, 60, 60), font=small)
    draw.text((pad, y - 2), f"map: {colormap}", fill=(60, 60, 60), font=small)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


text_font = _font  # its public name, for the pictures drawn outside this module (camcli.sheets)


def feature_grid(
    picture: Image.Image,
    maps: np.ndarray,
    labels: list[str],
    *,
    colormap: str = "viridis",
    normalize: Literal["tile", "layer"] = "tile",
    tile: int = 128,
    columns: int | None = None,
    title: str | None = None,
) -> Image.Image:
    """A grid: the input picture first, then one coloured tile per channel map with its label underneath;
    ``title`` (layer, shape, how the channels were chosen) in a strip above.

    Args:
        picture: the input image (drawn as the first tile, labelled "input").
        maps: (N, h, w) channel maps; upsampled (nearest, so the layer's cells stay visible) to the tile size.
        labels: one caption per map.
        normalize: ``tile`` (each map min-max on its own) or ``layer`` (one min-max over all maps shown).
        columns: tiles per row (default: about square).
        title: a line above the grid.
    """
    import math

    import torch

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
    for img, text in [(_fit(picture, tw, th), "input")] + [
        (Image.fromarray(colorize(up[i], colormap)), labels[i]) for i in range(len(labels))
    ]:
        canvas = Image.new("RGB", (tw, th + label_h), (255, 255, 255))
        canvas.paste(img, (0, 0))
        ImageDraw.Draw(canvas).text((3, th + 2), text, fill=(0, 0, 0), font=font)
        tiles.append(canvas)
    grid = tile_grid(tiles, columns or max(1, math.ceil(math.sqrt(len(tiles)))))
    if not title:
        return grid
    size = 13
    head = size + 10
    titled = Image.new("RGB", (grid.width, grid.height + head), (255, 255, 255))
    titled.paste(grid, (0, head))
    draw = ImageDraw.Draw(titled)
    big = _font(size)
    draw.text((3, 5), fit_caption(draw, title, big, grid.width - 6), fill=(0, 0, 0), font=big)
    return titled


def _fit(picture: Image.Image, width: int, height: int) -> Image.Image:
    """The picture scaled to fit ``width``×``height`` with its own aspect ratio, centred on light grey (the
    input tile of a feature grid: a 451×300 photo is not squashed into a square)."""
    rgb = picture.convert("RGB")
    scale = min(width / rgb.width, height / rgb.height)
    w, h = max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))
    canvas = Image.new("RGB", (width, height), (235, 235, 235))
    canvas.paste(rgb.resize((w, h), Image.Resampling.BILINEAR), ((width - w) // 2, (height - h) // 2))
    return canvas


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


def draw_boxes(picture: Image.Image, boxes: Sequence[tuple[tuple[float, ...], str, bool]]) -> Image.Image:
    """Boxes (x1, y1, x2, y2) on ``picture``, each with its caption: the highlighted ones thick, with the caption
    on a dark band, the others thin and uncaptioned."""
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 250))
    for box, caption, highlight in sorted(boxes, key=lambda b: b[2]):  # the highlighted last, on top
        colour = (255, 255, 255) if highlight else (200, 200, 200)
        draw.rectangle(box, outline=colour, width=width if highlight else 1)
        if highlight and caption:
            left, top = box[0], max(0.0, box[1] - 12)
            caption = fit_caption(draw, caption, None, max(1.0, picture.width - left - 4))
            text_box = draw.textbbox((left + 2, top), caption)
            draw.rectangle((left, top, text_box[2] + 2, text_box[3] + 1), fill=(0, 0, 0))
            draw.text((left + 2, top), caption, fill=(255, 255, 255))
    return picture


def draw_outline(picture: Image.Image, mask: np.ndarray) -> Image.Image:
    """The outline of a boolean (H, W) mask, in white, on ``picture`` (the same size)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    edge = mask & ~inner
    pixels = np.array(picture)
    pixels[edge] = 255
    return Image.fromarray(pixels)
