"""What videos and volumes become before a model sees them, shared by ``gradcam``/``cam`` (:mod:`camcli.jobs.media`)
and ``features`` (:mod:`camcli.jobs.media_features`): which kind an input is, a video classifier's clips, a 3-D
network's input made from a scan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, UsageError
from ..io.video import is_video
from ..io.volume import Volume, is_volume, read_volume, scale_intensity
from ..models import LoadedModel


def media_kind(path: Path) -> str | None:
    """``video``, ``volume`` or None (a picture) for an input, by its name."""
    if is_video(path):
        return "video"
    if is_volume(path):
        return "volume"
    return None


def clips_of(inputs: torch.Tensor, length: int) -> torch.Tensor:
    """Frames (T, 3, H, W) as a video classifier takes them: consecutive clips (N, 3, L, H, W) of ``length``, the
    last one padded with its last frame (the caller drops what the padding gives)."""
    clips = []
    for i in range(0, inputs.shape[0], length):
        clip = inputs[i : i + length]
        if clip.shape[0] < length:
            clip = torch.cat([clip, clip[-1:].expand(length - clip.shape[0], *clip.shape[1:])])
        clips.append(clip.transpose(0, 1))  # (3, L, H, W)
    return torch.stack(clips)


def check_volume_model(model: LoadedModel) -> None:
    """A :class:`UsageError` for a picture model: a volume is given to a 3-D network, or to a video classifier
    (which reads the scan's first axis as time)."""
    if model.kind == "image":
        raise UsageError(
            f"{model.name} takes pictures, not volumes; give a 3-D network (--model net.pt --arch file.py:Class "
            "--input-size D,H,W, or --arch monai:NAME) or a video classifier (its frames: the scan's first axis)"
        )


@dataclass
class VolumeInput:
    """A scan as a 3-D network takes it (:func:`volume_input`)."""

    vol: Volume  # as read
    scan01: np.ndarray  # (C, D, H, W) intensities scaled to [0, 1]
    how: str  # how they were scaled, for the records
    shape: tuple[int, int, int]  # the scan's (D, H, W)
    size: tuple[int, int, int]  # the network's (D, H, W)
    x: torch.Tensor  # (1, C, D, H, W) on the CPU: resized (trilinear) to ``size``, normalised


def volume_input(
    model: LoadedModel, path: Path, window: tuple[float, float] | None, percentiles: tuple[float, float]
) -> VolumeInput:
    """Read a scan and make the network's input: intensities scaled to [0, 1] (``window``, else ``percentiles``:
    :func:`scale_intensity`), one channel repeated for a network of several, resized (trilinear) to its input
    size (a video classifier's: its clip length, the first axis read as time, and its picture size), less its
    mean, over its std (when it has one per channel)."""
    vol = read_volume(path)
    scan01, how = scale_intensity(vol.data, window, percentiles)
    x = torch.from_numpy(np.ascontiguousarray(scan01, dtype=np.float32))[None]  # (1, C, D, H, W)
    want = model.in_channels
    if x.shape[1] != want:
        if x.shape[1] != 1:
            raise InputError(f"{path}: the scan has {x.shape[1]} channels, the model takes {want}")
        x = x.expand(1, want, *x.shape[2:])
    shape = (int(x.shape[2]), int(x.shape[3]), int(x.shape[4]))
    # a video classifier reads the scan's first axis as time: its clip length and picture size
    clip = (model.clip_length or 16, *model.input_size) if model.kind == "video" else None
    size = model.volume_size or clip or shape
    if tuple(size) != shape:
        x = F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)
    if len(model.mean) == want:
        x = (x - torch.tensor(model.mean).view(1, -1, 1, 1, 1)) / torch.tensor(model.std).view(1, -1, 1, 1, 1)
    return VolumeInput(vol, scan01, how, shape, tuple(size), x)  # type: ignore[arg-type]
