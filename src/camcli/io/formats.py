"""Picture files in the formats camcli writes (PNG, JPEG, WebP), with camcli's tags inside them.

The tags (which input a picture was made from, with which settings; see :mod:`camcli.io.outputs`) go where
each format keeps text: PNG ``tEXt`` chunks, a JPEG comment (``COM``) segment, a WebP ``XMP`` chunk (JSON
there). :func:`read_tags` finds them without decoding the picture: PNG and JPEG keep them before the picture
data; in WebP they follow it, and the chunks before are skipped by their lengths.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from ..checks import json_value
from .png import encode_png, read_text

EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
_HEAD = 65536  # bytes read to find a JPEG's comment (before its picture data), and the most read of a tag


def encode_picture(image: Any, fmt: str = "png", quality: int = 90, tags: dict[str, str] | None = None) -> bytes:
    """RGB picture → file bytes in ``fmt`` (``png``: camcli's encoder; ``jpg``/``webp``: Pillow at ``quality``).

    ``image`` is a Pillow picture or an (H, W, 3) uint8 tensor. A tensor on a CUDA device is encoded there when
    ``fmt`` is ``jpg`` (nvJPEG, through torchvision); otherwise it is copied to the CPU first.
    """
    if not isinstance(image, Image.Image):
        if fmt == "jpg" and image.device.type == "cuda":
            return _encode_jpeg_on_gpu(image, quality, tags)
        image = Image.fromarray(image.cpu().numpy(), "RGB")
    rgb = image.convert("RGB")
    if fmt == "png":
        return encode_png(np.asarray(rgb), tags)
    payload = json.dumps(tags or {}, sort_keys=True).encode("ascii")
    buf = io.BytesIO()
    if fmt == "jpg":
        rgb.save(buf, "JPEG", quality=quality, comment=payload if tags else b"")
    elif fmt == "webp":
        rgb.save(buf, "WEBP", quality=quality, method=0, **({"xmp": payload} if tags else {}))
    else:
        raise ValueError(f"unknown picture format {fmt!r}; use one of {', '.join(EXTENSIONS)}")
    return buf.getvalue()


def _encode_jpeg_on_gpu(pixels: Any, quality: int, tags: dict[str, str] | None) -> bytes:
    import torchvision.io

    # torchvision 0.29 marks its codecs deprecated (for TorchCodec), in a DeprecationWarning that Python shows
    # only to __main__; no filter is set here: warnings.catch_warnings() is not safe in the writer threads
    data = torchvision.io.encode_jpeg(pixels.permute(2, 0, 1).contiguous(), quality=quality)
    return with_jpeg_comment(bytes(data.cpu().numpy().tobytes()), tags)


def with_jpeg_comment(jpeg: bytes, tags: dict[str, str] | None) -> bytes:
    """A JPEG file's bytes with camcli's tags in a comment (``COM``) segment right after the start marker, where
    :func:`read_tags` looks for it (Pillow writes its comment among the first segments too)."""
    if not tags:
        return jpeg
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG file")
    payload = json.dumps(tags, sort_keys=True).encode("ascii")
    if len(payload) > 65533:
        raise ValueError("tags too long for a JPEG comment")
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def read_tags(path: Path) -> dict[str, str]:
    """camcli's tags in a picture file ({} for a file without them, another kind of file, or no file)."""
    if path.suffix.lower() == ".png":
        return read_text(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head.startswith(b"\xff\xd8"):
                payload = _jpeg_comment(head + f.read(_HEAD))
            elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                payload = _webp_xmp(f)
            else:
                payload = None
    except OSError:
        return {}
    if payload is None:
        return {}
    try:
        tags = json_value(payload)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}


def _jpeg_comment(head: bytes) -> bytes | None:
    pos = 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker == 0xDA:  # start of scan: the picture data, no more segments before it
            return None
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker == 0xFE:
            return head[pos + 4 : pos + 2 + length]
        pos += 2 + length
    return None


def _webp_xmp(f: BinaryIO) -> bytes | None:
    """The XMP chunk of a WebP file positioned after its 12-byte header (it comes after the picture data, so
    the chunks are skipped by their lengths, not read)."""
    for _ in range(64):  # a WebP file has a handful of chunks
        header = f.read(8)
        if len(header) < 8:
            return None
        tag, length = header[:4], struct.unpack("<I", header[4:])[0]
        if tag == b"XMP ":
            return f.read(min(length, _HEAD))
        f.seek(length + (length & 1), io.SEEK_CUR)
    return None
