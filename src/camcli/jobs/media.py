"""Videos and volumes in ``camcli gradcam``/``cam``: an input that holds many frames or one volume, explained whole
(:func:`explain_media`), its files all written or none, its records in the manifest like a picture's.

* A video with a picture model: the frames chosen (``--every``/``--fps``, at most ``--max-frames``) go through the
  model in batches like pictures; the class explained is the one most probable on average over the frames (or
  ``--target``), the same in every frame, so that the overlay video shows one question answered over time.
* A video with a video classifier (``LoadedModel.kind == "video"``: torchvision's r3d_18 …): consecutive clips of
  the model's length (the last one padded with its last frame, whose maps are dropped), each frame resized whole
  to the model's input (no crop: the map covers the frame); the class most probable on average over the clips;
  a spatio-temporal map per clip (:func:`camcli.methods.volume.explain_volume`), upsampled to its frames.
* A volume (NIfTI, ``.npy``) with a 3-D network (``kind == "volume"``): intensities scaled to [0, 1] (a window or
  percentiles), resized (trilinear) to the network's input; the map resized back to the scan's voxels.

Outputs per method and class, named as a picture's are (``OUT/<input>.<method>.<class>…``): for a video, the
overlay video (``.mp4``, H.264; the chosen frames at their rate), a contact sheet (``.sheet.png``: up to
:data:`SHEET_FRAMES` frames with the class and time under each) and with ``--save-raw`` the maps as ``.npy``
(T, H, W) at the frames' size; for a volume, the map aligned on the scan (``.nii.gz`` with the scan's affine and
header; ``.npy`` for a ``.npy`` scan) and a montage picture (axial, coronal and sagittal slices through the map's
peak and a projection, :mod:`camcli.montage`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .. import render
from ..engine.targets import Target
from ..errors import CamcliError, UsageError
from ..io.inputs import InputFile
from ..io.outputs import all_or_nothing, atomic_save_npy, find_cam_outputs, owner_tag
from ..io.video import read_video, write_video
from ..io.volume import map_suffix, write_map_nifti
from ..media_options import DEFAULT_MAX_FRAMES, MediaOptions, intensity
from ..methods import Explanation, explain_smooth, upsample, upsample_normalized
from ..methods.volume import check_volume_methods, explain_volume, upsample_volume
from ..models import preprocess
from ..montage import montage_tiles
from ..sheets import captioned_sheet
from .media_input import check_volume_model, clips_of, media_kind, volume_input
from .results import CamOutput, ImageResult, Output

if TYPE_CHECKING:
    from .cam import CamJob

SHEET_FRAMES = 12  # frames on a video's contact sheet (evenly spaced over the frames explained)


@dataclass
class _Explained:
    """One input's maps: the mean probabilities, what was explained, and per method (K, T, h, w) maps."""

    probs: torch.Tensor
    targets: list[Target]
    maps: dict[str, torch.Tensor]


def explain_media(job: CamJob, item: InputFile) -> ImageResult:
    """Explain one video or volume and write its outputs (none of them when anything fails); a file that cannot
    be read, or a model that cannot take it, is one failed input with a one-line reason."""
    kind = media_kind(item.path)
    try:
        with all_or_nothing(inside=job.options.out):
            if kind == "video":
                return _video(job, item)
            return _volume(job, item)
    except CamcliError as e:
        text = str(e)
        return ImageResult.failed(item.display, text if str(item.path) in text else f"{item.path}: {text}")


def media_outputs_exist(job: CamJob, item: InputFile) -> bool:
    """``--skip-existing``: every method has its main file for this input (a video's overlay video, a volume's
    montage); the files of one input are written all or none, and its record says ok (the ledger checks)."""
    video = media_kind(item.path) == "video"
    suffix = ".mp4" if video else ".montage" + job.ext
    extra = _frames_tag(job.options.media) if video else ""
    out = job.options.out
    return all(find_cam_outputs(out, item, m.name + extra + job.name_settings, suffix, False) for m in job.methods)


def _frames_tag(m: MediaOptions) -> str:
    """The frame options that differ from the defaults, for a video's output names (``,every=2``)."""
    named = [
        ("every", m.every),
        ("fps", m.fps),
        ("max-frames", m.max_frames if m.max_frames != DEFAULT_MAX_FRAMES else None),
    ]
    return "".join(f",{k}={v:g}" for k, v in named if v is not None)


# ------------------------------------------------------------------------------------------------ shared
def _refuse_options(job: CamJob) -> None:
    o = job.options
    if o.references or o.prompts or o.targets_file or o.threshold is not None:
        raise UsageError("videos and volumes take --target or their most probable class (not --reference, "
                         "--prompt, --targets-file or --threshold)")  # fmt: skip


def _record(job: CamJob, method: str, target: Target, probs: torch.Tensor, files: dict[str, Any]) -> CamOutput:
    return CamOutput(
        method=method,
        class_index=target.index,
        class_name=job.target_name(target),
        probability=round(float(probs[target.index]), 6),
        overlay=files.pop("overlay"),
        raw=files.pop("raw", None),
        target=str(target) if target.negate else None,
        media=files,
    )


