"""Decoding one input image robustly: 8-bit RGB, upright, with a reason for every file that cannot be read."""

from __future__ import annotations

import errno
import math
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, UnidentifiedImageError

from ..errors import InputError
from ..options import DEFAULT_MAX_PIXELS

_guard_lock = threading.Lock()
# the most bytes a file may hold for its declared size: 8 per pixel and frame (16-bit RGBA, uncompressed) plus
# 64 MiB of metadata (EXIF, ICC, thumbnails); a bigger file is refused before it is read
MAX_BYTES_PER_PIXEL = 8
MAX_EXTRA_BYTES = 64 * 1024 * 1024


def _allow_pillow(max_pixels: int | None) -> None:
    """Let Pillow's own global guard (which raises before camcli can look) admit up to ``max_pixels``."""
    if max_pixels is None or max_pixels <= (Image.MAX_IMAGE_PIXELS or 0):
        return
    with _guard_lock:
        Image.MAX_IMAGE_PIXELS = max(max_pixels, Image.MAX_IMAGE_PIXELS or 0)


def decode(
    path: Path,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    min_size: tuple[int, int] = (0, 0),
) -> Image.Image:
    """Read an image as 8-bit RGB, upright (EXIF orientation applied), ready to draw on.

    Grayscale → RGB; RGBA/LA/P with transparency are composited on white; 16-bit and float images are scaled
    to 8 bits (not clipped); CMYK is converted. Raises :class:`InputError` with the reason for missing, empty,
    truncated, corrupt, non-image and too-large files.

    ``max_side``: a JPEG may be decoded at a reduced scale (libjpeg's DCT scaling, 1/2 to 1/8) as long as its
    long side stays at least ``max_side`` and it stays at least ``min_size`` (width, height); the caller scales
    it the rest of the way. Other formats decode in full.

    ``max_pixels`` is the decompression-bomb guard (None: Pillow's default only). This function owns the
    rule: Pillow's global guard is raised to ``max_pixels`` when that is larger, so the limit given here is
    the one that applies, and images over it are refused here with the option that lifts it.
    """
    with _opened(path, max_pixels) as im:
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never half a picture
        w, h = im.size
        if max_side is not None and im.format == "JPEG" and max(w, h) > max_side:
            s = max_side / max(w, h)
            wanted = (max(math.ceil(w * s), min_size[0]), max(math.ceil(h * s), min_size[1]))
            im.draft(im.mode, wanted)  # the largest DCT scale whose result is still at least ``wanted``
        im.load()
        return upright_rgb(im)


def upright_rgb(im: Image.Image) -> Image.Image:
    """A loaded picture turned upright by its EXIF orientation (a broken EXIF block does not cost the picture), in
    RGB."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:
        pass
    return to_rgb(im)


def read_mask(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A mask picture's pixels that count, as an (H, W) boolean array: the opaque ones when it has transparency,
    else the non-zero ones; upright as :func:`decode` makes pictures. The file passes the guards an input passes
    (a regular file, at most ``max_pixels``, no larger than its header allows); :class:`InputError` else."""
    with _opened(path, max_pixels) as im:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        im.load()
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # as in decode(): a broken EXIF block must not cost the picture
            pass
        plane = im.getchannel("A") if "A" in im.getbands() else im.convert("L")
        return np.array(plane) > 0


@dataclass
class Jpeg:
    """A JPEG file's bytes, checked like :func:`decode` checks a file, for a decoder that takes bytes (nvjpeg)."""

    path: Path
    data: bytes
    size: tuple[int, int]  # (width, height) as stored, before the EXIF orientation
    orientation: int  # the EXIF orientation tag, 1 (upright) to 8


