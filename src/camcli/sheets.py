"""Sheets: many pictures on one page, each with its caption under it — a video's contact sheet (overlaid frames
captioned "285 Egyptian cat · 1.25 s"), a volume's montage (axial, coronal and sagittal slices and a projection).

Drawn with :mod:`camcli.render`'s pieces (its fonts, caption fitting and colour scale), so a sheet reads like a
``--panel`` picture: white page, black captions, the title on top and the colormap's scale at the foot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from .render import colour_scale, fit_caption, text_font

SHEET_MAX_SIDE = 4096  # pixels: tiles shrink so that a sheet of many tiles stays within this on both sides
MIN_TILE_WIDTH = 16  # ... but not below this (a sheet of thousands of tiles may then be larger)
_PAD = 6  # pixels around and between tiles
_TOP = 13 + 14  # the title's strip, as in render.panel
_FOOT = 30  # the colour scale's strip, as in render.panel


def captioned_sheet(
    tiles: Sequence[Image.Image],
    captions: Sequence[str],
    columns: int | None = None,
    title: str = "",
    colormap: str | None = None,
    tile_width: int = 256,
) -> Image.Image:
    """The tiles in a grid on a white sheet, row by row, each with its caption on one line under it.

    Args:
        tiles: the pictures (any mode, any sizes), in reading order.
        captions: one per tile, cut with "…" where it does not fit the tile's width
            (:func:`~camcli.render.fit_caption`).
        columns: tiles per row (default: ``ceil(sqrt(n))``, about square; never more than there are tiles).
        title: a line on top of the sheet (none when empty).
        colormap: when given, its scale (low → high) at the foot, as under a ``--panel`` picture
            (:func:`~camcli.render.colour_scale`); the sheet is then at least 400 pixels wide.
        tile_width: each tile is scaled to this width keeping its aspect, but no taller than twice the width
            (a taller tile is narrowed and centred in its cell). Every tile shrinks alike when the sheet would be
            wider or taller than :data:`SHEET_MAX_SIDE` (down to :data:`MIN_TILE_WIDTH`).

    A row is as tall as its tallest tile; tiles sit at the top of their cell and each caption right under its
    tile, left-aligned with it.
    """
    if len(tiles) != len(captions):
        raise ValueError(f"{len(tiles)} tiles but {len(captions)} captions")
    if not tiles:
        raise ValueError("a sheet needs at least one tile")
    if tile_width < 1 or (columns is not None and columns < 1):
        raise ValueError(f"tile_width {tile_width} and columns {columns} must be positive")
    n = len(tiles)
    cols = min(columns or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / cols)
    aspects = [min(t.height / max(t.width, 1), 2.0) for t in tiles]  # height per pixel of width, capped at 2
    font_size = 13 if tile_width >= 128 else 11
    head = font_size + 8  # a caption's strip
    top = _TOP if title else 0
    foot = _FOOT if colormap else 0
    # the widest tile that keeps both sides within SHEET_MAX_SIDE (heights grow with the width, by each aspect)
    fit_w = (SHEET_MAX_SIDE - _PAD) // cols - _PAD
    room_h = (SHEET_MAX_SIDE - top - foot - _PAD) / rows - head - _PAD
    fit_h = int(room_h / max(aspects))
    tw = max(MIN_TILE_WIDTH, min(tile_width, fit_w, fit_h))
    sizes = [_tile_size(t, tw) for t in tiles]
    row_h = [max(h for _, h in sizes[r * cols : (r + 1) * cols]) for r in range(rows)]
    width = _PAD + cols * (tw + _PAD)
    if colormap:
        width = max(width, 400)  # room for the colour scale
    height = top + _PAD + sum(h + head + _PAD for h in row_h) + foot
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = text_font(font_size)
    y = top + _PAD
    for r in range(rows):
        for c in range(cols):
            k = r * cols + c
            if k >= n:
                break
            w, h = sizes[k]
            x = _PAD + c * (tw + _PAD)
            picture = tiles[k].convert("RGB")
            if picture.size != (w, h):
                picture = picture.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
            sheet.paste(picture, (x + (tw - w) // 2, y))
            draw.text((x, y + h + 3), fit_caption(draw, captions[k], font, tw), fill=(0, 0, 0), font=font)
        y += row_h[r] + head + _PAD
    if title:
        big = text_font(13)
        draw.text((_PAD, 6), fit_caption(draw, title, big, width - 2 * _PAD), fill=(0, 0, 0), font=big)
    if colormap:
        colour_scale(sheet, colormap, _PAD, foot)
    return sheet


def _tile_size(tile: Image.Image, width: int) -> tuple[int, int]:
    """(w, h) of ``tile`` scaled to ``width`` with its aspect, narrowed where that is taller than 2 × width."""
    w, h = max(tile.width, 1), max(tile.height, 1)
    height = max(1, round(width * h / w))
    if height <= 2 * width:
        return width, height
    return max(1, round(2 * width * w / h)), 2 * width
