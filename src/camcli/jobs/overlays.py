"""What the CAM-family jobs (classifiers', detectors' and segmenters') share about their pictures: the overlay
settings in their records and names, and the name of the ``--panel`` picture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io.inputs import InputFile
from ..io.outputs import Setting, panel_output_path
from ..methods import CamMethod
from ..options import CamOptions
from .job import Job


def overlay_settings(o: CamOptions) -> dict[str, Any]:
    """How maps are laid over the picture (colormap, alpha, blend): in the settings of every CAM-family run."""
    return {"colormap": o.colormap, "alpha": o.alpha, "blend": o.blend}


def overlay_names(o: CamOptions) -> list[Setting]:
    """Those of :func:`overlay_settings` that differ from the defaults, as output names carry them."""
    d, out = CamOptions(), list[Setting]()
    if o.colormap != d.colormap:
        out.append(("colormap", o.colormap))
    if o.alpha != d.alpha:
        out.append(("alpha", f"{o.alpha:g}"))
    if o.blend != d.blend:
        out.append(("blend", o.blend))
    return out


def methods_panel_path(
    job: Job[Any], methods: Sequence[CamMethod], item: InputFile, kind: str = "panel", suffix: str | None = None
) -> Path:
    """``--panel``: the input's comparison picture, named after the methods and the run's settings (the CAM and
    the object jobs); another ``kind`` of file about all the methods (``labels``: the answer of ``--threshold``)."""
    tag = f"{kind}-" + "+".join(m.name for m in methods) + job.name_settings
    return panel_output_path(job.options.out, item, tag, suffix or job.ext)
