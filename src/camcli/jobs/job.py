"""What a job is: the part of a batch run that depends on what is computed (CAM maps, feature grids).

A job is set up once per run (options checked, device, model, layers) and then, for the runner, computes a
batch of preprocessed images and writes one image's outputs. ``C`` is what ``compute`` hands to ``write`` for
one image: a typed record, never a string-keyed dict.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from PIL import Image

from .. import render
from ..caches import remember_layer_names
from ..engine.devices import resolve_device
from ..engine.layers import LayerInfo, choose_layers, default_layer, hookable, trace
from ..io.formats import EXTENSIONS
from ..io.inputs import InputFile
from ..io.outputs import Setting, atomic_save_picture, settings_name
from ..io.picture import Picture
from ..models import LoadedModel, is_bundled, load_spec, looks_like_path
from ..options import Layout, RunOptions, parse_layout
from ..profiling import phase
from .results import ImageResult, Prediction, Record

C = TypeVar("C")


class Job(ABC, Generic[C]):
    """Set-up shared by every job, and the four steps the runner calls.

    Set-up, in order (so the cheapest mistakes are reported first): the options' own checks and the colormap,
    the device, :meth:`prepare_options` (job-specific parsing and checks that need no model), the model, the
    layers, :meth:`prepare_model` (checks against the loaded model), then the model moves to the device.
    """

    label = "explaining"  # what the progress display calls the work
    picture_sizes: tuple[tuple[int, int], ...] = ()  # (H, W) of the batch's pictures as drawn, set before compute
    batch_inputs: tuple[InputFile, ...] = ()  # the batch's inputs, in its order, set before compute
    #: the device that decodes the JPEG inputs and scales their pictures (a GPU's nvjpeg); None: Pillow, in threads
    decode_on: torch.device | None = None
    manifest_stem = "manifest"  # the records go to OUT/manifest.jsonl
    media = False  # it explains videos and volumes too (explain_media); folders are then walked for them

    def __init__(self, options: RunOptions, model: LoadedModel | None = None) -> None:
        with phase("check options"):
            options.check()
            render.check_colormap(options.colormap)
            self.options = options
            self.device: torch.device = resolve_device(options.device)
            self.batch_size = options.batch_size
            self.prepare_options()
        with phase("load model"):
            self.model = model or load_spec(options)
        with phase("layers"):
            m = self.model
            lead = m.sample_shape()[:-2]  # (3,) for pictures, (3, T) for clips, (C, D) for volumes
            infos = trace(m.module, m.input_size, m.builder, m.layer_key, m.prefix_tokens, m.task != "detection", lead)
            self.layers, self.layer_chosen = self.choose_layers(infos)
            by_name = {i.name: i for i in infos}
            #: where each hooked layer's grid is (NCHW, NHWC, tokens), as `camcli layers` shows it
            self.layouts: dict[str, Layout | None] = {n: by_name[n].layout for n in self.layers if n in by_name}
            self.default_layers = self.layers if self.layer_chosen else self.find_default_layers(infos)
            remember_layer_names(options.model, [i.name for i in hookable(infos)])
        with phase("prepare"):
            self.prepare_model(infos)
            #: what made this run's pictures (computed once: a checkpoint's path is resolved on the file system):
            #: in the manifest's records, and in each picture so that a later run with other settings never
            #: replaces them
            self.run_settings = self.settings()
            self.settings_text = compact_settings(self.picture_settings())
            #: the part of every output name that names the settings that differ from the defaults
            self.name_settings = settings_name(self.named_settings())
            self.model.module.to(self.device)

    # ------------------------------------------------------------------------------------------ set-up
    def prepare_options(self) -> None:
        """Job-specific parsing and checks of the options that need no model (override)."""

    def choose_layers(self, infos: list[LayerInfo]) -> tuple[list[str], bool]:
        """The layers to hook and whether camcli chose them (default: ``--layer`` or the default layer)."""
        m = self.model
        o = self.options
        return choose_layers(m.module, infos, o.layers, m.default_layer, m.name, parse_layout(o.layout), m.input_size)

    def find_default_layers(self, infos: list[LayerInfo]) -> list[str]:
        """The layers camcli would have chosen (when --layer chose others; output names say so)."""
        return [default_layer(infos, self.model.default_layer)]

    def prepare_model(self, infos: list[LayerInfo]) -> None:
        """Checks and set-up that need the loaded model and its layers (override)."""

    # ------------------------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        """Everything that shapes this run's pictures (extended by each job): the model and its weights, for
        the manifest's ``settings`` and the pictures' tEXt chunk."""
        name = self.model.name
        model = str(Path(name).expanduser().resolve()) if looks_like_path(name) else name
        o = self.options
        picture = {"format": o.format, "quality": o.quality if o.format != "png" else None, "max_size": o.max_size}
        given = {k: v for k, v in (("arch", o.arch), ("arch_args", o.arch_args), ("layout", o.layout)) if v}
        return {"model": model, "weights": self.model.weights, "layers": list(self.layers), **given, **picture}

    def picture_settings(self) -> dict[str, Any]:
        """The settings each picture is tagged with (a later run with others never replaces it): all of them."""
        return self.run_settings

    @property
    def record_settings(self) -> dict[str, Any]:
        """The run's settings as a record carries them (the model and the layers have fields of their own)."""
        return {k: v for k, v in self.run_settings.items() if k not in ("model", "layers")}

    def named_settings(self) -> list[Setting]:
        """The settings that differ from the defaults, as they appear in output names (extended by each job):
        ``model=resnet18`` (a checkpoint: its file name without suffix), ``weights=none``."""
        o = self.options
        out: list[Setting] = []
        name = self.model.name
        if not is_bundled(name):
            out.append(("model", Path(name).stem if looks_like_path(name) else name))
        if o.weights is not None and o.weights.strip().lower() != "default":
            out.append(("weights", o.weights.strip()))
        if o.format != "png" and o.quality != RunOptions.quality:
            out.append(("quality", str(o.quality)))
        if o.max_size is not None:
            out.append(("max-size", str(o.max_size)))
        if o.layout:
            out.append(("layout", o.layout.strip().lower()))
        return out

    # ---------------------------------------------------------------------------------------- pictures
    @property
    def ext(self) -> str:
        """The suffix of this run's pictures (``--format``)."""
        return EXTENSIONS[self.options.format]

    def save_picture(self, path: Path, image: Image.Image | torch.Tensor, owner: str) -> None:
        """Write one picture (Pillow, or (H, W, 3) uint8 tensor) in the run's format, tagged with its input and
        this run's settings."""
        o = self.options
        atomic_save_picture(path, image, owner, self.settings_text, o.format, o.quality)

    def predictions(self, probs: torch.Tensor) -> list[Prediction]:
        """An image's five most probable classes, with names."""
        top = probs.topk(min(5, probs.numel()))
        return [
            Prediction(int(i), self.class_name(int(i)), round(float(p), 6))
            for p, i in zip(top.values, top.indices, strict=True)
        ]

    def value_label(self) -> str:
        """What the number beside a class is, for people: a probability (jobs whose head says otherwise override)."""
        return "probability"

    def class_name(self, index: int) -> str:
        """The name of entry ``index`` of the model's scores (a class; jobs that explain other scores override)."""
        return self.model.class_name(index)

    def weights_note(self) -> str:
        return " (random weights)" if self.model.random_weights else ""

    def how_layers_chosen(self) -> str:
        return "auto: last spatial layer" if self.layer_chosen else "from --layer"

    def layer_note(self, methods: Sequence[Any] = ()) -> str:
        """``layer layer4 (from --layer)`` for the header; a run whose methods all work on the whole model
        (pixel attribution, attention rollout) reads no layer and says so."""
        if methods and all(m.scope == "model" for m in methods):
            return "no layer (whole-model methods)"
        return f"layer {'+'.join(self.layers)} ({self.how_layers_chosen()})"

    @abstractmethod
    def header(self) -> str:
        """One line for people: model, layers, method, device."""

    # --------------------------------------------------------------------------------------- the steps
    @abstractmethod
    def outputs_exist(self, item: InputFile) -> bool:
        """Every output of ``item`` is on disk (``--skip-existing``)."""

    @abstractmethod
    def compute(self, x: torch.Tensor) -> list[C]:
        """A batch (B, 3, H, W) on the job's device → one record per image."""

    @abstractmethod
    def write(self, item: InputFile, picture: Picture, computed: C) -> ImageResult:
        """Render and write one image's outputs (runs in a writer thread)."""

    def explain_media(self, item: InputFile) -> ImageResult:
        """A video or volume, whole (jobs with ``media``; camcli.jobs.media)."""
        return ImageResult.failed(item.display, f"{item.path}: videos and volumes are explained by gradcam and cam")

    def media_done(self, item: InputFile) -> bool:
        """``--skip-existing`` for a video or volume: its outputs are all on disk."""
        return False

    @abstractmethod
    def records(self, result: ImageResult) -> list[Record]:
        """The manifest / ``--json`` records of one result (one error record when it failed)."""


def compact_settings(settings: dict[str, Any]) -> str:
    """Settings as short ASCII JSON for a PNG tEXt chunk; very long ones (hundreds of layers) as a digest."""
    import hashlib

    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 1000 else "blake2b:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
