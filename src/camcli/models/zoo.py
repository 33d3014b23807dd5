"""torchvision classification models by name, with ``--weights default|none|NAME``.

Pretrained weights are fetched into torch's cache with a short timeout, or the user gets one line with the
offline choices; ``CAMCLI_OFFLINE=1`` never tries the network.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError, UsageError
from ..options import BUNDLED
from .base import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, Preprocessing, arch_key
from .labels import placeholder_names

DOWNLOAD_TIMEOUT_S = 15.0


def natural_key(name: str) -> list[object]:
    """Sort key that reads numbers as numbers: resnet18 < resnet50 < resnet101."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models), key=natural_key)


def video_names() -> list[str]:
    """torchvision's video classifiers (:mod:`camcli.models.video`), in natural order."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models.video), key=natural_key)


def object_names() -> dict[str, str]:
    """torchvision's detectors and segmenters: name → task (``detection``, ``segmentation``)."""
    from torchvision.models import detection, list_models, segmentation

    found = {n: "detection" for n in list_models(module=detection)}
    found.update({n: "segmentation" for n in list_models(module=segmentation)})
    return dict(sorted(found.items(), key=lambda kv: natural_key(kv[0])))


@dataclass
class ModelEntry:
    """One line of ``camcli models``: a name, its default weights, and whether it runs without a network."""

    name: str
    weights: str | None  # the default weights' name; None: torchvision has none
    offline: bool  # runs with its default weights without a download
    where: str  # bundled, cached, "download on first use", "none in torchvision"
    task: str = "classifier"  # what it does: classifier, video classifier, detector, segmenter


TASK_WORDS = {"classification": "classifier", "detection": "detector", "segmentation": "segmenter"}
VIDEO_CLASSIFIER = "video classifier"


def model_catalog() -> list[ModelEntry]:
    """The bundled model, then torchvision's classifiers, video classifiers, detectors and segmenters (each in
    natural order), with where their weights are."""
    objects = object_names()
    named = [
        *(catalog_entry(n) for n in torchvision_names()),
        *(catalog_entry(n, VIDEO_CLASSIFIER) for n in video_names()),
        *(catalog_entry(n, TASK_WORDS[task]) for n, task in objects.items()),
    ]
    return [ModelEntry(BUNDLED, "ImageNet-1k", True, "bundled"), *named]


def catalog_entry(name: str, task: str = "classifier") -> ModelEntry:
    """A torchvision model's line of ``camcli models``: its default weights and whether they are cached."""
    from torchvision.models import get_model_weights

    try:
        default = get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return ModelEntry(name, None, False, "none in torchvision", task)
    cached = _weights_cache_path(default.url).is_file()
    return ModelEntry(name, default.name, cached, "cached" if cached else "download on first use", task)


def _weights_cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _ensure_weights_file(name: str, weights: object) -> None:
    """Download the weights file into torch's cache with a short timeout, or fail in one line."""
    url: str = weights.url  # type: ignore[attr-defined]
    target = _weights_cache_path(url)
    if target.is_file():
        return
    offline = (
        f"offline choices: --model {BUNDLED} (bundled ImageNet model), --weights none (random weights), "
        f"--model path/to/checkpoint.pt, or put the file at {target}"
    )
    if os.environ.get("CAMCLI_OFFLINE") or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"weights for {name} are not cached and CAMCLI_OFFLINE is set; {offline}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except (OSError, ValueError, RuntimeError) as e:  # URLError and socket.timeout are OSErrors
        reason = getattr(e, "reason", None) or e
        raise ModelError(f"cannot download weights for {name} from {url} ({reason}); {offline}") from None
    finally:
        socket.setdefaulttimeout(previous)


