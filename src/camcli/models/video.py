"""torchvision's video classifiers (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``, ``mvit_v1_b``, ``mvit_v2_s``,
``swin3d_t/s/b``) by name, and what a clip for them is.

They load like the picture classifiers (:func:`camcli.models.zoo.load_torchvision`: ``--weights default|none|NAME``,
the download into torch's cache); what a clip needs is read from the weights entry, which torchvision ships with
the package, so it is known with ``--weights none`` too:

* the crop and the mean/std: the entry's ``transforms()`` (torchvision's ``VideoClassification`` preset: resize
  to 128 × 171, crop 112, Kinetics' mean and std for the ResNet-3D family);
* the class names: the entry's ``meta["categories"]`` (Kinetics-400);
* the clip length and frame rate: the entry's documentation, which states the evaluation's parameters
  (``frame_rate=15``, ``clips_per_video=5``, and ``clip_len=16``); its ``min_temporal_size`` when it says none.
"""

from __future__ import annotations

import re
from typing import Any

from .base import LoadedModel
from .zoo import load_torchvision, video_names

DEFAULT_CLIP = 16  # the clip length of torchvision's video-classification references


def _entry(name: str, weights: str = "random") -> Any:
    """The weights entry of ``name`` called ``weights`` (its default for ``random``: the same architecture)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    return enum[weights] if weights in enum.__members__ else enum.DEFAULT


def clip_meta(entry: Any) -> tuple[int, float | None]:
    """(frames per clip, frame rate) a torchvision video weights entry was evaluated with, from its documentation
    (``clip_len=16``, ``frame_rate=7.5``); the entry's ``min_temporal_size`` (else 16) when it states no length."""
    meta = entry.meta
    docs = str(meta.get("_docs", ""))
    length = re.search(r"clip_len=(\d+)", docs)
    rate = re.search(r"frame_rate=(\d+(?:\.\d+)?)", docs)
    clip = int(length.group(1)) if length else int(meta.get("min_temporal_size") or DEFAULT_CLIP)
    return clip, float(rate.group(1)) if rate else None


def as_video(model: LoadedModel, arch: str) -> LoadedModel:
    """Mark ``model`` (architecture ``arch``, a torchvision video classifier) as one: ``kind``, ``clip_length``
    and ``clip_fps`` from its weights entry (the one it loaded, else the architecture's default)."""
    model.kind = "video"
    model.in_channels = 3
    model.clip_length, model.clip_fps = clip_meta(_entry(arch, model.weights))
    return model


def load_video(name: str, weights: str | None) -> LoadedModel:
    """A torchvision video classifier by name (``weights``: None/'default', 'none' or a member's name)."""
    return as_video(load_torchvision(name, weights), name)


def clip_categories(arch: str, outputs: int | None) -> list[str]:
    """The default weights' class names (Kinetics-400) of a video architecture with as many outputs; [] for any
    other architecture or class count (a checkpoint fine-tuned to other classes)."""
    if arch not in video_names():
        return []
    names = list(_entry(arch).meta.get("categories") or [])
    return names if len(names) == outputs else []
