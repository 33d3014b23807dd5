"""Videos and volumes in the report: what their records say, checked and put in words, and the pictures of their
inputs (a video's first frame, a volume's middle axial slice).

A record of ``camcli gradcam`` on a video or a volume (:mod:`camcli.jobs.media`) is a CAM record whose ``media``
object says what was explained: for a video, the frames (their numbers and times), the rate the overlay video plays
at, the clips of a video classifier and the overlay's codec; for a volume, the scan's shape, the network's input
size, how intensities were scaled and how the array's axes map to the file's. Its ``outputs.overlay`` is the overlay
video (a video) or the montage picture (a volume), ``outputs.sheet`` a video's contact sheet, ``outputs.map`` a
volume's map aligned on the scan (NIfTI, or ``.npy`` for a ``.npy`` scan).

Every value is checked as :mod:`camcli.report.entries` checks a record's (a bad one raises ``ValueError``: the
record is skipped and counted); the page gets the sentences made here, and relative links inside ``OUT``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import CamcliError
from ..io.outputs import is_regular
from ..io.thumbs import THUMB, VIEW, picture_name, save_jpeg
from ..io.video import is_video, read_video
from ..io.volume import is_volume, read_volume, scale_intensity

MEDIA_KINDS = ("video", "volume")
# encoders whose output Chromium, Firefox and Safari play in <video> (write_video's H.264 and VP9; its fallback,
# MPEG-4 part 2 ``mpeg4``, does not play in Chromium or Firefox)
PLAYABLE = ("libx264", "h264", "libopenh264", "libvpx-vp9", "libvpx", "vp9", "vp8")
MAX_LISTED = 6  # clips named one by one in the words, at most
# what reading an input for its pictures can raise besides camcli's own errors (a library's own exception types
# on a file that is neither what its name says nor readable): the picture is left out, the report is built
UNREADABLE = (CamcliError, OSError, ValueError, TypeError, RuntimeError, EOFError, IndexError, MemoryError)


def _ints(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"media.{what} is not a list of integers")
    if any(abs(v) > 2**53 for v in value):
        raise ValueError(f"media.{what} holds an integer the page cannot show")
    return value


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"media.{what} is not a positive number")
    return float(value)


def _words(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"media.{what} is not a text")
    return value if len(value) <= 300 else value[:299] + "…"


def _frames(numbers: list[int]) -> str:
    """``0–23`` for consecutive frames, ``0, 3, 6, …, 21`` otherwise (the first three and the last)."""
    if len(numbers) == 1:
        return str(numbers[0])
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}–{numbers[-1]}"
    if len(numbers) <= 4:
        return ", ".join(map(str, numbers))
    return f"{numbers[0]}, {numbers[1]}, {numbers[2]}, …, {numbers[-1]}"


def media_kind(rec: dict[str, Any]) -> str | None:
    """``video`` or ``volume`` for a record with a ``media`` object (a bad kind raises), else None."""
    media = rec.get("media")
    if media is None:
        return None
    if not isinstance(media, dict) or media.get("kind") not in MEDIA_KINDS:
        raise ValueError("media.kind is not video or volume")
    return str(media["kind"])


def media_map(rec: dict[str, Any], outputs: dict[str, Any], link: Callable[[Any], str | None]) -> dict[str, Any] | None:
    """The page's ``media`` of a video's or volume's map (None for a picture's); ``link`` turns a path of the
    record into a link inside ``OUT`` (None when the file is not there)."""
    kind = media_kind(rec)
    if kind is None:
        return None
    media = rec["media"]
    if kind == "video":
        return video_part(media, link(outputs.get("sheet")))
    name = outputs.get("map")
    return volume_part(media, link(name), name if isinstance(name, str) else "")


def video_part(media: dict[str, Any], sheet: str | None) -> dict[str, Any]:
    """What the page shows of a video record besides its overlay video: its contact ``sheet`` (a link), and its
    frames, rate, clips and codec in words (``lines``); ``playable``: whether browsers play the overlay video."""
    frames = _ints(media.get("frames"), "frames")
    if not frames:
        raise ValueError("media.frames is empty")
    times = media.get("times")
    if not isinstance(times, list) or len(times) != len(frames):
        raise ValueError("media.times is not one time per frame")
    for t in times:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError("media.times holds a value that is not a finite number")
    fps = _positive(media.get("fps"), "fps")
    source = media.get("source_frames")
    if source is not None:
        (source,) = _ints([source], "source_frames")
    n = len(frames)
    of = f" of the file's {source}" if source is not None else ""
    lines = [
        f"{n} frame{'s' if n > 1 else ''}{of} explained (frame{'s' if n > 1 else ''} {_frames(frames)}, "
        f"from {float(times[0]):.2f} s to {float(times[-1]):.2f} s)",
        f"the overlay video plays them at {fps:g} frames per second: {n / fps:.2f} s",
    ]
    clips = media.get("clips")
    if clips is not None:
        if not isinstance(clips, list) or not all(isinstance(c, list) and len(c) == 2 for c in clips):
            raise ValueError("media.clips is not a list of [first, last] frames")
        pairs = [_ints(c, "clips") for c in clips]
        named = ", ".join(f"{a}–{b}" for a, b in pairs[:MAX_LISTED]) + (", …" if len(pairs) > MAX_LISTED else "")
        lines.append(f"explained clip by clip by the video classifier: {len(pairs)} clip(s), frames {named}")
    codec = _words(media.get("codec"), "codec")
    playable = not codec or codec in PLAYABLE
    if codec:
        lines.append(
            f"overlay video encoded with {codec}"
            + ("" if playable else ": browsers may not play it (the contact sheet shows its frames)")
        )
    return {"kind": "video", "sheet": sheet, "lines": lines, "playable": playable}


def volume_part(media: dict[str, Any], map_link: str | None, map_name: str) -> dict[str, Any]:
    """What the page shows of a volume record: the link to its map aligned on the scan (``map``; NIfTI or
    ``.npy``), and the scan's shape, the network's input size and the intensity scaling in words (``lines``)."""
    shape = _ints(media.get("shape"), "shape")
    size = _ints(media.get("input_size", shape), "input_size")
    if len(shape) != 3 or len(size) != 3:
        raise ValueError("media.shape is not 3 sizes (D, H, W)")
    axes, intensity = _words(media.get("axes"), "axes"), _words(media.get("intensity"), "intensity")
    lines = [f"scan of {' × '.join(map(str, shape))} voxels" + (f" ({axes})" if axes else "")]
    if size != shape:
        lines.append(f"resized (trilinear) to the network's input, {' × '.join(map(str, size))}; the map resized back")
    if intensity:
        lines.append(f"intensities scaled to [0, 1] for the network: {intensity}")
    nifti = map_name.lower().endswith((".nii", ".nii.gz"))
    return {
        "kind": "volume",
        "map": map_link,
        "map_text": "the map on the scan's voxels (NIfTI, the scan's affine): open it over the scan in 3D Slicer "
        "or ITK-SNAP"
        if nifti
        else "the map on the scan's voxels (.npy, the scan's array axes)",
        "lines": lines,
    }


# ------------------------------------------------------------------------------------------ the inputs' pictures
def input_kind(src: Path) -> str | None:
    """``video`` or ``volume`` by the input's name (as the run chose how to read it), else None."""
    return "video" if is_video(src) else "volume" if is_volume(src) else None


