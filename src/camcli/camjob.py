"""The Grad-CAM-family job: explain batches with one or more methods and layers, write overlays and records."""

from __future__ import annotations

import glob as globlib
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import images, render
from .errors import LayerError, UsageError
from .layers import LayerInfo, default_layer, resolve, spatial_neighbours, trace
from .methods import CamMethod, explain_smooth, get_method, normalize, upsample
from .methods.guided import gradient_to_image, guided_backprop
from .models import LoadedModel, resolve_device
from .pipeline import ImageResult, Prediction, RunOptions, drive
from .targets import resolve_targets


@dataclass
class Options(RunOptions):
    """Everything a CAM run needs besides its inputs (the CLI's options, as a Python object)."""

    methods: list[str] = field(default_factory=lambda: ["gradcam"])
    targets: list[str] = field(default_factory=list)  # empty: each image's top-k
    top_k: int = 1
    alpha: float = 0.5
    per_layer: bool = False
    smooth: int = 0
    noise: float = 0.15
    aug_smooth: bool = False
    guided: bool = False
    score_batch: int = 32
    keep_maps: bool = False  # attach the full-size maps to each result (Python API)


def check_options(o: Options) -> None:
    if not 0.0 <= o.alpha <= 1.0:
        raise UsageError(f"--alpha {o.alpha} is out of range; use a value from 0 to 1")
    if o.batch_size < 1 or o.top_k < 1 or o.score_batch < 1:
        raise UsageError("--batch-size, --top-k and --score-batch must be at least 1")
    if o.smooth < 0 or o.noise < 0:
        raise UsageError("--smooth and --noise must not be negative")
    if o.shard is not None and not 1 <= o.shard[0] <= o.shard[1]:
        raise UsageError(f"--shard {o.shard[0]}/{o.shard[1]}: K must be between 1 and N")
    render.check_colormap(o.colormap)


def resolve_layers(
    loaded: LoadedModel, wanted: list[str], infos: list[LayerInfo] | None = None
) -> tuple[list[str], bool]:
    """Checked layer names (or the default layer) and whether camcli chose it (``infos``: a trace to reuse)."""
    if infos is None:
        infos = trace(loaded.module, loaded.input_size, loaded.builder)
    if not wanted:
        return [default_layer(infos, loaded.default_layer)], True
    by_name = {i.name: i for i in infos}
    out = []
    for name in wanted:
        name = name.strip()
        resolve(loaded.module, name, loaded.name)
        info = by_name.get(name)
        if info is not None and info.calls and not info.spatial:
            near = ", ".join(spatial_neighbours(infos, name))
            raise LayerError(
                f"layer '{name}' has no spatial output (shape {info.shape}); nearest layers with one: {near}"
            )
        if info is not None and info.calls > 1:
            raise LayerError(f"layer '{name}' runs {info.calls} times per forward pass; pick a layer that runs once")
        out.append(name)
    return out, False


