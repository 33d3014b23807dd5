"""``camcli features``: grids of a layer's strongest (or chosen) channels, per image and layer.

Forward hooks only, no gradients, under inference mode; only the hooked layers' outputs are kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import images, render
from .camjob import resolve_layers
from .errors import LayerError, UsageError
from .hooks import capture, eval_mode
from .layers import resolve, tokens_to_grid, trace
from .models import LoadedModel, resolve_device
from .pipeline import ImageResult, RunOptions, drive


@dataclass
class FeatureOptions(RunOptions):
    """Options of a feature-grid run (the CLI's options, as a Python object)."""

    colormap: str = "viridis"
    all_layers: bool = False  # every layer with a spatial output that runs once
    top: int = 16
    channels: str | None = None  # "0,5,17-24"
    normalize: str = "tile"
    tile: int = 128


def parse_channels(spec: str) -> list[int]:
    """``"0,5,17-24"`` → [0, 5, 17, 18, …, 24] (order kept, duplicates dropped)."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise UsageError(f"--channels '{spec}': '{part}' is not an index or a range like 17-24")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UsageError(f"--channels '{spec}': range {part} goes backwards")
        out.extend(i for i in range(lo, hi + 1) if i not in out)
    if not out:
        raise UsageError("--channels is empty; pass indices like 0,5,17-24")
    return out


def rank_channels(act: torch.Tensor, top: int) -> list[int]:
    """Indices of the ``top`` channels of (C, h, w) by mean activation, strongest first (ties: lower index)."""
    means = act.float().mean(dim=(1, 2))
    order = torch.sort(means, descending=True, stable=True).indices  # stable: equal means keep index order
    return [int(i) for i in order[: max(1, top)]]


def layer_stats(act: torch.Tensor) -> dict[str, Any]:
    a = act.float()
    return {
        "channels": int(a.shape[0]),
        "height": int(a.shape[1]),
        "width": int(a.shape[2]),
        "mean": round(float(a.mean()), 6),
        "max": round(float(a.max()), 6),
        "zeros_pct": round(float((a == 0).float().mean()) * 100, 2),
    }


class FeatureJob:
    """Captures the chosen layers' outputs and writes one grid per image and layer."""

    def __init__(self, options: FeatureOptions, model: LoadedModel | None = None) -> None:
        if options.top < 1 or options.batch_size < 1 or options.tile < 8:
            raise UsageError("--top and --batch-size must be at least 1, --tile at least 8")
        if options.normalize not in ("tile", "layer"):
            raise UsageError(f"--normalize {options.normalize!r}: use tile or layer")
        render.check_colormap(options.colormap)
        self.options = options
        self.device = resolve_device(options.device)
        self.model = model or options.load_model()
        infos = trace(self.model.module, self.model.input_size, self.model.builder)
        if options.all_layers:
            self.layers = [i.name for i in infos if i.calls == 1 and i.spatial]
            self.layer_chosen = False
        else:
            self.layers, self.layer_chosen = resolve_layers(self.model, options.layers, infos)
        self.channels = parse_channels(options.channels) if options.channels else None
        if self.channels is not None:
            shapes = {i.name: i.shape for i in infos}
            for layer in self.layers:
                shape = shapes.get(layer)
                c = shape[1] if shape is not None and len(shape) == 4 else (shape[2] if shape else None)
                if c is not None and max(self.channels) >= c:
                    raise UsageError(f"--channels {options.channels}: layer '{layer}' has channels 0…{c - 1}")
        self.batch_size = options.batch_size
        self.model.module.to(self.device)

    def grid_path(self, item: images.InputFile, layer: str, suffix: str = ".png") -> Path:
        stem = self.options.out / item.rel
        return stem.with_name(f"{stem.name}.features.{layer}{suffix}")

    def outputs_exist(self, item: images.InputFile) -> bool:
        sfx = [".png"] + ([".npy"] if self.options.save_raw else [])
        return all(self.grid_path(item, layer, s).is_file() for layer in self.layers for s in sfx)

    def compute(self, x: torch.Tensor) -> list[dict[str, Any]]:
        module = self.model.module
        mods = {name: resolve(module, name) for name in self.layers}
        with torch.inference_mode(), eval_mode(module), capture(module, mods, grad=False) as cap:
            module(x)
        missing = [n for n in self.layers if n not in cap.acts]
        if missing:
            raise LayerError(f"layer '{missing[0]}' did not run in the forward pass; pick another (camcli layers)")
        out: list[dict[str, Any]] = [{} for _ in range(x.shape[0])]
        for name in self.layers:
            grid = tokens_to_grid(cap.acts[name]).float().cpu()
            for i in range(x.shape[0]):
                a = grid[i]
                chosen = self.channels or rank_channels(a, self.options.top)
                means = a.mean(dim=(1, 2))
                out[i][name] = {
                    "channels": chosen,
                    "means": [round(float(means[c]), 4) for c in chosen],
                    "maps": a[chosen].clone(),
                    "stats": layer_stats(a),
                    "raw": a.clone() if self.options.save_raw else None,
                }
        return out

    def write(self, item: images.InputFile, image: Image.Image, c: dict[str, Any]) -> ImageResult:
        outputs = []
        for layer, d in c.items():
            labels = [f"ch {ch}  mean {m:.2f}" for ch, m in zip(d["channels"], d["means"], strict=True)]
            grid = render.feature_grid(
                image,
                d["maps"].numpy(),
                labels,
                colormap=self.options.colormap,
                normalize=self.options.normalize,
                tile=self.options.tile,
            )
            path = self.grid_path(item, layer)
            images.atomic_save_png(path, grid)
            files = {"grid": str(path)}
            if d["raw"] is not None:
                raw = self.grid_path(item, layer, ".npy")
                images.atomic_save_npy(raw, d["raw"].numpy().astype(np.float32))
                files["raw"] = str(raw)
            outputs.append(
                {"layer": layer, "channels": d["channels"], "means": d["means"], "stats": d["stats"], "outputs": files}
            )
        return ImageResult(item.display, True, size=(image.width, image.height), outputs=outputs)

    def records(self, result: ImageResult) -> list[dict[str, Any]]:
        base = {"input": result.input, "model": self.model.name, "kind": "features"}
        if not result.ok:
            return [{**base, "layer": "+".join(self.layers), "status": "error", "error": result.error}]
        return [{**base, "status": "ok", **o} for o in result.outputs]


def feature_files(
    inputs: list[str],
    options: FeatureOptions | None = None,
    *,
    on_result: Callable[[ImageResult], None] | None = None,
    on_error: Callable[[ImageResult], None] | None = None,
    model: LoadedModel | None = None,
) -> Iterator[ImageResult]:
    """Python API: feature grids for files/folders/globs/list files; yields results as grids are written."""
    options = options or FeatureOptions()
    yield from drive(FeatureJob(options, model), inputs, options, on_result=on_result, on_error=on_error)
