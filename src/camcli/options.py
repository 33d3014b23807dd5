"""The options of a run, as plain dataclasses: what the CLI parses and what the Python API takes.

Torch-free (importing this module loads no torch, numpy or Pillow), so the CLI and scripts can build and check
options cheaply. Every range rule lives here, once: :meth:`RunOptions.check` (and the subclasses' versions)
raises a :class:`~camcli.errors.UsageError` naming the option and the fix. Jobs call it when they start.
Rules that need a library stay with it: a colormap name is checked by :mod:`camcli.render`, a layer name by
:mod:`camcli.engine.layers`, a class name by :mod:`camcli.engine.targets`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from .array_jobs import Shard as Shard  # (re-exported, with parse_shard and check_shard: they were defined here)
from .array_jobs import check_shard as check_shard
from .array_jobs import parse_shard as parse_shard
from .array_jobs import resolve_shard
from .checks import at_least as _at_least
from .checks import at_most as _at_most
from .checks import check_target_fields
from .checks import finite as _finite
from .errors import UsageError
from .media_options import FeatureMediaOptions, MediaOptions
from .method_params import METHOD_NAMES as METHOD_NAMES  # (re-exported: the CLI and tests read it here)
from .method_params import MethodParams
from .metric_names import METRICS as METRICS  # `camcli evaluate --metric` (re-exported: the CLI reads it here)
from .metric_names import check_metrics, chosen_metrics

BUNDLED = "efficientnet_lite0"  # the offline default model
# Pillow's own default guard (Image.MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3), written out so this module
# needs no Pillow; camcli's decoder applies it itself (see camcli.io.decode).
DEFAULT_MAX_PIXELS = 89_478_485
NORMALIZE_MODES = ("tile", "layer")
BLENDS = ("weighted", "uniform")  # how a map is laid over the picture (camcli.render.overlay)
OUTPUT_FORMATS = ("png", "jpg", "webp")  # pictures (maps stay .npy)
MIN_MAX_SIZE = 16  # --max-size: the smallest long side a written picture may be given
DEFAULT_METHOD = "gradcam"
# colormaps offered by shell completion (any matplotlib name works)
COMMON_COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma", "gray", "hot", "coolwarm")
# the cache entry (camcli.caches) with the model names, written by `camcli models`, read by shell completion of
# --model
MODEL_NAMES_ENTRY = "model-names.json"
MAX_WORKERS = 64  # threads on each side of the model; more only costs memory
MAX_TILE = 2048  # feature-grid tile side in pixels
MAX_CHANNELS = 65_536  # channels one --channels may list (no layer has more)
MAX_SMOOTH = 1000  # --smooth passes (each one costs a forward and backward pass per image)
MAX_NOISE = 10.0  # --noise, --road-noise: a std of ten times the input's range already leaves nothing of it
MAX_BATCH_SIZE = 1024  # --batch-size: the decoders work two batches ahead, so a batch's pictures are all held
MAX_GRID_PIXELS = 100_000_000  # one feature grid (about 300 MB as RGB): tiles x tile size


def parse_channels(spec: str) -> list[int]:
    """``"0,5,17-24"`` → [0, 5, 17, 18, …, 24] (order kept, duplicates dropped; at most :data:`MAX_CHANNELS`)."""
    out: list[int] = []
    seen: set[int] = set()
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
        if hi - lo + 1 + len(out) > MAX_CHANNELS:
            raise UsageError(f"--channels '{spec}' lists over {MAX_CHANNELS} channels; pick fewer")
        for i in range(lo, hi + 1):
            if i not in seen:
                seen.add(i)
                out.append(i)
    if not out:
        raise UsageError("--channels is empty; pass indices like 0,5,17-24")
    return out


# how a layer's output lays out its grid (camcli.engine.layouts; ncdhw/ndhwc: a clip's or volume's, engine.volumes)
LAYOUT_KINDS = ("nchw", "nhwc", "tokens", "ncdhw", "ndhwc")


@dataclass(frozen=True)
class Layout:
    """How a layer's output holds its spatial grid: ``nchw`` (B, C, H, W), ``nhwc`` (B, H, W, C, channels last:
    Swin, ConvNeXt's MLP), or ``tokens`` (B, T, C): ``prefix`` class/distillation/register tokens, then the grid's
    cells row by row. ``prefix`` None: tokens whose prefix count is read from the shape."""

    kind: str
    prefix: int | None = None

    def __str__(self) -> str:
        return f"tokens:{self.prefix}" if self.kind == "tokens" and self.prefix is not None else self.kind


def parse_layout(text: str | None) -> Layout | None:
    """``--layout``: ``nchw``, ``nhwc``, ``tokens`` or ``tokens:N`` (N prefix tokens); None stays None."""
    if text is None:
        return None
    kind, _, count = text.strip().lower().partition(":")
    fix = (
        "use nchw, nhwc, tokens or tokens:N (N class/register tokens before the grid); ncdhw or ndhwc (videos, volumes)"
    )
    if kind not in LAYOUT_KINDS or (count and kind != "tokens"):
        raise UsageError(f"--layout {text!r}: {fix}")
    if not count:
        return Layout(kind)
    if not count.isdigit() or int(count) > 64:
        raise UsageError(f"--layout {text!r}: N must be a whole number of prefix tokens from 0 to 64; {fix}")
    return Layout(kind, int(count))


def parse_box(option: str, text: str | None) -> tuple[float, float, float, float] | None:
    """``"x1,y1,x2,y2"`` in picture pixels (x1 < x2, y1 < y2); None stays None."""
    if text is None:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{option} {text!r}: give x1,y1,x2,y2 in pixels, e.g. 120,40,260,310") from None
    if not (x1 < x2 and y1 < y2) or min(x1, y1) < 0 or not all(map(math.isfinite, (x1, y1, x2, y2))):
        raise UsageError(f"{option} {text!r}: needs 0 ≤ x1 < x2 and 0 ≤ y1 < y2 (pixels of the picture)")
    return x1, y1, x2, y2


class ModelFields(Protocol):
    """The fields that say which model to load (:class:`ModelSpec`, and every :class:`RunOptions`)."""

    model: str
    weights: str | None
    labels: str | None
    arch: str | None
    arch_args: str | None
    trust_checkpoint: bool
    code_path: str | None
    task: str | None
    input_size: str | None


TASKS = ("classification", "detection", "segmentation")  # --task


@dataclass
class ModelSpec:
    """Which model to load: ``model`` is a name (bundled, torchvision) or a checkpoint path."""

    model: str = BUNDLED
    weights: str | None = None  # torchvision weights: default, none, or an enum member name
    labels: str | None = None  # class names file
    arch: str | None = None  # architecture of a checkpoint
    trust_checkpoint: bool = False  # allow full unpickling
    arch_args: str | None = None  # JSON keyword arguments of a user's --arch class or factory
    code_path: str | None = None  # a folder put on the import path for --arch and trusted pickles
    task: str | None = None  # what the model does, when camcli cannot tell (a class of your own); None: told
    input_size: str | None = None  # "D,H,W": a 3-D network's input, when camcli cannot read it from the model


@dataclass
class RunOptions:
    """The options every batch run shares: the model, where outputs go, and how the run behaves.

    The model fields are those of :class:`ModelSpec` (kept in the order they had in 0.1.0, so positional
    construction means what it meant).
    """

    model: str = BUNDLED
    weights: str | None = None
    layers: list[str] = field(default_factory=list)  # empty: the default layer
    colormap: str = "jet"
    save_raw: bool = False
    out: Path = Path("camcli-out")
    batch_size: int = 8
    device: str = "auto"
    workers: int | None = None  # decode/write threads; None or 0: min(4, CPUs), on a GPU min(16, CPUs)
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # None: no limit of camcli's own
    skip_existing: bool = False
    shard: Shard | str | None = None  # (K, N), "K/N", "auto" or "auto/N": resolved to (K, N) by check()
    labels: str | None = None
    arch: str | None = None
    trust_checkpoint: bool = False
    fsync: bool = False  # sync the manifest to disk after every record (see the README for the cost)
    format: str = "png"  # pictures: png, jpg or webp
    quality: int = 90  # jpg/webp quality, 1–100
    max_size: int | None = None  # cap on the long side of written pictures (and a reduced JPEG decode)
    report: bool = False  # --report: also the report's copies of each input (camcli.io.thumbs), made in the run
    arch_args: str | None = None  # JSON keyword arguments of a user's --arch class or factory
    code_path: str | None = None  # a folder put on the import path for --arch and trusted pickles
    task: str | None = None  # what the model does, when camcli cannot tell (a class of your own); None: told
    input_size: str | None = None  # "D,H,W": a 3-D network's input (--input-size), when the model does not say
    layout: str | None = None  # --layout: where the chosen layers' grid is (nchw, nhwc, tokens[:N]); None: told
    #: what told an ``auto`` shard, for the run's header ("Slurm's array task 2 of 0–7"); set by check()
    shard_source: str | None = field(default=None, init=False, repr=False, compare=False)

    def resolved_shard(self) -> Shard | None:
        """``shard`` as (K, N) (None: every input); text and ``"auto"`` are resolved here, once (camcli.array_jobs)."""
        if isinstance(self.shard, str):
            self.shard, self.shard_source = resolve_shard(self.shard)
        check_shard(self.shard)
        return self.shard

    def check(self) -> None:
        """Raise :class:`UsageError` for an out-of-range option."""
        _at_least("--batch-size", self.batch_size, 1)
        _at_most("--batch-size", self.batch_size, MAX_BATCH_SIZE)
        repeated = sorted({name for name in self.layers if self.layers.count(name) > 1})
        if repeated:
            raise UsageError(f"--layer {repeated[0]} is given twice; list each layer once")
        _at_least("--workers", self.workers, 0)
        _at_most("--workers", self.workers, MAX_WORKERS)
        _at_least("--max-pixels", self.max_pixels, 1)
        self.resolved_shard()
        if self.format not in OUTPUT_FORMATS:
            raise UsageError(f"--format {self.format!r}: use {', '.join(OUTPUT_FORMATS)}")
        _at_least("--quality", self.quality, 1)
        _at_most("--quality", self.quality, 100)
        _at_least("--max-size", self.max_size, MIN_MAX_SIZE)
        parse_layout(self.layout)


@dataclass
class CamOptions(RunOptions):
    """Everything a CAM run needs besides its inputs (``camcli gradcam``/``cam``'s options, as a Python object)."""

    methods: list[str] = field(default_factory=lambda: [DEFAULT_METHOD])  # empty: the default method
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
    blend: str = "weighted"  # weighted: each pixel's opacity is alpha × map; uniform: alpha everywhere
    annotate: bool = False  # a caption strip under the overlay: class, probability, method, colour bar
    panel: bool = False  # also one picture per input: the input and every map side by side
    # detectors and segmenters (camcli.methods.objects)
    min_score: float = 0.5  # detections explained: score at least this
    max_objects: int = 10  # at most this many objects (detections, or segmented classes) per image
    box: str | None = None  # "x1,y1,x2,y2": explain the detection that matches this box
    iou: float = 0.5  # --box matches a detection with at least this IoU
    mask: str | None = None  # segmentation: a PNG whose non-zero pixels are the region explained
    region: str | None = None  # segmentation: "x1,y1,x2,y2", the region explained
    norm_in_box: bool = False  # each object's map normalised inside its box
    # what is explained (camcli.engine.scoring, camcli.engine.targets; the README's "Heads and targets")
    head: str | None = None  # softmax, sigmoid or identity; None: as the model says (one output: sigmoid)
    threshold: float | None = None  # every label whose sigmoid is at least this (multi-label heads)
    references: list[str] = field(default_factory=list)  # pictures: explain the similarity to their embedding
    prompts: list[str] = field(default_factory=list)  # texts: explain the similarity to each (CLIP-style models)
    targets_file: str | None = None  # CSV/JSON lines of input,target: one target per image
    # --steps --baseline --window --stride --masks --samples --seed --signed (pixel attribution, RISE, random)
    method_params: MethodParams = field(default_factory=MethodParams)
    media: MediaOptions = field(default_factory=MediaOptions)  # videos and volumes

    def check(self) -> None:
        super().check()
        check_target_fields(self)
        self.method_params.check(save_raw=self.save_raw)
        self.media.check()
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"--alpha {self.alpha} is out of range; use a value from 0 to 1")
        if self.blend not in BLENDS:
            raise UsageError(f"--blend {self.blend!r}: use {' or '.join(BLENDS)}")
        _at_least("--top-k", self.top_k, 1)
        _at_least("--score-batch", self.score_batch, 1)
        _at_least("--smooth", self.smooth, 0)
        _at_most("--smooth", self.smooth, MAX_SMOOTH)
        _finite("--noise", self.noise)
        _at_least("--noise", self.noise, 0)
        _at_most("--noise", self.noise, MAX_NOISE)
        _at_least("--min-score", self.min_score, 0.0)
        _at_most("--min-score", self.min_score, 1.0)
        _at_least("--max-objects", self.max_objects, 1)
        _at_least("--iou", self.iou, 0.0)
        _at_most("--iou", self.iou, 1.0)
        parse_box("--box", self.box)
        parse_box("--region", self.region)
        if self.mask is not None and self.region is not None:
            raise UsageError("--mask and --region both say which pixels to explain; give one of them")
        if self.targets and self.top_k > 1:
            raise UsageError(
                f"--target and --top-k {self.top_k} together: --target names the classes to explain, --top-k picks "
                "each image's best ones; drop one of them"
            )


