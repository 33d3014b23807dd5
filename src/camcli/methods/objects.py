"""Grad-CAM-family maps for object detectors and segmentation models (torchvision's families).

Detection: one forward pass on the picture; the model's own transform resizes it (R-CNN keeping its aspect,
SSD squashing) and pads it to a batch; its post-NMS detections are the targets. Each object's scalar is its own
score, gathered from the output and differentiable, so one gradient per object (``torch.autograd.grad`` on the
captured feature maps of every level) gives its map. Each level's map is drawn on the padded input, cropped to
the resized picture and resized to the original picture, so it lines up with it exactly; the levels are fused
like several ``--layer``s (mean of the normalised maps, normalised again).

Segmentation: the score of class ``c`` is the sum of its logits (``out``, not ``aux``) over a mask: the pixels
predicted as ``c`` by default, or the user's mask or region.

Methods: those that weigh channels by gradients (gradcam, gradcam++, xgradcam, hirescam, layercam, segeigencam),
eigencam, and those that re-run the model (scorecam, sscam, iscam on masked pictures, ablationcam with a channel
zeroed): a detection's score is that of the detection in the masked run that overlaps the object's box with
IoU ≥ ``--iou`` and has its label (0 when none does; never matched by its index), a segmented class's score is its
logits summed over the same mask. CAM needs a classifier's head and is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.hooks import Captured, capture, eval_mode
from ..engine.layers import resolve
from ..engine.layouts import to_grid
from ..engine.targets import check_index
from ..errors import LayerError, UsageError
from ..method_params import MethodParams
from ..options import Layout
from .base import CamMethod, Context, normalize

Box = tuple[float, float, float, float]


@dataclass
class ObjectQuery:
    """Which objects to explain."""

    labels: set[int] | None = None  # None: every label
    min_score: float = 0.5  # detections
    max_objects: int = 10
    box: Box | None = None  # detections: the one matching this box (IoU ≥ iou, and label when given)
    iou: float = 0.5
    mask: torch.Tensor | None = None  # segmentation: (H, W) bool at the model input's size
    region: Box | None = None  # segmentation: a box, in original picture pixels
    params: MethodParams = field(default_factory=MethodParams)  # --seed, --sscam-samples … of the methods


@dataclass
class ObjectMap:
    """One explained target: what it is, its status, and a map per method at the original picture's size."""

    label: int
    status: str  # ok, no_detection, no_match, empty_mask
    score: float | None = None
    box: Box | None = None  # detections, in original picture pixels
    iou: float | None = None  # with --box
    mask_pixels: int | None = None  # segmentation: the mask's area in the original picture's pixels
    maps: dict[str, torch.Tensor] = field(default_factory=dict)  # method → (H, W) in [0, 1]
    mask: torch.Tensor | None = None  # segmentation: (H, W) bool at the original size


@dataclass
class Detections:
    """Every detection of the picture (for drawing) and the explained objects."""

    boxes: torch.Tensor  # (N, 4) original pixels
    labels: torch.Tensor  # (N,)
    scores: torch.Tensor  # (N,)
    objects: list[ObjectMap]


def object_methods() -> list[str]:
    """The methods that explain detectors' and segmenters' objects (``CamMethod.on_objects``)."""
    from . import REGISTRY

    return [name for name, cls in REGISTRY.items() if cls.on_objects]


def check_methods(methods: Sequence[CamMethod]) -> None:
    bad = [m.name for m in methods if not m.on_objects]
    if bad:
        raise UsageError(
            f"--method {bad[0]} needs a classifier's scores or head; on detectors and segmenters use "
            f"{', '.join(object_methods())}"
        )


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes (N, 4) and (M, 4) in x1, y1, x2, y2 → (N, M)."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda t: (t[:, 2:] - t[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter).clamp(min=1e-9)


