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

Loading is as strict as a checkpoint's (:mod:`camcli.models.hf_build`): the files are checked before transformers
reads them, the model's own Python runs only with ``--trust-checkpoint``, and weights that do not fit are one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import nn

from ..checks import first_words
from ..errors import ModelError, UsageError
from . import clip, hf_build, hf_files, timm_models
from .base import IMAGENET_MEAN, IMAGENET_STD, LoadedModel
from .hub import client_scope, offline_reason
from .labels import placeholder_names

PREFIX = "hf:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_ID = re.compile(r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?")
# models that read their class token only: the last block's first norm is the Grad-CAM layer (as for ViT)
TOKEN_CLASSIFIERS = ("vit", "deit", "beit", "data2vec-vision", "dinov2", "dinov2_with_registers", "vit_msn", "clip")
# a config's problem_type → how its outputs read (--head)
PROBLEM_HEADS = {
    "multi_label_classification": "sigmoid",
    "regression": "identity",
    "single_label_classification": "softmax",
}
Prep = tuple[tuple[int, int], tuple[float, ...], tuple[float, ...], str]  # input size, mean, std, resampling


def pretrained_folder(spec: str) -> Path | None:
    """The ``save_pretrained`` folder ``spec`` names (the folder, or its weights file), else None."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.is_file() and path.name in WEIGHT_FILES and (path.parent / "config.json").is_file():
        return path.parent
    return None


def weight_files(folder: Path) -> list[Path]:
    """The weights in a folder: ``model.safetensors``, ``pytorch_model.bin``, or their shards."""
    found = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    return sorted(f for f in found if f.is_file())


def default_layer(module: nn.Module, kind: str) -> str | None:
    """For class-token models: the last block's first norm (``…layers.11.layernorm_before``), found by name so
    that it does not depend on the transformers version's module paths."""
    if kind not in TOKEN_CLASSIFIERS:
        return None
    names = [n for n, _ in module.named_modules() if n.endswith((".layernorm_before", ".norm1", ".layer_norm1"))]
    return names[-1] if names else None


def _loaded(
    module: nn.Module, label: str, prep: Prep, weights: str, source: str | Path, *, config_path: Path, trust: bool,
    notes: list[str], processor_found: bool,
) -> LoadedModel:  # fmt: skip
    config: Any = module.config
    size, mean, std, interpolation = prep
    kind = str(getattr(config, "model_type", ""))
    notes = [f"Hugging Face {kind} ({type(module).__name__})", *notes]
    if clip.is_hf_image_text(config):
        tower, encode_text = clip.hf_tower(module, source, hf_build.require(), trust)
        preferred = default_layer(tower, kind)
        return LoadedModel(
            label, tower.eval(), size, mean, std, [], None, preferred, notes=notes, weights=weights,
            interpolation=interpolation, prefix_tokens=clip.hf_prefix_tokens(config), embedding=True,
            encode_text=encode_text,
        )  # fmt: skip
    if hf_build.kind(config) == "backbone":
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
        size, mean, std, interpolation = _timm_preprocessing(inner, config_path)
        layer = timm_models.default_layer(inner)
        preferred = f"timm_model.{layer}" if layer else None
    elif not processor_found:
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


def _timm_preprocessing(inner: nn.Module, config_path: Path) -> Prep:
    """A wrapped timm model's ``pretrained_cfg`` (written in config.json), checked like a preprocessor_config.json."""
    cfg = getattr(inner, "pretrained_cfg", None)
    cfg = cfg if isinstance(cfg, dict) else {}
    found = cfg.get("input_size") or (3, 224, 224)
    size = hf_files.input_size(config_path, "pretrained_cfg.input_size", list(found)[-2:] if found else found)
    mean = hf_files.channels(config_path, "pretrained_cfg.mean", cfg.get("mean"), IMAGENET_MEAN, positive=False)
    std = hf_files.channels(config_path, "pretrained_cfg.std", cfg.get("std"), IMAGENET_STD, positive=True)
    return size, mean, std, str(cfg.get("interpolation") or "bilinear")


