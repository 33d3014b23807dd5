"""COCO's shapes as pixels: polygons and run-length encodings (RLE, uncompressed and compressed), decoded here.

The results are those of pycocotools (``frPyObjects`` then ``decode``; its C code, ``maskApi.c``, is ported step
by step, integer truncations and all), so that a mask is the one COCO's own tools give; pycocotools is not needed
at run time (the tests compare the two). An RLE lists the lengths of alternating runs of 0s and 1s (0s first)
over the picture's pixels in column-major order; a polygon is rasterised by drawing its edges on a 5× finer grid
and keeping, for each pixel column, where the boundary crosses pixel centres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import InputError

_SCALE = 5.0  # rleFrPoly's upsampling


def polygon_counts(xy: Sequence[float], height: int, width: int) -> list[int]:
    """The RLE counts of one polygon (flat ``[x1, y1, x2, y2, …]``) on a ``height`` × ``width`` picture, as
    pycocotools' ``rleFrPoly`` computes them."""
    pts = np.asarray(xy, dtype=np.float64)
    x = np.trunc(_SCALE * pts[0::2] + 0.5).astype(np.int64)  # C's (int) cast: toward zero
    y = np.trunc(_SCALE * pts[1::2] + 0.5).astype(np.int64)
    xs, ys = x, y
    xe, ye = np.roll(x, -1), np.roll(y, -1)  # each edge to the next point, the last one back to the first
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    along_x = dx >= dy
    flip = (along_x & (xs > xe)) | (~along_x & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    steps = np.where(along_x, dx, dy)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero-length edge: its one point's rounded value is
        slope = np.where(along_x, (ye - ys) / dx, (xe - xs) / dy)  # never used (its neighbours share its x)
    slope = np.nan_to_num(slope, nan=0.0, posinf=0.0, neginf=0.0)
    edge = np.repeat(np.arange(len(x)), steps + 1)
    starts = np.cumsum(steps + 1) - (steps + 1)
    d = np.arange(len(edge)) - starts[edge]
    t = np.where(flip[edge], steps[edge] - d, d)
    ax, s = along_x[edge], slope[edge]
    u = np.where(ax, t + xs[edge], np.trunc(xs[edge] + s * t + 0.5).astype(np.int64))
    v = np.where(ax, np.trunc(ys[edge] + s * t + 0.5).astype(np.int64), t + ys[edge])
    # where the boundary passes from one column of the fine grid to the next: points on the picture's columns
    change = np.flatnonzero(u[1:] != u[:-1]) + 1
    uj, up, vj, vp = u[change], u[change - 1], v[change], v[change - 1]
    xd = (np.where(uj < up, uj, uj - 1).astype(np.float64) + 0.5) / _SCALE - 0.5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= width - 1)
    yd = (np.where(vj < vp, vj, vp).astype(np.float64) + 0.5) / _SCALE - 0.5
    yd = np.ceil(np.clip(yd, 0, height))
    starts_at = np.sort(np.append(xd[keep].astype(np.int64) * height + yd[keep].astype(np.int64), height * width))
    a = np.diff(starts_at, prepend=0).tolist()
    counts = [a[0]]
    j = 1
    while j < len(a):  # a zero-length run: the boundary crossed twice at one place; the runs around it are one
        if a[j] > 0:
            counts.append(a[j])
            j += 1
        else:
            j += 1
            if j < len(a):
                counts[-1] += a[j]
                j += 1
    return counts


def string_counts(text: str) -> list[int]:
    """The counts of a compressed RLE (COCO's ``counts`` string: 6 bits a character from ``0``, 5 of them data,
    the counts after the second stored as differences to the count two before), as ``rleFrString`` reads it."""
    counts: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("the counts string ends inside a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {text[p]!r} at {p} is not one of an RLE string's")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_counts(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """The bool (height, width) mask of RLE counts (column-major runs of 0s then 1s); ValueError when they do
    not cover the picture exactly."""
    runs = np.asarray(counts, dtype=np.int64)
    if runs.size and runs.min() < 0:
        raise ValueError("a run is negative")
    total = int(runs.sum())
    if total != height * width:
        raise ValueError(f"the runs cover {total} pixels, not {height}×{width} = {height * width}")
    values = (np.arange(runs.size) % 2).astype(bool)
    return np.repeat(values, runs).reshape(width, height).T


def polygons_mask(polygons: Sequence[Sequence[float]], size: tuple[int, int]) -> np.ndarray:
    """The union of polygons (each flat ``[x1, y1, …]``) on a picture of ``size`` (W, H), as COCO's ``annToMask``
    (``frPyObjects`` then ``merge``) gives it."""
    width, height = size
    mask = np.zeros((height, width), dtype=bool)
    for xy in polygons:
        mask |= decode_counts(polygon_counts(xy, height, width), height, width)
    return mask


def rle_mask(counts: Sequence[int] | str, rle_size: tuple[int, int], size: tuple[int, int], what: str) -> np.ndarray:
    """An RLE (``counts`` a list or COCO's compressed string; ``rle_size`` its (H, W)) as a bool mask on a
    picture of ``size`` (W, H); InputError naming ``what`` (the annotation) when it is not that picture's size
    or its counts are broken."""
    height, width = rle_size
    if (width, height) != tuple(size):
        raise InputError(
            f"{what} is an RLE of {width}×{height} but the picture is {size[0]}×{size[1]}: "
            "annotations of another version of the image?"
        )
    try:
        runs = string_counts(counts) if isinstance(counts, str) else list(counts)
        return decode_counts(runs, height, width)
    except ValueError as e:
        raise InputError(f"{what}: its RLE counts are broken ({e}); fix the annotation") from None


def counts_box(counts: Sequence[int] | str, rle_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The bounding box (x0, y0, x1, y1) of an RLE's pixels (pixel i spans [i, i + 1)); ValueError for broken
    counts, an empty one's is (0, 0, 0, 0) as pycocotools' ``toBbox`` gives it."""
    height, width = rle_size
    mask = decode_counts(string_counts(counts) if isinstance(counts, str) else list(counts), height, width)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def points_box(polygons: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """The bounding box of polygons' points."""
    xs = [v for xy in polygons for v in xy[0::2]]
    ys = [v for xy in polygons for v in xy[1::2]]
    return (min(xs), min(ys), max(xs), max(ys))


def finite_numbers(values: object) -> bool:
    """``values`` is a list of finite JSON numbers (not booleans)."""
    if not isinstance(values, list) or not set(map(type, values)) <= {int, float}:
        return False
    try:  # a finite sum: all are finite (the one pass a large file's polygons need)
        if math.isfinite(math.fsum(values)):
            return True
    except (OverflowError, ValueError):  # a sum past the largest float, or inf - inf
        pass
    return all(math.isfinite(v) for v in values)
