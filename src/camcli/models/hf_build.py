"""Building a Hugging Face transformers model as strictly as camcli loads a checkpoint.

* ``config.json`` is checked before transformers reads it (:mod:`camcli.models.hf_files`), and the Python its
  ``auto_map`` names runs only with ``--trust-checkpoint`` (transformers' ``trust_remote_code``, passed as True or
  False, never left to transformers, which would ask on stdin);
* the model is first built on the ``meta`` device (no memory) and its parameters counted: a config that describes
  far more than its weights files hold (``"hidden_size": 1000000``) is refused before anything is allocated;
* pickled weights (``pytorch_model.bin``) are read by camcli's checkpoint reader: plain tensors only unless
  ``--trust-checkpoint``;
* weights with missing, unexpected or wrong-shape keys are one error line (transformers would leave those layers
  random, or fail with a report camcli does not show).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from . import checkpoints, clip, hf_files
from .archs import MetaParams, keys_report

TRUST = "--trust-checkpoint"
MAX_RANDOM_BYTES = 16 * 2**30  # --weights none: the largest model built with random weights (float32)


def require() -> Any:
    try:
        import transformers
    except ImportError:
        raise ModelError("Hugging Face models need transformers: pip install 'camcli[hf]'") from None
    transformers.logging.set_verbosity_error()
    return transformers


def kind(config: Any) -> str:
    """``image-text`` (CLIP-style), ``backbone`` (its ``architectures`` name only ``…Model`` classes: no head) or
    ``classifier``."""
    if clip.is_hf_image_text(config):
        return "image-text"
    arches = [str(a) for a in (getattr(config, "architectures", None) or [])]
    if arches and all(a.endswith("Model") and "For" not in a for a in arches):
        return "backbone"
    return "classifier"


def checked_config(config_path: Path, files: list[Path], trust: bool) -> list[str]:
    """``config.json`` checked before transformers reads it (:func:`camcli.models.hf_files.check_config`) and the
    Python its ``auto_map`` names refused unless ``trust``; returns notes for the run's header."""
    raw = hf_files.read_json(config_path)
    hf_files.check_config(config_path, raw, files)
    hf_files.check_weights(files)
    code = hf_files.code_files(raw)
    shown = ", ".join(code[:4]) + (f" and {len(code) - 4} more" if len(code) > 4 else "")
    if code and trust:
        return [f"runs its own code ({shown}): {TRUST}"]
    transformers = require()
    model_type = raw["model_type"]
    if model_type in transformers.models.auto.configuration_auto.CONFIG_MAPPING:
        return [f"its auto_map code ({shown}) is not run: transformers' own {model_type} builds it"] if code else []
    if code:
        raise ModelError(
            f"{config_path}: model_type {model_type!r} is built by the model's own Python ({shown}), which camcli runs "
            f"only with {TRUST} (only for code you trust)"
        )
    raise ModelError(
        f"{config_path}: model_type {model_type!r} is not a model transformers {transformers.__version__} has; upgrade "
        "transformers (pip install -U transformers) or fix config.json"
    )


def config_of(source: str | Path, config_path: Path, trust: bool, **kwargs: Any) -> Any:
    """transformers' config object (``OSError``: not in the cache, for the caller)."""
    try:
        return require().AutoConfig.from_pretrained(str(source), trust_remote_code=trust, **kwargs)
    except OSError:
        raise
    except Exception as e:  # a field transformers refuses ("hidden_size": "abc"), a model type it does not have
        raise _cannot_build(config_path, e) from None


def _cannot_build(where: str | Path, e: Exception) -> ModelError:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()] or [""]
    why = " ".join(lines[:2])[:200]
    return ModelError(
        f"{where}: transformers cannot load it ({type(e).__name__}: {why}); fix config.json or save the model "
        "again with save_pretrained"
    )