def first_frame(src: Path) -> Image.Image:
    """A video's first frame, upright, its long side at most :data:`~camcli.io.thumbs.VIEW` (decoding stops
    there)."""
    video = read_video(src, max_frames=1, max_size=VIEW)
    return Image.fromarray(video.frames[0])


def middle_slice(src: Path) -> Image.Image:
    """A volume's middle axial slice (the channels' mean), intensities scaled to [0, 1] by the 0.5 and 99.5
    percentiles (:func:`camcli.io.volume.scale_intensity`'s default, what a run uses unless told), drawn as the
    montage draws its axial view (:func:`camcli.montage.montage_views`: radiological orientation, voxel sizes
    kept); for a ``.npy`` volume, the slice ``D = D // 2``."""
    from ..montage import montage_views

    vol = read_volume(src)
    scan01, _ = scale_intensity(vol.data)
    grey = scan01.mean(0)
    centre = np.zeros(grey.shape, dtype=np.float32)  # the views go through the map's peak: the centre voxel
    centre[tuple(s // 2 for s in grey.shape)] = 1.0
    view = montage_views(grey, centre, vol.geometry)[0]
    rows, cols = view.scan.shape
    height, width = rows * view.spacing[0], cols * view.spacing[1]  # in mm
    scale = min(VIEW, max(THUMB, rows, cols)) / max(height, width)  # a small scan is drawn larger
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    picture = Image.fromarray(np.rint(np.clip(view.scan, 0.0, 1.0) * 255.0).astype(np.uint8), "L")
    return picture.resize(size, Image.Resampling.BILINEAR).convert("RGB")


NOTES = {"video": "first frame", "volume": "middle axial slice"}


def input_pictures(src: Path, kind: str, img: Path, notes: list[str]) -> tuple[str | None, str | None]:
    """The thumbnail and the viewing copy of a video or volume input, in ``img`` (file names), made from one
    decoded picture (:func:`first_frame`, :func:`middle_slice`) unless both exist; (None, None) with a note when
    the input cannot be read (the report is built without them)."""
    try:
        thumb, view = picture_name(src, "thumb"), picture_name(src, f"view-{kind}")
    except (OSError, ValueError):
        return None, None
    if not (is_regular(img / thumb) and is_regular(img / view)):  # else made by an earlier build
        try:
            picture = first_frame(src) if kind == "video" else middle_slice(src)
        except UNREADABLE as e:
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            notes.append(text if str(src) in text else f"{src}: {text}")
            return None, None
        save_jpeg(picture, img / thumb, long_side=THUMB)
        save_jpeg(picture, img / view, long_side=VIEW)
    return thumb, view
