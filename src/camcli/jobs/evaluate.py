"""`camcli evaluate`: how faithful each method's map is, beside maps that explain nothing (camcli.metrics).

Per batch: one forward and backward pass gives every method's map (:func:`~camcli.methods.explain`); the maps
are upsampled to the model's input size; every metric's perturbed inputs go through the model ``--batch-size``
at a time. Per image, method and class one record goes to ``OUT/metrics.jsonl``; the job writes no other file
per image (the summary table and the plots are made from the records at the end, :mod:`camcli.jobs.eval_summary`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..engine.scoring import Slots
from ..engine.targets import Target
from ..errors import InputError
from ..io.inputs import InputFile
from ..io.outputs import cam_output_path, owner_tag
from ..io.picture import Picture
from ..methods import CamMethod, explain, upsample_normalized
from ..methods.costs import counting_forwards
from ..metrics import (
    BASELINE_MAPS,
    baseline_maps,
    cascade,
    deletion_insertion,
    drop_increase,
    other_classes,
    road,
)
from ..steps import counting
from .eval_run import EvalRun, EvalScores
from .eval_truth import BatchTruth, map_scores, truth_picture
from .results import EvalOutput, ImageResult, Record


class EvaluateJob(EvalRun):
    """Measures the maps of one or more methods (and the baseline maps) with the chosen metrics."""

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
        truth: BatchTruth | None = None
        if o.sanity:
            sanity = self._sanity(model, x, ex.classes, ex.signs)
        else:  # the perturbed inputs are counted as they go through the model: progress inside the batch
            with counting("perturbed inputs", sum(self.forwards_per_image().values()) * xs.shape[0]):
                for name, (m, _) in rows.items():
                    self._measure(model, xs, m, classes, scores[name], curves[name])
            truth = self._map_scores(model, x, ex.classes, ex.signs, rows, scores)
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
            scored = EvalScores(ex.probs[i].cpu(), outputs, missing[i])
            if truth is not None:
                scored.truth_error = truth.errors[i]
                n = len(rows)
                scored.pictures = (
                    []
                    if not o.truth_overlays
                    else [
                        (output, rows[output.method][0][i * k + j // n].cpu(), truth, i * k + j // n)
                        for j, output in enumerate(outputs)
                        if not output.baseline and truth.regions[i * k + j // n]  # (a row with ground truth)
                    ]
                )
            out.append(scored)
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
        o, chunk, metrics = self.options, self.batch_size, self.metrics
        if "deletion" in metrics or "insertion" in metrics:
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
                if metric in metrics:
                    scores[f"{metric}_auc"] = getattr(c, f"{metric}_auc")
                    curves[metric] = getattr(c, metric)
        if "drop" in metrics:
            scores["avg_drop"], scores["increase"] = drop_increase(model, xs, m, classes, chunk)
        if "road" in metrics:
            r = road(model, xs, m, classes, self.percents, noise=o.road_noise, chunk=chunk)
            scores["road_morf"] = torch.stack(list(r.morf.values())).mean(0)
            scores["road_lerf"] = torch.stack(list(r.lerf.values())).mean(0)
            scores["road_combined"] = r.combined
            for q in self.percents:
                scores[f"road_morf@{q}"] = r.morf[q]
                scores[f"road_lerf@{q}"] = r.lerf[q]

    def _map_scores(
        self,
        model: nn.Module,
        x: torch.Tensor,
        classes: torch.Tensor,
        signs: torch.Tensor | None,
        rows: dict[str, tuple[torch.Tensor, bool]],
        scores: dict[str, dict[str, Any]],
    ) -> BatchTruth | None:
        """The scores read off the maps (a row per image and class) into ``scores``: localisation against the ground
        truth (returned, for the pictures), complexity, and random-logit (the maps of a random other class)."""
        o, metrics = self.options, self.metrics
        truth = None
        if self.truth is not None:
            grid = (int(x.shape[-2]), int(x.shape[-1]))
            truth = self.truth.batch(self.batch_inputs, self.picture_sizes, classes, grid, o.max_size, x.device)
        other: dict[str, torch.Tensor] = {}
        if "random-logit" in metrics:
            spent = self.map_forwards  # (what the maps cost is the explained class's)
            others = other_classes(classes.flatten(), len(self.plan.names), o.method_params.seed).view_as(classes)
            other = self._maps(model, x, others.to(classes.device), self.methods, signs)[1]
            self.map_forwards = spent
        for name, (m, _) in rows.items():
            scores[name] |= map_scores(m, other.get(name), truth, metrics, o.tolerance, o.iou_threshold)
        return truth

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
        if computed.truth_error is not None:
            raise InputError(computed.truth_error)
        self._truth_pictures(item, picture, computed)  # (none without --truth-overlays)
        preds = self.predictions(probs)
        return ImageResult(
            item.display, True, size=(picture.width, picture.height), predictions=preds, written=list(computed.outputs)
        )

    def _truth_pictures(self, item: InputFile, picture: Picture, computed: EvalScores) -> None:
        """Each method's map of each class with the ground truth's outline (``a.jpg.gradcam.truth.281-cat.png``),
        named in the output's record."""
        for output, cam, truth, row in computed.pictures:
            path = cam_output_path(
                self.options.out, item, f"{output.method}.truth", output.class_index, output.class_name, self.ext
            )
            self.save_picture(
                path, truth_picture(picture.pil(), cam, truth.regions[row], truth.frames[row]), owner_tag(item)
            )
            output.outputs["overlay"] = str(path)

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
