"""A fast PNG encoder for 8-bit RGB pictures (the overlays and grids camcli writes)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np

_deflate: ModuleType = zlib
try:  # the same deflate format, 2.5x faster at Huffman-only coding than Python's zlib (a camcli dependency)
    from zlib_ng import zlib_ng as _deflate
except ImportError:  # pragma: no cover - a platform without its wheel
    pass

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """8-bit RGB (H, W, 3) → PNG bytes, about 5× faster than Pillow's encoder at a similar size.

    Every row uses PNG's "Up" filter (difference to the row above, computed with numpy), then Huffman coding
    only (zlib-ng): on photo overlays the differences have few repeats for LZ77 to find. Pillow tries all five
    filters per row, which dominates its encode time for photos. Measured on a 768×768 photo overlay: 37 ms /
    842 KB with Python's zlib at level 1 (RLE), 77 ms / 857 KB for Pillow at compress_level=1. Over four
    overlays (500×375 to 2000×1500) here, zlib-ng's Huffman coding took 33 ms for 4.26 MB against 84 ms for
    4.06 MB with zlib's RLE at level 1 (Python's zlib at Huffman only: 63 ms).
    ``text``: tEXt chunks (Latin-1 keyword and value) placed right after the header, where
    :func:`read_text` finds them without reading the picture.
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
    comp = _deflate.compressobj(1, _deflate.DEFLATED, 15, 8, _deflate.Z_HUFFMAN_ONLY)
    data = comp.compress(filtered.tobytes()) + comp.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    notes = b"".join(
        _png_chunk(b"tEXt", k.encode("latin-1") + b"\0" + v.encode("latin-1")) for k, v in (text or {}).items()
    )
    return SIGNATURE + _png_chunk(b"IHDR", header) + notes + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def read_text(path: Path, limit: int = 4096) -> dict[str, str]:
    """The tEXt chunks before the picture data of a PNG file ({} for anything else, or a file that is gone)."""
    try:
        with open(path, "rb") as f:
            head = f.read(limit)
    except OSError:
        return {}
    if not head.startswith(SIGNATURE):
        return {}
    out, pos = {}, len(SIGNATURE)
    while pos + 8 <= len(head):
        length, tag = struct.unpack(">I4s", head[pos : pos + 8])
        if tag == b"IDAT" or pos + 12 + length > len(head):
            break
        if tag == b"tEXt":
            key, _, value = head[pos + 8 : pos + 8 + length].partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
    return out
