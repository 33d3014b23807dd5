"""The Grad-CAM-family job: explain batches with one or more methods and layers, write overlays and records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import render
from ..engine.layers import LayerInfo
from ..engine.targets import Target
from ..errors import InputError, UsageError
from ..io.inputs import InputFile
from ..io.outputs import (
    Setting,
    atomic_save_npy,
    cam_output_path,
    find_cam_outputs,
    owned_by,
    owner_tag,
    rank_text,
    write_answer,
)
from ..io.picture import DEVICE_INTERPOLATIONS, Picture
from ..io.thumbs import save_input_pictures
from ..methods import CamMethod, explain_smooth, for_model, get_methods, left_out_note, upsample, upsample_normalized
from ..methods.guided import gradient_to_image, guided_backprop
from ..models import LoadedModel
from ..options import DEFAULT_METHOD, CamOptions
from .job import Job
from .media import explain_media, media_outputs_exist
from .overlays import made_before, methods_panel_path, overlay_names, overlay_settings, save_signed, signed_files
from .results import CamOutput, ImageResult, NoLabel, Output, Record
from .targeting import TargetPlan, plan_targets


@dataclass
class CamMaps:
    """What :meth:`CamJob.compute` hands to :meth:`CamJob.write` for one image (CPU tensors)."""

    probs: torch.Tensor  # (num_classes,) as the head reads the scores (softmax, sigmoid, the values)
    targets: list[Target]  # what each of the K maps explains (a class, negated or not)
    by_method: dict[str, torch.Tensor]  # method → (K, h, w) maps in [0, 1]
    per_layer: dict[tuple[str, str], torch.Tensor]  # (method, layer) → (K, h, w), with --per-layer
    guided: torch.Tensor | None  # (K, 3, H, W) guided-backprop gradients, with --guided
    missing: bool = False  # --targets-file names no target for this image
    signed: dict[str, torch.Tensor] | None = None  # --signed: method → (K, H, W) (the model input's size)


class CamJob(Job[CamMaps]):
    """Explains batches and writes one overlay per image, method and class (see :class:`CamOptions`)."""

    options: CamOptions
    # with a CUDA device the overlays are drawn on it, and JPEG inputs decoded there (False: on the CPU with
    # Pillow; ``make bench`` compares)
    gpu_render = True
    gpu_decode = True
    media = True  # videos and volumes too (camcli.jobs.media)

    def __init__(self, options: CamOptions, model: LoadedModel | None = None) -> None:
        self.options = options
        super().__init__(options, model)
        # where the maps are upsampled and drawn: None = the CPU, with Pillow (the two give the same pixels)
        self.render_on: torch.device | None = self.device if self.device.type == "cuda" and self.gpu_render else None
        if self.render_on is not None and self.gpu_decode and self.model.interpolation in DEVICE_INTERPOLATIONS:
            self.decode_on = self.render_on

    def prepare_options(self) -> None:
        self.methods: list[CamMethod] = get_methods(self.options.methods or [DEFAULT_METHOD])
        o, d = self.options, CamOptions()
        for flag, given in (
            ("--box", o.box),
            ("--mask", o.mask),
            ("--region", o.region),
            ("--norm-in-box", o.norm_in_box),
            ("--min-score", o.min_score != d.min_score),
            ("--max-objects", o.max_objects != d.max_objects),
            ("--iou", o.iou != d.iou),
        ):
            if given:
                raise UsageError(
                    f"{flag} is for detectors and segmenters (fasterrcnn_*, deeplabv3_* …), not classifiers"
                )

    def prepare_model(self, infos: list[LayerInfo]) -> None:
        self.methods, self.left_out = for_model(self.options.methods, self.methods, self.model.module, self.layers)
        self.plan: TargetPlan = plan_targets(self.model, self.options)
        self.targets: list[Target] = self.plan.targets
        if (classes := len(self.plan.names)) and self.options.top_k > classes:
            what = "prompt(s)" if self.plan.prompts else "concept" if self.plan.references else "classes"
            raise UsageError(f"--top-k {self.options.top_k}: there are {classes} {what}; use at most that")

    def header(self) -> str:
        return (
            f"model {self.model.name}{self.weights_note()} · "
            f"{self.layer_note(self.methods)} · "
            f"method {', '.join(m.name for m in self.methods)}{left_out_note(self.left_out)}"
            f"{self.options.method_params.note([m.name for m in self.methods])} · "
            f"{self.plan.describe()} · device {self.device}"
        )

    # ---------------------------------------------------------------------------------------- names
    def settings(self) -> dict[str, Any]:
        o = self.options
        return {
            **super().settings(),
            "smooth": o.smooth,
            "noise": o.noise if o.smooth else None,
            "aug_smooth": o.aug_smooth,
            **overlay_settings(o),
            "annotate": o.annotate,
            **self.plan.settings(),
            **o.method_params.setting([m.name for m in self.methods]),
        }

    def named_settings(self) -> list[Setting]:
        """Model, layer, smoothing and picture settings that differ from the defaults (see the README's table)."""
        o, d = self.options, CamOptions()
        out = super().named_settings()
        if self.layers != self.default_layers:
            out.append(("layer", "+".join(self.layers)))
        if o.smooth:
            out.append(("smooth", str(o.smooth)))
            if o.noise != d.noise:
                out.append(("noise", f"{o.noise:g}"))
        if o.aug_smooth:
            out.append(("aug-smooth", None))
        out += overlay_names(o)
        out += o.method_params.named([m.name for m in self.methods])
        if o.annotate:
            out.append(("annotate", None))
        return out + self.plan.named()

    def output_path(
        self, item: InputFile, tag: str, target: Target, suffix: str | None = None, rank: str | None = None
    ) -> Path:
        """The file of map ``tag`` of ``target``: a picture in the run's format, or ``suffix`` (``.npy``)."""
        name = self.target_name(target)
        sfx = suffix or self.ext
        return cam_output_path(self.options.out, item, tag + self.name_settings, target.index, name, sfx, rank)

    def class_name(self, index: int) -> str:
        return self.plan.class_name(index)

    def value_label(self) -> str:
        return self.plan.value_label()

    def target_name(self, target: Target) -> str:
        """What people call a target: ``tabby``, ``not tabby``, a prompt, a reference."""
        return self.plan.target_name(target)

    def panel_path(self, item: InputFile) -> Path:
        return methods_panel_path(self, self.methods, item)

    def answer_path(self, item: InputFile) -> Path:
        """``--threshold``: the file that says no label was that probable (``….labels-gradcam,….json``)."""
        return methods_panel_path(self, self.methods, item, "labels", ".json")

    @property
    def ranked(self) -> bool:
        """Names carry the class's rank: with --top-k above 1 (not with --target)."""
        return not self.targets and self.plan.per_image is None and self.options.top_k > 1

    def _rank(self, k: int) -> str | None:
        return rank_text(k + 1, self.options.top_k) if self.ranked else None

    def _expected(self) -> list[tuple[str, str]]:
        """(tag, suffix) of every file written per image and class: a PNG per map, its .npy with --save-raw
        (maps only: the guided images have no raw array)."""
        maps = [m.name for m in self.methods]
        if self.options.per_layer and len(self.layers) > 1:
            maps += [f"{m.name}@{layer}" for m in self.methods if m.scope == "layer" for layer in self.layers]
        suffixes = [self.ext, ".npy"] if self.options.save_raw else [self.ext]
        out = [(tag, sfx) for tag in maps for sfx in suffixes] + signed_files(self.options, self.methods)
        if self.options.guided:
            out += [(tag, self.ext) for tag in ["guided-backprop"] + [f"guided-{m.name}" for m in self.methods]]
        return out

    def outputs_exist(self, item: InputFile) -> bool:
        """All outputs of this input are on disk (atomic writes: a file that exists is complete), made from this
        input with these settings."""
        owner, made = owner_tag(item), self.settings_text
        targets = self.targets
        if self.plan.per_image is not None:
            own = self.plan.for_images((item,))[0]
            if own is None:
                return False
            targets = [own]
        if self.options.panel and not made_before(self, self.methods, item):
            return False
        if targets:
            paths = [self.output_path(item, tag, t, sfx) for tag, sfx in self._expected() for t in targets]
            return all(p.is_file() for p in paths) and all(
                owned_by(p, owner, made) for p in paths if p.suffix != ".npy"
            )
        if self.plan.threshold is not None and made_before(self, self.methods, item, "labels", ".json"):
            return True
        out = self.options.out
        for tag, sfx in self._expected():
            found = find_cam_outputs(out, item, tag + self.name_settings, sfx, self.ranked)
            pictures = [p for p in found if sfx != ".npy"]
            # --threshold: the labels explained are the model's to say; an image's files are all written or
            # none (and its record says ok), so one of them is enough
            wanted = 1 if self.plan.threshold is not None else self.options.top_k
            if len(found) < wanted or not all(owned_by(p, owner, made) for p in pictures):
                return False
        return True

    def explain_media(self, item: InputFile) -> ImageResult:
        return explain_media(self, item)

    def media_done(self, item: InputFile) -> bool:
        return media_outputs_exist(self, item)

    # --------------------------------------------------------------------------------------- compute
    def compute(self, x: torch.Tensor) -> list[CamMaps]:
        o = self.options
        classes, signs, missing = self.plan.batch_targets(self.batch_inputs, x.shape[0])
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
            classes=classes,
            signs=signs,
            score_batch=o.score_batch,
            layouts=self.layouts,
            params=o.method_params,
            mean_std=(self.model.mean, self.model.std),
            scorer=self.plan.scorer,
            threshold=self.plan.threshold,
        )
        guided = guided_backprop(self.model.module, x, ex.classes, ex.signs, self.plan.scorer) if o.guided else None
        out = []
        for i in range(x.shape[0]):
            keep = [True] * ex.classes.shape[1] if ex.valid is None else ex.valid[i].tolist()
            signed = ex.signs[i].tolist() if ex.signs is not None else [1.0] * len(keep)
            slots = [k for k, kept in enumerate(keep) if kept]
            out.append(
                CamMaps(
                    probs=ex.probs[i],
                    targets=[Target(int(ex.classes[i, k]), signed[k] < 0) for k in slots],
                    by_method={m: v[i][slots] for m, v in ex.by_method.items()},
                    per_layer={k: v[i][slots] for k, v in ex.per_layer.items()} if o.per_layer else {},
                    guided=guided[i][slots] if guided is not None else None,
                    missing=missing[i],
                    signed={m: v[i][slots] for m, v in ex.signed.items()},
                )
            )
        return out

    # ----------------------------------------------------------------------------------------- write
    def _save_map(
        self,
        path: Path,
        image: Picture,
        base: torch.Tensor | None,
        cam: torch.Tensor,
        maps: dict[str, np.ndarray] | None,
        owner: str,
        caption: str,
        tiles: list[tuple[str, Image.Image]] | None = None,
        tile_title: str = "",
    ) -> str | None:
        """Write the overlay of ``cam`` (H, W) at ``path`` (and its .npy with --save-raw); returns the .npy path or
        None. With ``base`` (the picture as an (H, W, 3) uint8 tensor on the GPU) the overlay is drawn there."""
        o = self.options
        picture: Image.Image | torch.Tensor
        if base is None:
            picture = render.overlay(image.pil(), cam.numpy(), o.colormap, o.alpha, o.blend)
        else:
            picture = render.overlay_tensor(base, cam, o.colormap, o.alpha, o.blend)
        if tiles is not None:  # --panel: the overlay as it is, before any caption
            shown = picture if isinstance(picture, Image.Image) else Image.fromarray(picture.cpu().numpy(), "RGB")
            tiles.append((tile_title, shown))
        if o.annotate:
            if isinstance(picture, torch.Tensor):
                picture = Image.fromarray(picture.cpu().numpy(), "RGB")
            picture = render.annotate(picture, caption, o.colormap)
        self.save_picture(path, picture, owner)
        if maps is not None:
            maps[str(path)] = cam.cpu().numpy()
        if o.save_raw:
            atomic_save_npy(path.with_suffix(".npy"), cam.cpu().numpy().astype(np.float32, copy=False))
        return str(path.with_suffix(".npy")) if o.save_raw else None

    def write(self, item: InputFile, image: Picture, computed: CamMaps) -> ImageResult:
        size = (image.height, image.width)
        probs = computed.probs
        if computed.missing:
            raise self.plan.missing_error(item.path)
        if not bool(torch.isfinite(probs).all()) or not all(
            bool(torch.isfinite(m).all()) for m in computed.by_method.values()
        ):
            raise InputError(
                f"{item.path}: the model's output is not finite (NaN or Inf) for this image; check the weights"
            )
        preds = self.predictions(probs)
        if not computed.targets:  # --threshold: no label is that probable; an answer file says so
            path, threshold = self.answer_path(item), float(self.plan.threshold or 0)
            write_answer(path, owner_tag(item), self.settings_text, {"threshold": threshold})
            answer = NoLabel("+".join(m.name for m in self.methods), threshold, str(path))
            size_wh = (image.width, image.height)
            return ImageResult(item.display, True, size=size_wh, predictions=preds, written=[answer])
        maps: dict[str, np.ndarray] | None = {} if self.options.keep_maps else None
        owner = owner_tag(item)
        layer = "+".join(self.layers)
        # on a GPU the maps are upsampled and drawn there: the CPU cores are what limits such a run
        on = self.render_on
        base = image.pixels(on) if on is not None else None
        written: list[Output] = []
        rows: list[list[tuple[str, Image.Image]]] | None = [] if self.options.panel else None
        for k, target in enumerate(computed.targets):
            idx = target.index
            tiles: list[tuple[str, Image.Image]] | None = [] if rows is not None else None
            if rows is not None and tiles is not None:
                rows.append(tiles)
            rank = self._rank(k)
            name = self.target_name(target)
            prob = round(self.plan.scorer.slot_probability(probs, idx, target.negate), 6)
            said = f"{idx} {name} · {prob:.3f}"  # the caption's start, with --annotate
            guided = computed.guided[k] if computed.guided is not None else None
            gb_path = self.output_path(item, "guided-backprop", target, rank=rank)
            if guided is not None:
                picture = render.gradient_picture(gradient_to_image(guided).numpy(), size)
                self.save_picture(gb_path, picture, owner)
            for m in self.methods:
                path = self.output_path(item, m.name, target, rank=rank)
                full = upsample_normalized(computed.by_method[m.name][k].to(on), size)
                out = CamOutput(m.name, idx, name, prob, overlay=str(path), target=str(target))
                out.verdict = self.plan.verdict(probs, target)
                caption = f"{said} · {m.name} @ {layer}"
                tile = f"{m.name} · {said}"
                out.raw = self._save_map(path, image, base, full, maps, owner, caption, tiles, tile)
                out.signed = save_signed(path.with_suffix(".signed.npy"), computed.signed, m.name, k)
                for (method, one), per in computed.per_layer.items():
                    if method == m.name:
                        layer_path = self.output_path(item, f"{m.name}@{one}", target, rank=rank)
                        per_map = upsample_normalized(per[k].to(on), size)
                        caption = f"{said} · {m.name} @ {one}"
                        tile = f"{m.name} @ {one} · {said}"
                        self._save_map(layer_path, image, base, per_map, maps, owner, caption, tiles, tile)
                        out.per_layer[one] = str(layer_path)
                if guided is not None:
                    out.guided_backprop = str(gb_path)
                    cam_in = upsample(computed.by_method[m.name][k], (guided.shape[-2], guided.shape[-1]))
                    gc_path = self.output_path(item, f"guided-{m.name}", target, rank=rank)
                    picture = render.gradient_picture(gradient_to_image(guided * cam_in[None]).numpy(), size)
                    self.save_picture(gc_path, picture, owner)
                    out.guided_cam = str(gc_path)
                written.append(out)
        if rows is not None:
            panel_path = self.panel_path(item)
            title = f"{item.display} · {self.model.name} · layer {layer}"
            self.save_picture(panel_path, render.panel(image.pil(), rows, self.options.colormap, title=title), owner)
            for o in written:
                if isinstance(o, CamOutput):
                    o.panel = str(panel_path)
        if self.options.report:  # the input's pictures, and its first overlay's thumbnail (the report's card)
            first = next((Path(o.overlay) for o in written if isinstance(o, CamOutput) and o.overlay), None)
            save_input_pictures(item.path, image.pil(), self.options.out, first)
        return ImageResult(
            item.display, True, size=(image.width, image.height), predictions=preds, written=written, maps=maps
        )

    def records(self, result: ImageResult) -> list[Record]:
        """Manifest / ``--json`` records: one per image, method and class (one error record on failure)."""
        layer = "+".join(self.layers)
        settings = self.record_settings
        base = {"input": result.input, "kind": "cam", "model": self.model.name, "layer": layer, "settings": settings}
        if not result.ok:
            return [
                {**base, "method": "+".join(m.name for m in self.methods), "status": "error", "error": result.error}
            ]
        return [o.record(base, result.predictions) for o in result.written if isinstance(o, (CamOutput, NoLabel))]
