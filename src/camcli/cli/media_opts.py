"""The options of videos and volumes in ``gradcam``/``cam`` (:class:`MediaArgs`, a group expanded by
:func:`camcli.cli.params.shared_options`): which frames of a video, how a scan's intensities are scaled; and in
``features`` (:class:`FeatureMediaArgs`): which frame or slice is shown, how a scan's intensities are scaled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from ..media_options import FeatureMediaOptions, MediaOptions
from ..options import CamOptions, FeatureOptions
from .params import GROUPS, option

MEDIA = "Videos and volumes"


@dataclass(frozen=True)
class MediaArgs:
    """``--every --fps --max-frames --intensity-window --intensity-percentiles``."""

    every: int | None
    fps: float | None
    max_frames: int
    intensity_window: str | None
    intensity_percentiles: str

    def apply_to(self, options: CamOptions) -> None:
        options.media = MediaOptions(
            every=self.every,
            fps=self.fps,
            max_frames=self.max_frames,
            window=self.intensity_window,
            percentiles=self.intensity_percentiles,
        )


def _m(*names: str, help: str, metavar: str | None = None) -> Any:
    return typer.Option(*names, help=help, metavar=metavar, rich_help_panel=MEDIA)


_D = MediaOptions()
GROUPS[MediaArgs] = [
    option(
        "every",
        Annotated[int | None, _m("--every", help="Videos: every N-th frame. \\[default: every frame]", metavar="N")],
        None,
    ),
    option(
        "fps",
        Annotated[float | None, _m("--fps", help="Videos: the frames nearest to this rate's times.", metavar="F")],
        None,
    ),
    option(
        "max_frames",
        Annotated[int, _m("--max-frames", help="Videos: at most this many frames (the first ones).", metavar="N")],
        _D.max_frames,
    ),
    option(
        "intensity_window",
        Annotated[
            str | None,
            _m(
                "--intensity-window",
                help="Volumes: scale the scan's values from LOW to HIGH, in its units (CT: -1000,400). "
                "\\[default: the percentiles]",
                metavar="LOW,HIGH",
            ),
        ],
        None,
    ),
    option(
        "intensity_percentiles",
        Annotated[
            str,
            _m("--intensity-percentiles", help="Volumes: scale between these percentiles of the scan.", metavar="P,Q"),
        ],
        _D.percentiles,
    ),
]


@dataclass(frozen=True)
class FeatureMediaArgs:
    """``features``' ``--frame --slice --intensity-window --intensity-percentiles``."""

    frame: int | None
    slice: int | None
    intensity_window: str | None
    intensity_percentiles: str

    def apply_to(self, options: FeatureOptions) -> None:
        options.media = FeatureMediaOptions(
            frame=self.frame, slice=self.slice, window=self.intensity_window, percentiles=self.intensity_percentiles
        )


GROUPS[FeatureMediaArgs] = [
    option(
        "frame",
        Annotated[
            int | None,
            _m(
                "--frame",
                help="Videos: show this frame (0-based); a video classifier's layers show their time step of it, "
                "in the clip that holds it. \\[default: the middle frame]",
                metavar="N",
            ),
        ],
        None,
    ),
    option(
        "slice",
        Annotated[
            int | None,
            _m(
                "--slice",
                help="Volumes: show this slice along the first spatial axis, D (0-based); the layers show their "
                "depth step of it. \\[default: the middle slice]",
                metavar="N",
            ),
        ],
        None,
    ),
    *GROUPS[MediaArgs][3:],  # --intensity-window, --intensity-percentiles
]
