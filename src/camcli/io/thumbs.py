"""The report's copies of an input picture (camcli report): a thumbnail and a viewing copy, as JPEGs in
``OUT/report/img/``, named by the input's path, size and modification time so that they are made once: by a run
with ``--report`` while the picture is decoded anyway, or by ``camcli report`` for inputs it finds without them.
The thumbnail of an input's first overlay (the report's card shows it) is named the same way, by the overlay."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from .decode import fitted_size
from .outputs import atomic_write_bytes, first_link, is_regular

THUMB = 240  # the thumbnail's long side
VIEW = 1600  # the longest viewing copy made from the input when no overlay gives the size
MAX_VIEW = 4096  # the long side of a viewing copy at most (the page scales it to the overlay's box)
FOLDER = ("report", "img")


def picture_name(src: Path, kind: str) -> str:
    """The file name of ``kind`` (``thumb``, ``view(W, H)``) made from the input ``src`` as it is now."""
    st = src.stat()
    key = f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|{kind}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20] + ".jpg"


def view_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size of the viewing copy for overlays of ``size``: that size, with its long side at most
    :data:`MAX_VIEW` (aspect kept), so that a picture declaring a huge size never makes a huge copy."""
    return fitted_size(*size, MAX_VIEW) or size


def save_jpeg(
    picture: Image.Image, target: Path, long_side: int | None = None, size: tuple[int, int] | None = None
) -> None:
    """``picture`` at ``size``, or with its long side at most ``long_side``, as a JPEG at ``target`` (atomic)."""
    im = picture.convert("RGB")
    if size is not None and im.size != size:
        im = im.resize(size, Image.Resampling.BILINEAR)
    elif long_side is not None and max(im.size) > long_side:
        im = im.copy()
        im.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=82)
    atomic_write_bytes(target, buf.getvalue())


def save_input_pictures(src: Path, picture: Image.Image, out: Path, overlay: Path | None = None) -> None:
    """The thumbnail and the viewing copy (at ``picture``'s size: the overlays' size) of the input ``src``, from
    its decoded ``picture``, and the thumbnail of its first ``overlay`` (the run's own file, just written); kept
    when they exist. None are made when ``OUT/report`` or its ``img`` is a link (the report's build at the end
    refuses to write through it, and says so)."""
    folder = out.joinpath(*FOLDER)
    if first_link(out, folder) is not None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    thumb = folder / picture_name(src, "thumb")
    if not is_regular(thumb):
        save_jpeg(picture, thumb, long_side=THUMB)
    size = view_size(picture.size)
    view = folder / picture_name(src, f"view{size}")
    if not is_regular(view):
        save_jpeg(picture, view, size=size)
    if overlay is not None and not is_regular(thumb := folder / picture_name(overlay, "thumb")):
        with Image.open(overlay) as im:
            im.draft("RGB", (THUMB, THUMB))  # a JPEG overlay: decoded at a reduced scale
            save_jpeg(im, thumb, long_side=THUMB)