def read_jpeg(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Jpeg | None:
    """The bytes of ``path`` when it is a whole RGB or grayscale JPEG; None for any other image (CMYK, PNG …) and
    for a JPEG without its end marker (both are left to :func:`decode`, which says what is wrong with a
    truncated file). Raises :class:`InputError` like :func:`decode` for what is not an image at all."""
    with _opened(path, max_pixels) as im:
        if im.format != "JPEG" or im.mode not in ("RGB", "L"):
            return None
        try:
            tag = im.getexif().get(0x0112, 1)
        except Exception:  # a broken EXIF block: decode() draws it as stored, and so does this
            tag = 1
        # the values ImageOps.exif_transpose acts on (it looks the tag up as it is: 6.0 turns, "6" does not)
        orientation = next((k for k in range(2, 9) if not isinstance(tag, str | bytes) and tag == k), 1)
        fp = getattr(im, "fp", None)  # the open file, positioned after the header
        if fp is None:
            return None
        fp.seek(0)
        data = fp.read()
        if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            return None
        return Jpeg(path, data, im.size, orientation)


@contextmanager
def _opened(path: Path, max_pixels: int | None) -> Iterator[Image.Image]:
    """``path`` opened by Pillow (header read, size guards passed); every failure becomes an :class:`InputError`
    with its reason."""
    _allow_pillow(max_pixels)
    size = regular_file_size(path)
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(f)  # reads the header only
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise InputError(
                    f"{path}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                    "(decompression-bomb guard); raise it with --max-pixels if the file is trusted"
                )
            cap = MAX_BYTES_PER_PIXEL * w * h * max(1, getattr(im, "n_frames", 1)) + MAX_EXTRA_BYTES
            if size > cap:
                raise InputError(
                    f"{path}: {size:,} bytes is far more than a {w}x{h} image needs (at most {cap:,}); "
                    "the file is not what its header says"
                )
            yield im
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = f"{max_pixels:,}" if max_pixels is not None else f"{Image.MAX_IMAGE_PIXELS:,}"
        raise InputError(
            f"{path}: over the limit of {limit} pixels (decompression-bomb guard); "
            "raise it with --max-pixels if the file is trusted"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{path}: truncated or corrupt image ({e})") from None


# the header readers used when the size is checked by camcli before anything is decoded (Pillow's global guard,
# which raises in Image.open, would refuse a large JPEG that its DCT scaling makes small)
_HEADERS = {b"\xff\xd8\xff": JpegImagePlugin.JpegImageFile, b"\x89PN": PngImagePlugin.PngImageFile}


def _header(f: BinaryIO) -> Image.Image:
    """The picture in ``f`` opened by Pillow (its header read, nothing decoded), whatever size it declares."""
    plugin = _HEADERS.get(f.read(3))
    f.seek(0)
    if plugin is not None:
        return plugin(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(f)


def declared_size(path: Path) -> tuple[int, int] | None:
    """The (width, height) a picture file declares, read from its header; None when it cannot be read."""
    try:
        regular_file_size(path)
        with open(path, "rb") as f:
            return _header(f).size
    except (InputError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None


def _jpeg_scale(width: int, height: int, long_side: int, max_decoded: int) -> int:
    """The DCT scale (1, 2, 4, 8) to decode a JPEG at: the smallest whose result has at most ``max_decoded``
    pixels, or a larger one while the long side stays at least ``long_side``."""
    scales = [k for k in (1, 2, 4, 8) if k <= min(width, height)]
    fits = [k for k in scales if math.ceil(width / k) * math.ceil(height / k) <= max_decoded]
    sharp = [k for k in scales if max(width // k, height // k) >= long_side]
    return max(min(fits, default=scales[-1]), max(sharp, default=1))


def decode_bounded(path: Path, long_side: int, max_decoded: int) -> Image.Image:
    """Read a picture as 8-bit RGB, upright, decoding at most ``max_decoded`` pixels, for a copy whose long side
    is at most ``long_side`` (the caller scales it): the size the header declares is checked before anything is
    decoded; a JPEG is decoded at a reduced scale (1/2 to 1/8) that fits, any other picture over the bound is
    refused. Raises :class:`InputError` with the reason (like :func:`decode`)."""
    size = regular_file_size(path)
    try:
        with open(path, "rb") as f:
            im = _header(f)
            w, h = im.size
            cap = MAX_BYTES_PER_PIXEL * w * h * max(1, getattr(im, "n_frames", 1)) + MAX_EXTRA_BYTES
            if size > cap:
                raise InputError(f"{path}: {size:,} bytes is far more than a {w}x{h} image needs")
            if im.format == "JPEG" and w * h > 0:
                k = _jpeg_scale(w, h, long_side, max_decoded)
                if k > 1:
                    im.draft(im.mode, (w // k, h // k))
            if im.width * im.height > max_decoded:
                raise InputError(f"{path}: {w}x{h} is over the {max_decoded:,} pixels decoded for a copy")
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            im.load()
            return upright_rgb(im)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read (unknown or corrupt format)") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{path}: truncated or corrupt image ({e})") from None


def fitted_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """(width, height) scaled down so that the long side is ``max_side`` (aspect kept, rounded); None when the
    picture is not larger than that (or there is no cap). The one rule for Pillow's and the GPU's pictures."""
    if max_side is None or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_long_side(image: Image.Image, max_side: int | None) -> Image.Image:
    """``image`` scaled down so that its long side is at most ``max_side`` (aspect kept); as it is otherwise."""
    size = fitted_size(image.width, image.height, max_side)
    return image if size is None else image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def regular_file_size(path: Path, kind: str = "image") -> int:
    """The size of ``path`` if it is a non-empty regular file (symlinks followed); an :class:`InputError` else
    (``kind``: what the file should hold, for the message).

    Checked before anything is opened, so a FIFO never blocks the run and a device is never read.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as e:
        reason = "a symbolic link loop" if e.errno == errno.ELOOP else f"cannot read ({e.strerror or e})"
        raise InputError(f"{path}: {reason}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file (a FIFO, socket or device); pass {kind} files")
    if st.st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    return st.st_size


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB (see :func:`decode`)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.min() >= 0 and arr.max() <= 65535):
            scaled = arr / 65535.0 if arr.max() > 255 else arr / 255.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        gray = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "P":
        return im.convert("RGB")
    if mode in ("PA",):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")
