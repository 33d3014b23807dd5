"""Hugging Face transformers image models (the optional ``camcli[hf]`` extra): a folder written by
``save_pretrained`` (``--model path/to/folder``), or ``--model hf:ORG/NAME`` from the hub's cache.

What the config's ``architectures`` says decides how it is built, never a guess:

* an image classifier (``…ForImageClassification``): ``AutoModelForImageClassification``; its output's ``.logits``
  are the class scores (:func:`camcli.engine.scoring.model_logits`), class names come from ``id2label``, and the
  config's ``problem_type`` says the head (``multi_label_classification``: sigmoid, ``regression``: identity);
* a backbone without a head (``ViTModel``, ``Dinov2Model``, ``ResNetModel`` …): ``AutoModel``; its pooled output
  is an embedding, explained as the similarity to ``--reference`` pictures;
* an image–text model (``CLIPModel``, ``SiglipModel``): its image tower, and its text tower for ``--prompt``
  (:mod:`camcli.models.clip`).

The preprocessing comes from ``preprocessor_config.json`` (or ``processor_config.json``'s image processor):
input size, mean, std, resampling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from ..checks import json_value
from ..errors import ModelError, UsageError
from . import clip, timm_models
from .base import IMAGENET_MEAN, IMAGENET_STD, LoadedModel
from .ckpt_format import check_zip
from .custom import said
from .labels import placeholder_names

PREFIX = "hf:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# models that read their class token only: the last block's first norm is the Grad-CAM layer (as for ViT)
TOKEN_CLASSIFIERS = ("vit", "deit", "beit", "data2vec-vision", "dinov2", "dinov2_with_registers", "vit_msn", "clip")
# a config's problem_type → how its outputs read (--head)
PROBLEM_HEADS = {
    "multi_label_classification": "sigmoid",
    "regression": "identity",
    "single_label_classification": "softmax",
}


def require() -> Any:
    try:
        import transformers
    except ImportError:
        raise ModelError("Hugging Face models need transformers: pip install 'camcli[hf]'") from None
    transformers.logging.set_verbosity_error()
    return transformers


def pretrained_folder(spec: str) -> Path | None:
    """The ``save_pretrained`` folder ``spec`` names (the folder, or its weights file), else None."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.is_file() and path.name in WEIGHT_FILES and (path.parent / "config.json").is_file():
        return path.parent
    return None


def _preprocessing(config: Any, processor: dict[str, Any] | None) -> tuple[tuple[int, int], tuple, tuple, str]:
    vision = getattr(config, "vision_config", None) or config  # an image–text model's image tower says its size
    p = processor or {}
    size: Any = p.get("crop_size") if p.get("do_center_crop") else None
    size = size or p.get("size") or getattr(vision, "image_size", 224)
    if isinstance(size, dict):
        side = int(size.get("shortest_edge") or size.get("height") or 224)
        size = (int(size.get("height", side)), int(size.get("width", side)))
    elif isinstance(size, list | tuple):
        size = (int(size[0]), int(size[-1]))
    else:
        size = (int(size), int(size))
    mean = tuple(float(v) for v in p.get("image_mean") or IMAGENET_MEAN)
    std = tuple(float(v) for v in p.get("image_std") or IMAGENET_STD)
    return size, mean, std, PIL_FILTERS.get(int(p.get("resample", 2)), "bilinear")


def default_layer(module: nn.Module, kind: str) -> str | None:
    """For class-token models: the last block's first norm (``…layers.11.layernorm_before``), found by name so
    that it does not depend on the transformers version's module paths."""
    if kind not in TOKEN_CLASSIFIERS:
        return None
    names = [n for n, _ in module.named_modules() if n.endswith((".layernorm_before", ".norm1", ".layer_norm1"))]
    return names[-1] if names else None


def _loaded(
    module: nn.Module, label: str, processor: dict[str, Any] | None, weights: str, source: str | Path
) -> LoadedModel:
    config: Any = module.config
    size, mean, std, interpolation = _preprocessing(config, processor)
    kind = str(getattr(config, "model_type", ""))
    notes = [f"Hugging Face {kind} ({type(module).__name__})"]
    if clip.is_hf_image_text(config):
        tower, encode_text = clip.hf_tower(module, source, require())
        preferred = default_layer(tower, kind)
        return LoadedModel(
            label, tower.eval(), size, mean, std, [], None, preferred, notes=notes, weights=weights,
            interpolation=interpolation, prefix_tokens=clip.hf_prefix_tokens(config), embedding=True,
            encode_text=encode_text,
        )  # fmt: skip
    if _kind(config) == "backbone":
        notes.append("no classifier head: its pooled output is an embedding (explain it with --reference IMG)")
        return LoadedModel(
            label, module.eval(), size, mean, std, [], None, default_layer(module, kind), notes=notes,
            weights=weights, interpolation=interpolation, embedding=True,
        )  # fmt: skip
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    num = int(getattr(config, "num_labels", len(id2label)) or len(id2label))
    names = [id2label.get(i, f"class {i}") for i in range(num)] if id2label else placeholder_names(num)
    problem = getattr(config, "problem_type", None)
    preferred = default_layer(module, kind)
    inner = getattr(module, "timm_model", None)  # a timm model on the hub, wrapped by transformers
    if isinstance(inner, nn.Module):
        (size, mean, std), interpolation = timm_models.preprocessing(inner)
        layer = timm_models.default_layer(inner)
        preferred = f"timm_model.{layer}" if layer else None
    elif processor is None:
        notes.append(f"no preprocessor_config.json: input {size[0]}×{size[1]} with ImageNet's mean and std")
    return LoadedModel(
        label,
        module.eval(),
        size,
        mean,
        std,
        names,
        None,
        preferred,
        notes=notes,
        weights=weights,
        interpolation=interpolation,
        head=PROBLEM_HEADS.get(str(problem)) if problem else None,
        head_why=f"Hugging Face problem_type {problem}" if problem in PROBLEM_HEADS else "",
    )


