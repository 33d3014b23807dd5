"""``camcli features`` on videos and volumes: the grids of one frame of a video or one slice of a volume.

* A video with a picture model: frame N (``--frame``, 0-based in the source; default: the middle one, frame
  ``count // 2``) goes through the picture path as a picture would (:meth:`FeatureJob.compute`): its grids are
  those of the same frame saved as a PNG.
* A video with a video classifier (r3d_18 …): the clip of the model's length that holds frame N (clips of
  consecutive frames from frame 0, as ``gradcam`` cuts them, :func:`camcli.jobs.media_input.clips_of`; the last
  one padded with its last frame) goes through the model; each layer's output (B, C, T', H', W') or channels last
  shows its time step t' = ⌊(p + ½)·T' / L⌋, the step whose share [t'/T', (t'+1)/T') of the clip holds the centre
  of frame N (p: its place in the clip of L frames). Strided time convolutions see neighbouring frames too: the
  step is the one aligned with the frame, not the frame alone.
* A volume with a 3-D network (or a video classifier, which reads the scan's first axis as time): the scan made
  into the network's input as ``gradcam`` makes it (:func:`camcli.jobs.media_input.volume_input`); slice N along
  the scan's first spatial axis D (``--slice``; default: ``D // 2``) maps to the layer's depth (or time) step
  d' = ⌊(N + ½)·D' / D⌋ the same way.

The grid's first tile is the frame (or the slice's intensities, scaled to [0, 1], in grey); the title, the file
name (``clip.mp4.features.layer4.frame12.png``) and the record (``index``) say which frame or slice, and which
time step or depth of the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..engine.hooks import capture, eval_mode
from ..engine.layers import resolve
from ..engine.volumes import NCDHW, NDHWC
from ..errors import CamcliError, InputError, LayerError, UsageError
from ..io.inputs import InputFile
from ..io.outputs import all_or_nothing
from ..io.picture import Picture
from ..io.video import read_video
from ..io.volume import read_volume
from ..media_options import intensity
from ..models import preprocess
from .media_input import check_volume_model, clips_of, media_kind, volume_input
from .results import ImageResult

if TYPE_CHECKING:
    from .features import FeatureJob, LayerFeatures


@dataclass
class Shown:
    """Which part of a video or volume one layer's grid shows."""

    tag: str  # in file names: ``frame12``, ``slice16``
    caption: str  # in the grid's title and the summary
    index: dict[str, Any]  # in the record: frame (slice), their count, and the layer's step of it


def feature_media(job: FeatureJob, item: InputFile) -> ImageResult:
    """The grids of one frame of a video or one slice of a volume (all written or none); a file that cannot be
    read, a frame or slice it does not have, or a model that cannot take it: one failed input, one line."""
    try:
        with all_or_nothing(inside=job.options.out):
            if media_kind(item.path) == "video":
                picture, computed = _video(job, item)
            else:
                picture, computed = _volume(job, item)
            return job.write(item, picture, computed)
    except CamcliError as e:
        text = str(e)
        return ImageResult.failed(item.display, text if str(item.path) in text else f"{item.path}: {text}")
    except OSError as e:
        return ImageResult.failed(item.display, f"{item.path}: cannot write output ({e.strerror or e})")


def media_features_exist(job: FeatureJob, item: InputFile) -> bool:
    """``--skip-existing``: the grids of the frame or slice this run would show are all on disk (the default,
    the middle one, needs the video's frame count or the scan's depth: the file is read for it)."""
    try:
        if media_kind(item.path) == "video":
            tag = f"frame{_frame(job, item)[0]}"
        else:
            tag = f"slice{_slice(job, read_volume(item.path).data.shape[1], item)}"
    except CamcliError:
        return False
    return job.outputs_exist(item, tag)


