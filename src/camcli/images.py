"""Inputs and outputs on disk: discovering images, robust decoding, output naming, atomic writes."""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
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
_UMASK = os.umask(0o022)  # read the process umask once, at import (os.umask can only read by setting)
os.umask(_UMASK)


@dataclass(frozen=True)
class InputFile:
    """One input image: its path and the path relative to the folder its outputs are mirrored from."""

    path: Path
    rel: Path

    @property
    def display(self) -> str:
        return str(self.path)


# ------------------------------------------------------------------------------------------ discovery
LIST_SUFFIXES = (".txt", ".lst")


def _is_list(spec: str) -> bool:
    return spec == "-" or (spec.lower().endswith(LIST_SUFFIXES) and Path(spec).is_file())


def _glob_base(spec: str) -> Path:
    base_parts = []
    for part in Path(spec).parts:
        if _GLOB_CHARS.search(part):
            break
        base_parts.append(part)
    return Path(*base_parts) if base_parts else Path(".")


def _root_of(spec: str) -> Path | None:
    """The folder a command-line input's outputs are mirrored from (None for list files / stdin)."""
    if _is_list(spec):
        return None
    p = Path(spec)
    if _GLOB_CHARS.search(spec) and not p.exists():
        return _glob_base(spec)
    if p.is_dir():
        return p
    if p.is_file() or p.is_symlink():
        return p.parent
    raise UsageError(f"input '{spec}' does not exist; pass an image file, a folder, a glob or a list file")


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


def _list_entries(spec: str) -> Iterator[Path]:
    """Paths from a list file (one per line; blank lines and '#' comments skipped) or from stdin ('-')."""
    import sys

    stream = sys.stdin if spec == "-" else open(spec, encoding="utf-8")  # noqa: SIM115
    try:
        for line in stream:
            text = line.strip()
            if text and not text.startswith("#"):
                yield Path(text)
    finally:
        if stream is not sys.stdin:
            stream.close()


def _list_rel(path: Path) -> Path:
    """Mirrored path of a list entry: relative paths as written (no '..'), absolute ones without the anchor."""
    norm = Path(os.path.normpath(path))
    parts = [p for p in (norm.parts[1:] if norm.is_absolute() else norm.parts) if p not in ("..", ".")]
    return Path(*parts) if parts else Path(path.name)


def shard_of(rel: Path, count: int) -> int:
    """Stable shard number (1…count) of a relative path: the same on every machine and Python run."""
    digest = hashlib.sha1(rel.as_posix().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def iter_inputs(
    specs: Sequence[str], out_dir: Path | None = None, shard: tuple[int, int] | None = None
) -> Iterator[InputFile]:
    """Input images, lazily, in sorted order per input, each once, with the path its outputs mirror.

    Files given by name are taken whatever their extension; folders are walked recursively (sorted, lazily)
    for files with an image extension (case-insensitive); globs are expanded; ``.txt``/``.lst`` files and
    ``-`` (stdin) list one path per line. Outputs mirror paths relative to the common folder of all inputs,
    so two inputs never map to the same output. The output folder is never scanned. ``shard=(k, n)`` keeps
    the inputs whose stable hash of the relative path falls in slice k of n.
    """
    if not specs:
        raise UsageError("no inputs given; pass image files, folders, globs or a list file")
    skip = out_dir.resolve() if out_dir is not None else None
    roots = {spec: _root_of(spec) for spec in specs}
    resolved = {r.resolve() for r in roots.values() if r is not None}
    base = Path(os.path.commonpath([str(r) for r in resolved])) if len(resolved) > 1 else next(iter(resolved), None)
    seen: set[Path] | None = set() if len(specs) > 1 else None
    for spec, root in roots.items():
        walked = root is not None and Path(spec).is_dir()
        if root is None:
            paths: Iterable[Path] = _list_entries(spec)
        elif walked:
            paths = _walk(root, skip)
        elif _GLOB_CHARS.search(spec) and not Path(spec).exists():
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not matches:
                raise UsageError(f"no files match '{spec}'; check the pattern (quote it so the shell keeps it)")
            paths = matches
        else:
            paths = [Path(spec)]
        for path in paths:
            key = path.resolve()
            if walked and skip is not None and key.is_relative_to(skip):
                continue
            if seen is not None:
                if key in seen:
                    continue
                seen.add(key)
            if root is None:
                rel = _list_rel(path)
            elif base is not None and key.is_relative_to(base):
                rel = Path(os.path.relpath(key, base))
            else:
                rel = Path(path.name)
            if shard is not None and shard_of(rel, shard[1]) != shard[0]:
                continue
            yield InputFile(path, rel)


def discover(specs: Sequence[str], out_dir: Path | None = None) -> list[InputFile]:
    """All inputs as a list (see :func:`iter_inputs`)."""
    return list(iter_inputs(specs, out_dir))


def count_inputs(specs: Sequence[str], out_dir: Path | None = None, shard: tuple[int, int] | None = None) -> int | None:
    """How many inputs :func:`iter_inputs` will give (names only, nothing decoded); None when reading stdin."""
    if "-" in specs:
        return None
    return sum(1 for _ in iter_inputs(specs, out_dir, shard))


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


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray) -> bytes:
    """8-bit RGB (H, W, 3) → PNG bytes, about 2× faster than Pillow's encoder at a similar size.

    Every row uses PNG's "Up" filter (difference to the row above, computed with numpy) and zlib's RLE strategy
    at level 1; Pillow tries all five filters per row, which dominates its encode time for photos. Measured on
    a 768×768 photo overlay: 37 ms / 842 KB here vs 77 ms / 857 KB for Pillow at compress_level=1.
    """
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"encode_png expects (H, W, 3) uint8, got {a.shape}")
    h, w, _ = a.shape
    rows = a.reshape(h, w * 3)
    filtered = np.empty((h, w * 3 + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type "Up"
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:], dtype=np.uint8)  # modulo 256, as PNG defines it
    comp = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    data = comp.compress(filtered.tobytes()) + comp.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def atomic_save_png(target: Path, image: Image.Image) -> None:
    atomic_write_bytes(target, encode_png(np.asarray(image.convert("RGB"))))


def atomic_save_npy(target: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(target, buf.getvalue())