#: the name this class had in camcli 0.1.0; kept so that ``from camcli import Options`` goes on working
Options = CamOptions


@dataclass
class FeatureOptions(RunOptions):
    """Options of a feature-grid run (``camcli features``' options, as a Python object)."""

    colormap: str = "viridis"
    all_layers: bool = False  # every layer with a spatial output that runs once
    top: int = 16
    channels: str | None = None  # "0,5,17-24"
    normalize: Literal["tile", "layer"] = "tile"
    tile: int = 128
    media: FeatureMediaOptions = field(default_factory=FeatureMediaOptions)  # videos and volumes: --frame, --slice

    def check(self) -> None:
        super().check()
        self.media.check()
        _at_least("--top", self.top, 1)
        _at_least("--tile", self.tile, 8)
        _at_most("--tile", self.tile, MAX_TILE)
        tiles = 1 + (len(parse_channels(self.channels)) if self.channels is not None else self.top)
        if tiles * self.tile * (self.tile + 16) > MAX_GRID_PIXELS:
            shown = "--channels" if self.channels is not None else f"--top {self.top}"
            raise UsageError(
                f"{shown} with --tile {self.tile} makes a grid of {tiles} tiles, over {MAX_GRID_PIXELS // 10**6} "
                "megapixels per image; show fewer channels or use a smaller --tile"
            )
        if self.normalize not in NORMALIZE_MODES:
            raise UsageError(f"--normalize {self.normalize!r}: use tile or layer")


