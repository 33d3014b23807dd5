"""Streaming batches from input files to written overlays. Returns plain result objects; prints nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import images, render
from .errors import InputError, LayerError
from .layers import default_layer, resolve, trace
from .methods import CamMethod, explain, get_method, normalize, upsample
from .models import BUNDLED, LoadedModel, load_model, resolve_device
from .targets import resolve_targets


@dataclass
class Options:
    """Everything a Grad-CAM run needs besides its inputs (the CLI's options, as a Python object)."""

    model: str = BUNDLED
    weights: str | None = None
    layer: str | None = None
    method: str = "gradcam"
    targets: list[str] = field(default_factory=list)
    top_k: int = 1
    out: Path = Path("camcli-out")
    colormap: str = "jet"
    alpha: float = 0.5
    save_raw: bool = False
    batch_size: int = 8
    device: str = "auto"
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS
    labels: str | None = None
    arch: str | None = None
    trust_checkpoint: bool = False
    keep_maps: bool = False  # attach the full-size maps to each result (Python API)


@dataclass
class Prediction:
    index: int
    name: str
    probability: float


@dataclass
class ClassMap:
    """One explained class of one image and the files written for it."""

    index: int
    name: str
    probability: float
    files: dict[str, str]
    map: np.ndarray | None = None  # (H, W) float32 in [0, 1] at the original size, when keep_maps


@dataclass
class ImageResult:
    input: str
    ok: bool
    error: str | None = None
    size: tuple[int, int] | None = None  # (width, height) of the upright original
    predictions: list[Prediction] = field(default_factory=list)
    classes: list[ClassMap] = field(default_factory=list)


@dataclass
class Prepared:
    """A model moved to its device, with the layer, method and targets resolved (setup errors happen here)."""

    model: LoadedModel
    device: torch.device
    layer: str
    layer_chosen: bool  # True when camcli picked the layer
    method: CamMethod
    targets: list[int]
    options: Options


def prepare(options: Options, model: LoadedModel | None = None) -> Prepared:
    """Load and check everything that can fail before any input runs (exit code 2 territory)."""
    render.check_colormap(options.colormap)
    if not 0.0 <= options.alpha <= 1.0:
        from .errors import UsageError

        raise UsageError(f"--alpha {options.alpha} is out of range; use a value from 0 to 1")
    if options.batch_size < 1 or options.top_k < 1:
        from .errors import UsageError

        raise UsageError("--batch-size and --top-k must be at least 1")
    device = resolve_device(options.device)
    method = get_method(options.method)
    loaded = model or load_model(
        options.model,
        options.weights,
        labels=options.labels,
        arch=options.arch,
        trust_checkpoint=options.trust_checkpoint,
    )
    chosen = options.layer is None
    if options.layer is None:
        layer = default_layer(trace(loaded.module, loaded.input_size, loaded.builder), loaded.default_layer)
    else:
        layer = options.layer.strip()
        resolve(loaded.module, layer, loaded.name)
        infos = {i.name: i for i in trace(loaded.module, loaded.input_size, loaded.builder)}
        info = infos.get(layer)
        if info is not None and info.calls and not info.spatial:
            from .layers import spatial_neighbours

            near = ", ".join(spatial_neighbours(list(infos.values()), layer))
            raise LayerError(
                f"layer '{layer}' has no spatial output (shape {info.shape}); nearest layers with one: {near}"
            )
    targets = resolve_targets(options.targets, loaded.categories)
    loaded.module.to(device)
    return Prepared(loaded, device, layer, chosen, method, targets, options)


def preprocess(image: Image.Image, model: LoadedModel) -> torch.Tensor:
    """The whole picture resized to the model's input size (no crop, so maps line up with it), normalized."""
    h, w = model.input_size
    resized = image.resize((w, h), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(model.mean).view(3, 1, 1)
    std = torch.tensor(model.std).view(3, 1, 1)
    return (x - mean) / std


def _class_name(model: LoadedModel, idx: int) -> str:
    return model.categories[idx] if 0 <= idx < len(model.categories) else f"class_{idx}"


def output_paths(prep: Prepared, item: images.InputFile, idx: int) -> dict[str, Path]:
    stem = images.output_stem(item, prep.options.out)
    name = f"{stem.name}.{prep.method.name}.{idx}-{images.slug(_class_name(prep.model, idx))}"
    paths = {"overlay": stem.with_name(name + ".png")}
    if prep.options.save_raw:
        paths["raw"] = stem.with_name(name + ".npy")
    return paths


def _batches(items: Iterable[images.InputFile], prep: Prepared) -> Iterator[list[tuple[images.InputFile, Any]]]:
    """Decode inputs and group them in batches; a failed decode travels as its InputError."""
    batch: list[tuple[images.InputFile, Any]] = []
    good = 0
    for item in items:
        try:
            batch.append((item, images.decode(item.path, prep.options.max_pixels)))
            good += 1
        except InputError as e:
            batch.append((item, e))
        if good >= prep.options.batch_size:
            yield batch
            batch, good = [], 0
    if batch:
        yield batch


def run(items: Iterable[images.InputFile], prep: Prepared) -> Iterator[ImageResult]:
    """Explain every input and write its outputs; yields one :class:`ImageResult` per input, in order."""
    opts, model = prep.options, prep.model
    for batch in _batches(items, prep):
        decoded = [(item, im) for item, im in batch if isinstance(im, Image.Image)]
        explanation = None
        if decoded:
            x = torch.stack([preprocess(im, model) for _, im in decoded]).to(prep.device)
            explanation = explain(
                model.module, x, prep.layer, prep.method, targets=prep.targets or None, top_k=opts.top_k
            )
        row = 0
        for item, im in batch:
            if not isinstance(im, Image.Image):
                yield ImageResult(input=item.display, ok=False, error=str(im))
                continue
            assert explanation is not None
            try:
                yield _write_one(prep, item, im, explanation, row)
            except OSError as e:
                yield ImageResult(input=item.display, ok=False, error=f"{item.path}: cannot write output ({e})")
            row += 1


def _write_one(prep: Prepared, item: images.InputFile, im: Image.Image, ex: Any, row: int) -> ImageResult:
    opts, model = prep.options, prep.model
    probs = ex.probs[row]
    top = probs.topk(min(5, probs.numel()))
    preds = [
        Prediction(int(i), _class_name(model, int(i)), round(float(p), 6))
        for p, i in zip(top.values, top.indices, strict=True)
    ]
    # upsampled to the upright original, then min-max again so each saved map spans exactly [0, 1]
    full = normalize(upsample(ex.maps[row], (im.height, im.width))).numpy()  # (K, H, W)
    classes = []
    for k, idx in enumerate(ex.classes[row].tolist()):
        paths = output_paths(prep, item, idx)
        images.atomic_save_png(paths["overlay"], render.overlay(im, full[k], opts.colormap, opts.alpha))
        if "raw" in paths:
            images.atomic_save_npy(paths["raw"], full[k].astype(np.float32))
        classes.append(
            ClassMap(
                idx,
                _class_name(model, idx),
                round(float(probs[idx]), 6),
                {kind: str(p) for kind, p in paths.items()},
                full[k] if opts.keep_maps else None,
            )
        )
    return ImageResult(item.display, True, None, (im.width, im.height), preds, classes)


def records(result: ImageResult, prep: Prepared) -> list[dict[str, Any]]:
    """Manifest / ``--json`` records: one per image and explained class (one error record on failure)."""
    base = {"input": result.input, "model": prep.model.name, "layer": prep.layer, "method": prep.method.name}
    if not result.ok:
        return [{**base, "status": "error", "error": result.error}]
    top = [asdict(p) for p in result.predictions]
    return [
        {
            **base,
            "status": "ok",
            "class_index": c.index,
            "class_name": c.name,
            "probability": c.probability,
            "top_k": top,
            "outputs": c.files,
        }
        for c in result.classes
    ]


class Manifest:
    """``manifest.jsonl`` in the output folder, written line by line (nothing kept in memory)."""

    def __init__(self, out_dir: Path, append: bool = False) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "manifest.jsonl"
        self._f = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, recs: Iterable[dict[str, Any]]) -> None:
        for r in recs:
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def explain_files(
    inputs: list[str],
    options: Options | None = None,
    *,
    on_result: Callable[[ImageResult], None] | None = None,
    on_error: Callable[[ImageResult], None] | None = None,
    model: LoadedModel | None = None,
) -> Iterator[ImageResult]:
    """Python API: explain files/folders/globs with ``options``; yields results as they are written.

    Example::

        from camcli import Options, explain_files
        for r in explain_files(["photos/"], Options(out=Path("cams"), top_k=2)):
            print(r.input, r.predictions[0].name if r.ok else r.error)
    """
    options = options or Options()
    prep = prepare(options, model)
    items = images.discover(inputs, options.out)
    manifest = Manifest(options.out)
    try:
        for result in run(items, prep):
            manifest.write(records(result, prep))
            callback = on_result if result.ok else on_error
            if callback is not None:
                callback(result)
            yield result
    finally:
        manifest.close()
