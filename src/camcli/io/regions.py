"""Ground-truth regions of one image (a box, a polygon, an RLE, a mask image) and what they cover: pixels at the
picture's size, or cells of a model's grid.

Coordinates are continuous: pixel i spans [i, i + 1), so a box (0, 0, 1, 1) is the top left pixel. A box's mask
is the pixels whose centres lie in it (x0 ≤ i + ½ < x1), and never nothing: a box that holds no centre in a
direction (thinner than a pixel, or between centres) has the pixels of the column or row holding its centre.
A shape is rasterised as COCO's tools do it (:mod:`camcli.io.shapes`), decoded only when asked for; one that
covers no pixel centre is its box's mask.

On a grid (the model's input is the whole picture resized, so h × w cells span the whole picture), a cell is in
when at least half its area is covered; the cells covered most are always in (a one-pixel object is never
lost; several when they tie, as a small box across a cell border does). A box's coverage is computed
exactly (fractions of the rational cell bounds); a shape's from its mask by area, in integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..checks import one_line
from ..errors import InputError
from .shapes import polygons_mask, rle_mask

Box = tuple[float, float, float, float]
KINDS = ("box", "polygon", "rle", "mask")


@dataclass(frozen=True)
class Region:
    """One annotated object: its class as the file names it (None: a mask without class, about whatever class is
    explained), its bounding box (x0, y0, x1, y1), and its shape (``kind``)."""

    label: str | None
    box: Box
    kind: str  # "box" | "polygon" | "rle" | "mask"
    crowd: bool = False  # COCO's iscrowd: one region for a crowd of objects (kept as an object)
    # the shape: polygons (tuple of flat point tuples), (counts, (H, W)) of an RLE, or a mask's bool (H, W) array
    _shape: Any = field(default=None, repr=False, compare=False, hash=False)
    _what: str = field(default="", repr=False, compare=False)  # the annotation, for messages ("annotation 7 …")

    def mask(self, size: tuple[int, int]) -> np.ndarray:
        """The region as a bool (H, W) mask on the picture of ``size`` (W, H); a box holds at least the pixel of
        its centre, a shape that covers no pixel centre is its box's mask."""
        width, height = size
        if self.kind == "box":
            return _box_mask(self.box, size, self._what)
        if self.kind == "polygon":
            mask = polygons_mask(self._shape, size)
        elif self.kind == "rle":
            counts, rle_size = self._shape
            mask = rle_mask(counts, rle_size, size, self._what or "an annotation")
        elif self.kind == "mask":
            mask = np.asarray(self._shape, dtype=bool)
            if mask.shape != (height, width):
                raise InputError(
                    f"{self._what or 'the mask'} is {mask.shape[1]}×{mask.shape[0]} but the picture is "
                    f"{width}×{height}: a mask of another version of the image?"
                )
        else:
            raise ValueError(f"unknown region kind {self.kind!r}")
        if not mask.any():
            return _box_mask(self.box, size, self._what)
        return mask

    def grid(self, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
        """The region on a grid of ``grid`` (h, w) cells spanning the picture of ``size`` (W, H): bool (h, w)."""
        if self.kind == "box":
            return box_cells(self.box, size, grid, self._what)
        return mask_cells(self.mask(size), grid)

    def box_grid(self, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
        """The region's bounding box on the grid, as :meth:`grid` puts a box there."""
        return box_cells(self.box, size, grid, self._what)


@dataclass(frozen=True)
class ImageAnnotations:
    """What an annotation file says of one image: its regions (none: annotated, no object) and the size it
    states (W, H), if any."""

    name: str
    regions: tuple[Region, ...]
    size: tuple[int, int] | None
    # where the size is stated, for check_size's message ("annotations.json gives chelsea.png as")
    said: str = field(default="", repr=False, compare=False)

    def check_size(self, width: int, height: int) -> None:
        """InputError when the stated size is not the picture's: the annotations are of another version of it."""
        if self.size is None or tuple(self.size) == (width, height):
            return
        said = self.said or f"the annotations give {one_line(self.name)} as"
        raise InputError(
            f"{said} {self.size[0]}×{self.size[1]} but the picture is {width}×{height}: "
            "annotations of another version of the image?"
        )


@dataclass(frozen=True)
class Listing:
    """What a reader found in an annotation file: how it names each image (``names``), where it does so (for
    messages: ``image 3``, ``Annotations/000005.xml``), the images' annotations (made when asked for), the class
    names it uses, and how many objects (None: not known before the files are read)."""

    names: list[str]
    wheres: list[str]
    load: Callable[[int], ImageAnnotations]
    labels: list[str]
    objects: int | None
    unlabelled: int = 0  # objects without a class (CSV rows with an empty class)


def check_box(box: Box) -> str | None:
    """What is wrong with a box (x0, y0, x1, y1), or None."""
    if not all(math.isfinite(v) for v in box):
        return "a coordinate is not a finite number"
    if box[2] < box[0] or box[3] < box[1]:
        return f"x1 < x0 or y1 < y0 in ({', '.join(f'{v:g}' for v in box)})"
    return None


def _centre_pixel(box: Box, size: tuple[int, int], what: str) -> tuple[int, int]:
    """(column, row) of the pixel holding the box's centre, clamped to the picture; InputError when the box does
    not meet the picture at all."""
    width, height = size
    x0, y0, x1, y1 = box
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        coords = ", ".join(f"{v:g}" for v in box)
        raise InputError(
            f"{what or 'a box'} ({coords}) lies outside the picture ({width}×{height}): annotations of another "
            "version of the image?"
        )
    column = min(max(math.floor((x0 + x1) / 2), 0), width - 1)
    row = min(max(math.floor((y0 + y1) / 2), 0), height - 1)
    return column, row


def _box_mask(box: Box, size: tuple[int, int], what: str) -> np.ndarray:
    width, height = size
    column, row = _centre_pixel(box, size, what)
    cx, cy = np.arange(width) + 0.5, np.arange(height) + 0.5
    cols = (cx >= box[0]) & (cx < box[2])
    rows = (cy >= box[1]) & (cy < box[3])
    if not cols.any():  # narrower than the space between centres: the column holding its centre
        cols[column] = True
    if not rows.any():
        rows[row] = True
    return rows[:, None] & cols[None, :]


def _fractions(low: float, high: float, extent: int, cells: int) -> list[Fraction]:
    """The fraction of each of ``cells`` equal cells spanning [0, extent) that [low, high) covers, exactly; a span
    of no length (a line, a point) covers the cell holding it (clamped to the picture), as its mask holds the
    pixels of its row or column."""
    lo, hi = Fraction(low), Fraction(high)
    out = []
    for c in range(cells):
        a, b = Fraction(c * extent, cells), Fraction((c + 1) * extent, cells)
        overlap = min(hi, b) - max(lo, a)
        out.append(overlap * cells / extent if overlap > 0 else Fraction(0))
    if not any(out):
        out[min(max(math.floor((lo + hi) / 2 * cells / extent), 0), cells - 1)] = Fraction(1)
    return out


def box_cells(box: Box, size: tuple[int, int], grid: tuple[int, int], what: str = "") -> np.ndarray:
    """A box on a grid of (h, w) cells spanning the picture of ``size`` (W, H), from its exact coverage of each
    cell; the cells covered most are always in."""
    width, height = size
    rows, cols = grid
    _centre_pixel(box, size, what)  # refuses a box outside the picture
    fx = _fractions(box[0], box[2], width, cols)
    fy = _fractions(box[1], box[3], height, rows)
    # a box covers at most four distinct fractions along each axis (0, 1, its two edges'): compare those only
    ux, uy = sorted(set(fx)), sorted(set(fy))
    products = {(a, b): a * b for a in uy for b in ux}
    best = max(products.values())
    chosen = {key for key, p in products.items() if p >= Fraction(1, 2) or p == best}
    table = np.array([[(a, b) in chosen for b in ux] for a in uy], dtype=bool)
    ix = np.array([ux.index(v) for v in fx])
    iy = np.array([uy.index(v) for v in fy])
    return table[iy[:, None], ix[None, :]]


def _overlaps(extent: int, cells: int) -> np.ndarray:
    """(cells, extent) integers: how much of pixel i lies in cell c, in units of 1/cells of a pixel (pixel i spans
    [i·cells, (i+1)·cells), cell c spans [c·extent, (c+1)·extent) in those units)."""
    pixel = np.arange(extent)[None, :] * cells
    cell = np.arange(cells)[:, None] * extent
    return np.clip(np.minimum(pixel + cells, cell + extent) - np.maximum(pixel, cell), 0, None)


def mask_cells(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A bool (H, W) mask on a grid of (h, w) cells: the cells it covers at least half of by area, and the ones it
    covers most (exact: areas in integer units, summed in float64 below 2**53)."""
    height, width = mask.shape
    rows, cols = grid
    ox = _overlaps(width, cols).astype(np.float64)  # (w, W)
    oy = _overlaps(height, rows).astype(np.float64)  # (h, H)
    covered = np.zeros((rows, cols))
    step = 1024
    for start in range(0, height, step):  # in bands of rows: a float copy of a big mask is not made at once
        band = mask[start : start + step].astype(np.float64)
        covered += oy[:, start : start + step] @ (band @ ox.T)
    # covered is in units of 1/(h·w) of a pixel; a cell's area is (W/w)·(H/h) pixels = W·H units
    cells = 2 * covered >= width * height
    best = covered.max()
    if best > 0:
        cells |= covered == best
    return cells
