"""``camcli report OUT``, and ``--report`` on the commands that run over inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .boundary import guarded
from .completion import OUTPUT
from .params import DebugOpt

ReportOpt = Annotated[
    bool,
    typer.Option(
        "--report", help="When the run ends, (re)build OUT/index.html: camcli report OUT.", rich_help_panel=OUTPUT
    ),
]


def build_and_tell(out: Path, *, quiet: bool = False) -> None:
    """Build the report of ``out`` and say where it is (the problems in the ledgers first)."""
    from ..report import build_report
    from . import console

    info = build_report(out)
    if not quiet:
        for line in info.problems:
            console.error(line)
        console.info(
            f"report: {info.path} ({info.inputs} input(s), {info.failed} failed, {info.records} records, "
            f"{info.seconds:.1f}s); open it in a browser, offline"
        )


def report(
    out: Annotated[Path, typer.Argument(help="An output folder of camcli gradcam, cam, features or evaluate.")],
    debug: DebugOpt = False,
) -> None:
    """Build OUT/index.html: every input as a card with its first overlay, class and status (filter by text,
    method, class, status and kind; sort), a view per image with the overlays side by side, an opacity slider, the
    class probabilities, the feature grids and the evaluate metrics, and evaluate's summary with its plots. Each
    view has its own address (Back, Forward, a copied link); a click shows a picture at full size. Static and
    offline: open it from disk or serve the folder.

    Example: camcli report cams/
    """
    with guarded(debug):
        build_and_tell(out)