PERTURB_BASELINES = ("zero", "blur", "mean")  # what deleted pixels become (camcli.metrics.faithfulness)
MAX_STEPS = 1024  # deletion/insertion steps per curve


@dataclass
class EvalOptions(RunOptions):
    """Options of `camcli evaluate`: which methods and metrics, on which classes (see camcli.metrics)."""

    methods: list[str] = field(default_factory=lambda: [DEFAULT_METHOD])
    metrics: list[str] = field(default_factory=list)  # empty: all the run allows (camcli.metric_names)
    annotations: str | None = None  # ground truth: COCO JSON, VOC folder, mask folder or CSV (camcli.io.annotations)
    annotation_classes: str | None = None  # JSON: annotation class → the model's class name(s)
    tolerance: float = 15.0  # pointing game: pixels of the model's input around the object (Zhang et al. 2018)
    iou_threshold: float = 0.5  # iou: the map's pixels at or above this fraction of its maximum
    truth_overlays: bool = True  # with --annotations: each method's map with the ground truth's outline, per image
    targets: list[str] = field(default_factory=list)  # empty: each image's top class
    steps: int = 32  # deletion/insertion steps
    baseline: str | None = None  # None: RISE's choice, zero for deletion and blur for insertion
    road_percents: str = "20,40,60,80"  # ROAD: percentages of pixels removed
    road_noise: float = 0.01  # ROAD: std of the noise added to imputed pixels (pytorch-grad-cam's default)
    baselines: bool = True  # also measure the random, Gaussian and edge maps
    sanity: bool = False  # the model-randomisation check instead of the metrics
    sanity_steps: int = 6
    score_batch: int = 32
    head: str | None = None  # as CamOptions.head
    references: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    targets_file: str | None = None
    top_k: int = 1  # evaluate explains one class per image (or each target)
    threshold: float | None = None  # not offered by evaluate (each label would be a row); kept for the shared rules
    # the methods' own parameters; in evaluate's CLI --attr-steps and --attr-baseline (--steps and --baseline are
    # the deletion curve's)
    method_params: MethodParams = field(default_factory=MethodParams)

    def check(self) -> None:
        super().check()
        check_target_fields(self)
        self.method_params.check("--attr-steps", "--attr-baseline")
        check_metrics(self.metrics, self.annotations, self.annotation_classes, self.tolerance, self.iou_threshold)
        if self.baseline is not None and self.baseline not in PERTURB_BASELINES:
            raise UsageError(f"--baseline {self.baseline!r}: use {', '.join(PERTURB_BASELINES)}")
        _at_least("--steps", self.steps, 2)
        _at_most("--steps", self.steps, MAX_STEPS)
        _at_least("--sanity-steps", self.sanity_steps, 1)
        _at_least("--score-batch", self.score_batch, 1)
        _finite("--road-noise", self.road_noise)
        _at_least("--road-noise", self.road_noise, 0)
        _at_most("--road-noise", self.road_noise, MAX_NOISE)
        self.percents()

    def chosen_metrics(self) -> list[str]:
        """The metrics measured: ``metrics``, or all the run allows (localisation with ``annotations``)."""
        return chosen_metrics(self.metrics, self.annotations is not None)

    def percents(self) -> list[int]:
        """``--road-percents`` as numbers (each 1…99)."""
        try:
            values = [int(v) for v in self.road_percents.split(",") if v.strip()]
        except ValueError:
            raise UsageError(
                f"--road-percents {self.road_percents!r}: give whole percentages, e.g. 20,40,60,80"
            ) from None
        if not values or not all(1 <= v <= 99 for v in values):
            raise UsageError(f"--road-percents {self.road_percents!r}: each percentage must be from 1 to 99")
        return sorted(set(values))
