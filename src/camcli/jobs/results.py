"""What a run produces, as typed records: per input an :class:`ImageResult`, per written map or grid an output.

The typed outputs (:class:`CamOutput`, :class:`FeatureOutput`) are what a job's ``write`` makes and what
:attr:`ImageResult.written` carries; ``as_dict`` is their JSON shape (:attr:`ImageResult.outputs`) and
``record`` their manifest / ``--json`` line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Record = dict[str, Any]  # one JSON line of the manifest / --json
MEDIA_FILES = ("sheet", "map")  # a video's contact sheet, a volume's map aligned on its scan (camcli.jobs.media)


@dataclass
class Prediction:
    index: int
    name: str
    probability: float


@dataclass
class CamOutput:
    """The files written for one method and class of one input."""

    method: str
    class_index: int
    class_name: str
    probability: float
    overlay: str
    raw: str | None = None  # --save-raw
    signed: str | None = None  # --save-raw --signed: the signed attribution (.signed.npy)
    per_layer: dict[str, str] = field(default_factory=dict)  # --per-layer: layer → overlay
    guided_backprop: str | None = None  # --guided
    guided_cam: str | None = None
    panel: str | None = None  # --panel: the input's comparison picture (shared by its records)
    target: str | None = None  # what was explained: "281", "not:0" (engine.targets.Target)
    verdict: dict[str, Any] = field(default_factory=dict)  # --targets-file: the model's own answer, correct or not
    #: a video's or volume's (camcli.jobs.media): its other files (``sheet``, ``map``) and what was explained
    #: (``kind``, ``frames``, ``times``, ``fps``, ``clips``; ``shape``, ``intensity`` …)
    media: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, Any]:
        out: dict[str, Any] = {"overlay": self.overlay}
        out.update({k: v for k, v in self.media.items() if k in MEDIA_FILES})
        if self.raw is not None:
            out["raw"] = self.raw
        if self.signed is not None:
            out["signed"] = self.signed
        if self.per_layer:
            out["per_layer"] = dict(self.per_layer)
        if self.guided_backprop is not None:
            out["guided_backprop"] = self.guided_backprop
        if self.guided_cam is not None:
            out["guided_cam"] = self.guided_cam
        if self.panel is not None:
            out["panel"] = self.panel
        return out

    def record(self, base: Record, predictions: list[Prediction]) -> Record:
        """The manifest line: ``base`` (input, model, layer), this output, and the image's top classes."""
        return {
            **base,
            "method": self.method,
            "status": "ok",
            "class_index": self.class_index,
            "class_name": self.class_name,
            "probability": self.probability,
            **({"target": self.target} if self.target is not None else {}),
            **self.verdict,
            **({"media": self.sample()} if self.media else {}),
            "top_k": [asdict(p) for p in predictions],
            "outputs": self.files(),
        }

    def sample(self) -> dict[str, Any]:
        """What a video's or volume's maps are about (its files aside)."""
        return {k: v for k, v in self.media.items() if k not in MEDIA_FILES}

    def paths(self) -> list[str]:
        """Every file written for this output (with --save-raw, each per-layer overlay has its .npy too)."""
        per_layer = list(self.per_layer.values())
        if self.raw is not None:
            per_layer += [str(Path(p).with_suffix(".npy")) for p in self.per_layer.values()]
        optional = [self.raw, self.signed, self.guided_backprop, self.guided_cam, self.panel]
        optional += [v for k, v in self.media.items() if k in MEDIA_FILES]
        return [self.overlay, *per_layer, *(p for p in optional if p is not None)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "class_index": self.class_index,
            "class_name": self.class_name,
            "probability": self.probability,
            **({"target": self.target} if self.target is not None else {}),
            "outputs": self.files(),
        }


@dataclass
class NoLabel:
    """``--threshold``: no label of this input is that probable, so there is nothing to draw (status
    ``no_label``; its top labels are in the record)."""

    method: str
    threshold: float
    answer: str | None = None  # what the run found, for --skip-existing (….labels.json)

    def paths(self) -> list[str]:
        return [self.answer] if self.answer else []

    def said(self) -> str:
        return f"no label at or above {self.threshold:g}"

    def as_dict(self) -> dict[str, Any]:
        files = {"answer": self.answer} if self.answer else {}
        return {"method": self.method, "status": "no_label", "threshold": self.threshold, "outputs": files}

    def record(self, base: Record, predictions: list[Prediction]) -> Record:
        return {**base, **self.as_dict(), "top_k": [asdict(p) for p in predictions]}


@dataclass
class LayerStats:
    """Summary of one layer's output for one image (``camcli features --stats``)."""

    channels: int
    height: int
    width: int
    mean: float
    max: float
    zeros_pct: float


@dataclass
class FeatureOutput:
    """The grid (and, with --save-raw, the activations) written for one layer of one input."""

    layer: str
    channels: list[int]
    means: list[float]
    stats: LayerStats
    grid: str
    raw: str | None = None
    #: a video's or volume's grid: which frame or slice it shows, and the layer's time step or depth of it
    #: (``{"frame": 12, …, "layer_time": 1, "layer_times": 2}``, camcli.jobs.media_features); None: a picture's
    index: dict[str, Any] | None = None
    shown: str | None = None  # the same, in words for people (the grid's title, the summary)

    def paths(self) -> list[str]:
        return [self.grid] if self.raw is None else [self.grid, self.raw]

    def where(self) -> str | None:
        """``frame 12``, ``frame 12, layer time 1``, ``slice 16, layer depth 8`` (None: a picture's grid)."""
        if self.index is None:
            return None
        keys = ("frame", "slice", "layer_time", "layer_depth")
        return ", ".join(f"{k.replace('_', ' ')} {self.index[k]}" for k in keys if k in self.index)

    def record(self, base: Record) -> Record:
        """The manifest line: ``base`` (input, model, kind) and this output."""
        return {**base, "status": "ok", **self.as_dict()}

    def as_dict(self) -> dict[str, Any]:
        files = {"grid": self.grid} if self.raw is None else {"grid": self.grid, "raw": self.raw}
        return {
            "layer": self.layer,
            "channels": self.channels,
            "means": self.means,
            "stats": asdict(self.stats),
            **({"index": self.index} if self.index is not None else {}),
            "outputs": files,
        }


