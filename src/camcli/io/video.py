"""Video files in and out, through PyAV (FFmpeg's libraries; the optional extra ``camcli[video]``).

:func:`read_video` decodes a file's first video stream in presentation order and keeps the sampled frames as
RGB arrays (every N-th frame, or the frames nearest to a rate F), never more than those: the frames it drops are
freed as decoding goes on. :func:`write_video` encodes frames (H.264 in ``.mp4``/``.mov``/``.mkv``/``.avi``,
VP9 in ``.webm``) through a temporary file that becomes the target only when it is whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from ..options import DEFAULT_MAX_PIXELS
from .decode import fitted_size, regular_file_size
from .inputs import VIDEO_EXTENSIONS
from .outputs import atomic_file

# the container written for each extension, and its encoders in order of preference
_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".mkv": "matroska", ".webm": "webm"}
_ENCODERS = {".webm": ("libvpx-vp9", "libvpx")}
_DEFAULT_ENCODERS = ("libx264", "mpeg4")
_ENCODER_OPTIONS = {
    "libx264": {"crf": "20", "preset": "veryfast"},
    "libvpx-vp9": {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
}


def is_video(path: Path) -> bool:
    """``path`` names a video file by its extension (:data:`VIDEO_EXTENSIONS`, any case)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class Video:
    """The frames :func:`read_video` kept from a video file, and what it learnt of the file."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, upright (the stream's rotation applied)
    indices: list[int]  # each frame's number in the source (0-based; decode order = presentation order)
    times: list[float]  # each frame's time in seconds from the first frame (its timestamp)
    fps: float  # the source's average frame rate
    frame_count: int  # frames in the source (counted while decoding)
    size: tuple[int, int]  # (width, height) of the source, upright


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise UsageError("reading videos needs PyAV: pip install 'camcli[video]'") from None
    return av


def read_video(
    path: Path,
    every: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_size: int | None = None,
    start: int = 0,
) -> Video:
    """Decode ``path``'s first video stream and keep a sample of its frames.

    Args:
        every: keep frames 0, N, 2N, … (default: every frame).
        fps: keep the frame nearest (by timestamp; the earlier on a tie) to each of the times 0, 1/F, 2/F, … up
            to the last frame's time plus half a frame; a frame nearest to several times is kept once. Not with
            ``every``.
        max_frames: keep at most this many (the first ones); decoding stops there and the rest of the file is
            only demuxed, its packets counted as frames (one frame per packet) for ``frame_count``.
        max_pixels: refuse frames of more pixels than this (a decompression bomb; None: no limit).
        max_size: scale frames down so that their longest side is at most this (aspect kept, FFmpeg's area
            filter), as they are decoded.
        start: the frames before frame ``start`` are decoded and let go, never kept (``every`` counts from it);
            not with ``fps``.

    A rotation in the stream's display matrix (phones' portrait videos) is applied in steps of 90°, so frames
    are upright. Raises :class:`InputError` (one line) for a file that is missing, not a video, cannot be decoded,
    has no video stream or no frame, or a frame over ``max_pixels``; :class:`UsageError` for bad sampling options
    or when PyAV is missing.
    """
    if every is not None and fps is not None:
        raise UsageError("--every and --fps both choose frames; pass one of them")
    if every is not None and every < 1:
        raise UsageError(f"--every {every} is too small; use 1 or more")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise UsageError(f"--fps {fps} must be a positive number of frames per second")
    if max_frames is not None and max_frames < 1:
        raise UsageError(f"--max-frames {max_frames} is too small; use 1 or more")
    if start < 0 or (start and fps is not None):
        raise UsageError(f"start frame {start}: use 0 or more, and not with --fps")
    av = _av()
    regular_file_size(path, "video")
    try:
        container = av.open(str(path), "r")
    except av.FFmpegError as e:
        raise InputError(f"{path}: cannot decode video: {_reason(e)}") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream (an audio-only file, or one cut short?); pass a video file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads; frames still come out in presentation order
        try:
            return _decode(path, container, stream, every, fps, max_frames, max_pixels, max_size, start)
        except av.FFmpegError as e:
            raise InputError(f"{path}: cannot decode video: {_reason(e)}") from None


def _reason(error: Exception) -> str:
    """FFmpeg's own words for an error, on one line, without the file name PyAV adds."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())[:200]


