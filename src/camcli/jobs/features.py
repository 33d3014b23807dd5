"""``camcli features``: grids of a layer's strongest (or chosen) channels, per image and layer.

Forward hooks only, no gradients, under inference mode; only the hooked layers' outputs are kept. A video or
volume shows one frame or slice (camcli.jobs.media_features).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import render
from ..engine.hooks import capture, eval_mode
from ..engine.layers import LayerInfo, hookable, resolve
from ..engine.layouts import to_grid
from ..errors import InputError, UsageError
from ..io.inputs import InputFile
from ..io.outputs import Setting, atomic_save_npy, feature_output_path, owned_by, owner_tag
from ..io.picture import Picture
from ..models import LoadedModel
from ..options import FeatureOptions, Layout, parse_channels
from .job import Job
from .media_features import Shown, feature_media, media_features_exist
from .results import FeatureOutput, ImageResult, LayerStats, Output, Record
from .runner import ResultCallback, run_job


@dataclass
class LayerFeatures:
    """One layer of one image, as :meth:`FeatureJob.compute` hands it to :meth:`FeatureJob.write` (CPU)."""

    channels: list[int]  # the channels shown, in order
    means: list[float]  # their mean activations (rounded)
    maps: torch.Tensor  # (len(channels), h, w)
    stats: LayerStats
    raw: torch.Tensor | None  # (C, h, w) the whole output, with --save-raw
    shown: Shown | None = None  # a video's or volume's grid: which frame or slice (None: a picture)


def rank_channels(act: torch.Tensor, top: int) -> list[int]:
    """Indices of the ``top`` channels of (C, h, w) by mean activation, strongest first (ties: lower index)."""
    means = act.float().mean(dim=(1, 2))
    order = torch.sort(means, descending=True, stable=True).indices  # stable: equal means keep index order
    return [int(i) for i in order[: max(1, top)]]


def layer_stats(act: torch.Tensor) -> LayerStats:
    """Channels, size, mean, max and share of zeros of one image's (C, h, w) layer output."""
    a = act.float()
    return LayerStats(
        channels=int(a.shape[0]),
        height=int(a.shape[1]),
        width=int(a.shape[2]),
        mean=round(float(a.mean()), 6),
        max=round(float(a.max()), 6),
        zeros_pct=round(float((a == 0).float().mean()) * 100, 2),
    )


