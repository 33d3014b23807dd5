"""timm models (the optional ``camcli[timm]`` extra): ``--model timm:NAME`` and ``--arch timm:NAME``, and which
timm architecture a plain state_dict is.

Identification without building timm's ~1,300 architectures: each name's pretrained config says, without
building anything, which keys its stem and classifier have (``patch_embed.proj``, ``head``); a state_dict
keeps only the names whose stem and classifier keys it has, whose patch size (in the name) is its stem's kernel
and whose position table fits the config's input size. Those few are built on the ``meta`` device (no memory)
and their {key: shape} signatures kept in camcli's cache per timm version, so a second identification builds
nothing.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from torch import nn

from ..caches import package_version, read_json, write_json
from ..checks import first_words
from ..errors import ModelError, UsageError
from .base import LoadedModel, Preprocessing, arch_key
from .hub import hub_checked, hub_endpoint
from .labels import imagenet_categories, placeholder_names

PREFIX = "timm:"
Signature = dict[str, tuple[int, ...]]


def require_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ModelError("timm models need timm: pip install 'camcli[timm]' (or pip install timm)") from None
    return timm


def check_name(name: str) -> str:
    """A timm architecture name (a pretrained tag after a dot is kept: ``vit_small_patch16_224.augreg_in1k``)."""
    timm = require_timm()
    base = name.split(".")[0]
    if not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UsageError(f"unknown timm model '{name}'{hint} (timm.list_models() lists them)")
    return name


def build(name: str, num_classes: int | None = None, meta: bool = False) -> nn.Module:
    timm = require_timm()
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        if meta:
            with torch.device("meta"):
                return timm.create_model(name, pretrained=False, **kwargs)
        return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as e:
        raise ModelError(f"timm cannot build {name}: {type(e).__name__}: {e}") from None


def preprocessing(module: nn.Module) -> tuple[Preprocessing, str]:
    """((input size, mean, std), interpolation) from the model's ``pretrained_cfg`` (its crop is not applied:
    camcli explains the whole picture, so maps cover all of it)."""
    cfg = dict(getattr(module, "pretrained_cfg", None) or {})
    size = tuple(cfg.get("input_size") or (3, 224, 224))[-2:]
    mean = tuple(float(v) for v in cfg.get("mean") or (0.485, 0.456, 0.406))
    std = tuple(float(v) for v in cfg.get("std") or (0.229, 0.224, 0.225))
    interpolation = str(cfg.get("interpolation") or "bilinear")
    return ((int(size[0]), int(size[1])), mean, std), interpolation


def default_layer(module: nn.Module) -> str | None:
    """Token models (ViT, DeiT, BEiT, EVA …): the last block's first norm, the usual Grad-CAM layer for them (with
    a class token, the last block's output is read only at that token; pooled or not, the layer before its
    attention keeps every token's own content)."""
    blocks = getattr(module, "blocks", None)
    if isinstance(blocks, nn.Sequential | nn.ModuleList) and len(blocks) and hasattr(module, "num_prefix_tokens"):
        last = len(blocks) - 1
        if hasattr(blocks[last], "norm1"):
            return f"blocks.{last}.norm1"
    return None


def categories(module: nn.Module, num: int) -> list[str]:
    return imagenet_categories() if num == 1000 else placeholder_names(num)


def loaded(name: str, module: nn.Module, label: str, weights: str, num_classes: int | None = None) -> LoadedModel:
    (size, mean, std), interpolation = preprocessing(module)
    num = int(getattr(module, "num_classes", 0) or 0)
    return LoadedModel(
        label,
        module.eval(),
        size,
        mean,
        std,
        categories(module, num),
        lambda: build(name, num_classes),
        default_layer(module),
        layer_key=arch_key(PREFIX + name, num_classes),
        weights=weights,
        interpolation=interpolation,
    )


def load(name: str, weights: str | None) -> LoadedModel:
    """``--model timm:NAME``: pretrained weights through timm (the Hugging Face hub) or ``--weights none``."""
    timm = require_timm()
    check_name(name)
    spec = (weights or "default").strip().lower()
    if spec == "none":
        return loaded(name, build(name), PREFIX + name, "random")
    if spec != "default":
        raise UsageError(f"--weights {weights!r}: timm models take default or none (a tag goes in the name: NAME.TAG)")
    offline = "offline: --weights none (random weights) or a checkpoint file --model path/to/model.pth"
    source = weights_source(name)
    with hub_checked(source) as why:
        if why and source and source != hub_endpoint() and not _url_cached(source):
            raise ModelError(f"timm weights for {name} are not cached and cannot be downloaded ({why}); {offline}")
        try:
            module = timm.create_model(name, pretrained=True)
        except Exception as e:
            if why:  # the hub client read its cache only
                raise ModelError(
                    f"timm weights for {name} are not in the Hugging Face cache and cannot be downloaded ({why}); "
                    f"{offline}"
                ) from None
            raise ModelError(f"cannot get timm weights for {name} ({first_words(e)}); {offline}") from None
    tag = getattr(module, "pretrained_cfg", {}).get("tag") or "default"
    return loaded(name, module, PREFIX + name, f"timm {tag}")