@dataclass
class DetectionScores(Context):
    """Score-CAM's scorer for one detection: ``x`` is the picture as the model's transform laid it out (resized
    to ``valid``, padded); each masked copy is cropped back to ``valid`` and run through the detector, and its
    score is that of the detection overlapping ``box`` (in ``valid``'s pixels) with IoU ≥ ``iou`` and the same
    label."""

    box: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    iou: float = 0.5
    valid: tuple[int, int] = (0, 0)
    labels: int = 0

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.valid
        label = int(self.classes[0])
        outs: Any = self.run([xi[:, :h, :w] for xi in x])
        out = torch.zeros(len(outs), self.labels, device=x.device)
        target = torch.tensor([self.box], dtype=torch.float32, device=x.device)
        for i, o in enumerate(outs):
            same = (o["labels"] == label).nonzero().flatten()
            if same.numel():
                ious = box_iou(target, o["boxes"][same].float())[0]
                best = int(ious.argmax())
                if float(ious[best]) >= self.iou:
                    out[i, label] = o["scores"][same[best]]
        return out


@dataclass
class MaskScores(Context):
    """Score-CAM's scorer for one segmented class: each class's logits summed over ``mask``."""

    mask: torch.Tensor | None = None

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        out: Any = self.run(x)
        logits = out["out"] if isinstance(out, Mapping) else out
        return (logits * self.mask).sum((-2, -1)).float()  # (N, classes)


def _level_maps(
    x: torch.Tensor,
    layers: Sequence[str],
    acts: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    methods: Sequence[CamMethod],
    layouts: Mapping[str, Layout | None],
    context: Callable[[str], Context],
) -> dict[str, list[torch.Tensor]]:
    """method → one (h, w) map per level, each normalised, at the level's resolution (``context``: a layer's
    :class:`Context`, whose ``scores`` Score-CAM calls)."""
    out: dict[str, list[torch.Tensor]] = {m.name: [] for m in methods}
    size = (int(x.shape[-2]), int(x.shape[-1]))
    for name, a, g in zip(layers, acts, grads, strict=True):
        grid = to_grid(a.detach(), layouts.get(name), size, "Conv2d").float()
        grad = to_grid(g, layouts.get(name), size, "Conv2d").float() if g is not None else torch.zeros_like(grid)
        ctx = context(name)
        for m in methods:
            out[m.name].append(normalize(m.raw_map(grid, grad, ctx))[0])
    return out


