"""The options of videos and volumes, as plain dataclasses: which frames of a video (``--every --fps
--max-frames``) and how a scan's intensities are scaled (``--intensity-window --intensity-percentiles``); the
Python API takes them as ``CamOptions(media=MediaOptions(...))``. ``camcli features`` shows one frame or slice
(``--frame --slice``): ``FeatureOptions(media=FeatureMediaOptions(...))``.

Torch-free, like :mod:`camcli.options`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import at_least, at_most, finite
from .errors import UsageError

DEFAULT_MAX_FRAMES = 300
MAX_FRAMES = 100_000  # --max-frames: frames of one video held (as decoded pictures) at once
MAX_EVERY = 10**9  # --every: beyond any video's frame count (only its first frame is kept)
MAX_FPS = 1000.0  # --fps: beyond any video's rate (every frame is kept)
MAX_INDEX = 2**31 - 1  # --frame, --slice: beyond any file's frames (a day at 60 fps is 5.2 million) or slices


@dataclass
class MediaOptions:
    """Videos and volumes (``camcli gradcam clip.mp4``, ``scan.nii.gz``): which frames, and how a scan's intensities
    are scaled to [0, 1] before the model's own normalisation."""

    every: int | None = None  # videos: every N-th frame
    fps: float | None = None  # videos: the frames nearest to this rate's times
    max_frames: int = DEFAULT_MAX_FRAMES  # videos: at most this many frames (the first ones)
    window: str | None = None  # volumes: "LOW,HIGH" in the scan's units (CT: -1000,400); None: percentiles
    percentiles: str = "0.5,99.5"  # volumes: scaled between these percentiles of the scan

    def check(self) -> None:
        if self.every is not None and self.fps is not None:
            raise UsageError("--every and --fps both choose frames: give one")
        at_least("--every", self.every, 1)
        at_most("--every", self.every, MAX_EVERY)
        if self.fps is not None:
            finite("--fps", self.fps)
            if self.fps <= 0:
                raise UsageError(f"--fps {self.fps:g} is too small; use a positive rate")
            at_most("--fps", self.fps, MAX_FPS)
        at_least("--max-frames", self.max_frames, 1)
        at_most("--max-frames", self.max_frames, MAX_FRAMES)
        intensity(self.window, self.percentiles)

    @staticmethod
    def pair(flag: str, text: str) -> tuple[float, float]:
        """``"-1000,400"`` → (-1000.0, 400.0), low below high, or a :class:`UsageError` naming ``flag``."""
        try:
            low, high = (float(v) for v in text.split(","))
        except ValueError:
            raise UsageError(f"{flag} {text!r}: give two numbers, LOW,HIGH") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise UsageError(f"{flag} {text!r}: LOW must be below HIGH (both finite)")
        return low, high


@dataclass
class FeatureMediaOptions:
    """``camcli features`` on videos and volumes: which frame or slice is shown (0-based; None: the middle one), and
    how a scan's intensities are scaled (as :class:`MediaOptions` scales them for ``gradcam``)."""

    frame: int | None = None  # videos: the source's frame shown (a video classifier: the layer's time step of it)
    slice: int | None = None  # volumes: the slice along the scan's first spatial axis (D) shown
    window: str | None = None  # volumes: as MediaOptions.window
    percentiles: str = "0.5,99.5"  # volumes: as MediaOptions.percentiles

    def check(self) -> None:
        for flag, value in (("--frame", self.frame), ("--slice", self.slice)):
            at_least(flag, value, 0)
            at_most(flag, value, MAX_INDEX)
        intensity(self.window, self.percentiles)


def intensity(window: str | None, percentiles: str) -> tuple[tuple[float, float] | None, tuple[float, float]]:
    """``--intensity-window`` (None: not given) and ``--intensity-percentiles`` as numbers, checked (a
    :class:`UsageError` naming the option), for :func:`camcli.io.volume.scale_intensity`."""
    low_high = MediaOptions.pair("--intensity-window", window) if window is not None else None
    return low_high, MediaOptions.pair("--intensity-percentiles", percentiles)
