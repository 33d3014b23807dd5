"""What a job is: the part of a batch run that depends on what is computed (CAM maps, feature grids).

A job is set up once per run (options checked, device, model, layers) and then, for the runner, computes a
batch of preprocessed images and writes one image's outputs. ``C`` is what ``compute`` hands to ``write`` for
one image: a typed record, never a string-keyed dict.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

import torch
from PIL import Image

from .. import render
from ..engine.devices import resolve_device
from ..engine.layers import LayerInfo, choose_layers, trace
from ..io.inputs import InputFile
from ..models import LoadedModel, load_spec
from ..options import RunOptions
from ..profiling import phase
from .results import ImageResult, Record

C = TypeVar("C")


class Job(ABC, Generic[C]):
    """Set-up shared by every job, and the four steps the runner calls.

    Set-up, in order (so the cheapest mistakes are reported first): the options' own checks and the colormap,
    the device, :meth:`prepare_options` (job-specific parsing and checks that need no model), the model, the
    layers, :meth:`prepare_model` (checks against the loaded model), then the model moves to the device.
    """

    label = "explaining"  # what the progress display calls the work

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
            infos = trace(self.model.module, self.model.input_size, self.model.builder, self.model.layer_key)
            self.layers, self.layer_chosen = self.choose_layers(infos)
        with phase("prepare"):
            self.prepare_model(infos)
            self.model.module.to(self.device)

    # ------------------------------------------------------------------------------------------ set-up
    def prepare_options(self) -> None:
        """Job-specific parsing and checks of the options that need no model (override)."""

    def choose_layers(self, infos: list[LayerInfo]) -> tuple[list[str], bool]:
        """The layers to hook and whether camcli chose them (default: ``--layer`` or the default layer)."""
        m = self.model
        return choose_layers(m.module, infos, self.options.layers, m.default_layer, m.name)

    def prepare_model(self, infos: list[LayerInfo]) -> None:
        """Checks and set-up that need the loaded model and its layers (override)."""

    def weights_note(self) -> str:
        return " (random weights)" if self.model.random_weights else ""

    def how_layers_chosen(self) -> str:
        return "auto: last spatial layer" if self.layer_chosen else "from --layer"

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
    def write(self, item: InputFile, image: Image.Image, computed: C) -> ImageResult:
        """Render and write one image's outputs (runs in a writer thread)."""

    @abstractmethod
    def records(self, result: ImageResult) -> list[Record]:
        """The manifest / ``--json`` records of one result (one error record when it failed)."""