def _laid_out(image: torch.Tensor, valid: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """The picture as a detector's transform lays it out (resized to ``valid``, zero-padded to ``padded``),
    unnormalised: what Score-CAM masks."""
    resized = F.interpolate(image[None].float(), size=valid, mode="bilinear", align_corners=False)
    return F.pad(resized, (0, padded[1] - valid[1], 0, padded[0] - valid[0]))


def _detection_context(
    model: nn.Module,
    laid: torch.Tensor,
    obj: ObjectMap,
    query: ObjectQuery,
    valid: tuple[int, int],
    size: tuple[int, int],
    count: int,
    score_batch: int,
    captured: Captured,
) -> Callable[[str], Context]:
    """A layer's :class:`DetectionScores` for ``obj`` (its box taken to the laid-out picture's pixels)."""
    sy, sx = valid[0] / size[0], valid[1] / size[1]
    box = tuple(float(v) * s for v, s in zip(obj.box or (0, 0, 0, 0), (sx, sy, sx, sy), strict=True))
    labels = torch.tensor([obj.label])
    return lambda name: DetectionScores(
        model,
        laid,
        name,
        labels,
        score_batch,
        {},
        captured,
        box=box,
        iou=query.iou,
        valid=valid,
        labels=max(count, obj.label + 1),
        params=query.params,
    )


def _fuse(levels: list[torch.Tensor], padded: tuple[int, int], valid: tuple[int, int], size: tuple[int, int]):
    """Each level's map drawn on the padded input, cropped to the resized picture (``valid``), resized to the
    original ``size``; the mean, normalised."""
    up = []
    for m in levels:
        full = F.interpolate(m[None, None], size=padded, mode="bilinear", align_corners=False)
        crop = full[..., : valid[0], : valid[1]]
        up.append(F.interpolate(crop, size=size, mode="bilinear", align_corners=False)[0, 0])
    return normalize(torch.stack(up).mean(0)).clamp_(0, 1)


def explain_detections(
    model: nn.Module,
    image: torch.Tensor,
    layers: Sequence[str],
    methods: Sequence[CamMethod],
    query: ObjectQuery,
    layouts: Mapping[str, Layout | None] | None = None,
    score_batch: int = 32,
) -> Detections:
    """Maps for the detections of one picture ``image`` ((3, H, W) in [0, 1], on the model's device)."""
    check_methods(methods)
    modules = {n: resolve(model, n) for n in layers}
    geometry: dict[str, tuple[int, int]] = {}

    def on_transform(_m: nn.Module, _i: object, out: object) -> None:
        batch = out[0]  # type: ignore[index]
        geometry["padded"] = tuple(int(v) for v in batch.tensors.shape[-2:])  # type: ignore[assignment]
        geometry["valid"] = tuple(int(v) for v in batch.image_sizes[0])  # type: ignore[assignment]

    handle = model.transform.register_forward_hook(on_transform)  # type: ignore[union-attr]
    try:
        with eval_mode(model), capture(model, modules, grad=True) as cap:
            with torch.no_grad():
                out = model([image])[0]
            acts = cap.require(list(layers))
            scores, boxes, labels = out["scores"], out["boxes"].detach(), out["labels"].detach()
            chosen, objects = _choose(boxes, labels, scores.detach(), query)
            size = (int(image.shape[-2]), int(image.shape[-1]))
            laid = _laid_out(image, geometry["valid"], geometry["padded"])
            need_grad = any(m.needs_grad for m in methods)
            count = max([int(labels.max()) + 1] if len(labels) else [1])
            for k, (idx, obj) in enumerate(chosen):
                grads: Sequence[torch.Tensor | None] = [None] * len(acts)
                if need_grad:
                    if not scores.requires_grad:
                        raise LayerError(f"the detections' scores do not depend on layer '{layers[0]}'")
                    last = k == len(chosen) - 1
                    grads = torch.autograd.grad(scores[idx], acts, retain_graph=not last, allow_unused=True)
                context = _detection_context(model, laid, obj, query, geometry["valid"], size, count, score_batch, cap)
                with torch.no_grad():
                    levels = _level_maps(laid, layers, acts, grads, methods, layouts or {}, context)
                    obj.maps = {
                        name: _fuse(v, geometry["padded"], geometry["valid"], size).cpu() for name, v in levels.items()
                    }
    finally:
        handle.remove()
    return Detections(boxes.cpu(), labels.cpu(), scores.detach().cpu(), objects)


def _choose(
    boxes: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, q: ObjectQuery
) -> tuple[list[tuple[int, ObjectMap]], list[ObjectMap]]:
    """[(index in the output, its record)] to explain, and every record (with those that found nothing)."""
    wanted = [q.labels is None or int(labels[i]) in q.labels for i in range(len(scores))]
    keep = [i for i in range(len(scores)) if float(scores[i]) >= q.min_score and wanted[i]]
    first = next(iter(q.labels)) if q.labels else -1
    if q.box is not None:
        if not keep:
            return [], [ObjectMap(first, "no_match", box=q.box)]
        ious = box_iou(torch.tensor([q.box], dtype=boxes.dtype, device=boxes.device), boxes[keep])[0]
        best = int(ious.argmax())
        if float(ious[best]) < q.iou:
            return [], [ObjectMap(first, "no_match", box=q.box, iou=round(float(ious[best]), 4))]
        keep, matched = [keep[best]], round(float(ious[best]), 4)
    else:
        matched = None
        keep = sorted(keep, key=lambda i: -float(scores[i]))[: q.max_objects]
        if not keep:
            return [], [ObjectMap(first, "no_detection")]
    chosen = []
    for i in keep:
        box = tuple(round(float(v), 2) for v in boxes[i])
        obj = ObjectMap(int(labels[i]), "ok", round(float(scores[i]), 6), box, matched)  # type: ignore[arg-type]
        chosen.append((i, obj))
    return chosen, [o for _, o in chosen]


def explain_segmentation(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str],
    methods: Sequence[CamMethod],
    query: ObjectQuery,
    size: tuple[int, int],
    layouts: Mapping[str, Layout | None] | None = None,
    score_batch: int = 32,
) -> tuple[torch.Tensor, list[ObjectMap]]:
    """(predicted classes (H, W) at the original ``size``, one map per class) for one preprocessed picture
    ``x`` (1, 3, h, w)."""
    check_methods(methods)
    modules = {n: resolve(model, n) for n in layers}
    with eval_mode(model), capture(model, modules, grad=True) as cap:
        with torch.no_grad():
            output = model(x)
        logits = output["out"] if isinstance(output, Mapping) else output
        acts = cap.require(list(layers))
        pred = logits.detach().argmax(1)[0]
        h, w = pred.shape
        region = _region_mask(query, (h, w), size, x.device)
        if query.labels is not None:
            wanted = sorted(query.labels)
            if wanted:  # a segmenter of the user's own has its class count said here first, by its output
                check_index(wanted[-1], logits.shape[1])
        else:
            counts = torch.bincount(pred[region].flatten(), minlength=logits.shape[1])
            counts[0] = 0  # background
            wanted = [int(c) for c in counts.argsort(descending=True) if counts[c] > 0][: query.max_objects]
        objects = [] if wanted else [ObjectMap(-1, "empty_mask", mask_pixels=0)]  # no class anywhere: say so
        for k, c in enumerate(wanted):
            mask = (pred == c) if query.mask is None and query.region is None else region  # the user's own region
            pixels = int(mask.sum())  # at the model's output, where the class's score is summed
            obj = ObjectMap(c, "ok" if pixels else "empty_mask")
            obj.mask = _resize_mask(mask, size).cpu()
            obj.mask_pixels = int(obj.mask.sum())  # what people count: the picture's pixels, as boxes are given
            objects.append(obj)
            if not pixels:
                continue
            score = (logits[0, c] * mask).sum()
            obj.score = round(float(score.detach()), 6)
            grads: Sequence[torch.Tensor | None] = [None] * len(acts)
            if any(m.needs_grad for m in methods):
                if not score.requires_grad:
                    raise LayerError(f"the class scores do not depend on layer '{layers[0]}'")
                grads = torch.autograd.grad(score, acts, retain_graph=k < len(wanted) - 1, allow_unused=True)

            def context(name: str, c: int = c, mask: torch.Tensor = mask) -> Context:
                return MaskScores(
                    model, x, name, torch.tensor([c]), score_batch, {}, cap, mask=mask.float(), params=query.params
                )

            with torch.no_grad():
                levels = _level_maps(x, layers, acts, grads, methods, layouts or {}, context)
                obj.maps = {name: _fuse(v, (h, w), (h, w), size).cpu() for name, v in levels.items()}
    return _resize_mask(pred, size).cpu(), objects


def _region_mask(q: ObjectQuery, shape: tuple[int, int], size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The pixels of the model's output that count: ``--mask`` (at the input's size), ``--region`` (a box in
    original pixels), or all."""
    if q.mask is not None:
        m = q.mask.to(device).float()[None, None]
        return F.interpolate(m, size=shape, mode="nearest")[0, 0] > 0.5
    out = torch.ones(shape, dtype=torch.bool, device=device)
    if q.region is not None:
        x1, y1, x2, y2 = q.region
        sy, sx = shape[0] / size[0], shape[1] / size[1]
        out[:] = False
        top, left = int(y1 * sy), int(x1 * sx)
        out[top : max(top + 1, round(y2 * sy)), left : max(left + 1, round(x2 * sx))] = True
    return out


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].to(mask.dtype)