def _decode(
    path: Path,
    container: Any,
    stream: Any,
    every: int | None,
    fps: float | None,
    max_frames: int | None,
    max_pixels: int | None,
    max_size: int | None,
    start: int = 0,
) -> Video:
    """The decoding loop of :func:`read_video`: packets demuxed one by one, frames decided on as they come out."""
    rate = Fraction(stream.average_rate or stream.guessed_rate or 0)
    step = 1 / Fraction(fps) if fps is not None else None  # the sampling interval, exact (a float is a fraction)
    kept = _Kept(max_size)
    decoded = packets = 0  # frames out of the decoder; packets (one frame each) into it
    first_pts: int | None = None
    t = Fraction(0)
    target = 0  # with fps: the number k of the next time k/F to take a frame for
    prev: tuple[int, Fraction, Any] | None = None  # with fps: the last frame out, not yet decided on
    # AVI stores no presentation times (its frames are at a constant rate): with B-frames FFmpeg's guesses come
    # out of order, so there a frame's time is its number at the rate
    by_pts = "avi" not in container.format.name.split(",")
    decoding = True
    for packet in container.demux(stream):
        packets += 1 if packet.size else 0  # the last packet, empty, only flushes the decoder
        if not decoding:  # the cap was reached: the rest is counted, not decoded
            continue
        for frame in packet.decode():
            if max_pixels is not None and frame.width * frame.height > max_pixels:
                raise InputError(
                    f"{path}: frames of {frame.width}x{frame.height} are over the limit of {max_pixels:,} pixels "
                    "(--max-pixels)"
                )
            if first_pts is None and frame.pts is not None:
                first_pts = frame.pts
            if by_pts and frame.pts is not None and first_pts is not None and frame.time_base is not None:
                t = (frame.pts - first_pts) * Fraction(frame.time_base)
            else:  # no timestamps: the frame's number at the average rate
                t = decoded / rate if rate else Fraction(decoded)
            index, decoded = decoded, decoded + 1
            if step is None:
                if index >= start and (every is None or (index - start) % every == 0):
                    kept.add(index, t, frame)
            elif prev is not None and target * step <= (middle := (prev[1] + t) / 2):
                kept.add(*prev)  # the frame nearest to the times k/F up to the middle between it and this one
                while target * step <= middle:
                    target += 1
            prev = (index, t, frame) if step is not None else None
            if max_frames is not None and len(kept.indices) >= max_frames:
                decoding = False
                break
    if decoding and step is not None and prev is not None:
        end = prev[1] + (1 / (2 * rate) if rate else 0)  # half a frame after the last one
        if target * step <= end:
            kept.add(*prev)
    if stream.frames and packets < stream.frames:  # the header's count (MP4, AVI; 0: not known)
        raise InputError(
            f"{path}: cannot decode video: the file ends early ({packets} of the {stream.frames} frames its header "
            "lists; truncated?)"
        )
    if not kept.indices:
        raise InputError(f"{path}: no frame could be decoded from its video stream")
    measured = Fraction(decoded - 1) / t if t > 0 else Fraction(0)
    return Video(
        frames=kept.stack(),
        indices=kept.indices,
        times=[float(x) for x in kept.times],
        fps=float(rate or measured),
        frame_count=decoded if decoding else packets,
        size=kept.source_size,
    )


class _Kept:
    """The frames kept so far, as RGB arrays of one size: the first frame's (upright, within ``max_size``)."""

    def __init__(self, max_size: int | None) -> None:
        self.max_size = max_size
        self.arrays: list[Any] = []  # (H, W, 3) uint8 arrays; None once copied into the stack
        self.indices: list[int] = []
        self.times: list[Fraction] = []
        self.source_size = (0, 0)
        self.coded: tuple[int, int] | None = None  # (width, height) each frame is converted at, before rotation
        self.shape: tuple[int, ...] = ()  # of the arrays

    def add(self, index: int, t: Fraction, frame: Any) -> None:
        turns = round((frame.rotation or 0) / 90) % 4  # counterclockwise quarter turns that make it upright
        if self.coded is None:
            w, h = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
            self.source_size = (w, h)
            fitted = fitted_size(w, h, self.max_size) or (w, h)
            self.coded = (fitted[1], fitted[0]) if turns % 2 else fitted
        width, height = self.coded
        if (width, height) == (frame.width, frame.height):
            rgb = frame.to_ndarray(format="rgb24")
        else:
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
        rgb = np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb
        self.shape = rgb.shape
        self.arrays.append(rgb)
        self.indices.append(index)
        self.times.append(t)

    def stack(self) -> np.ndarray:
        """(T, H, W, 3) uint8, filled frame by frame as each is let go: the kept frames plus one at most in memory."""
        out = np.empty((len(self.arrays), *self.shape), dtype=np.uint8)
        for i in range(len(out)):
            out[i] = self.arrays[i]
            self.arrays[i] = None
        return out


