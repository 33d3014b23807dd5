"""Inputs and outputs on disk: discovering images, robust decoding, output naming, atomic writes."""

from __future__ import annotations

import glob
import io
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import InputError, UsageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InputFile:
    """One input image: its path and the path relative to the folder its outputs are mirrored from."""

    path: Path
    rel: Path

    @property
    def display(self) -> str:
        return str(self.path)


# ------------------------------------------------------------------------------------------ discovery
def _roots(spec: str) -> tuple[Path, list[Path]]:
    """(root folder, files) for one command-line input: a file, a folder (recursive) or a glob."""
    if _GLOB_CHARS.search(spec) and not Path(spec).exists():
        base_parts = []
        for part in Path(spec).parts:
            if _GLOB_CHARS.search(part):
                break
            base_parts.append(part)
        base = Path(*base_parts) if base_parts else Path(".")
        files = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
        if not files:
            raise UsageError(f"no files match '{spec}'; check the pattern (quote it so the shell keeps it)")
        return base, files
    p = Path(spec)
    if p.is_dir():
        return p, []  # walked lazily by discover()
    if p.is_file() or p.is_symlink():
        return p.parent, [p]
    raise UsageError(f"input '{spec}' does not exist; pass an image file, a folder or a glob")


def _walk(folder: Path, skip: Path | None) -> Iterator[Path]:
    """Image files under ``folder`` in sorted order, not descending into ``skip`` (the output folder)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if skip is not None and path.resolve() == skip:
                continue
            yield from _walk(path, skip)
        elif entry.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            yield path


def discover(specs: Sequence[str], out_dir: Path | None = None) -> list[InputFile]:
    """All input images in sorted order, each once, with the relative path its outputs mirror.

    Files given by name are taken whatever their extension; folders are walked recursively for files with an
    image extension (case-insensitive); the output folder is never scanned. Outputs mirror the paths relative
    to the common folder of all inputs, so two inputs never map to the same output.
    """
    if not specs:
        raise UsageError("no inputs given; pass image files, folders or globs")
    skip = out_dir.resolve() if out_dir is not None else None
    groups = [(spec, *_roots(spec)) for spec in specs]
    roots = {root.resolve() for _, root, _ in groups}
    base = Path(os.path.commonpath([str(r) for r in roots])) if len(roots) > 1 else next(iter(roots))
    seen: set[Path] = set()
    found: list[InputFile] = []
    for _spec, root, files in groups:
        paths = files if files else list(_walk(root, skip))
        for path in sorted(paths):
            key = path.resolve()
            if key in seen or (skip is not None and key.is_relative_to(skip)):
                continue
            seen.add(key)
            rel = Path(os.path.relpath(key, base)) if key.is_relative_to(base) else Path(path.name)
            found.append(InputFile(path, rel))
    return found


# -------------------------------------------------------------------------------------------- decoding
def decode(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image as 8-bit RGB, upright (EXIF orientation applied), ready to draw on.

    Grayscale → RGB; RGBA/LA/P with transparency are composited on white; 16-bit and float images are scaled
    to 8 bits (not clipped); CMYK is converted. Raises :class:`InputError` with the reason for missing, empty,
    truncated, corrupt, non-image and too-large files.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an image") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data))
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise InputError(
                    f"{path}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                    "(decompression-bomb guard); raise it with --max-pixels if the file is trusted"
                )
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            im.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"{path}: {e}; raise the limit with --max-pixels if the file is trusted") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{path}: truncated or corrupt image ({e})") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not cost the picture
        pass
    return to_rgb(im)


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


# ------------------------------------------------------------------------------------------- outputs
def slug(text: str) -> str:
    """A file-name-safe version of a class name: ``"tabby, tabby cat"`` → ``tabby_tabby_cat``."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")
    return s[:60] or "class"


def output_stem(item: InputFile, out_dir: Path) -> Path:
    """``out/<mirrored folders>/<file name with its extension>``; add ``.<method>.<class>.png`` to it."""
    return out_dir / item.rel


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_save_png(target: Path, image: Image.Image) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    atomic_write_bytes(target, buf.getvalue())


def atomic_save_npy(target: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(target, buf.getvalue())
