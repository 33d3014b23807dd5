"""What the CAM-family jobs (classifiers', detectors' and segmenters') share about their pictures: the overlay
settings in their records and names, and the name of the ``--panel`` picture."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..io.inputs import InputFile
from ..io.outputs import Setting, answered, atomic_save_npy, owned_by, owner_tag, panel_output_path
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


def signed_files(o: CamOptions, methods: Sequence[CamMethod]) -> list[tuple[str, str]]:
    """(tag, suffix) of the signed attributions written per class with ``--save-raw --signed`` (the methods that
    have one: ig, smoothgrad, occlusion)."""
    if not (o.save_raw and o.method_params.signed):
        return []
    return [(m.name, ".signed.npy") for m in methods if "signed" in m.params]


def save_signed(path: Path, signed: dict[str, torch.Tensor] | None, method: str, k: int) -> str | None:
    """``--save-raw --signed``: write ``method``'s signed attribution of slot ``k`` (float32, the model input's size,
    not normalised) at ``path``; None when it has none."""
    if not signed or method not in signed:
        return None
    atomic_save_npy(path, signed[method][k].float().numpy())
    return str(path)


METHODS_JOIN = "_"  # panel-gradcam_gradcam++_layercam: "," separates the settings that follow, "+" is in names
LONGEST_METHODS = 100  # methods' names longer than this, joined, are named by their count and a digest
OLD_METHODS_JOIN = "+"  # how runs before the "_" named them (panel-gradcam+gradcam+++layercam)


def methods_panel_path(
    job: Job[Any],
    methods: Sequence[CamMethod],
    item: InputFile,
    kind: str = "panel",
    suffix: str | None = None,
    join: str = METHODS_JOIN,
) -> Path:
    """``--panel``: the input's comparison picture, named after the methods and the run's settings (the CAM and
    the object jobs); another ``kind`` of file about all the methods (``labels``: the answer of ``--threshold``)."""
    names = join.join(m.name for m in methods)
    if [n.strip().lower() for n in getattr(job.options, "methods", [])] == ["all"]:
        names = "all"  # --method all: panel-all (the methods are in the record)
    elif len(names) > LONGEST_METHODS:  # a name must stay well inside the file system's 255 bytes
        names = f"{len(methods)}-methods-{hashlib.sha256(names.encode()).hexdigest()[:8]}"
    tag = f"{kind}-" + names + job.name_settings
    return panel_output_path(job.options.out, item, tag, suffix or job.ext)


def made_before(
    job: Job[Any], methods: Sequence[CamMethod], item: InputFile, kind: str = "panel", suffix: str | None = None
) -> bool:
    """``--skip-existing``: that file is on disk, made from this input with these settings, under its name or
    under the name earlier runs gave it (methods joined by "+"; with one method the names are the same)."""
    owner, made = owner_tag(item), job.settings_text
    for join in dict.fromkeys((METHODS_JOIN, OLD_METHODS_JOIN)):
        path = methods_panel_path(job, methods, item, kind, suffix, join)
        if path.suffix == ".json" and answered(path, owner, made):
            return True
        if path.suffix != ".json" and path.is_file() and owned_by(path, owner, made):
            return True
    return False