@dataclass
class EvalOutput:
    """`camcli evaluate`'s numbers for one map (a method or a baseline) and class of one input: no files."""

    method: str
    class_index: int
    class_name: str
    probability: float
    baseline: bool  # a reference map (random, gaussian, edges), not a CAM method
    scores: dict[str, Any]  # metric → value (ROAD: per percentage too)
    curves: dict[str, list[float]] = field(default_factory=dict)  # deletion/insertion curves, for the plots
    sanity: list[dict[str, Any]] = field(default_factory=list)  # per randomisation step: layer, spearman, ssim
    target: str | None = None  # what was explained: "281", "not:0" (engine.targets.Target)
    verdict: dict[str, Any] = field(default_factory=dict)  # --targets-file: the model's own answer, correct or not
    forwards: float | None = None  # the model's forward passes the map cost per image (counted; methods only)
    outputs: dict[str, str] = field(default_factory=dict)  # --annotations: "overlay", the map with the ground truth

    def paths(self) -> list[str]:
        return list(self.outputs.values())

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "verdict"}
        kept = {k: v for k, v in out.items() if v != [] and v != {} and not (k == "forwards" and v is None)}
        return {**kept, **self.verdict}

    def record(self, base: Record) -> Record:
        return {**base, "status": "ok", **self.as_dict()}


@dataclass
class ObjectOutput:
    """One detected object or segmented class of one input, for one method: what it is and its files (none for
    a status such as ``no_detection``, ``no_match`` or ``empty_mask``)."""

    kind: str  # detection, segmentation
    method: str
    status: str
    target: dict[str, Any]  # label, label_name, score, box or mask_pixels, iou
    overlay: str | None = None
    combined: str | None = None  # the image's map of every object
    raw: str | None = None  # --save-raw
    panel: str | None = None  # --panel: the image's objects and methods side by side
    answer: str | None = None  # nothing to draw: what was found, for --skip-existing (….objects.json)

    def files(self) -> dict[str, Any]:
        pairs = (
            ("overlay", self.overlay),
            ("combined", self.combined),
            ("raw", self.raw),
            ("panel", self.panel),
            ("answer", self.answer),
        )
        return {k: v for k, v in pairs if v is not None}

    def paths(self) -> list[str]:
        return list(self.files().values())

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "status": self.status, "target": self.target, "outputs": self.files()}

    def record(self, base: Record) -> Record:
        return {**base, "kind": self.kind, **self.as_dict()}


Output = CamOutput | FeatureOutput | EvalOutput | ObjectOutput | NoLabel  # what one manifest record is about


@dataclass
class ImageResult:
    """What happened to one input.

    Attributes:
        input: the input's path as given.
        ok: every output was written.
        error: why not (one line), when not ok.
        skipped: ``--skip-existing`` found all its outputs.
        size: (width, height) of the upright picture the maps were drawn on (the original, or scaled to
            ``--max-size``).
        predictions: the top-5 classes (CAM runs).
        written: what was written, one typed entry per manifest record (:class:`CamOutput` or
            :class:`FeatureOutput`); :attr:`outputs` gives them in their JSON shape.
        maps: full-size maps by output path, when asked for (``keep_maps``, Python API).
        records: what went to the manifest (empty if skipped).
        input_sha256: the SHA-256 of the input file after its outputs were written (in its records).
    """

    input: str
    ok: bool
    error: str | None = None
    skipped: bool = False
    size: tuple[int, int] | None = None
    predictions: list[Prediction] = field(default_factory=list)
    written: list[Output] = field(default_factory=list)
    maps: dict[str, np.ndarray] | None = None
    records: list[Record] = field(default_factory=list)
    stop_run: str | None = None  # why the run cannot go on after this input (the disk is full)
    input_sha256: str | None = None

    def files(self) -> list[str]:
        """Every file written for this input, each once (the guided-backprop image is shared by the methods)."""
        return list(dict.fromkeys(p for o in self.written for p in o.paths()))

    @property
    def explained(self) -> list[str]:
        """The classes explained (CAM runs), each once: ``281 tabby (0.123)``."""
        seen = dict.fromkeys(
            f"{o.class_index} {o.class_name} ({o.probability:.3f})" if not isinstance(o, NoLabel) else o.said()
            for o in self.written
            if isinstance(o, (CamOutput, EvalOutput, NoLabel))
        )
        return list(seen)

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """One entry per manifest record, in its JSON shape (``o["outputs"]["overlay"]``, ``o["channels"]`` …)."""
        return [o.as_dict() for o in self.written]

    @classmethod
    def failed(cls, input: str, error: str) -> ImageResult:
        return cls(input, False, error)

    @classmethod
    def skipped_existing(cls, input: str) -> ImageResult:
        return cls(input, True, skipped=True)