def load_torchvision(name: str, weights: str | None, task: str = "classification") -> LoadedModel:
    """A torchvision classification, detection or segmentation model; ``weights``: None/'default', 'none', or an
    enum member name. A detector or segmenter built without weights gets no backbone weights either (nothing
    downloads)."""
    import torchvision
    from torchvision.models import get_model, get_model_weights

    try:
        enum = get_model_weights(name)
    except (ValueError, KeyError):
        enum = None
    chosen = None
    spec = (weights or "default").strip()
    if spec.lower() != "none":
        if enum is None:
            raise ModelError(f"{name} has no pretrained weights in torchvision; use --weights none")
        if spec.lower() == "default":
            chosen = enum.DEFAULT
        else:
            key = spec.split(".")[-1]
            members = list(enum.__members__)
            if key not in members:
                raise UsageError(
                    f"unknown weights '{spec}' for {name}; choose one of: {', '.join(members)}, default, none"
                )
            chosen = enum[key]
    meta_source = chosen if chosen is not None else (enum.DEFAULT if enum is not None else None)
    if chosen is not None:
        _ensure_weights_file(name, chosen)
    extra = {} if task == "classification" else {"weights_backbone": None}
    try:
        module = get_model(name, weights=chosen, progress=False, **extra)
    except (RuntimeError, OSError) as e:
        raise ModelError(f"cannot build {name} with weights {spec}: {e}") from None
    module.eval()

    size, mean, std = weights_preprocessing(meta_source)
    if task != "classification":
        return object_model(name, module.eval(), meta_source, chosen.name if chosen is not None else "random")
    built_for = getattr(module, "image_size", None)  # a ViT takes one input size: the one it was built for
    if chosen is None and isinstance(built_for, int):
        size = (built_for, built_for)
    categories = list(meta_source.meta.get("categories") or []) if meta_source is not None else []
    head = _output_features(module)
    if not categories or (head is not None and len(categories) != head):
        categories = placeholder_names(head or 1000)
    kwargs = {}
    if chosen is not None and name.startswith("vit_"):
        kwargs["image_size"] = size[0]

    def builder() -> nn.Module:
        return torchvision.models.get_model(name, weights=None, **kwargs)

    return LoadedModel(
        name,
        module,
        size,
        mean,
        std,
        categories,
        builder,
        preferred_layer(name, module),
        layer_key=arch_key(name, None, **kwargs),
        weights=chosen.name if chosen is not None else "random",
    )


def weights_preprocessing(weights: object | None) -> Preprocessing:
    """(input size, mean, std) from a torchvision weights entry's transforms; ImageNet's 224 defaults without."""
    if weights is None:
        return (224, 224), IMAGENET_MEAN, IMAGENET_STD
    tf = weights.transforms()  # type: ignore[attr-defined]
    crop = getattr(tf, "crop_size", [224])
    mean = tuple(float(v) for v in getattr(tf, "mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in getattr(tf, "std", IMAGENET_STD))
    return (int(crop[0]), int(crop[-1])), mean, std


def preferred_layer(arch: str, module: nn.Module) -> str | None:
    """A per-architecture default layer where "the last spatial layer" is wrong: torchvision ViTs read only the
    class token after the last block, so Grad-CAM uses that block's first norm (the usual choice)."""
    layers = getattr(getattr(module, "encoder", None), "layers", None)
    if arch.startswith("vit_") and layers is not None:
        return f"encoder.layers.encoder_layer_{len(layers) - 1}.ln_1"
    return None


def _output_features(module: nn.Module) -> int | None:
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m.out_features
        elif isinstance(m, nn.Conv2d):
            last = m.out_channels if last is None else last
    return last


def object_model(name: str, module: nn.Module, meta: object | None, weights: str) -> LoadedModel:
    """A detector (fed the picture as it is: its transform resizes and normalizes) or a segmenter (the whole
    picture resized to the weights' 520 × 520, normalized); ``meta``: a weights entry of the architecture (class
    names when the class count is theirs, preprocessing)."""
    import torchvision

    task = object_names()[name]
    _, mean, std = weights_preprocessing(meta)
    categories = list(meta.meta.get("categories") or []) if meta is not None else []  # type: ignore[attr-defined]
    num = _object_classes(module)
    if num is not None and num != len(categories):
        categories = placeholder_names(num)
    if task == "detection":
        side = int(getattr(module.transform, "min_size", (800,))[0])
        size = (side, side)  # the layer table's input; the model resizes every picture itself
    else:
        tf = meta.transforms() if meta is not None else None  # type: ignore[attr-defined]
        side = int((getattr(tf, "resize_size", None) or [520])[0])
        size = (side, side)

    def builder() -> nn.Module:
        extra = {"weights_backbone": None, **({"num_classes": num} if num is not None else {})}
        return torchvision.models.get_model(name, weights=None, **extra)

    return LoadedModel(
        name,
        module,
        size,
        mean,
        std,
        categories or placeholder_names(91 if task == "detection" else 21),
        builder,
        None,
        layer_key=arch_key(name, num),
        weights=weights,
        task=task,
    )


def _object_classes(module: nn.Module) -> int | None:
    """A detector's or segmenter's class count, from its own attributes (None: not found)."""
    predictor = getattr(getattr(module, "roi_heads", None), "box_predictor", None)
    if predictor is not None:
        return int(predictor.cls_score.out_features)
    head = getattr(getattr(module, "head", None), "classification_head", None)
    if head is not None:  # RetinaNet and FCOS say num_classes, SSD num_columns
        return int(getattr(head, "num_classes", None) or head.num_columns)
    classifier = getattr(module, "classifier", None)
    high = getattr(classifier, "high_classifier", None)  # LR-ASPP
    if isinstance(high, nn.Conv2d):
        return int(high.out_channels)
    last = [m for m in classifier.modules() if isinstance(m, nn.Conv2d)] if isinstance(classifier, nn.Module) else []
    return int(last[-1].out_channels) if last else None