def load_folder(
    folder: Path, label: str, weights: str | None = None, arch: str | None = None, trust: bool = False
) -> LoadedModel:
    """A ``save_pretrained`` folder: config.json, the weights, and preprocessor_config.json when present."""
    if (weights or "default").strip().lower() != "default":
        raise UsageError("--weights: a save_pretrained folder holds its own weights; drop --weights")
    if arch:
        raise UsageError("--arch: a save_pretrained folder names its architecture in config.json; drop --arch")
    files = weight_files(folder)
    if not files:
        raise ModelError(f"{folder}: has config.json but no weights (model.safetensors or pytorch_model.bin)")
    config_path = folder / "config.json"
    notes = hf_build.checked_config(config_path, files, trust)
    processor = hf_files.read_processor(folder)
    try:
        config = hf_build.config_of(folder, config_path, trust, local_files_only=True)
        prep = hf_files.preprocessing(_vision(config), processor, config_path)
        module = hf_build.build(folder, config, config_path, files, trust, local_files_only=True)
    except OSError as e:
        raise ModelError(f"{folder}: transformers cannot read it ({str(e).splitlines()[0][:160]})") from None
    return _loaded(
        module, label, prep, "checkpoint", folder, config_path=config_path, trust=trust, notes=notes,
        processor_found=processor is not None,
    )  # fmt: skip


def _vision(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config  # an image–text model's image tower says its size


def load_hub(name: str, weights: str | None, trust: bool = False) -> LoadedModel:
    """``hf:ORG/NAME`` from the Hugging Face cache, downloading only when the network is allowed."""
    spec = (weights or "default").strip().lower()
    if spec not in ("default", "none"):
        raise UsageError("--weights: a Hugging Face model takes default (its repository's) or none (random)")
    name = name.strip()
    if not HUB_ID.fullmatch(name) or ".." in name or "--" in name:
        raise UsageError(
            f"--model hf:{name}: an hf: id is ORG/NAME (letters, digits, '-', '_', '.'), e.g. "
            "hf:google/vit-base-patch16-224; pass a folder on disk as its path"
        )
    with client_scope():  # the hub client's retries stay quiet; asked only when the cache lacks a file
        module, prep, config_path, notes, processor = _from_hub(name, spec == "none", trust)
    weights_name = "random" if spec == "none" else "hf " + name
    return _loaded(
        module, PREFIX + name, prep, weights_name, name, config_path=config_path, trust=trust, notes=notes,
        processor_found=processor is not None,
    )  # fmt: skip


def _from_hub(name: str, random: bool, trust: bool) -> tuple[nn.Module, Prep, Path, list[str], Any]:
    """(module, preprocessing, config.json, notes, processor) of ``hf:name``: from the cache, else downloaded
    when the hub can be reached (checked once, in seconds: :mod:`camcli.models.hub`)."""
    snapshot = _hub_snapshot(name)
    config_path = snapshot / "config.json"
    files = _cached_weights(snapshot)
    notes = hf_build.checked_config(config_path, files or [], trust)
    processor = hf_files.read_processor(snapshot)

    def build(files: list[Path] | None, **kwargs: Any) -> tuple[nn.Module, Prep]:
        config = hf_build.config_of(name, config_path, trust, **kwargs)
        prep = hf_files.preprocessing(_vision(config), processor, config_path)
        return hf_build.build(name, config, config_path, files, trust, random=random, **kwargs), prep

    try:
        module, prep = build(files, local_files_only=True)
    except OSError:
        why = offline_reason()
        if why:
            raise ModelError(
                f"{name}: not all of its files are in the Hugging Face cache and they cannot be downloaded ({why}); "
                "download it once, or pass a save_pretrained folder as --model"
            ) from None
        try:
            module, prep = build(None)
        except OSError as e:
            raise ModelError(
                f"cannot get {name} from the Hugging Face hub ({first_words(e)}); offline, pass a save_pretrained "
                "folder as --model"
            ) from None
    return module, prep, config_path, notes, processor


def _cached_weights(snapshot: Path) -> list[Path] | None:
    """The weights files in a hub snapshot when all of them are there (a sharded model's index lists its shards);
    None when some are not downloaded yet."""
    files = weight_files(snapshot)
    for index in snapshot.glob("*.index.json"):
        try:
            shards = set(hf_files.read_json(index).get("weight_map", {}).values())
        except (ModelError, AttributeError):
            return None
        if not all(isinstance(s, str) and (snapshot / s).is_file() for s in shards):
            return None
    return files or None


def _hub_snapshot(name: str) -> Path:
    """The cache's folder for ``name`` (its ``config.json`` downloaded first when the hub can be reached)."""
    hf_build.require()  # transformers brings huggingface_hub
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json")
    if isinstance(found, str):
        return Path(found).parent
    why = offline_reason()
    if why:
        raise ModelError(
            f"{name} is not in the Hugging Face cache and cannot be downloaded ({why}); download it once, or pass "
            "a save_pretrained folder as --model"
        )
    try:
        return Path(hf_hub_download(name, "config.json")).parent
    except Exception as e:  # not found, gated, the network gone since: the hub client's own first line
        raise ModelError(
            f"cannot get {name} from the Hugging Face hub ({type(e).__name__}: {first_words(e)}); offline, pass a "
            "save_pretrained folder as --model"
        ) from None
