"""Options of the CAM commands that other commands share (``--method``, ``--target``), and the detector and
segmenter options of ``gradcam``/``cam`` (:class:`ObjectArgs`, a group expanded by
:func:`camcli.cli.params.shared_options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from ..options import DEFAULT_METHOD, METHOD_NAMES, CamOptions
from .completion import EXPLAIN, complete_method
from .params import GROUPS, option

OBJECTS = "Detectors and segmenters"


def method_option(what: str) -> Any:  # --method (repeatable), its help introduced by ``what``
    return typer.Option(
        "--method",
        help=f"{what}: {', '.join(METHOD_NAMES)} (camcli methods). \\[default: {DEFAULT_METHOD}]",
        metavar="METHOD",
        autocompletion=complete_method,
        rich_help_panel=EXPLAIN,
    )


def target_option(default: str) -> Any:  # --target/-t (repeatable); ``default``: the classes without it
    return typer.Option(
        "--target",
        "-t",
        help=f"Class index or name to explain, repeatable. \\[default: {default}]",
        metavar="CLASS",
        rich_help_panel=EXPLAIN,
    )


@dataclass(frozen=True)
class ObjectArgs:
    """``--min-score --max-objects --box --iou --mask --region --norm-in-box``: which objects of a detector or
    segmenter are explained."""

    min_score: float
    max_objects: int
    box: str | None
    iou: float
    mask: str | None
    region: str | None
    norm_in_box: bool

    def apply_to(self, options: CamOptions) -> None:
        options.min_score = self.min_score
        options.max_objects = self.max_objects
        options.box = self.box
        options.iou = self.iou
        options.mask = self.mask
        options.region = self.region
        options.norm_in_box = self.norm_in_box


def _opt(*names: str, help: str, metavar: str | None = None) -> Any:
    return typer.Option(*names, help=help, metavar=metavar, rich_help_panel=OBJECTS)


GROUPS[ObjectArgs] = [
    option(
        "min_score",
        Annotated[float, _opt("--min-score", help="Detectors: explain detections scoring at least this.")],
        CamOptions.min_score,
    ),
    option(
        "max_objects",
        Annotated[int, _opt("--max-objects", help="At most N objects (detections, segmented classes) per image.")],
        CamOptions.max_objects,
    ),
    option(
        "box",
        Annotated[
            str | None,
            _opt("--box", metavar="X1,Y1,X2,Y2", help="Detectors: explain the detection matching this box (--iou)."),
        ],
        None,
    ),
    option("iou", Annotated[float, _opt("--iou", help="--box matches a detection with at least this IoU.")], 0.5),
    option(
        "mask",
        Annotated[str | None, _opt("--mask", metavar="PNG", help="Segmenters: explain the class over these pixels.")],
        None,
    ),
    option(
        "region",
        Annotated[
            str | None, _opt("--region", metavar="X1,Y1,X2,Y2", help="Segmenters: explain the class over this box.")
        ],
        None,
    ),
    option(
        "norm_in_box",
        Annotated[bool, _opt("--norm-in-box", help="Detectors: normalise each object's map inside its box.")],
        False,
    ),
]