def _kind(config: Any) -> str:
    """``image-text`` (CLIP-style), ``backbone`` (its ``architectures`` name only ``…Model`` classes: no head) or
    ``classifier``."""
    if clip.is_hf_image_text(config):
        return "image-text"
    arches = [str(a) for a in (getattr(config, "architectures", None) or [])]
    if arches and all(a.endswith("Model") and "For" not in a for a in arches):
        return "backbone"
    return "classifier"


def _auto(source: str | Path, config: Any = None, **kwargs: Any) -> nn.Module:
    transformers = require()
    try:
        if config is None:
            config = transformers.AutoConfig.from_pretrained(str(source), **kwargs)
        auto = transformers.AutoModelForImageClassification if _kind(config) == "classifier" else transformers.AutoModel
        if kwargs.pop("random", False):
            return auto.from_config(config)
        return auto.from_pretrained(str(source), config=config, **kwargs)
    except ValueError as e:  # a config of a model that is not an image model
        why = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise ModelError(
            f"{source}: not a Hugging Face image classifier, backbone or image–text model ({why})"
        ) from None


def load_folder(folder: Path, label: str, weights: str | None = None, arch: str | None = None) -> LoadedModel:
    """A ``save_pretrained`` folder: config.json, the weights, and preprocessor_config.json when present."""
    if (weights or "default").strip().lower() != "default":
        raise UsageError("--weights: a save_pretrained folder holds its own weights; drop --weights")
    if arch:
        raise UsageError("--arch: a save_pretrained folder names its architecture in config.json; drop --arch")
    if not any((folder / f).is_file() for f in WEIGHT_FILES) and not any(folder.glob("*.safetensors")):
        raise ModelError(f"{folder}: has config.json but no weights (model.safetensors or pytorch_model.bin)")
    if not isinstance(_json_file(folder / "config.json"), dict):  # read first: transformers' errors are not one line
        raise ModelError(f"{folder / 'config.json'}: not a JSON object; re-save the model with save_pretrained")
    for weights_file in sorted(folder.glob("*.bin")):  # torch.save zips, which transformers reads
        check_zip(weights_file)
    try:
        module = _auto(folder, local_files_only=True)
    except ModelError:
        raise
    except Exception as e:  # transformers reading the folder's files: corrupt weights, settings it cannot use
        why = said(e)
        raise ModelError(f"{folder}: transformers cannot load it ({why}); re-save it with save_pretrained") from None
    return _loaded(module, label, _processor(folder), "checkpoint", folder)


def _processor(folder: Path) -> dict[str, Any] | None:
    """The image processor's settings: ``preprocessor_config.json``, or newer transformers' ``processor_config.json``
    (an image–text model's processor, its image processor inside)."""
    for name, key in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        file = folder / name
        if not file.is_file():
            continue
        found = _json_file(file)
        if key is not None and isinstance(found, dict):
            found = found.get(key)
        return found if isinstance(found, dict) else None
    return None


def _json_file(file: Path) -> Any:
    """The JSON in a folder's settings file, or a one-line :class:`ModelError`."""
    try:
        return json_value(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        why = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise ModelError(f"{file}: cannot read it as JSON ({why}); fix the file or re-save the model") from None


def load_hub(name: str, weights: str | None) -> LoadedModel:
    """``hf:ORG/NAME`` from the Hugging Face cache, downloading only when the network is allowed."""
    spec = (weights or "default").strip().lower()
    if spec not in ("default", "none"):
        raise UsageError("--weights: a Hugging Face model takes default (its repository's) or none (random)")
    name = name.strip()
    if "/" not in name.strip("/"):
        raise UsageError(f"--model hf:{name}: name a Hugging Face repository as hf:ORG/NAME")
    try:
        if spec == "none":  # the architecture from the cached config.json, random weights
            transformers = require()
            config = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
            module = _auto(name, config, random=True)
        else:
            module = _auto(name, local_files_only=True)
    except OSError:
        if os.environ.get("CAMCLI_OFFLINE") or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise ModelError(
                f"{name} is not in the Hugging Face cache and the network is off (CAMCLI_OFFLINE/HF_HUB_OFFLINE); "
                "download it once, or pass a save_pretrained folder as --model"
            ) from None
        try:
            module = _auto(name)
        except OSError as e:
            why = (str(e).splitlines() or [type(e).__name__])[0][:160]
            raise ModelError(
                f"cannot get {name} from the Hugging Face hub ({why}); offline, pass a save_pretrained folder as "
                "--model"
            ) from None
    processor = None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "preprocessor_config.json")
        if isinstance(found, str):
            processor = json_value(Path(found).read_text())
    except (ImportError, OSError, ValueError):
        processor = None
    return _loaded(module, PREFIX + name, processor, "random" if spec == "none" else "hf " + name, name)