class CamJob:
    """Explains batches and writes one overlay per image, method and class (see :class:`Options`)."""

    def __init__(self, options: Options, model: LoadedModel | None = None) -> None:
        check_options(options)
        self.options = options
        self.device = resolve_device(options.device)
        self.methods: list[CamMethod] = [get_method(m) for m in (options.methods or ["gradcam"])]
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise UsageError("a method is listed twice in --method")
        self.model = model or options.load_model()
        self.layers, self.layer_chosen = resolve_layers(self.model, options.layers)
        self.targets = resolve_targets(options.targets, self.model.categories)
        self.batch_size = options.batch_size
        self.model.module.to(self.device)

    # ---------------------------------------------------------------------------------------- names
    def _name(self, idx: int) -> str:
        cats = self.model.categories
        return cats[idx] if 0 <= idx < len(cats) else f"class_{idx}"

    def _stem(self, item: images.InputFile) -> Path:
        return self.options.out / item.rel

    def paths(self, item: images.InputFile, tag: str, idx: int, suffix: str = ".png") -> Path:
        stem = self._stem(item)
        return stem.with_name(f"{stem.name}.{tag}.{idx}-{images.slug(self._name(idx))}{suffix}")

    def _expected(self) -> list[tuple[str, str]]:
        """(tag, suffix) of every file written per image and class: a PNG per map, its .npy with --save-raw
        (maps only: the guided images have no raw array)."""
        maps = [m.name for m in self.methods]
        if self.options.per_layer and len(self.layers) > 1:
            maps += [f"{m.name}@{layer}" for m in self.methods for layer in self.layers]
        suffixes = [".png", ".npy"] if self.options.save_raw else [".png"]
        out = [(tag, sfx) for tag in maps for sfx in suffixes]
        if self.options.guided:
            out += [(tag, ".png") for tag in ["guided-backprop"] + [f"guided-{m.name}" for m in self.methods]]
        return out

    def outputs_exist(self, item: images.InputFile) -> bool:
        """All outputs of this input are on disk (atomic writes: a file that exists is complete)."""
        if self.targets:
            return all(
                self.paths(item, tag, idx, sfx).is_file() for tag, sfx in self._expected() for idx in self.targets
            )
        stem = self._stem(item)
        for tag, sfx in self._expected():
            pattern = f"{globlib.escape(stem.name)}.{globlib.escape(tag)}.*{sfx}"
            rx = re.compile(re.escape(f"{stem.name}.{tag}.") + r"\d+-[^.]*" + re.escape(sfx) + "$")
            found = [p for p in stem.parent.glob(pattern) if rx.match(p.name)]
            if len(found) < self.options.top_k:
                return False
        return True

    # --------------------------------------------------------------------------------------- compute
    def compute(self, x: torch.Tensor) -> list[dict[str, Any]]:
        o = self.options
        ex = explain_smooth(
            self.model.module,
            x,
            self.layers,
            self.methods,
            smooth=o.smooth,
            noise=o.noise,
            aug=o.aug_smooth,
            targets=self.targets or None,
            top_k=o.top_k,
            score_batch=o.score_batch,
        )
        guided = guided_backprop(self.model.module, x, ex.classes) if o.guided else None
        out = []
        for i in range(x.shape[0]):
            out.append(
                {
                    "probs": ex.probs[i],
                    "classes": ex.classes[i].tolist(),
                    "maps": {m: v[i] for m, v in ex.by_method.items()},
                    "per_layer": {k: v[i] for k, v in ex.per_layer.items()} if o.per_layer else {},
                    "guided": guided[i] if guided is not None else None,
                }
            )
        return out

    # ----------------------------------------------------------------------------------------- write
    def _save(
        self,
        path: Path,
        image: Image.Image,
        cam: np.ndarray,
        files: dict[str, Any],
        key: str,
        maps: dict[str, np.ndarray] | None,
    ) -> None:
        images.atomic_save_png(path, render.overlay(image, cam, self.options.colormap, self.options.alpha))
        files[key] = str(path)
        if self.options.save_raw:
            raw = path.with_suffix(".npy")
            images.atomic_save_npy(raw, cam.astype(np.float32))
            files[key.replace("overlay", "raw")] = str(raw)
        if maps is not None:
            maps[str(path)] = cam

    def write(self, item: images.InputFile, image: Image.Image, c: dict[str, Any]) -> ImageResult:
        size = (image.height, image.width)
        probs = c["probs"]
        top = probs.topk(min(5, probs.numel()))
        preds = [
            Prediction(int(i), self._name(int(i)), round(float(p), 6))
            for p, i in zip(top.values, top.indices, strict=True)
        ]
        maps: dict[str, np.ndarray] | None = {} if self.options.keep_maps else None
        outputs = []
        for k, idx in enumerate(c["classes"]):
            guided = c["guided"][k] if c["guided"] is not None else None
            gb_path = self.paths(item, "guided-backprop", idx)
            if guided is not None:
                images.atomic_save_png(gb_path, _gradient_png(guided, size))
            for m in self.methods:
                files: dict[str, Any] = {}
                full = normalize(upsample(c["maps"][m.name][k], size)).numpy()
                self._save(self.paths(item, m.name, idx), image, full, files, "overlay", maps)
                for (mname, layer), v in c["per_layer"].items():
                    if mname == m.name:
                        per = normalize(upsample(v[k], size)).numpy()
                        sub: dict[str, Any] = {}
                        self._save(self.paths(item, f"{m.name}@{layer}", idx), image, per, sub, "overlay", maps)
                        files.setdefault("per_layer", {})[layer] = sub["overlay"]
                if guided is not None:
                    files["guided_backprop"] = str(gb_path)
                    cam_in = upsample(c["maps"][m.name][k], tuple(guided.shape[-2:]))
                    gc_path = self.paths(item, f"guided-{m.name}", idx)
                    images.atomic_save_png(gc_path, _gradient_png(guided * cam_in[None], size))
                    files["guided_cam"] = str(gc_path)
                outputs.append(
                    {
                        "method": m.name,
                        "class_index": idx,
                        "class_name": self._name(idx),
                        "probability": round(float(probs[idx]), 6),
                        "outputs": files,
                    }
                )
        return ImageResult(
            item.display, True, size=(image.width, image.height), predictions=preds, outputs=outputs, maps=maps
        )

    def records(self, result: ImageResult) -> list[dict[str, Any]]:
        """Manifest / ``--json`` records: one per image, method and class (one error record on failure)."""
        layer = "+".join(self.layers)
        base = {"input": result.input, "model": self.model.name, "layer": layer}
        if not result.ok:
            return [
                {**base, "method": "+".join(m.name for m in self.methods), "status": "error", "error": result.error}
            ]
        top = [asdict(p) for p in result.predictions]
        return [
            {
                **base,
                "method": o["method"],
                "status": "ok",
                "class_index": o["class_index"],
                "class_name": o["class_name"],
                "probability": o["probability"],
                "top_k": top,
                "outputs": o["outputs"],
            }
            for o in result.outputs
        ]


def _gradient_png(g: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """(C, H, W) input gradient → an RGB picture at the original image's size (H, W)."""
    arr = (gradient_to_image(g).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)


def explain_files(
    inputs: list[str],
    options: Options | None = None,
    *,
    on_result: Callable[[ImageResult], None] | None = None,
    on_error: Callable[[ImageResult], None] | None = None,
    model: LoadedModel | None = None,
) -> Iterator[ImageResult]:
    """Python API: explain files/folders/globs/list files; yields results as their outputs are written.

    Example::

        from pathlib import Path
        from camcli import Options, explain_files

        for r in explain_files(["photos/"], Options(out=Path("cams"), methods=["gradcam", "layercam"])):
            print(r.input, r.predictions[0].name if r.ok else r.error)
    """
    options = options or Options()
    yield from drive(CamJob(options, model), inputs, options, on_result=on_result, on_error=on_error)
