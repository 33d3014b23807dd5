"""`camcli evaluate`: how faithful each method's map is, beside maps that explain nothing (camcli.metrics).

Per batch: one forward and backward pass gives every method's map (:func:`~camcli.methods.explain`); the maps
are upsampled to the model's input size; every metric's perturbed inputs go through the model ``--batch-size``
at a time. Per image, method and class one record goes to ``OUT/metrics.jsonl``; the job writes no other file
per image (the summary table and the plots are made from the records at the end, :mod:`camcli.jobs.eval_summary`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine.layers import LayerInfo
from ..engine.scoring import Slots
from ..engine.targets import Target
from ..errors import InputError, UsageError
from ..io.inputs import InputFile, input_key
from ..io.manifest import manifest_name
from ..io.picture import Picture
from ..methods import CamMethod, explain, for_model, get_methods, left_out_note, upsample_normalized
from ..methods.costs import counting_forwards
from ..metrics import BASELINE_MAPS, baseline_maps, cascade, deletion_insertion, drop_increase, road
from ..models import LoadedModel
from ..options import DEFAULT_METHOD, EvalOptions
from ..steps import counting
from .eval_summary import matching_records
from .job import Job
from .results import EvalOutput, ImageResult, Record
from .runner import ResultCallback, run_job
from .targeting import TargetPlan, plan_targets


@dataclass
class EvalScores:
    """What :meth:`EvaluateJob.compute` hands to :meth:`EvaluateJob.write` for one image."""

    probs: torch.Tensor  # (num_classes,)
    outputs: list[EvalOutput]
    missing: bool = False  # --targets-file names no target for this image


class EvaluateJob(Job[EvalScores]):
    """Measures the maps of one or more methods (and the baseline maps) with the chosen metrics."""

    options: EvalOptions
    label = "evaluating"
    manifest_stem = "metrics"

    def __init__(self, options: EvalOptions, model: LoadedModel | None = None) -> None:
        self.options = options
        self._measured: set[tuple[int, str, Any]] | None = None  # (input, map, target) recorded with these settings
        super().__init__(options, model)

    def prepare_options(self) -> None:
        self.methods: list[CamMethod] = get_methods(self.options.methods or [DEFAULT_METHOD])
        self.percents = self.options.percents()

    def prepare_model(self, infos: list[LayerInfo]) -> None:
        if self.model.task != "classification":
            raise UsageError(
                f"camcli evaluate measures classifiers' maps; {self.model.name} is a {self.model.task} model"
            )
        if self.options.threshold is not None:
            raise UsageError(
                "camcli evaluate measures one target per image and class; instead of --threshold, name the labels "
                "with --target, or each image's with --targets-file"
            )
        self.plan: TargetPlan = plan_targets(self.model, self.options)
        self.targets: list[Target] = self.plan.targets
        self.methods, self.left_out = for_model(self.options.methods, self.methods, self.model.module, self.layers)

    def class_name(self, index: int) -> str:
        return self.plan.class_name(index)

    def value_label(self) -> str:
        return self.plan.value_label()

    def header(self) -> str:
        o = self.options
        what = "sanity check" if o.sanity else "metrics " + ", ".join(o.metrics)
        return (
            f"model {self.model.name}{self.weights_note()} · {self.layer_note(self.methods)} · "
            f"method {', '.join(m.name for m in self.methods)}"
            f"{left_out_note(self.left_out)}{o.method_params.note([m.name for m in self.methods])} · {what} · "
            f"{self.plan.describe()} · device {self.device}"
        )

    def settings(self) -> dict[str, Any]:
        o = self.options
        return {
            **super().settings(),
            "metrics": [] if o.sanity else list(o.metrics),
            "steps": o.steps,
            "baseline": o.baseline,
            "road_percents": self.percents,
            "road_noise": o.road_noise,
            "sanity": o.sanity,
            "sanity_steps": o.sanity_steps if o.sanity else None,
            "targets": [str(t) for t in self.targets],
            **self.plan.settings(),
            **o.method_params.setting([m.name for m in self.methods]),
        }

    def record_base(self) -> dict[str, Any]:
        """What every record of this run shares besides the input: its kind, model, layer and settings."""
        layer = "+".join(self.layers)
        return {"kind": "evaluate", "model": self.model.name, "layer": layer, "settings": self.record_settings}

    def row_names(self) -> list[str]:
        """The maps measured: the methods, then the baseline maps (the method ``random``, when asked for, is the
        random row)."""
        names = [m.name for m in self.methods]
        baselines = list(BASELINE_MAPS) if self.options.baselines and not self.options.sanity else []
        return names + [b for b in baselines if b not in names]

    def plot_name(self, kind: str) -> str:
        """``curves.png`` / ``sanity.png``; a shard's own: ``curves.shard-3-of-8.png``."""
        return manifest_name(self.options.shard, kind).removesuffix(".jsonl") + ".png"

    def forwards_per_image(self) -> dict[str, int]:
        """Forward passes each map costs per image and class (besides the one that made the maps): a curve's
        points, the masked input and its reference, ROAD's imputed inputs and its reference."""
        o = self.options
        n = 0
        n += (o.steps + 1) if "deletion" in o.metrics else 0
        n += (o.steps + 1) if "insertion" in o.metrics else 0
        n += 2 if "drop" in o.metrics else 0
        n += 1 + 2 * len(self.percents) if "road" in o.metrics else 0
        return dict.fromkeys(self.row_names(), n)

    def outputs_exist(self, item: InputFile) -> bool:
        """No files, only records: done when every map of this run has an ok record for the input made with
        these settings (another --steps, --method or --layer measures it again)."""
        if self._measured is None:
            self._measured = set()
            o, base = self.options, self.record_base()
            for name in dict.fromkeys([f"{self.manifest_stem}.jsonl", manifest_name(o.shard, self.manifest_stem)]):
                for rec in matching_records(o.out / name, base):
                    if isinstance(rec.get("input"), str):
                        self._measured.add((input_key(Path(rec["input"])), str(rec.get("method")), rec.get("target")))
        key = input_key(item.path)
        if self.plan.per_image is not None:  # the target the file gives it now (the file may have changed)
            own = self.plan.for_images((item,))[0]
            return own is not None and all((key, n, str(own)) in self._measured for n in self.row_names())
        measured = {(k, n) for k, n, _ in self._measured}
        return all((key, name) in measured for name in self.row_names())

    # --------------------------------------------------------------------------------------- compute
    def _maps(
        self,
        model: nn.Module,
        x: torch.Tensor,
        classes: torch.Tensor | None,
        methods: list[CamMethod],
        signs: torch.Tensor | None = None,
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """Each method's map at the input's size, (B·K, H, W), for ``classes`` (B, K) or the targets/top class; the
        forward passes each method cost per image are in ``self.map_forwards``."""
        with counting_forwards(model) as counter:
            ex = explain(
                model,
                x,
                self.layers,
                methods,
                targets=self.targets or None,
                top_k=1,
                classes=classes,
                signs=signs,
                score_batch=self.options.score_batch,
                layouts=self.layouts,
                scorer=self.plan.scorer,
                params=self.options.method_params,
                mean_std=(self.model.mean, self.model.std),
            )
        self.map_forwards = {m.name: counter.per_image(m.name, x.shape[0]) for m in methods}
        size = (x.shape[-2], x.shape[-1])
        maps = {
            name: torch.stack([upsample_normalized(m, size) for m in v.flatten(0, 1).to(x.device)])
            for name, v in ex.by_method.items()
        }
        return ex, maps

    def compute(self, x: torch.Tensor) -> list[EvalScores]:
        o = self.options
        model = self.model.module
        given, signs, missing = self.plan.batch_targets(self.batch_inputs, x.shape[0])
        ex, maps = self._maps(model, x, given, self.methods, signs)
        k = ex.classes.shape[1]
        xs = x.repeat_interleave(k, 0)  # one row per image and class
        flat_signs = ex.signs.flatten().to(x.device) if ex.signs is not None else None
        classes = Slots(ex.classes.flatten().to(x.device), flat_signs, self.plan.scorer)
        # the method `random` (random channel weights) is the random-map row, in place of the noise baseline
        rows: dict[str, tuple[torch.Tensor, bool]] = {name: (m, name in BASELINE_MAPS) for name, m in maps.items()}
        if o.baselines and not o.sanity:
            # the noise is drawn at the resolution of the layer methods' maps (fused layers, pixel attribution: the
            # maps are full size, and the noise is drawn on a CNN's last-stage grid)
            sizes = [tuple(v.shape[-2:]) for v in ex.by_method.values()]
            grid = [s for s in sizes if s != tuple(x.shape[-2:])]
            cells = (int(grid[0][0]), int(grid[0][1])) if grid else None
            rows |= {name: (baseline_maps(name, xs, cells=cells), True) for name in BASELINE_MAPS if name not in rows}
        scores: dict[str, dict[str, Any]] = {name: {} for name in rows}
        curves: dict[str, dict[str, torch.Tensor]] = {name: {} for name in rows}
        sanity: dict[str, list[dict[str, Any]]] = {}
        if o.sanity:
            sanity = self._sanity(model, x, ex.classes, ex.signs)
        else:  # the perturbed inputs are counted as they go through the model: progress inside the batch
            with counting("perturbed inputs", sum(self.forwards_per_image().values()) * xs.shape[0]):
                for name, (m, _) in rows.items():
                    self._measure(model, xs, m, classes, scores[name], curves[name])
        out = []
        for i in range(x.shape[0]):
            outputs = []
            for j in range(k):
                row, idx = i * k + j, int(ex.classes[i, j])
                target = Target(idx, ex.signs is not None and float(ex.signs[i, j]) < 0)
                label = self.plan.target_name(target)
                prob = self.plan.scorer.slot_probability(ex.probs[i], idx, target.negate)
                for name, (_, is_baseline) in rows.items():
                    outputs.append(
                        EvalOutput(
                            name,
                            idx,
                            label,
                            round(prob, 6),
                            is_baseline,
                            {key: _number(v[row]) for key, v in scores[name].items()},
                            {key: [round(float(p), 6) for p in v[row]] for key, v in curves[name].items()},
                            [
                                {**step, "spearman": step["spearman"][row], "ssim": step["ssim"][row]}
                                for step in sanity.get(name, [])
                            ],
                            str(target),
                            self.plan.verdict(ex.probs[i], target),
                            None if is_baseline else self.map_forwards.get(name),
                        )
                    )
            out.append(EvalScores(ex.probs[i].cpu(), outputs, missing[i]))
        return out

    def _measure(
        self,
        model: nn.Module,
        xs: torch.Tensor,
        m: torch.Tensor,
        classes: Slots,
        scores: dict[str, Any],
        curves: dict[str, torch.Tensor],
    ) -> None:
        """One map's metrics for a batch (a row per image and class): into ``scores`` and ``curves``."""
        o, chunk = self.options, self.batch_size
        if "deletion" in o.metrics or "insertion" in o.metrics:
            c = deletion_insertion(
                model,
                xs,
                m,
                classes,
                steps=o.steps,
                deletion_baseline=o.baseline or "zero",
                insertion_baseline=o.baseline or "blur",
                chunk=chunk,
            )
            for metric in ("deletion", "insertion"):
                if metric in o.metrics:
                    scores[f"{metric}_auc"] = getattr(c, f"{metric}_auc")
                    curves[metric] = getattr(c, metric)
        if "drop" in o.metrics:
            scores["avg_drop"], scores["increase"] = drop_increase(model, xs, m, classes, chunk)
        if "road" in o.metrics:
            r = road(model, xs, m, classes, self.percents, noise=o.road_noise, chunk=chunk)
            scores["road_morf"] = torch.stack(list(r.morf.values())).mean(0)
            scores["road_lerf"] = torch.stack(list(r.lerf.values())).mean(0)
            scores["road_combined"] = r.combined
            for q in self.percents:
                scores[f"road_morf@{q}"] = r.morf[q]
                scores[f"road_lerf@{q}"] = r.lerf[q]

    def _sanity(
        self, model: nn.Module, x: torch.Tensor, classes: torch.Tensor, signs: torch.Tensor | None
    ) -> dict[str, list[dict[str, Any]]]:
        """Per method: the cascading randomisation's steps (layer, and per image the Spearman ρ and SSIM)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for method in self.methods:

            def maps_of(m: nn.Module, method: CamMethod = method) -> torch.Tensor:
                return self._maps(m, x, classes, [method], signs)[1][method.name]

            steps = cascade(model, maps_of, self.options.sanity_steps)
            out[method.name] = [
                {
                    "step": s + 1,
                    "layer": layer,
                    "spearman": [_number(v) for v in rho],
                    "ssim": [_number(v) for v in sim],
                }
                for s, (layer, rho, sim) in enumerate(steps)
            ]
        return out

    # ----------------------------------------------------------------------------------------- write
    def write(self, item: InputFile, picture: Picture, computed: EvalScores) -> ImageResult:
        probs = computed.probs
        if computed.missing:
            raise self.plan.missing_error(item.path)
        if not bool(torch.isfinite(probs).all()):
            raise InputError(
                f"{item.path}: the model's output is not finite (NaN or Inf) for this image; check the weights"
            )
        preds = self.predictions(probs)
        return ImageResult(
            item.display, True, size=(picture.width, picture.height), predictions=preds, written=list(computed.outputs)
        )

    def records(self, result: ImageResult) -> list[Record]:
        base = {"input": result.input, **self.record_base()}
        if not result.ok:
            return [
                {**base, "method": "+".join(m.name for m in self.methods), "status": "error", "error": result.error}
            ]
        return [o.record(base) for o in result.written if isinstance(o, EvalOutput)]


def _number(value: torch.Tensor) -> float | None:
    """A score for the record: rounded, or None when it is not a number (JSON has no NaN)."""
    v = float(value)
    return round(v, 6) if math.isfinite(v) else None


def evaluate_files(
    inputs: Sequence[str],
    options: EvalOptions | None = None,
    *,
    on_result: ResultCallback | None = None,
    on_error: ResultCallback | None = None,
    model: LoadedModel | None = None,
) -> Iterator[ImageResult]:
    """Python API: measure the maps of ``options.methods`` on files/folders; yields a result per input, whose
    ``written`` holds one :class:`EvalOutput` per method (and baseline) and class."""
    job = EvaluateJob(options or EvalOptions(), model)
    yield from run_job(job, inputs, on_result=on_result, on_error=on_error)
