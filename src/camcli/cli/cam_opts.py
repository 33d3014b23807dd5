"""Options of the CAM commands that other commands share (``--method``, ``--target``), and the detector and
segmenter options of ``gradcam``/``cam`` (:class:`ObjectArgs`, a group expanded by
:func:`camcli.cli.params.shared_options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from ..checks import HEADS, TargetFields
from ..method_params import ATTRIBUTION_BASELINES, FINER_BASES, REFINE_BASES, MethodParams
from ..options import DEFAULT_METHOD, METHOD_NAMES, CamOptions, EvalOptions
from .completion import EXPLAIN, complete_method
from .params import GROUPS, option

OBJECTS = "Detectors and segmenters"


def method_option(what: str) -> Any:  # --method (repeatable), its help introduced by ``what``
    return typer.Option(
        "--method",
        help=f"{what}: {', '.join(METHOD_NAMES)}, or all: every method that applies to the model (camcli methods). "
        f"\\[default: {DEFAULT_METHOD}]",
        metavar="METHOD",
        autocompletion=complete_method,
        rich_help_panel=EXPLAIN,
    )


def target_option(default: str) -> Any:  # --target/-t (repeatable); ``default``: the classes without it
    return typer.Option(
        "--target",
        "-t",
        help="Class index or name to explain, repeatable; not:CLASS explains what speaks against it (lowers it). "
        f"\\[default: {default}]",
        metavar="CLASS",
        rich_help_panel=EXPLAIN,
    )


@dataclass(frozen=True)
class ObjectArgs:
    """``--min-score --max-objects --box --iou --mask --region --norm-in-box``: which objects of a detector or
    segmenter are explained."""

    min_score: float
    max_objects: int
    box: str | None
    iou: float
    mask: str | None
    region: str | None
    norm_in_box: bool

    def apply_to(self, options: CamOptions) -> None:
        options.min_score = self.min_score
        options.max_objects = self.max_objects
        options.box = self.box
        options.iou = self.iou
        options.mask = self.mask
        options.region = self.region
        options.norm_in_box = self.norm_in_box


def _opt(*names: str, help: str, metavar: str | None = None) -> Any:
    return typer.Option(*names, help=help, metavar=metavar, rich_help_panel=OBJECTS)


GROUPS[ObjectArgs] = [
    option(
        "min_score",
        Annotated[float, _opt("--min-score", help="Detectors: explain detections scoring at least this.")],
        CamOptions.min_score,
    ),
    option(
        "max_objects",
        Annotated[int, _opt("--max-objects", help="At most N objects (detections, segmented classes) per image.")],
        CamOptions.max_objects,
    ),
    option(
        "box",
        Annotated[
            str | None,
            _opt("--box", metavar="X1,Y1,X2,Y2", help="Detectors: explain the detection matching this box (--iou)."),
        ],
        None,
    ),
    option("iou", Annotated[float, _opt("--iou", help="--box matches a detection with at least this IoU.")], 0.5),
    option(
        "mask",
        Annotated[str | None, _opt("--mask", metavar="PNG", help="Segmenters: explain the class over these pixels.")],
        None,
    ),
    option(
        "region",
        Annotated[
            str | None, _opt("--region", metavar="X1,Y1,X2,Y2", help="Segmenters: explain the class over this box.")
        ],
        None,
    ),
    option(
        "norm_in_box",
        Annotated[bool, _opt("--norm-in-box", help="Detectors: normalise each object's map inside its box.")],
        False,
    ),
]


TARGETS = "Heads and targets"


@dataclass(frozen=True)
class TargetArgs:
    """``--head --threshold --reference --prompt --targets-file``: how the model's outputs read, and what is
    explained besides ``--target`` (the README's "Heads and targets")."""

    head: str | None
    threshold: float | None
    reference: list[str] | None
    prompt: list[str] | None
    targets_file: str | None

    def apply_to(self, options: TargetFields) -> None:
        options.head = self.head.strip().lower() if self.head else None
        options.threshold = self.threshold
        options.references = list(self.reference or [])
        options.prompts = list(self.prompt or [])
        options.targets_file = self.targets_file


def _t(*names: str, help: str, metavar: str | None = None) -> Any:
    return typer.Option(*names, help=help, metavar=metavar, rich_help_panel=TARGETS)


GROUPS[TargetArgs] = [
    option(
        "head",
        Annotated[
            str | None,
            _t(
                "--head",
                metavar="|".join(HEADS),
                help="How the outputs read as probabilities: softmax (one class), sigmoid (binary and multi-label), "
                "identity (raw values: regression). \\[default: as the model says; one output: sigmoid]",
            ),
        ],
        None,
    ),
    option(
        "threshold",
        Annotated[
            float | None,
            _t("--threshold", metavar="P", help="Multi-label: explain every label whose sigmoid is at least P."),
        ],
        None,
    ),
    option(
        "reference",
        Annotated[
            list[str] | None,
            _t(
                "--reference",
                metavar="IMG",
                help="Explain what makes the input similar to this picture (cosine of the embeddings); repeatable: "
                "several average into one concept.",
            ),
        ],
        None,
    ),
    option(
        "prompt",
        Annotated[
            list[str] | None,
            _t(
                "--prompt",
                metavar="TEXT",
                help='CLIP-style models: explain the similarity to this text ("a photo of a cat"); repeatable.',
            ),
        ],
        None,
    ),
    option(
        "targets_file",
        Annotated[
            str | None,
            _t(
                "--targets-file",
                metavar="FILE",
                help="One target per image: a CSV with the header input,target (or JSON lines with those keys).",
            ),
        ],
        None,
    ),
]


PARAMS = "Method parameters"


@dataclass(frozen=True)
class MethodArgs:
    """``--steps --baseline --window --stride --masks --samples --seed --signed``: the parameters of the methods that
    take some (:class:`camcli.method_params.MethodParams`)."""

    attr_steps: int
    attr_baseline: str
    window: int
    stride: int | None
    masks: int
    samples: int
    seed: int
    signed: bool
    finer_base: str
    finer_alpha: float
    finer_compare: int
    refine_base: str
    sscam_samples: int
    iscam_steps: int

    def apply_to(self, options: CamOptions | EvalOptions, noise: float | None = None) -> None:
        """Set ``options.method_params`` (``noise``: --noise, which SmoothGrad shares with --smooth)."""
        options.method_params = MethodParams(
            steps=self.attr_steps,
            baseline=self.attr_baseline,
            window=self.window,
            stride=self.stride,
            masks=self.masks,
            samples=self.samples,
            noise=MethodParams.noise if noise is None else noise,
            seed=self.seed,
            signed=self.signed,
            finer_base=self.finer_base,
            finer_alpha=self.finer_alpha,
            finer_compare=self.finer_compare,
            refine_base=self.refine_base,
            sscam_samples=self.sscam_samples,
            iscam_steps=self.iscam_steps,
        )


@dataclass(frozen=True)
class EvalMethodArgs(MethodArgs):
    """:class:`MethodArgs` in ``evaluate``, where ``--steps`` and ``--baseline`` are the deletion curve's: there
    they are ``--attr-steps`` and ``--attr-baseline``."""


def _p(*names: str, help: str, metavar: str | None = None) -> Any:
    return typer.Option(*names, help=help, metavar=metavar, rich_help_panel=PARAMS)


def _method_params(steps: tuple[str, ...], baseline: tuple[str, ...]) -> list[Any]:
    d = MethodParams()
    return [
        option(
            "attr_steps",
            Annotated[int, _p(*steps, help="ig: steps on the path from the baseline to the input.")],
            d.steps,
        ),
        option(
            "attr_baseline",
            Annotated[
                str,
                _p(
                    *baseline,
                    metavar="|".join(ATTRIBUTION_BASELINES),
                    help="ig, occlusion: the reference input (zero: the model input's zeros; black: a black picture; "
                    "blur: the input blurred).",
                ),
            ],
            d.baseline,
        ),
        option(
            "window", Annotated[int, _p("--window", help="occlusion: patch side, in model-input pixels.")], d.window
        ),
        option(
            "stride",
            Annotated[int | None, _p("--stride", help="occlusion: patch step. \\[default: half the window]")],
            None,
        ),
        option("masks", Annotated[int, _p("--masks", help="rise: random masks (a forward pass each).")], d.masks),
        option("samples", Annotated[int, _p("--samples", help="smoothgrad: noisy copies (with --noise).")], d.samples),
        option("seed", Annotated[int, _p("--seed", help="rise, smoothgrad, random: the random seed.")], d.seed),
        option(
            "signed",
            Annotated[
                bool,
                _p("--signed", help="ig, smoothgrad, occlusion: with --save-raw, also the signed attribution (.npy)."),
            ],
            d.signed,
        ),
        option(
            "finer_base",
            Annotated[
                str,
                _p(
                    "--finer-base",
                    metavar="METHOD",
                    help=f"finercam: the method that explains the refined score: {', '.join(FINER_BASES)}.",
                ),
            ],
            d.finer_base,
        ),
        option(
            "finer_alpha",
            Annotated[float, _p("--finer-alpha", help="finercam: how much of the rivals' scores is taken away.")],
            d.finer_alpha,
        ),
        option(
            "finer_compare",
            Annotated[int, _p("--finer-compare", help="finercam: rivals, the classes scored closest to the class.")],
            d.finer_compare,
        ),
        option(
            "refine_base",
            Annotated[
                str,
                _p(
                    "--refine-base",
                    metavar="METHOD",
                    help=f"refinecam: the method whose layer maps are multiplied: {', '.join(REFINE_BASES)}.",
                ),
            ],
            d.refine_base,
        ),
        option(
            "sscam_samples",
            Annotated[int, _p("--sscam-samples", help="sscam: noisy copies of every mask (each costs C forwards).")],
            d.sscam_samples,
        ),
        option(
            "iscam_steps",
            Annotated[int, _p("--iscam-steps", help="iscam: points on the path of growing masks (C forwards each).")],
            d.iscam_steps,
        ),
    ]


GROUPS[MethodArgs] = _method_params(("--steps",), ("--baseline",))
GROUPS[EvalMethodArgs] = _method_params(("--attr-steps",), ("--attr-baseline",))