def video_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as the fraction a container stores: a float is read as the nearest fraction with a
    denominator of at most 65535 (MPEG-4 part 2's limit), so that the float of 30000/1001 (29.97…) is 30000/1001
    again and 12.5 is 25/2."""
    if not (isinstance(fps, Fraction) or math.isfinite(fps)) or fps <= 0:
        raise UsageError(f"frame rate {fps} must be a positive number of frames per second")
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(65535)


def encoder_for(target: Path) -> str:
    """The encoder :func:`write_video` uses for ``target``'s extension: H.264 (libx264) where this FFmpeg has it,
    MPEG-4 part 2 else; VP9 (or VP8) for ``.webm``. :class:`UsageError` for another extension or no encoder."""
    av = _av()
    suffix = target.suffix.lower()
    if suffix not in _CONTAINERS:
        raise UsageError(f"{target}: cannot write a video as '{suffix}'; use one of {', '.join(VIDEO_EXTENSIONS)}")
    names = _ENCODERS.get(suffix, _DEFAULT_ENCODERS)
    for name in names:
        try:
            av.Codec(name, "w")
        except (av.FFmpegError, ValueError):  # PyAV's UnknownCodecError is a ValueError
            continue
        return name
    raise UsageError(f"{target}: this FFmpeg (PyAV) has no {' or '.join(names)} encoder; write another format")


def write_video(
    target: Path,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float | Fraction,
    size: tuple[int, int] | None = None,
) -> str:
    """Encode ``frames`` ((H, W, 3) uint8 RGB each, or one (T, H, W, 3) array) as a video at ``target``; returns
    the encoder's name (:func:`encoder_for`).

    Every frame given becomes one frame of the file, at ``fps`` (a :class:`~fractions.Fraction` time base,
    :func:`video_rate`): frame i is shown at i / fps. Frames are scaled (bilinear) to ``size`` (width, height;
    default: the first frame's). YUV 4:2:0, the format players and browsers play, needs even sizes: an odd width
    or height is **padded** by one column or row that repeats the last one (nothing is cropped; the file is then
    one pixel wider or taller than ``size``). MP4 and MOV files get their index at the front (``faststart``) so
    that a browser plays them while they load. Frames are encoded as they come (an iterator is never held whole);
    the file is written to a temporary file beside ``target`` and renamed when whole
    (:func:`~camcli.io.outputs.atomic_file`), so ``target`` is never a partial video.
    """
    av = _av()
    codec = encoder_for(target)
    rate = video_rate(fps)
    it: Iterator[np.ndarray] = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    width, height = size or (first.shape[1], first.shape[0])
    if width < 1 or height < 1:
        raise ValueError(f"cannot write a video of {width}x{height} pixels")
    even = (width + width % 2, height + height % 2)
    suffix = target.suffix.lower()
    options = {"movflags": "+faststart"} if suffix in (".mp4", ".mov") else {}
    with atomic_file(target) as tmp, av.open(str(tmp), "w", format=_CONTAINERS[suffix], options=options) as out:
        encoder_options = dict(_ENCODER_OPTIONS.get(codec, {}))
        if suffix == ".avi":  # AVI has no presentation times for B-frames to be reordered by
            encoder_options["bf"] = "0"
        stream = out.add_stream(codec, rate=rate, options=encoder_options)
        stream.width, stream.height = even
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        if codec == "mpeg4":  # its default of 200 kb/s blurs; about what x264 spends at crf 20
            stream.bit_rate = int(max(1_000_000, even[0] * even[1] * float(rate) * 0.15))
        for i, array in enumerate(_chain(first, it)):
            frame = _video_frame(av, array, (width, height), even)
            frame.pts, frame.time_base = i, 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return codec


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _video_frame(av: Any, array: np.ndarray, size: tuple[int, int], even: tuple[int, int]) -> Any:
    """One (H, W, 3) uint8 picture as a PyAV frame of ``size``, padded to ``even`` by repeating the edge."""
    a = np.asarray(array)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"video frames are (H, W, 3) uint8 arrays, not {a.dtype} {a.shape}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
    if (a.shape[1], a.shape[0]) != size:
        frame = frame.reformat(width=size[0], height=size[1], interpolation="BILINEAR")
    if size == even:
        return frame
    a = frame.to_ndarray(format="rgb24")
    padded = np.pad(a, ((0, even[1] - size[1]), (0, even[0] - size[0]), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(padded, format="rgb24")
