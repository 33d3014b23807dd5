"""The Grad-CAM-family job for detectors and segmenters: a map per object, drawn with its box (or its mask's
outline), a map of every object per image, and a record per object (see :mod:`camcli.methods.objects`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import render
from ..engine.heads import head_inputs
from ..engine.layers import LayerInfo, choose_layers, default_layer
from ..engine.targets import resolve_targets
from ..errors import InputError, UsageError
from ..io.decode import fitted_size, read_mask
from ..io.inputs import InputFile
from ..io.outputs import (
    Setting,
    answered,
    atomic_save_npy,
    object_output_path,
    owned_by,
    owner_tag,
    panel_output_path,
    write_answer,
)
from ..io.picture import Picture
from ..methods import get_methods, upsample
from ..methods.base import normalize
from ..methods.objects import ObjectMap, ObjectQuery, check_methods, explain_detections, explain_segmentation
from ..models import LoadedModel, load_spec
from ..options import DEFAULT_METHOD, CamOptions, parse_box, parse_layout
from .cam import CamJob
from .job import Job
from .overlays import made_before, methods_panel_path, overlay_names, overlay_settings
from .results import ImageResult, ObjectOutput, Record

SEGMENT_KEYS = ("out", "high")  # the backbone features a segmenter's main head reads (not "aux", not "low")


@dataclass
class Objects:
    """What :meth:`ObjectJob.compute` hands to :meth:`ObjectJob.write` for one image."""

    objects: list[ObjectMap]
    boxes: list[tuple[tuple[float, ...], int, float]]  # every detection over --min-score: box, label, score
    size: tuple[int, int]  # (H, W) the maps and boxes are at
    error: str | None = None  # why this image was not explained (a --mask of another size)


class ObjectJob(Job[Objects]):
    """Detectors (one map per detection) and segmenters (one map per class's mask)."""

    options: CamOptions
    label = "explaining objects"

    def __init__(self, options: CamOptions, model: LoadedModel | None = None) -> None:
        self.options = options
        super().__init__(options, model)

    @property
    def task(self) -> str:
        return self.model.task

    def prepare_options(self) -> None:
        o = self.options
        self.methods = get_methods(o.methods or [DEFAULT_METHOD], objects=True)
        check_methods(self.methods)
        for flag, given in (
            ("--smooth", o.smooth),
            ("--aug-smooth", o.aug_smooth),
            ("--guided", o.guided),
            ("--per-layer", o.per_layer),
            ("--annotate", o.annotate),
        ):
            if given:
                raise UsageError(f"{flag} is for classifiers; drop it for a detector or segmenter")
        if o.top_k != CamOptions.top_k:
            raise UsageError("--top-k is for classifiers; on detectors use --max-objects and --min-score")

    def choose_layers(self, infos: list[LayerInfo]) -> tuple[list[str], bool]:
        m, o = self.model, self.options
        if o.layers:
            return choose_layers(m.module, infos, o.layers, None, m.name, parse_layout(o.layout), m.input_size)
        layers = default_layers(m, infos)
        if not layers:
            raise UsageError(f"cannot find the feature maps {m.name}'s head reads; pick layers with --layer")
        return layers, True

    def find_default_layers(self, infos: list[LayerInfo]) -> list[str]:
        return list(self.layers)  # names say layer= whenever --layer was given (see named_settings)

    def how_layers_chosen(self) -> str:
        return "auto: the maps the head reads" if self.layer_chosen else "from --layer"

    def prepare_model(self, infos: list[LayerInfo]) -> None:
        o = self.options
        if self.task == "detection":
            if not hasattr(self.model.module, "transform"):
                raise UsageError(
                    f"{self.model.name}: a detector here is torchvision-style: a .transform that resizes and batches "
                    "its pictures (GeneralizedRCNNTransform), a list of pictures in, boxes/labels/scores out"
                )
            self.batch_size = 1  # pictures of their own sizes; the model's transform batches them itself
            if o.mask or o.region:
                raise UsageError("--mask and --region are for segmentation models; on a detector use --box")
        elif o.box or o.norm_in_box:
            raise UsageError(
                "--box and --norm-in-box are for detectors; on a segmentation model use --region or --mask"
            )
        else:
            d = CamOptions()
            if o.min_score != d.min_score or o.iou != d.iou:
                raise UsageError("--min-score and --iou are for detectors; a segmentation model explains classes")
        for flag, given in (
            ("--head", o.head),
            ("--threshold", o.threshold is not None),
            ("--reference", o.references),
            ("--prompt", o.prompts),
            ("--targets-file", o.targets_file),
        ):
            if given:
                raise UsageError(
                    f"{flag} is for classifiers and embedding models; a {self.task} model explains objects"
                )
        self.targets = targets = resolve_targets(o.targets, self.model.categories)
        mask = None
        if o.mask:  # read as an input is read: a FIFO, a bomb, a corrupt file are one line each
            try:
                mask = torch.from_numpy(read_mask(Path(o.mask), o.max_pixels))
            except InputError as e:
                raise UsageError(f"--mask {e}") from None
        self.query = ObjectQuery(
            labels=set(targets) if targets else None,
            min_score=o.min_score,
            max_objects=o.max_objects,
            box=parse_box("--box", o.box),
            iou=o.iou,
            mask=mask,
            region=parse_box("--region", o.region),
            params=o.method_params,
        )

    def header(self) -> str:
        unknown = "" if self.model.categories else ", classes unknown: named by their numbers"
        names = [m.name for m in self.methods]
        return (
            f"model {self.model.name}{self.weights_note()} ({self.task}{unknown}) · layer {'+'.join(self.layers)} "
            f"({self.how_layers_chosen()}) · method {', '.join(names)}{self.options.method_params.note(names)} · "
            f"device {self.device}"
        )

    # ---------------------------------------------------------------------------------------- names
    def settings(self) -> dict[str, Any]:
        o = self.options
        chosen: dict[str, Any] = {"min_score": o.min_score, "max_objects": o.max_objects, "box": o.box, "iou": o.iou}
        if self.task == "segmentation":
            chosen = {"max_objects": o.max_objects, "mask": o.mask, "region": o.region}
        chosen["targets"] = list(self.targets)
        return {**super().settings(), **chosen, "norm_in_box": o.norm_in_box, **overlay_settings(o)}

    def named_settings(self) -> list[Setting]:
        o, d = self.options, CamOptions()
        out = super().named_settings()
        if not self.layer_chosen:
            out.append(("layer", "+".join(self.layers)))
        if self.targets:
            out.append(("target", "+".join(str(t) for t in self.targets)))
        for key, value, default in (
            ("min-score", o.min_score, d.min_score),
            ("max-objects", o.max_objects, d.max_objects),
            ("iou", o.iou, d.iou),
        ):
            if value != default:
                out.append((key, f"{value:g}"))
        mask = f"{Path(o.mask).stem}-{_digest(o.mask)}" if o.mask else None  # a/mask.png and b/mask.png differ
        for key, text in (("box", o.box), ("region", o.region), ("mask", mask)):
            if text:
                out.append((key, text))
        if o.norm_in_box:
            out.append(("norm-in-box", None))
        return out + overlay_names(o)

    def combined_path(self, item: InputFile, method: str) -> Path:
        return panel_output_path(self.options.out, item, f"{method}{self.name_settings}.objects", self.ext)

    def panel_path(self, item: InputFile) -> Path:
        return methods_panel_path(self, self.methods, item)

    def answer_path(self, item: InputFile, method: str) -> Path:
        """What a run found when there was nothing to draw (``….objects.json``: the statuses), so that
        ``--skip-existing`` knows the image was done with these settings (its name has them)."""
        return self.combined_path(item, method).with_suffix(".json")

    def outputs_exist(self, item: InputFile) -> bool:
        """The map of every object is written last: when it is there (made with these settings), all are; an
        image with nothing to draw has its answer file instead."""
        owner, made = owner_tag(item), self.settings_text
        drawn = False
        for m in self.methods:
            combined = self.combined_path(item, m.name)
            if combined.is_file() and owned_by(combined, owner, made):
                drawn = True
            elif not answered(self.answer_path(item, m.name), owner, made):
                return False
        return not (self.options.panel and drawn) or made_before(self, self.methods, item)

    # --------------------------------------------------------------------------------------- compute
    def compute(self, x: torch.Tensor) -> list[Objects]:
        m, q = self.model.module, self.query
        size = (int(x.shape[-2]), int(x.shape[-1]))
        pictures = self.picture_sizes if len(self.picture_sizes) == x.shape[0] else [size] * x.shape[0]
        if self.task == "detection":
            if q.box is not None:  # --box is in the pixels of the picture as drawn; the model saw this decode
                sy, sx = size[0] / pictures[0][0], size[1] / pictures[0][1]
                x1, y1, x2, y2 = q.box
                q = replace(q, box=(x1 * sx, y1 * sy, x2 * sx, y2 * sy))
            found = explain_detections(
                m, x[0].contiguous(), self.layers, self.methods, q, self.layouts, self.options.score_batch
            )
            shown = [
                (tuple(float(v) for v in b), int(lab), float(s))
                for b, lab, s in zip(found.boxes, found.labels, found.scores, strict=True)
                if float(s) >= q.min_score
            ]
            return [Objects(found.objects, shown, size)]
        out = []
        for i in range(x.shape[0]):  # maps at the picture's size, --region in its pixels
            batch, drawn = self.options.score_batch, pictures[i]
            if q.mask is not None and (error := self._mask_misfit(tuple(q.mask.shape), drawn)):
                out.append(Objects([], [], drawn, error))
                continue
            _, objects = explain_segmentation(m, x[i : i + 1], self.layers, self.methods, q, drawn, self.layouts, batch)
            out.append(Objects(objects, [], drawn))
        return out

    def _mask_misfit(self, mask: tuple[int, ...], drawn: tuple[int, int]) -> str | None:
        """Why ``--mask`` (H, W) is not of a picture drawn at ``drawn`` (H, W) (None: it has that size, or the one
        --max-size scaled it from, within a pixel); a mask is never stretched to another picture's shape."""
        (mh, mw), (h, w), cap = mask, drawn, self.options.max_size
        if (mh, mw) == (h, w):
            return None
        fitted = fitted_size(mw, mh, cap)
        if fitted is not None and abs(fitted[0] - w) <= 1 and abs(fitted[1] - h) <= 1:
            return None
        drawn_as = f" (--max-size {cap} drew it at {w}x{h})" if cap is not None else ""
        return (
            f"--mask {self.options.mask} is {mw}x{mh} but the picture is {w}x{h}{drawn_as}; give a mask of the "
            "picture's size (non-zero or opaque pixels: the region), or use --region X1,Y1,X2,Y2"
        )

    # ----------------------------------------------------------------------------------------- write
    def write(self, item: InputFile, input_picture: Picture, computed: Objects) -> ImageResult:
        if computed.error is not None:
            raise InputError(f"{item.path}: {computed.error}")
        o = self.options
        image = input_picture.pil()
        size = (image.height, image.width)
        sy, sx = size[0] / computed.size[0], size[1] / computed.size[1]
        scale = lambda b: (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)  # noqa: E731
        owner, written = owner_tag(item), []
        name = self.model.class_name
        everyone = [(scale(b), f"{name(lab)} {s:.2f}", False) for b, lab, s in computed.boxes]
        rows: dict[int, list[tuple[str, Image.Image]]] = {}  # --panel: a row per object, a tile per method
        for m in self.methods:
            maps: list[torch.Tensor] = []
            outputs: list[ObjectOutput] = []
            for k, obj in enumerate(computed.objects, start=1):
                target = self._target(obj, scale)
                out = ObjectOutput(self.task, m.name, obj.status, target)
                outputs.append(out)
                if obj.status != "ok":
                    continue
                cam = upsample(obj.maps[m.name][None], size)[0]
                if o.norm_in_box and obj.box is not None:
                    cam = _inside(cam, scale(obj.box))
                if not bool(torch.isfinite(cam).all()):
                    raise InputError(f"{item.path}: the model's output is not finite (NaN or Inf); check the weights")
                maps.append(cam)
                path = object_output_path(
                    o.out, item, m.name + self.name_settings, k, obj.label, name(obj.label), self.ext
                )
                picture = self._draw(image, cam, obj, everyone, scale)
                self.save_picture(path, picture, owner)
                out.overlay = str(path)
                if o.panel:
                    said = f"{name(obj.label)}" + (f" {obj.score:.2f}" if obj.box is not None else "")
                    rows.setdefault(k, []).append((f"{m.name} · {said}", picture))
                if o.save_raw:
                    atomic_save_npy(path.with_suffix(".npy"), cam.numpy().astype(np.float32))
                    out.raw = str(path.with_suffix(".npy"))
            written.extend(outputs)
            if not maps:  # nothing to show: status records and a small answer file, never a blank picture
                answer = self.answer_path(item, m.name)
                write_answer(answer, owner, self.settings_text, {"objects": [r.target for r in outputs]})
                for out in outputs:
                    out.answer = str(answer)
                continue
            combined = self.combined_path(item, m.name)
            whole = normalize(torch.stack(maps).amax(0))
            explained = [
                (scale(ob.box), f"{name(ob.label)} {ob.score:.2f}", True)
                for ob in computed.objects
                if ob.status == "ok" and ob.box is not None
            ]
            picture = render.overlay(image, whole.numpy(), o.colormap, o.alpha, o.blend)
            self.save_picture(combined, render.draw_boxes(picture, everyone + explained), owner)
            for out in outputs:
                out.combined = str(combined)
        if rows:
            panel = self.panel_path(item)
            title = f"{item.display} · {self.model.name} · {len(rows)} object(s)"
            self.save_picture(panel, render.panel(image, list(rows.values()), o.colormap, title=title), owner)
            for out in written:
                if out.overlay is not None:
                    out.panel = str(panel)
        return ImageResult(item.display, True, size=(image.width, image.height), written=list(written))

    def _target(self, obj: ObjectMap, scale: Any) -> dict[str, Any]:
        target: dict[str, Any] = {"kind": self.task, "label": obj.label, "label_name": self.model.class_name(obj.label)}
        if obj.label < 0:
            target = {"kind": self.task, "label": None, "label_name": None}
        if obj.score is not None:
            target["score"] = obj.score
        if obj.box is not None:
            target["box"] = [round(v, 2) for v in scale(obj.box)]
        if obj.iou is not None:
            target["iou"] = obj.iou
        if obj.mask_pixels is not None:
            target["mask_pixels"] = obj.mask_pixels
        return target

    def _draw(
        self, image: Image.Image, cam: torch.Tensor, obj: ObjectMap, everyone: list[Any], scale: Any
    ) -> Image.Image:
        o = self.options
        picture = render.overlay(image, cam.numpy(), o.colormap, o.alpha, o.blend)
        if obj.box is not None:
            caption = f"{self.model.class_name(obj.label)} {obj.score:.2f}"
            return render.draw_boxes(picture, [*everyone, (scale(obj.box), caption, True)])
        if obj.mask is not None:
            mask = upsample(obj.mask.float()[None], (image.height, image.width))[0] > 0.5
            return render.draw_outline(picture, mask.numpy())
        return picture

    def records(self, result: ImageResult) -> list[Record]:
        base = {
            "input": result.input,
            "kind": self.task,
            "model": self.model.name,
            "layer": "+".join(self.layers),
            "settings": self.record_settings,
        }
        if not result.ok:
            methods = "+".join(m.name for m in self.methods)
            return [{**base, "method": methods, "status": "error", "error": result.error}]
        return [o.record(base) for o in result.written if isinstance(o, ObjectOutput)]


def _digest(path: str) -> str:
    import hashlib

    return hashlib.sha1(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:6]


def _inside(cam: torch.Tensor, box: tuple[float, ...]) -> torch.Tensor:
    """``--norm-in-box``: the map kept inside the box only, normalised there (so that one object does not
    dominate another's picture)."""
    x1, y1, x2, y2 = (round(v) for v in box)
    out = torch.zeros_like(cam)
    part = cam[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)]
    if part.numel():
        out[max(0, y1) : max(y1 + 1, y2), max(0, x1) : max(x1 + 1, x2)] = normalize(part[None])[0]
    return out


def cam_job(options: CamOptions, model: LoadedModel | None = None) -> Job[Any]:
    """The job for ``camcli gradcam``/``cam``: the CAM job for classifiers, the object job for detectors and
    segmenters (the model says which)."""
    options.check()
    loaded = model or load_spec(options)
    if loaded.task in ("detection", "segmentation"):
        return ObjectJob(options, loaded)
    return CamJob(options, loaded)


def default_layers(model: LoadedModel, infos: list[LayerInfo]) -> list[str]:
    """The layers a run takes without ``--layer``: a classifier's default layer; for detectors and segmenters the
    feature maps their head reads (what ``camcli layers`` marks)."""
    if model.task == "classification":
        return [default_layer(infos, model.default_layer)]
    m, side = model.module, 224
    if model.task == "detection":
        return head_inputs(m, lambda: m([torch.zeros(3, side, side)]))
    return head_inputs(m, lambda: m(torch.zeros(1, 3, side, side)), SEGMENT_KEYS)