def step_of(position: int, length: int, steps: int) -> int:
    """The step of a layer's ``steps`` (time or depth) whose share of an input of ``length`` frames or slices
    holds the centre of ``position``: ⌊(position + ½)·steps / length⌋."""
    return min(steps - 1, int((2 * position + 1) * steps // (2 * length)))


# ------------------------------------------------------------------------------------------------ videos
def _frame(job: FeatureJob, item: InputFile) -> tuple[int, int]:
    """(the frame shown, the video's frame count): ``--frame``, else the middle frame."""
    o = job.options
    count = read_video(item.path, max_frames=1, max_pixels=o.max_pixels, max_size=o.max_size).frame_count
    n = count // 2 if o.media.frame is None else o.media.frame
    if n >= count:
        raise InputError(f"{item.path}: --frame {n} is past its last frame ({count} frames: 0…{count - 1})")
    return n, count


def _video(job: FeatureJob, item: InputFile) -> tuple[Picture, dict[str, LayerFeatures]]:
    o, model = job.options, job.model
    if model.kind == "volume":
        raise UsageError(f"{model.name} takes volumes, not videos; give a picture model or a video classifier")
    n, count = _frame(job, item)
    length = (model.clip_length or 16) if model.kind == "video" else 1
    start = n // length * length
    video = read_video(item.path, max_frames=length, max_pixels=o.max_pixels, max_size=o.max_size, start=start)
    p = n - start
    if p >= len(video.indices) or video.indices[p] != n:
        raise InputError(f"{item.path}: frame {n} could not be decoded")
    frame = Image.fromarray(video.frames[p])
    said = f"frame {n} (0…{count - 1}, {video.times[p]:.2f} s)"
    index: dict[str, Any] = {"frame": n, "frames": count, "time": round(video.times[p], 4)}
    if model.kind != "video":  # a picture model: the frame as a picture
        x = preprocess(frame, model)[None].to(job.device)
        if job.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)  # as the runner hands pictures over
        computed = job.compute(x)[0]
        for f in computed.values():
            f.shown = Shown(f"frame{n}", said, index)
        return Picture(frame), computed
    inputs = torch.stack([preprocess(Image.fromarray(f), model) for f in video.frames])
    clip = [video.indices[0], video.indices[-1]]
    out = {}
    for name, act in _layer_outputs(job, clips_of(inputs, length)).items():
        steps = int(act.shape[1])
        t = step_of(p, length, steps)
        caption = f"{said}, layer time {t} (0…{steps - 1}) in clip {clip[0]}…{clip[1]}"
        shown = Shown(f"frame{n}", caption, {**index, "clip": clip, "layer_time": t, "layer_times": steps})
        out[name] = job.layer_features(act[:, t].contiguous(), shown)
    return Picture(frame), out


# ------------------------------------------------------------------------------------------------ volumes
def _slice(job: FeatureJob, depth: int, item: InputFile) -> int:
    """The slice shown of a scan of ``depth`` slices: ``--slice``, else the middle one."""
    n = depth // 2 if job.options.media.slice is None else job.options.media.slice
    if n >= depth:
        raise InputError(f"{item.path}: --slice {n} is past its last slice ({depth} along D: 0…{depth - 1})")
    return n


def _volume(job: FeatureJob, item: InputFile) -> tuple[Picture, dict[str, LayerFeatures]]:
    check_volume_model(job.model)
    m = job.options.media
    v = volume_input(job.model, item.path, *intensity(m.window, m.percentiles))
    depth = v.shape[0]
    n = _slice(job, depth, item)
    gray = np.round(v.scan01.mean(0)[n] * 255).astype(np.uint8)  # the channels' mean, as gradcam's montage draws
    picture = Picture(Image.fromarray(gray).convert("RGB"))
    index: dict[str, Any] = {"slice": n, "slices": depth, "axis": "D", "intensity": v.how}
    out = {}
    for name, act in _layer_outputs(job, v.x).items():
        steps = int(act.shape[1])
        k = step_of(n, depth, steps)
        caption = f"slice {n} along D (0…{depth - 1}), layer depth {k} (0…{steps - 1})"
        shown = Shown(f"slice{n}", caption, {**index, "layer_depth": k, "layer_depths": steps})
        out[name] = job.layer_features(act[:, k].contiguous(), shown)
    return picture, out


# ------------------------------------------------------------------------------------------------ shared
def _layer_outputs(job: FeatureJob, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The hooked layers' outputs for the first sample of ``x`` (a clip or a volume, (B, C, D, H, W)), each as
    (C, D', H', W') float on the CPU, whatever its layout (ncdhw or ndhwc, as :mod:`camcli.engine.volumes` reads
    it). Forward hooks only, no gradients."""
    module = job.model.module
    mods = {name: resolve(module, name) for name in job.layers}
    with torch.inference_mode(), eval_mode(module), capture(module, mods, grad=False) as cap:
        module(x[:1].to(job.device))
    out = {}
    for name, act in zip(job.layers, cap.require(job.layers), strict=True):
        layout = job.layouts.get(name)
        kind = layout.kind if layout is not None else None
        if act.dim() != 5 or kind not in (NCDHW, NDHWC):
            raise LayerError(
                f"layer '{name}' gives shape {list(act.shape)}, not a (B, C, T, H, W) or (B, T, H, W, C) grid of the "
                "clip or volume; pick a layer with one (see: camcli layers)"
            )
        a = act[0] if kind == NCDHW else act[0].permute(3, 0, 1, 2)
        out[name] = a.float().cpu()
    return out