class FeatureJob(Job[dict[str, LayerFeatures]]):
    """Captures the chosen layers' outputs and writes one grid per image and layer (``compute`` gives, per
    image, the layers by name)."""

    options: FeatureOptions
    label = "feature grids"
    media = True  # videos and volumes too: one frame or slice each (camcli.jobs.media_features)

    def __init__(self, options: FeatureOptions, model: LoadedModel | None = None) -> None:
        self.options = options
        super().__init__(options, model)

    def prepare_options(self) -> None:
        self.channels = parse_channels(self.options.channels) if self.options.channels is not None else None

    def choose_layers(self, infos: list[LayerInfo]) -> tuple[list[str], bool]:
        if self.options.all_layers:
            return [i.name for i in hookable(infos)], False
        return super().choose_layers(infos)

    def prepare_model(self, infos: list[LayerInfo]) -> None:
        if self.model.task == "detection":
            self.batch_size = 1  # pictures of their own sizes: a detector resizes each one itself
        m, kind = self.options.media, self.model.kind
        if m.slice is not None and kind == "image":
            raise UsageError(f"--slice picks a volume's slice; {self.model.name} takes pictures: use --frame")
        if m.frame is not None and kind == "volume":
            raise UsageError(f"--frame picks a video's frame; {self.model.name} takes volumes: use --slice")
        if self.channels is None:
            return
        by_name = {i.name: i for i in infos}
        for layer in self.layers:
            info = by_name.get(layer)
            c = _channel_count(info.shape, info.layout) if info is not None and info.shape else None
            if c is not None and max(self.channels) >= c:
                raise UsageError(f"--channels {self.options.channels}: layer '{layer}' has channels 0…{c - 1}")

    def how_layers_chosen(self) -> str:
        return "--all" if self.options.all_layers else super().how_layers_chosen()

    def header(self) -> str:
        shown = ", ".join(self.layers[:6]) + (f" … ({len(self.layers)} layers)" if len(self.layers) > 6 else "")
        model = f"model {self.model.name}{self.weights_note()}"
        return f"{model} · layer {shown} ({self.how_layers_chosen()}) · device {self.device}"

    def settings(self) -> dict[str, Any]:
        o = self.options
        shown = {"channels": o.channels} if o.channels is not None else {"top": o.top}
        common = {k: v for k, v in super().settings().items() if k != "layers"}  # a grid is one layer's, named
        return {**common, **shown, "normalize": o.normalize, "tile": o.tile, "colormap": o.colormap}

    def named_settings(self) -> list[Setting]:
        o, d = self.options, FeatureOptions()
        out = super().named_settings()
        if o.channels is not None:
            out.append(("channels", o.channels.replace(" ", "")))
        elif o.top != d.top:
            out.append(("top", str(o.top)))
        if o.normalize != d.normalize:
            out.append(("normalize", o.normalize))
        if o.tile != d.tile:
            out.append(("tile", str(o.tile)))
        if o.colormap != d.colormap:
            out.append(("colormap", o.colormap))
        return out

    def output_path(self, item: InputFile, layer: str, suffix: str | None = None, shown: str | None = None) -> Path:
        """The grid of ``layer``; with ``--all`` its name starts with the layer's place in the forward pass
        (``features.007-layer1.0.conv1``), so that a folder listing shows the layers in the order they run. A
        video's or volume's grid ends with the frame or slice it shows (``shown``: ``features.layer4.frame12``)."""
        name = layer
        if self.options.all_layers:
            digits = len(str(len(self.layers)))
            name = f"{self.layers.index(layer) + 1:0{digits}d}-{layer}"
        name += self.name_settings + (f".{shown}" if shown else "")
        return feature_output_path(self.options.out, item, name, suffix or self.ext)

    def outputs_exist(self, item: InputFile, shown: str | None = None) -> bool:
        sfx = [self.ext] + ([".npy"] if self.options.save_raw else [])
        owner, made = owner_tag(item), self.settings_text
        paths = [self.output_path(item, layer, s, shown) for layer in self.layers for s in sfx]
        pictures = [p for p in paths if p.suffix != ".npy"]
        return all(p.is_file() for p in paths) and all(owned_by(p, owner, made) for p in pictures)

    def explain_media(self, item: InputFile) -> ImageResult:
        return feature_media(self, item)

    def media_done(self, item: InputFile) -> bool:
        return media_features_exist(self, item)

    def compute(self, x: torch.Tensor) -> list[dict[str, LayerFeatures]]:
        if self.model.kind != "image":
            what = "videos (a clip of frames)" if self.model.kind == "video" else "volumes (NIfTI, .npy)"
            raise InputError(f"{self.model.name} takes {what}, not pictures")
        module = self.model.module
        mods = {name: resolve(module, name) for name in self.layers}
        with torch.inference_mode(), eval_mode(module), capture(module, mods, grad=False) as cap:
            module(x)
        acts = cap.require(self.layers)
        out: list[dict[str, LayerFeatures]] = [{} for _ in range(x.shape[0])]
        for name, act in zip(self.layers, acts, strict=True):
            grid = to_grid(act, self.layouts.get(name), (int(x.shape[-2]), int(x.shape[-1]))).float().cpu()
            for i in range(x.shape[0]):
                out[i][name] = self.layer_features(grid[i])
        return out

    def layer_features(self, a: torch.Tensor, shown: Shown | None = None) -> LayerFeatures:
        """What one image's (C, h, w) layer output (a float CPU tensor) shows: the chosen channels, their means,
        the layer's statistics."""
        chosen = self.channels or rank_channels(a, self.options.top)
        means = a.mean(dim=(1, 2))
        return LayerFeatures(
            channels=chosen,
            means=[round(float(means[c]), 4) for c in chosen],
            maps=a[chosen].clone(),
            stats=layer_stats(a),
            raw=a.clone() if self.options.save_raw else None,
            shown=shown,
        )

    def write(self, item: InputFile, picture: Picture, computed: dict[str, LayerFeatures]) -> ImageResult:
        image = picture.pil()
        written: list[Output] = []
        for layer, f in computed.items():
            if not (math.isfinite(f.stats.mean) and math.isfinite(f.stats.max)):
                raise InputError(f"{item.path}: layer '{layer}' output is not finite (NaN or Inf); check the weights")
            labels = [f"ch {ch}  mean {m:.2f}" for ch, m in zip(f.channels, f.means, strict=True)]
            st = f.stats
            how = "channels chosen" if self.channels is not None else f"top {len(f.channels)} by mean activation"
            shape = f"{st.channels}x{st.height}x{st.width}"
            what = f"{shape} · {f.shown.caption}" if f.shown is not None else shape
            grid = render.feature_grid(
                image,
                f.maps.numpy(),
                labels,
                colormap=self.options.colormap,
                normalize=self.options.normalize,
                tile=self.options.tile,
                # "x", not "×": Pillow's default font has no such glyph
                title=f"{layer} · {what} · {how} · {Path(item.display).name}",
            )
            tag = f.shown.tag if f.shown is not None else None
            path = self.output_path(item, layer, shown=tag)
            self.save_picture(path, grid, owner_tag(item))
            out = FeatureOutput(layer, f.channels, f.means, f.stats, grid=str(path))
            if f.shown is not None:
                out.index, out.shown = f.shown.index, f.shown.caption
            if f.raw is not None:
                raw = self.output_path(item, layer, ".npy", tag)
                atomic_save_npy(raw, f.raw.numpy().astype(np.float32))
                out.raw = str(raw)
            written.append(out)
        return ImageResult(item.display, True, size=(image.width, image.height), written=written)

    def records(self, result: ImageResult) -> list[Record]:
        settings = {k: v for k, v in self.run_settings.items() if k != "model"}
        base = {"input": result.input, "kind": "features", "model": self.model.name, "settings": settings}
        if not result.ok:
            return [{**base, "layer": "+".join(self.layers), "status": "error", "error": result.error}]
        return [o.record(base) for o in result.written if isinstance(o, FeatureOutput)]


def _channel_count(shape: tuple[int, ...], layout: Layout | None) -> int | None:
    """The channels of a layer's output of ``shape`` (batch first) laid out as ``layout`` (None: unknown)."""
    kind = layout.kind if layout is not None else ("nchw" if len(shape) == 4 else None)
    if kind in ("nchw", "ncdhw"):
        return int(shape[1])
    if kind in ("nhwc", "ndhwc", "tokens"):
        return int(shape[-1])
    return None


def feature_files(
    inputs: Sequence[str],
    options: FeatureOptions | None = None,
    *,
    on_result: ResultCallback | None = None,
    on_error: ResultCallback | None = None,
    model: LoadedModel | None = None,
) -> Iterator[ImageResult]:
    """Python API: feature grids for files/folders/globs/list files; yields results as grids are written."""
    job = FeatureJob(options or FeatureOptions(), model)
    yield from run_job(job, inputs, on_result=on_result, on_error=on_error)
