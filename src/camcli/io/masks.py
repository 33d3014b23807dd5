"""A folder of mask images as ground truth: one mask per input, named like it (its name or stem, any image
extension), its nonzero pixels the object, without class (it is about whatever class is explained).

A palette image (mode ``P``, as Pascal VOC's ``SegmentationClass`` and ``SegmentationObject`` masks are) keeps
VOC's convention: index 255 is "void" (the unlabelled band along objects' edges), neither object nor background,
and is left out of the object; index 0 is background. In every other mode (0/255 grey masks, 0/1 masks, RGB) any
nonzero value is the object. The folder is listed when it is read; a mask is decoded when its input asks for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..checks import first_words, one_line
from ..errors import InputError
from .regions import ImageAnnotations, Listing, Region

VOID = 255  # a palette mask's "void" index (Pascal VOC)
MAX_VALUES = 64  # a mask has a few values (0/255, class indices, soft edges); a photo has hundreds
_PLAIN = frozenset({"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def mask_pixels(image: Image.Image) -> np.ndarray:
    """A mask image's object as a bool (H, W) array: its nonzero pixels (a palette image's: neither 0 nor void),
    upright as camcli reads its inputs (EXIF orientation applied)."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode == "P":
        index = np.asarray(image)
        return np.asarray((index != 0) & (index != VOID))
    if image.mode in _PLAIN:
        return np.asarray(np.asarray(image) != 0)
    if image.mode in ("RGBA", "LA", "PA"):  # a transparent pixel is not the object, whatever its colour
        rgba = np.asarray(image.convert("RGBA"))
        return np.asarray(rgba[..., :3].any(axis=-1) & (rgba[..., 3] != 0))
    return np.asarray(np.asarray(image.convert("RGB")).any(axis=-1))


def _values(image: Image.Image) -> int:
    """How many distinct values (colours) ``image`` has, up to ``MAX_VALUES + 1`` (Pillow's count, C code)."""
    if image.mode == "P":
        return 0  # a palette's indices are classes, however many
    colours = image.getcolors(MAX_VALUES)
    return MAX_VALUES + 1 if colours is None else len(colours)


def read_mask(path: Path, name: str) -> ImageAnnotations:
    """The annotations a mask file gives (one region without class, none when the mask is empty); InputError when
    it cannot be read."""
    shown = one_line(str(path))
    try:
        with Image.open(path) as image:
            values = _values(image)
            pixels = mask_pixels(image)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"mask {shown} cannot be read ({first_words(e)}); replace it") from None
    if values > MAX_VALUES:  # a photo (the inputs' own folder given as --annotations, a dataset's images/)
        raise InputError(
            f"{shown} has over {MAX_VALUES} distinct values: a photo, not a mask? A mask is 0 for the background and "
            "nonzero for the object"
        )
    height, width = pixels.shape
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    regions: tuple[Region, ...] = ()
    if rows.size:
        box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        regions = (Region(None, box, "mask", _shape=pixels, _what=f"mask {shown}"),)
    return ImageAnnotations(name, regions, (width, height), said=f"mask {shown} is")


def list_masks(folder: Path, files: list[Path]) -> Listing:
    """A folder's mask images (``files``, sorted), named by their paths relative to it."""
    names = [f.relative_to(folder).as_posix() for f in files]
    return Listing(names, [one_line(n) for n in names], lambda i: read_mask(files[i], names[i]), [], None)
