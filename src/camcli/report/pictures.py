"""The report's pictures in ``OUT/report/img/``: thumbnails and viewing copies of the inputs (of a video: its first
frame; of a volume: its middle axial slice, :mod:`camcli.report.media`), the maps alone (with ``--save-raw``), and a
thumbnail of each input's first overlay (the card's picture, a video's contact sheet; the input's thumbnail too when
there is no picture of the input).

What is copied: a picture of an input (which usually lies outside ``OUT``) is made only when the input's record
holds the digest its run wrote (``input_sha256``) and the file still has that digest, so an edited record never
copies another file into ``OUT``; pictures the run made itself (``--report``) are used as they are. What is
decoded: at most :data:`MAX_DECODE` pixels per picture (a large JPEG at a reduced scale), whatever size a file
declares; a viewing copy's long side is at most :data:`~camcli.io.thumbs.MAX_VIEW`. A picture that cannot be
made is left out with a reason; the report is built without it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from PIL import Image

from ..errors import InputError
from ..io.decode import declared_size, decode_bounded
from ..io.inputs import content_digest
from ..io.outputs import atomic_write_bytes, is_regular
from ..io.thumbs import MAX_VIEW, THUMB, VIEW, picture_name, save_jpeg, view_size
from .media import NOTES, input_kind, input_pictures

MAX_DECODE = 50_000_000  # pixels decoded for one picture at most (about 150 MB as 8-bit RGB)


def add_pictures(out: Path, entries: list[dict[str, Any]]) -> list[str]:
    """Thumbnail and viewing copy of each input (else a thumbnail of its first map), made in threads (decoding and
    encoding release the GIL); one line per picture that was left out (``path: why``)."""
    from concurrent.futures import ThreadPoolExecutor

    img = out / "report" / "img"
    img.mkdir(parents=True, exist_ok=True)
    notes: list[list[str]] = [[] for _ in entries]
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        list(pool.map(lambda k: _pictures_of(out, img, entries[k], notes[k]), range(len(entries))))
    return [n for ns in notes for n in ns]


def _pictures_of(out: Path, img: Path, e: dict[str, Any], notes: list[str]) -> None:
    e["thumb"] = e["view"] = e["view_note"] = None
    sha256 = e.pop("sha256", None)
    src = Path(e["input"])
    kind = input_kind(src)
    if kind is None:
        _input_pictures(out, img, e, sha256, notes)
    else:  # a video's first frame, a volume's middle slice: made when the input is still the file its run read
        try:
            made = all(is_regular(img / picture_name(src, k)) for k in ("thumb", f"view-{kind}"))
        except (OSError, ValueError):
            made = False
        if made or (sha256 is not None and content_digest(src) == sha256):
            thumb, view = input_pictures(src, kind, img, notes)
            e["thumb"], e["view"] = (f"report/img/{thumb}" if thumb else None), (f"report/img/{view}" if view else None)
            e["view_note"] = NOTES[kind] if view else None
    for m in e["maps"]:  # with --save-raw: the map alone, so that the page blends it over the input itself
        raw, m["map"] = m.pop("raw", None), None
        colormap = m.pop("colormap", None)
        if raw is not None and e["view"] is not None:
            raw_path = _in(out, raw)
            try:
                key = f"{raw}|{raw_path.stat().st_mtime_ns}|{colormap}"
            except OSError:
                continue
            name = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
            if _map_picture(raw_path, img / f"{name}.png", colormap or "jet", notes):
                m["map"] = f"report/img/{name}.png"
    # the card's picture: the input's first overlay (a detector's: the map of every object; a video's: its contact
    # sheet; a volume's: its montage), or feature grid
    cover = e.pop("cover", None)
    pictures = [m["overlay"] for m in e["maps"] if (m["media"] or {}).get("kind") != "video"]
    first = cover or (pictures[0] if pictures else e["grids"][0]["grid"] if e["grids"] else None)
    e["card"] = None
    if first is not None:
        card: str | None
        try:
            card = picture_name(_in(out, first), "thumb")  # named as a run with --report names it
        except (OSError, ValueError):
            card = None
        if card is not None and _picture(_in(out, first), img / card, THUMB, None, notes):
            e["card"] = f"report/img/{card}"
    e["thumb"] = e["thumb"] or e["card"]  # no picture of the input: its overlay's


def _input_pictures(out: Path, img: Path, e: dict[str, Any], sha256: str | None, notes: list[str]) -> None:
    """A picture input's thumbnail and viewing copy (at its first overlay's size)."""
    size = None
    if e["maps"]:
        declared = declared_size(_in(out, e["maps"][0]["overlay"]))
        size = view_size(declared) if declared is not None and min(declared) > 0 else None
    src = Path(e["input"])
    thumb: str | None
    view: str | None
    try:
        thumb, view = picture_name(src, "thumb"), picture_name(src, f"view{size}")
    except (OSError, ValueError):  # the input is gone (or its name cannot even be looked up)
        thumb = view = None
    verified: bool | None = None  # the input is the file its run read (its digest is checked once, if needed)
    for key, name, long_side, at in (("thumb", thumb, THUMB, None), ("view", view, VIEW, size)):
        if name is None:
            continue
        if not is_regular(img / name):  # else made by the run (--report) or an earlier build: used as it is
            if verified is None:
                verified = sha256 is not None and content_digest(src) == sha256
            if not verified:
                continue
        if _picture(src, img / name, long_side, at, notes):
            e[key] = f"report/img/{name}"


def _in(out: Path, rel: str) -> Path:
    """The file in ``out`` of a URL in the page's data."""
    return out / unquote(rel, errors="surrogateescape")


def _picture(src: Path, target: Path, long_side: int, size: tuple[int, int] | None, notes: list[str]) -> bool:
    """A JPEG copy of ``src`` (upright RGB) at ``size`` or with its long side at most ``long_side``; reused when
    it exists (a file of its own, never a link). False, with a note, when the picture cannot be read."""
    if is_regular(target):
        return True
    try:
        im = decode_bounded(src, long_side if size is None else max(size), MAX_DECODE)
    except InputError as e:
        notes.append(str(e))
        return False
    save_jpeg(im, target, long_side=long_side, size=size)
    return True


def _map_picture(raw: Path, target: Path, colormap: str, notes: list[str]) -> bool:
    """A saved map (.npy, values in [0, 1]) as colours whose opacity is the map's value (an RGBA PNG, its long
    side at most :data:`MAX_VIEW`: a larger map is read every few rows and columns); reused when it exists.
    False, with a note, when the file is not such a map."""
    if is_regular(target):
        return True
    import numpy as np

    from .. import render

    try:
        mapped = np.load(raw, mmap_mode="r", allow_pickle=False)  # the header only: nothing is read yet
        if mapped.ndim != 2 or mapped.dtype.kind != "f" or min(mapped.shape) < 1:
            raise ValueError(f"not a map (shape {mapped.shape}, {mapped.dtype})")
        step = math.ceil(max(mapped.shape) / MAX_VIEW)
        cam = np.array(mapped[::step, ::step], dtype=np.float32)
        if not np.isfinite(cam).all():
            raise ValueError("values that are not finite")
        cam = np.clip(cam, 0.0, 1.0)
        rgba = np.dstack([render.colorize(cam, colormap), np.rint(cam * 255).astype(np.uint8)])
    except (OSError, ValueError) as e:
        notes.append(f"{raw}: {e}")
        return False
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", compress_level=3)
    atomic_write_bytes(target, buf.getvalue())
    return True
