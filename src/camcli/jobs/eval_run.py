"""What a `camcli evaluate` run is, apart from what it computes (:mod:`camcli.jobs.evaluate`): its methods,
metrics, targets and ground truth (chosen and checked before any image is read), the header and settings it prints
and records, the maps each input gets a record for, and which inputs a resumed run has measured already."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..engine.layers import LayerInfo
from ..engine.targets import Target
from ..errors import UsageError
from ..io.inputs import InputFile, input_key
from ..io.manifest import manifest_name
from ..methods import CamMethod, for_model, get_methods, left_out_note
from ..metrics import BASELINE_MAPS
from ..models import LoadedModel
from ..options import DEFAULT_METHOD, EvalOptions
from .eval_summary import matching_records
from .eval_truth import BatchTruth, GroundTruth, check_truth_options, fingerprint
from .job import Job
from .results import EvalOutput
from .targeting import TargetPlan, plan_targets

# settings the truth pictures are not tagged with: those that change the scores but not the pictures (a rerun with
# another --metric or --tolerance into the same --out redraws them instead of refusing), and the ground truth's
# file (edited, or another file of the same images: the newer outline replaces the older)
SCORING_ONLY = (
    *("metrics", "steps", "baseline", "road_percents", "road_noise", "sanity", "sanity_steps", "tolerance"),
    *("iou_threshold", "score_batch", "batch_size", "annotations", "annotations_digest", "annotation_classes"),
)


@dataclass
class EvalScores:
    """What :meth:`EvaluateJob.compute` hands to :meth:`EvaluateJob.write` for one image."""

    probs: torch.Tensor  # (num_classes,)
    outputs: list[EvalOutput]
    missing: bool = False  # --targets-file names no target for this image
    truth_error: str | None = None  # --annotations: why this image's annotation cannot be used
    pictures: list[tuple[EvalOutput, Any, BatchTruth, int]] = field(default_factory=list)  # (output, map, truth, row)


class EvalRun(Job[EvalScores]):
    """What an evaluate run is: its methods, metrics, targets and ground truth, its header, settings and records' base,
    and which inputs it has measured (:class:`~camcli.jobs.evaluate.EvaluateJob` computes and writes)."""

    options: EvalOptions
    label = "evaluating"
    manifest_stem = "metrics"

    def __init__(self, options: EvalOptions, model: LoadedModel | None = None) -> None:
        self.options = options
        self._measured: set[tuple[int, str, Any]] | None = None  # (input, map, target) recorded with these settings
        super().__init__(options, model)

    def picture_settings(self) -> dict[str, Any]:
        """The truth pictures carry what they show, not how they are scored."""
        return {k: v for k, v in self.run_settings.items() if k not in SCORING_ONLY}

    def prepare_options(self) -> None:
        self.methods: list[CamMethod] = get_methods(self.options.methods or [DEFAULT_METHOD])
        self.percents = self.options.percents()
        self.metrics = [] if self.options.sanity else self.options.chosen_metrics()
        self.truth: GroundTruth | None = None
        if self.options.annotations is not None:
            check_truth_options(self.options)
            self.truth = GroundTruth.of(self.options)

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
        if self.truth is not None:
            self.truth.match(self.plan.names)
        if "random-logit" in self.metrics and len(self.plan.names) < 2:
            raise UsageError(
                f"--metric random-logit compares the maps of two classes; {self.model.name} has one output"
            )

    def class_name(self, index: int) -> str:
        return self.plan.class_name(index)

    def value_label(self) -> str:
        return self.plan.value_label()

    def header(self) -> str:
        o = self.options
        what = "sanity check" if o.sanity else "metrics " + ", ".join(self.metrics)
        if self.truth is not None:
            what += f" · {self.truth.header()}"
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
            "metrics": self.metrics,
            **self.truth_settings(),
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

    def truth_settings(self) -> dict[str, Any]:
        """The ground truth's settings (none without --annotations: the records of earlier runs still match)."""
        o = self.options
        if self.truth is None:
            return {}
        return {  # the files' contents, not their paths: a rerun from elsewhere matches, an edited file does not
            "annotations": self.truth.annotations.path.name,
            "annotations_digest": fingerprint(self.truth.annotations.path),
            "annotation_classes": fingerprint(Path(o.annotation_classes)) if o.annotation_classes else None,
            "tolerance": o.tolerance if "pointing" in self.metrics else None,
            "iou_threshold": o.iou_threshold if "iou" in self.metrics else None,
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
        return manifest_name(self.options.resolved_shard(), kind).removesuffix(".jsonl") + ".png"

    def forwards_per_image(self) -> dict[str, int]:
        """Forward passes each map costs per image and class (besides the one that made the maps): a curve's
        points, the masked input and its reference, ROAD's imputed inputs and its reference."""
        o, metrics = self.options, self.metrics
        n = 0
        n += (o.steps + 1) if "deletion" in metrics else 0
        n += (o.steps + 1) if "insertion" in metrics else 0
        n += 2 if "drop" in metrics else 0
        n += 1 + 2 * len(self.percents) if "road" in metrics else 0
        return dict.fromkeys(self.row_names(), n)

    def outputs_exist(self, item: InputFile) -> bool:
        """No files, only records: done when every map of this run has an ok record for the input made with
        these settings (another --steps, --method or --layer measures it again)."""
        if self._measured is None:
            self._measured = set()
            o, base = self.options, self.record_base()
            for name in dict.fromkeys(
                [f"{self.manifest_stem}.jsonl", manifest_name(o.resolved_shard(), self.manifest_stem)]
            ):
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
