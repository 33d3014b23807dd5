"""``camcli inspect`` on what ``--model`` takes besides a checkpoint file: a Hugging Face ``save_pretrained``
folder (or its ``model.safetensors``), ``timm:NAME``, ``hf:ORG/NAME``, ``open_clip:ARCH`` and the names of
torchvision's and the bundled model. The model is loaded as a run loads it (strictly; named models with random
weights, so nothing downloads) and described: what it does, its classes, preprocessing, default layers, size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import streams

PREFIXES = ("timm:", "hf:", "open_clip:")


def is_model_spec(spec: str) -> bool:
    """``spec`` names a model to inspect, not a checkpoint file: a Hugging Face folder (or a weights file in
    one), a prefixed name, or a name with no path in it."""
    from ..models import folder_model, looks_like_path

    return folder_model(spec) is not None or spec.strip().lower().startswith(PREFIXES) or not looks_like_path(spec)


def inspect_model(
    spec: str, *, arch: str | None, arch_args: str | None, trust: bool, code_path: str | None, json_out: bool
) -> None:
    from ..engine.layers import trace
    from ..models import folder_model, hf_models, is_bundled, load_model
    from . import console

    spec = spec.strip()
    folder = folder_model(spec)
    if folder is not None and Path(spec).is_file():
        console.info(f"{spec} belongs to the Hugging Face folder {folder} (its config.json): inspecting the folder")
        spec = str(folder)
    low = spec.lower()
    # a named model's layers and classes are the same with any weights: never download for a description
    weights = None if folder is not None or is_bundled(spec) or low.startswith(hf_models.PREFIX) else "none"
    loaded = load_model(
        spec, weights, arch=arch, trust_checkpoint=trust, arch_args=arch_args, code_path=code_path
    )  # fmt: skip
    m = loaded.module
    infos = trace(
        m,
        loaded.input_size,
        loaded.builder,
        loaded.layer_key,
        loaded.prefix_tokens,
        loaded.task != "detection",
        loaded.sample_shape()[:-2],
    )
    state = m.state_dict()
    defaults, why = _defaults(loaded, infos)
    rec: dict[str, Any] = {
        "model": spec,
        "source": _source(spec, folder is not None),
        "task": _task(loaded),
        "architecture": type(m).__name__,
        "classes": None if loaded.embedding else len(loaded.categories),
        "first_classes": loaded.categories[:5],
        "input_size": list(loaded.input_size),
        **({"input": "×".join(map(str, loaded.sample_shape())), "kind": loaded.kind} if loaded.kind != "image" else {}),
        **({"clip_fps": loaded.clip_fps} if loaded.clip_fps else {}),
        "mean": [round(v, 4) for v in loaded.mean],
        "std": [round(v, 4) for v in loaded.std],
        "interpolation": loaded.interpolation,
        **({"head": f"{loaded.head} ({loaded.head_why})" if loaded.head_why else loaded.head} if loaded.head else {}),
        "default_layers": defaults,
        **({"no_default_layer": why} if why else {}),
        "weights": _weights(spec, loaded.weights, folder),
        "tensors": len(state),
        "parameters": sum(int(v.numel()) for v in state.values()),
        "notes": loaded.notes,
    }
    if json_out:
        streams.results().write(json.dumps(rec) + "\n")
        return
    rows = [(k, ", ".join(map(str, v)) if isinstance(v, list) else ("-" if v is None else v)) for k, v in rec.items()]
    console.table(f"model {spec}", ["field", "value"], rows, stdout=True)
    what = " --reference PICTURE" if loaded.embedding and not loaded.encode_text else ""
    what = " --prompt TEXT" if loaded.encode_text else what
    sample = {"video": "VIDEO", "volume": "VOLUME"}.get(loaded.kind, "IMAGE")
    console.info(f"use it: camcli gradcam {sample} --model {spec}{what}")


def _defaults(loaded: Any, infos: Any) -> tuple[list[str], str]:
    """(the default layers, ""), or ([], why) when none can be chosen (no layer's grid can be read)."""
    from ..errors import LayerError
    from ..jobs.objects import default_layers

    try:
        return default_layers(loaded, infos), ""
    except LayerError as e:
        return [], str(e)


def _source(spec: str, folder: bool) -> str:
    from ..models import is_bundled

    low = spec.lower()
    if folder:
        return "Hugging Face folder (save_pretrained)"
    for prefix, source in (("timm:", "timm"), ("hf:", "Hugging Face hub (its cache)"), ("open_clip:", "open_clip")):
        if low.startswith(prefix):
            return source
    return "bundled with camcli" if is_bundled(spec) else "torchvision"


def _task(loaded: Any) -> str:
    from ..models.zoo import TASK_WORDS, VIDEO_CLASSIFIER

    if loaded.encode_text is not None:
        return "image–text model (explained by similarity to --prompt texts)"
    if loaded.embedding:
        return "embedding model (explained by similarity to --reference pictures)"
    if loaded.kind == "video" and loaded.task == "classification":
        return VIDEO_CLASSIFIER
    return TASK_WORDS.get(loaded.task, loaded.task)


def _weights(spec: str, loaded: str, folder: Path | None) -> str:
    """What a run would load: the folder's or the hub cache's own weights, the bundled ones, or a named model's
    default weights and whether they are here (this description was made with random weights)."""
    from ..models import model_key
    from ..models.hf_models import weight_files
    from ..models.timm_models import PREFIX as TIMM
    from ..models.timm_models import weights_text
    from ..models.zoo import catalog_entry, object_names, torchvision_names, video_names

    if folder is not None:
        return f"its own ({', '.join(f.name for f in weight_files(folder))})"
    if spec.lower().startswith(TIMM):
        return "default: " + weights_text(spec[len(TIMM) :].strip())
    key = model_key(spec)
    if key in torchvision_names() or key in video_names() or key in object_names():
        e = catalog_entry(key)
        return f"default: {e.weights} ({e.where})" if e.weights else "none in torchvision (--weights none only)"
    if spec.lower().startswith("open_clip:"):
        return "given with --weights (a tag or a file) when it runs"
    return loaded