def build(
    source: str | Path, config: Any, config_path: Path, files: list[Path] | None, trust: bool, *,
    random: bool = False, **kwargs: Any,
) -> nn.Module:  # fmt: skip
    """The model ``config`` describes, from ``source`` (a folder, or a hub id): a size check on the ``meta``
    device against the weights ``files`` (None: not known yet), then the weights, strictly (``random``: none).
    ``OSError`` (not in the cache) goes to the caller."""
    transformers = require()
    kwargs["trust_remote_code"] = trust  # never None: transformers would ask on stdin
    auto = transformers.AutoModelForImageClassification if kind(config) == "classifier" else transformers.AutoModel
    try:
        meta = _meta(auto, config, trust)
        if random:
            _fits(meta, config_path, MAX_RANDOM_BYTES, random=True)
            return auto.from_config(config, trust_remote_code=trust)
        if files is not None:
            _fits(meta, config_path, 4 * sum(f.stat().st_size for f in files))
        loader: Any = auto
        where: str | None = str(source)
        state = _pickled_state(files or [], trust)
        if state is not None:  # transformers takes a state_dict instead of a folder, and from the model's class
            if meta is None:
                raise ModelError(f"{source}: cannot load its pytorch_model.bin; {hf_files.RESAVE} (safetensors)")
            loader, where, kwargs["state_dict"] = type(meta), None, state
        module, info = loader.from_pretrained(
            where, config=config, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
    except (OSError, ModelError):
        raise
    except pickle.UnpicklingError:  # a pickle just downloaded (one on disk is read by _pickled_state)
        again = "run the same command again to read it from the cache" if trust else f"pass {TRUST} if you trust it"
        raise ModelError(
            f"{source}: refused to load its pytorch_model.bin: it needs more than plain tensors to unpickle, which "
            f"can run arbitrary code; {again}, or convert it to safetensors (model.save_pretrained(folder))"
        ) from None
    except ValueError as e:  # a config of a model that is not an image model
        why = str(e).splitlines()[0][:160]
        raise ModelError(
            f"{source}: not a Hugging Face image classifier, backbone or image–text model ({why})"
        ) from None
    except Exception as e:  # weights transformers cannot convert, a field it refuses late: one line
        raise _cannot_build(source, e) from None
    wrong = [f"{k} {list(a)}≠{list(b)}" for k, a, b in sorted(info.get("mismatched_keys") or [])]
    missing, unexpected = sorted(info.get("missing_keys") or []), sorted(info.get("unexpected_keys") or [])
    if missing or unexpected or wrong:
        raise ModelError(
            f"{source}: the weights do not fit config.json: {keys_report(missing, unexpected, wrong)}; fix "
            "config.json to match the weights, or save the model again with save_pretrained"
        )
    return module


def _pickled_state(files: list[Path], trust: bool) -> dict[str, Any] | None:
    """The state_dict of pickled weights (``pytorch_model*.bin``, when no safetensors file is beside them), read by
    camcli's checkpoint reader: plain tensors only unless ``trust`` (transformers' own reader ignores
    ``weights_only=False``); None for safetensors, which transformers reads itself."""
    if not files or any(f.suffix == ".safetensors" for f in files):
        return None
    state: dict[str, Any] = {}
    for file in files:
        _, obj = checkpoints.read_file(file, trust)
        if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
            raise ModelError(f"{file}: holds a {type(obj).__name__}, not a state_dict; {hf_files.RESAVE}")
        state.update(obj)
    return state


def _meta(auto: Any, config: Any, trust: bool) -> nn.Module | None:
    """The model ``config`` describes, built on the ``meta`` device (no memory) as transformers builds it before
    loading weights; None when it cannot be (the real build then says what is wrong)."""
    contexts: list[Any]
    try:
        from transformers import initialization

        contexts = [torch.device("meta"), initialization.meta_device_safe_creation_ops()]
    except ImportError:  # transformers 4: parameters and buffers on meta, other tensor math as it is
        contexts = [MetaParams()]
    try:
        with ExitStack() as stack:
            for context in contexts:
                stack.enter_context(context)
            return auto.from_config(config, trust_remote_code=trust)
    except Exception:
        return None


def _fits(meta: nn.Module | None, config_path: Path, limit: int, random: bool = False) -> None:
    """Refuse a config that describes far more parameters than ``limit`` bytes (four times its weights files: a
    float16 file read as float32, and room to spare) before it is built (``"hidden_size": 1000000``)."""
    if meta is None:
        return
    count = sum(p.numel() for p in meta.parameters())  # a tied parameter once
    if 4 * count > limit + 2**28:
        held = (
            f"camcli builds at most {limit / 2**30:.0f} GB with random weights"
            if random
            else f"its weights files hold {limit / 4 / 2**20:,.1f} MB"
        )
        raise ModelError(
            f"{config_path}: describes a model of {count:,} parameters ({4 * count / 2**30:,.1f} GB) but {held}; "
            f"fix config.json (hidden sizes, layer and class counts){'' if random else ' to match its weights'}"
        )
