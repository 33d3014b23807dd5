"""User checkpoints: safe loading, unwrapping, prefix stripping, building the model they hold.

Which architecture a state_dict is: :mod:`camcli.models.archs`; class names: :mod:`camcli.models.labels`;
reading the file (safely, unless ``--trust-checkpoint``): :mod:`camcli.models.ckpt_read`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import torch
from torch import nn

from ..errors import CheckpointError, UsageError
from . import timm_models
from .archs import (
    arch_preprocessing,
    available_models,
    build_arch,
    identify,
    match_arch,
    mismatch_report,
    signature,
    strip_head,
)
from .base import LoadedModel, arch_key, set_labels
from .ckpt_read import read_file
from .custom import build_custom, is_custom_arch, parse_arch_args
from .families import family_hint, has_extra
from .labels import imagenet_categories, placeholder_names
from .monai_nets import build_spec, is_monai
from .object_archs import identify_objects, load_object
from .outputs import with_outputs
from .shapes import is_3d, with_input_size
from .video import as_video, clip_categories
from .zoo import object_names, preferred_layer, video_names

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "network", "weights", "params")
EMA_KEYS = ("model_ema", "state_dict_ema", "ema_state_dict", "ema", "ema_model", "ema_state")
PREFIXES = ("module.", "_orig_mod.", "model.", "net.")


@dataclass
class CheckpointInfo:
    """What :func:`inspect_checkpoint` found in a file."""

    path: str
    format: str
    container: str | None = None  # key the state_dict was found under
    stripped: list[str] = field(default_factory=list)  # prefixes removed from every key
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    module: nn.Module | None = None  # a pickled full model (only with trust)
    built: nn.Module | None = None  # the user's --arch class, built to check the keys (used for the model)
    declared_arch: str | None = None  # the architecture the file names (timm's train.py saves 'arch')
    extra_keys: list[str] = field(default_factory=list)
    arch: str | None = None
    num_classes: int | None = None
    candidates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _is_state_dict(obj: object) -> TypeGuard[Mapping[object, torch.Tensor]]:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap(obj: object, info: CheckpointInfo) -> None:
    """Find the state_dict inside what the file held; strip prefixes shared by every key."""
    if isinstance(obj, nn.Module):
        info.module = obj
        obj = obj.state_dict()
    if not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{info.path}: holds a {type(obj).__name__}, not a state_dict")
        info.extra_keys = [str(k) for k in obj]
        declared = obj.get("arch")
        if not isinstance(declared, str) and isinstance(obj.get("args"), argparse.Namespace):
            declared = getattr(obj["args"], "model", None)  # timm's train.py's arguments: --model NAME
        info.declared_arch = declared if isinstance(declared, str) else None
        found = None
        for key in (*WRAPPER_KEYS, *EMA_KEYS):
            value = obj.get(key)
            if isinstance(value, nn.Module):
                info.module = info.module or value
                value = value.state_dict()
            if _is_state_dict(value):
                found = key
                obj = value
                break
        if found is None:
            raise CheckpointError(
                f"{info.path}: no state_dict found (top-level keys: {', '.join(info.extra_keys[:8])}); "
                f"expected tensors at the top level or under one of {', '.join(WRAPPER_KEYS + EMA_KEYS)}"
            )
        info.container = found
        emas = [k for k in EMA_KEYS if k in info.extra_keys and k != found]
        if emas:
            info.notes.append(f"also holds EMA weights under '{emas[0]}' (not used)")
    state = {str(k): v for k, v in obj.items()}
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                info.stripped.append(prefix)
                changed = True
    info.state_dict = state


def inspect_checkpoint(
    path: str, arch: str | None = None, trust: bool = False, code_path: str | None = None, arch_args: str | None = None
) -> CheckpointInfo:
    """Read, unwrap and identify a checkpoint (no model is built with real memory, except the user's own
    ``--arch file.py:Class``, built once to compare its keys)."""
    p = Path(path)
    fmt, obj = read_file(p, trust, code_path)
    info = CheckpointInfo(path=str(p), format=fmt)
    unwrap(obj, info)
    if arch is not None:
        key = arch.strip() if is_custom_arch(arch) else arch.strip().lower().replace("-", "_")
        if is_custom_arch(key):  # the user's class, or a MONAI network (built the same way, from --arch-args)
            info.built = build_spec(key, arch_args) if is_monai(key) else build_custom(key, arch_args, code_path)
            sig = {k: tuple(v.shape) for k, v in info.built.state_dict().items()}
        elif key in object_names():  # a detector or segmenter: its heads may have any class count
            found = identify_objects(info.state_dict, only=key)
            info.arch, info.num_classes, info.candidates = key, found[0][1] if found else None, [key]
            if not found:
                info.notes.append(f"does not match {key} with any class count")
            return info
        elif key.startswith(timm_models.PREFIX):
            name = timm_models.check_name(arch.strip()[len(timm_models.PREFIX) :])
            key = timm_models.PREFIX + name
            sig = {k: tuple(v.shape) for k, v in timm_models.build(name, 1000, meta=True).state_dict().items()}
        else:
            sig = signature(key)
        # the user's class is built as it will be used: its head's size must match too
        built = info.built is not None
        ok, num, why = match_arch(info.state_dict, sig, head=[] if built else None, headless=not built)
        info.arch, info.num_classes = key, num
        info.candidates = [key]
        if not ok:
            hint = "; pass your class's arguments with --arch-args JSON" if info.built is not None else ""
            info.notes.append(f"does not match {key}: {why}{hint}")
        return info
    if info.module is not None:
        info.arch = type(info.module).__name__
        return info
    if info.declared_arch:  # PyTorch's ImageNet example and timm's train.py save the architecture's name
        declared = _declared(info)
        if declared is not None:
            return declared
    hits, miss = identify(info.state_dict)
    if not hits and any(k.startswith("backbone.") for k in info.state_dict):  # torchvision detectors, segmenters
        hits = list(identify_objects(info.state_dict))
    if not hits and has_extra("timm"):
        hits, considered = timm_models.identify(info.state_dict)
        if considered:
            info.notes.append(f"compared with {considered} timm architecture(s)")
    info.candidates = [h[0] for h in hits]
    if len(hits) == 1:
        info.arch, info.num_classes = hits[0]
    elif not hits:
        info.notes.append(f"no known architecture matches ({miss or family_hint(info.state_dict)})")
    return info


def _declared(info: CheckpointInfo) -> CheckpointInfo | None:
    """The architecture a checkpoint names (``arch``: PyTorch's ImageNet example names torchvision's, timm's
    ``train.py`` timm's), when its weights fit it: torchvision's first, then timm's."""
    name = str(info.declared_arch).strip()
    key = name.lower().replace("-", "_")
    tried: list[tuple[str, dict[str, tuple[int, ...]]]] = []
    if key in available_models():
        tried.append((key, signature(key)))
    if has_extra("timm"):  # timm has names of torchvision's too (efficientnet_b0) with other keys
        try:
            found = timm_models.check_name(name)
            model = timm_models.build(found, 1000, meta=True)
            tried.append((timm_models.PREFIX + found, {k: tuple(v.shape) for k, v in model.state_dict().items()}))
        except UsageError:
            pass
    fits = [(arch, match_arch(info.state_dict, sig)) for arch, sig in tried]
    good = [(arch, num) for arch, (ok, num, _) in fits if ok]
    if not good:
        if fits:
            info.notes.append(f"names architecture '{name}' but does not fit it: {fits[0][1][2]}")
        return None
    (arch, num) = good[0]
    info.arch, info.num_classes = arch, num
    info.candidates = [info.arch]
    info.notes.append(f"architecture named in the file ({name})")
    return info


def load_checkpoint_model(
    path: str,
    *,
    arch: str | None = None,
    labels: str | None = None,
    trust: bool = False,
    arch_args: str | None = None,
    code_path: str | None = None,
    task: str | None = None,
    input_size: str | Sequence[int] | None = None,
) -> LoadedModel:
    """A :class:`~camcli.models.LoadedModel` from a checkpoint file (strict loading). A classifier whose class
    count the file does not say (the user's own class) has its outputs counted, unless ``task`` says it is not
    one; a 3-D network's input is ``input_size`` (D, H, W) when it says none itself."""
    loaded = _load_checkpoint(path, arch, labels, trust, arch_args, code_path)
    with_input_size(loaded, input_size, parse_arch_args(arch_args) if is_custom_arch(arch) else None)
    if loaded.task == "classification" and task in (None, "classification"):
        return with_outputs(loaded, labels)  # --labels checked against the outputs counted
    if labels and not loaded.categories:
        return set_labels(loaded, labels, None)
    return loaded


def _load_checkpoint(
    path: str,
    arch: str | None,
    labels: str | None,
    trust: bool,
    arch_args: str | None,
    code_path: str | None,
) -> LoadedModel:
    if arch_args and not is_custom_arch(arch):
        raise UsageError(
            "--arch-args is for your own class or factory (--arch file.py:Class); torchvision and timm architectures "
            "take their class count from the checkpoint (one saved without its head is an embedding model)"
        )
    info = inspect_checkpoint(path, arch=arch, trust=trust, code_path=code_path, arch_args=arch_args)
    if info.module is not None and arch is None:
        module = info.module.eval()
        return LoadedModel(path, module, notes=["full pickled model (--trust-checkpoint)"])  # outputs counted next
    if info.arch is None:
        if len(info.candidates) > 1:
            raise CheckpointError(
                f"{path}: several architectures fit: {', '.join(info.candidates[:8])}; pick one with --arch "
                f"(e.g. --arch {info.candidates[0]})"
            )
        raise CheckpointError(f"{path}: {info.notes[-1] if info.notes else 'unknown architecture'}")
    num, arch_name = info.num_classes, info.arch
    timm_name = arch_name[len(timm_models.PREFIX) :] if arch_name.startswith(timm_models.PREFIX) else None
    if arch_name in object_names():
        loaded = load_object(path, info.state_dict, arch_name, info.num_classes)
        loaded.notes = describe(info)
        if labels:
            set_labels(loaded, labels, info.num_classes)
        return loaded
    builder: Callable[[], nn.Module] | None
    if info.built is not None:
        module, builder = info.built, None
    elif timm_name is not None:  # timm builds a model without its head itself (num_classes=0)
        module = timm_models.build(timm_name, num)

        def builder() -> nn.Module:
            return timm_models.build(str(timm_name), num)
    elif num == 0:  # the architecture without its head: an embedding model
        module = build_arch(arch_name)
        head_name = strip_head(module, info.state_dict)
        info.notes.append(f"{head_name} is missing: an embedding model")

        def builder() -> nn.Module:
            built = build_arch(arch_name)
            strip_head(built, info.state_dict)
            return built
    else:
        module = build_arch(arch_name, num)

        def builder() -> nn.Module:
            return build_arch(arch_name, num)

    try:
        module.load_state_dict(info.state_dict, strict=True)
    except RuntimeError:
        hint = "; if your class takes arguments (a class count…), pass them with --arch-args JSON" if info.built else ""
        raise CheckpointError(
            f"{path}: does not fit {arch_name}: {mismatch_report(module, info.state_dict)}{hint}"
        ) from None
    module.eval()
    interpolation, notes = "bilinear", describe(info)
    if timm_name is not None:
        (size, mean, std), interpolation = timm_models.preprocessing(module)
        preferred = timm_models.default_layer(module)
    else:
        size, mean, std = arch_preprocessing(arch_name) if info.built is None else arch_preprocessing("")
        preferred = preferred_layer(arch_name, module)
        if info.built is not None and not is_3d(module):
            notes.append("input 224×224 with ImageNet's mean and std (your class declares no preprocessing)")
    names = [] if labels else imagenet_categories() if num == 1000 else clip_categories(arch_name, num)
    loaded = LoadedModel(
        path,
        module,
        size,
        mean,
        std,
        names,
        builder,
        preferred,
        notes=notes,
        layer_key=arch_key(arch_name, num) if builder is not None else None,
        interpolation=interpolation,
        embedding=num == 0,
    )
    if arch_name in video_names():
        as_video(loaded, arch_name)
    if num == 0:
        return loaded
    if labels:
        return set_labels(loaded, labels, num)
    if num is not None and not names:
        loaded.categories = placeholder_names(num)
    return loaded  # a class of the user's own: its outputs are counted once its task is known


def describe(info: CheckpointInfo) -> list[str]:
    notes = [f"format {info.format}"]
    if info.container:
        notes.append(f"weights under '{info.container}'")
    if info.stripped:
        notes.append("stripped key prefix " + " ".join(repr(p) for p in info.stripped))
    if info.arch and info.num_classes == 0:
        notes.append(f"architecture {info.arch} without a classifier head")
    elif info.arch and info.num_classes is None:  # the user's class: its outputs are counted when it is built
        notes.append(f"architecture {info.arch}")
    elif info.arch:
        notes.append(f"architecture {info.arch} with {info.num_classes} classes")
    return notes + info.notes