# ------------------------------------------------------------------------------------------------ videos
def _video(job: CamJob, item: InputFile) -> ImageResult:
    o, model = job.options, job.model
    _refuse_options(job)
    m: MediaOptions = o.media
    video = read_video(item.path, m.every, m.fps, m.max_frames, o.max_pixels, o.max_size)
    frames = video.frames
    with torch.inference_mode():
        inputs = torch.stack([preprocess(Image.fromarray(f), model) for f in frames])
    explained = _video_clips(job, inputs) if model.kind == "video" else _video_frames(job, inputs)
    rate = float(m.fps) if m.fps else video.fps / (m.every or 1)
    info = {"kind": "video", "frames": video.indices, "times": [round(t, 4) for t in video.times],
            "fps": round(rate, 4), "source_frames": video.frame_count}  # fmt: skip
    if model.kind == "video":
        length = model.clip_length or 16
        info["clips"] = [[video.indices[i], video.indices[min(i + length, len(frames)) - 1]]
                         for i in range(0, len(frames), length)]  # fmt: skip
    written: list[Output] = []
    owner = owner_tag(item)
    size = (frames.shape[1], frames.shape[2])
    for name, maps in explained.maps.items():
        for k, target in enumerate(explained.targets):
            files = _write_video(job, item, name, target, frames, maps[k], size, rate, video.times, owner)
            written.append(_record(job, name, target, explained.probs, {**files, **info}))
    return ImageResult(
        item.display, True, size=(size[1], size[0]), predictions=job.predictions(explained.probs), written=written
    )


Run = Callable[[torch.Tensor, list[Target] | None], Explanation]  # rows, their targets (None: each row's top)


def _explained(job: CamJob, rows: torch.Tensor, run: Run) -> _Explained:
    """Every row (a frame or a clip) explained in batches by ``run(x, targets)``, for the class most probable
    on average over the rows (or ``--target``'s): one pass explains each row's own top class and gives every
    probability; the rows whose top class is not the one chosen are explained again for it (none, when the
    input's frames agree). Maps: per method (K, rows, …)."""
    b, device, given = job.batch_size, job.device, list(job.targets)

    def batch(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)  # channels last for a picture model on the CPU, as the picture runner does
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and device.type == "cpu" else x

    probs, tops, maps = [], [], dict[str, list[torch.Tensor]]()
    for i in range(0, len(rows), b):
        x = batch(rows[i : i + b])
        ex = run(x, given or None)
        probs.append(ex.probs.float().cpu())
        tops.append(ex.classes[:, 0].cpu())
        for name, v in ex.by_method.items():
            maps.setdefault(name, []).append(v.float().cpu())
    mean = torch.cat(probs).mean(0)
    targets = given or [Target(int(mean.argmax()))]
    by = {name: torch.cat(v) for name, v in maps.items()}  # (rows, K, …)
    redo = (torch.cat(tops) != targets[0].index).nonzero().flatten() if not given else torch.zeros(0, dtype=torch.long)
    for j in range(0, len(redo), b):
        idx = redo[j : j + b]
        ex = run(batch(rows[idx]), targets)
        for name, v in ex.by_method.items():
            by[name][idx] = v.float().cpu()
    return _Explained(mean, targets, {name: v.transpose(0, 1) for name, v in by.items()})


def _video_frames(job: CamJob, inputs: torch.Tensor) -> _Explained:
    """A picture model: the frames in batches, one map per frame at the layer's grid (or the input's size)."""
    o = job.options

    def run(x: torch.Tensor, targets: list[Target] | None) -> Explanation:
        return explain_smooth(job.model.module, x, job.layers, job.methods, smooth=o.smooth, noise=o.noise,
                              aug=o.aug_smooth, targets=targets, top_k=1, score_batch=o.score_batch,
                              layouts=job.layouts, params=o.method_params, mean_std=(job.model.mean, job.model.std),
                              scorer=job.plan.scorer)  # fmt: skip

    return _explained(job, inputs, run)


def _video_clips(job: CamJob, inputs: torch.Tensor) -> _Explained:
    """A video classifier: clips of its length (the last padded with its last frame), a map per clip."""
    o = job.options
    _one_layer(job)
    t = inputs.shape[0]

    def run(x: torch.Tensor, targets: list[Target] | None) -> Explanation:
        return explain_volume(job.model.module, x, job.layers[0], job.methods, targets, top_k=1,
                              score_batch=o.score_batch, layout=job.layouts.get(job.layers[0]),
                              scorer=job.plan.scorer, params=o.method_params)  # fmt: skip

    clips = clips_of(inputs, job.model.clip_length or 16)  # the last padded: those frames' maps are dropped
    done = _explained(job, clips, run)  # maps (K, clips, L, H, W) → (K, frames, H, W)
    done.maps = {name: v.flatten(1, 2)[:, :t] for name, v in done.maps.items()}
    return done


def _one_layer(job: CamJob) -> None:
    if len(job.layers) != 1:
        raise UsageError("a video classifier or 3-D network is explained at one --layer (several are for pictures)")
    check_volume_methods(job.methods, job.options.method_params)