def weights_source(name: str) -> str | None:
    """Where timm takes ``name``'s pretrained weights from: the hub's address (they are on the Hugging Face hub),
    a URL, or None (timm knows of none)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        return hub_endpoint()
    return cfg.url if isinstance(cfg.url, str) and cfg.url else None


def weights_text(name: str) -> str:
    """Where ``name``'s pretrained weights come from and whether they are here, for ``camcli inspect``:
    ``timm/resnet18.a1_in1k on the Hugging Face hub (cached)``."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    url = weights_source(name)
    if cfg is None or url is None:
        return "none published (--weights none only)"
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
        cached = any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, f), str) for f in files)
        where = f"{cfg.hf_hub_id} on the Hugging Face hub"
    else:
        cached, where = _url_cached(url), url
    return f"{where} ({'cached' if cached else 'not cached: downloaded on first use'})"


def _url_cached(url: str) -> bool:
    """A URL's weights file is in timm's cache (torch hub's ``checkpoints`` folder)."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlsplit(url).path)).is_file()


# ------------------------------------------------------------------------------------------ identification
def _candidates(state: Mapping[str, torch.Tensor]) -> list[tuple[str, list[str]]]:
    """(name, classifier keys) of the timm architectures whose stem, classifier (or none: a model saved with
    ``num_classes=0``), patch size and position table fit ``state`` (read from their pretrained configs: nothing is
    built)."""
    timm = require_timm()
    from timm.models import get_pretrained_cfg

    keys = set(state)
    out = []
    for name in timm.list_models():
        cfg = get_pretrained_cfg(name)
        if cfg is None:
            continue
        stems = cfg.first_conv if isinstance(cfg.first_conv, list | tuple) else [cfg.first_conv]
        heads = cfg.classifier if isinstance(cfg.classifier, list | tuple) else [cfg.classifier]
        stem = next((f"{s}.weight" for s in stems if s and f"{s}.weight" in keys), None)
        with_head = all(h and f"{h}.weight" in keys for h in heads)
        without = not any(h and f"{h}.weight" in keys for h in heads)  # num_classes=0: an embedding model
        if stem is None or not (with_head or without):
            continue
        kernel = state[stem].shape[-1] if state[stem].dim() == 4 else None
        patch = re.search(r"patch(\d+)", name)
        if patch and kernel is not None and int(patch.group(1)) != kernel:
            continue
        pos = state.get("pos_embed")
        if pos is not None and pos.dim() == 3 and kernel and cfg.input_size:
            cells = (cfg.input_size[-2] // kernel) * (cfg.input_size[-1] // kernel)
            if not 0 <= pos.shape[1] - cells <= 8:
                continue
        out.append((name, [f"{h}.{p}" for h in heads for p in ("weight", "bias")]))
    return out


def identify(state: Mapping[str, torch.Tensor]) -> tuple[list[tuple[str, int | None]], int]:
    """([(``timm:NAME``, classes)] of the timm architectures ``state`` fits, number of candidates built or read)."""
    from .archs import match_arch

    entry = f"timm-signatures-v1-timm{package_version('timm')}.json"
    cached = read_json(entry)
    sigs: dict[str, Signature | None] = {}
    if isinstance(cached, dict):
        sigs = {n: ({k: tuple(s) for k, s in v.items()} if isinstance(v, dict) else None) for n, v in cached.items()}
    hits: list[tuple[str, int | None]] = []
    candidates = _candidates(state)
    new = False
    for name, head in candidates:
        if name not in sigs:
            try:
                sigs[name] = {k: tuple(v.shape) for k, v in build(name, 1000, meta=True).state_dict().items()}
            except (ModelError, RuntimeError):
                sigs[name] = None  # cannot be built here: not a candidate
            new = True
        sig = sigs[name]
        if sig is not None:
            ok, num, _ = match_arch(state, sig, head=[k for k in head if k in sig])
            if ok:
                hits.append((PREFIX + name, num))
    if new:
        write_json(entry, {n: ({k: list(s) for k, s in v.items()} if v else None) for n, v in sigs.items()})
    return hits, len(candidates)