def _write_video(
    job: CamJob,
    item: InputFile,
    method: str,
    target: Target,
    frames: np.ndarray,
    maps: torch.Tensor,
    size: tuple[int, int],
    rate: float,
    times: list[float],
    owner: str,
) -> dict[str, Any]:
    """The overlay video, its contact sheet and (--save-raw) the maps of one method and class."""
    o = job.options
    path = job.output_path(item, method + _frames_tag(o.media), target, ".mp4")
    # (H, W) each at the frames' size: a picture model's frame normalised on its own, as a picture's map is; a video
    # classifier's maps keep their clip's normalisation (a frame with less evidence stays darker)
    resize = upsample if job.model.kind == "video" else upsample_normalized
    full = [resize(maps[i], size) for i in range(len(frames))]

    shown = [int(i) for i in np.unique(np.linspace(0, len(frames) - 1, min(SHEET_FRAMES, len(frames))).round())]
    kept: dict[int, Image.Image] = {}  # the sheet's frames, kept as the video's are drawn

    def overlays() -> Iterator[np.ndarray]:
        for i, (frame, cam) in enumerate(zip(frames, full, strict=True)):
            picture = render.overlay(Image.fromarray(frame), cam.numpy(), o.colormap, o.alpha, o.blend)
            if i in shown:
                kept[i] = picture
            yield np.asarray(picture)

    codec = write_video(path, overlays(), rate)
    files: dict[str, Any] = {"overlay": str(path), "codec": codec}
    tiles = [kept[i] for i in shown]
    name = job.target_name(target)
    captions = [f"{target.index} {name} · {times[i]:.2f} s" for i in shown]
    title = f"{item.rel} · {method} · {job.model.name} · {len(shown)} of {len(frames)} frames"
    sheet = path.with_name(path.name[: -len(".mp4")] + ".sheet" + job.ext)
    job.save_picture(sheet, captioned_sheet(tiles, captions, title=title, colormap=o.colormap), owner)
    files["sheet"] = str(sheet)
    if o.save_raw:
        raw = path.with_suffix(".npy")
        atomic_save_npy(raw, torch.stack(full).numpy().astype(np.float32, copy=False))
        files["raw"] = str(raw)
    return files


# ------------------------------------------------------------------------------------------------ volumes
def _volume(job: CamJob, item: InputFile) -> ImageResult:
    o, model = job.options, job.model
    _refuse_options(job)
    check_volume_model(model)
    _one_layer(job)
    m: MediaOptions = o.media
    v = volume_input(model, item.path, *intensity(m.window, m.percentiles))
    vol, scan01, how, shape, size = v.vol, v.scan01, v.how, v.shape, v.size
    x = v.x.to(job.device)
    targets = list(job.targets)
    ex = explain_volume(model.module, x, job.layers[0], job.methods, targets or None, top_k=1,
                        score_batch=o.score_batch, layout=job.layouts.get(job.layers[0]), scorer=job.plan.scorer,
                        params=o.method_params)  # fmt: skip
    probs = ex.probs[0].float().cpu()
    if not targets:
        targets = [Target(int(ex.classes[0, 0]))]
    owner, written = owner_tag(item), list[Output]()
    shown = scan01.mean(0)  # the channels' mean, drawn under the map
    info = {"kind": "volume", "shape": list(shape), "input_size": list(size), "intensity": how, "axes": vol.axes}
    for name, maps in ex.by_method.items():
        for k, target in enumerate(targets):
            cam = upsample_volume(maps[0, k : k + 1].float().cpu(), shape)[0].numpy()
            files = _write_volume(job, item, name, target, cam, shown, vol, owner)
            written.append(_record(job, name, target, probs, {**files, **info}))
    return ImageResult(item.display, True, size=(shape[2], shape[1]), predictions=job.predictions(probs),
                       written=written)  # fmt: skip


def _write_volume(
    job: CamJob, item: InputFile, method: str, target: Target, cam: np.ndarray, scan: np.ndarray, vol: Any, owner: str
) -> dict[str, Any]:
    """The map aligned on the scan, its montage and (--save-raw, NIfTI scans) the map as .npy."""
    o = job.options
    suffix = map_suffix(vol)
    path = job.output_path(item, method, target, suffix)
    write_map_nifti(path, cam.astype(np.float32, copy=False), vol)
    stem = path.name[: -len(suffix)]
    montage = path.with_name(stem + ".montage" + job.ext)
    views = montage_tiles(scan, cam, o.colormap, o.alpha, affine=vol.geometry)
    title = f"{item.rel} · {method} · {target.index} {job.target_name(target)}"
    sheet = captioned_sheet([v for _, v in views], [c for c, _ in views], columns=len(views), title=title,
                            colormap=o.colormap)  # fmt: skip
    job.save_picture(montage, sheet, owner)
    files: dict[str, Any] = {"overlay": str(montage), "map": str(path)}
    if o.save_raw and suffix != ".npy":
        raw = path.with_name(stem + ".npy")
        atomic_save_npy(raw, cam.astype(np.float32, copy=False))
        files["raw"] = str(raw)
    return files
