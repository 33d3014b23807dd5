"""The parameters of the methods that have some (pixel attribution, RISE, SmoothGrad, the random map), as a plain
dataclass: what ``--steps --baseline --window --stride --masks --samples --seed --signed`` set, and what the
Python API takes as ``CamOptions(method_params=MethodParams(...))``.

Torch-free, like :mod:`camcli.options`. Each method reads only the fields it uses (:data:`USED_BY`), and only
those of the methods asked for go into output names and records (:meth:`MethodParams.named`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import at_least, at_most, finite
from .errors import UsageError

#: the names --method takes (camcli.methods.REGISTRY's, in its order; here so that --help needs no torch, and a
#: test keeps the two in step)
METHOD_NAMES = (
    # CAMs
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "scorecam",
    "eigencam",
    "cam",
    *("sscam", "iscam", "ablationcam", "segeigencam"),
    "refinecam",
    *("eigengradcam", "gradcamelementwise", "kpcacam", "shapleycam", "fullgrad", "random"),
    # target refiners
    "finercam",
    # transformer
    "rollout",
    "gradrollout",
    "legrad",
    # pixel attribution
    "saliency",
    *("ig", "smoothgrad", "occlusion", "rise"),
)
#: what an attribution's reference input is (Integrated Gradients' path start, Occlusion's fill): ``zero`` the
#: model input's zeros (for a model normalised by the dataset's mean and std: the mean colour), ``black`` a black
#: picture as the model's preprocessing makes it, ``blur`` the input blurred (a Gaussian of σ = 1/20 of its size)
ATTRIBUTION_BASELINES = ("zero", "black", "blur")
MAX_STEPS = 4096  # --steps: Integrated Gradients' path (each step is a forward and backward pass)
MAX_MASKS = 100_000  # --masks: RISE's random masks (each one is a forward pass)
MAX_SAMPLES = 10_000  # --samples, --sscam-samples, --iscam-steps: noisy copies or path points (each costs forwards)
MAX_SEED = 2**32 - 1  # --seed: what every random generator camcli uses accepts
MAX_WINDOW = 4096  # --window, --stride: Occlusion's patch and step, in model-input pixels
MAX_FINER_ALPHA = 100.0  # --finer-alpha: the references use 0.6 and 1; far beyond, the class's own score is lost
MAX_FINER_COMPARE = 1000  # --finer-compare: the rivals (at most the model's other classes in any case)
#: --finer-base: the layer methods that use gradients (Finer-CAM explains its refined score with one of them)
FINER_BASES = (
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigengradcam",
    "gradcamelementwise",
    "shapleycam",
    "segeigencam",
)
#: --refine-base: the layer methods whose maps RefineCAM multiplies across layers (not shapleycam: it takes gradients
#: of its own, from a graph RefineCAM does not keep)
REFINE_BASES = (
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "scorecam",
    "eigencam",
    "cam",
    "eigengradcam",
    "gradcamelementwise",
    "kpcacam",
    "random",
    "sscam",
    "iscam",
    "ablationcam",
    "segeigencam",
)


@dataclass
class MethodParams:
    """Parameters of the methods that take some; every method reads the fields it needs (:data:`USED_BY`)."""

    steps: int = 50  # ig: points on the straight path from the baseline to the input (captum's default)
    baseline: str = "zero"  # ig, occlusion: see ATTRIBUTION_BASELINES
    window: int = 32  # occlusion: the side of the square patch, in model-input pixels
    stride: int | None = None  # occlusion: the patch's step; None: half the window
    masks: int = 2000  # rise: random masks
    samples: int = 25  # smoothgrad: noisy copies of the input
    noise: float = 0.15  # smoothgrad: noise std as a fraction of the input's range (max − min)
    seed: int = 0  # rise, smoothgrad, random: the random numbers' seed (same seed, same map)
    signed: bool = False  # ig, smoothgrad, occlusion: with --save-raw, also the signed attribution (.signed.npy)
    finer_base: str = "gradcam"  # finercam: the method that explains the refined score (FINER_BASES)
    finer_alpha: float = 1.0  # finercam: how much of the rivals' scores is taken away (pytorch-grad-cam's α)
    finer_compare: int = 3  # finercam: the rivals, the classes whose scores are closest to the class's
    refine_base: str = "gradcam++"  # refinecam: the method whose maps of each layer are multiplied (REFINE_BASES)
    sscam_samples: int = 35  # sscam: noisy copies of every mask (torchcam's num_samples; C forwards each)
    iscam_steps: int = 10  # iscam: points on the path of growing masks (torchcam's num_samples; C forwards each)

    def check(self, steps: str = "--steps", baseline: str = "--baseline", save_raw: bool | None = None) -> None:
        """Raise :class:`UsageError` for an out-of-range parameter (``steps``, ``baseline``: those options' names,
        which are ``--attr-steps``/``--attr-baseline`` in ``camcli evaluate``; ``save_raw``: whether the run writes
        .npy files, which ``--signed`` needs; None: not known)."""
        if self.signed and save_raw is False:
            raise UsageError("--signed writes the signed attribution beside each map's .npy: add --save-raw")
        at_least(steps, self.steps, 1)
        at_most(steps, self.steps, MAX_STEPS)
        if self.baseline not in ATTRIBUTION_BASELINES:
            raise UsageError(f"{baseline} {self.baseline!r}: use {', '.join(ATTRIBUTION_BASELINES)}")
        at_least("--window", self.window, 1)
        at_most("--window", self.window, MAX_WINDOW)
        at_least("--stride", self.stride, 1)
        at_most("--stride", self.stride, MAX_WINDOW)
        at_least("--masks", self.masks, 1)
        at_most("--masks", self.masks, MAX_MASKS)
        at_least("--samples", self.samples, 1)
        at_most("--samples", self.samples, MAX_SAMPLES)
        at_least("--sscam-samples", self.sscam_samples, 1)
        at_most("--sscam-samples", self.sscam_samples, MAX_SAMPLES)
        at_least("--iscam-steps", self.iscam_steps, 1)
        at_most("--iscam-steps", self.iscam_steps, MAX_SAMPLES)
        finite("--noise", self.noise)
        at_least("--noise", self.noise, 0)
        at_least("--seed", self.seed, 0)
        at_most("--seed", self.seed, MAX_SEED)
        for flag, base, bases in (
            ("--finer-base", self.finer_base, FINER_BASES),
            ("--refine-base", self.refine_base, REFINE_BASES),
        ):
            if base not in bases:
                raise UsageError(f"{flag} {base!r}: use {', '.join(bases)}")
        finite("--finer-alpha", self.finer_alpha)
        at_least("--finer-alpha", self.finer_alpha, 0)
        at_most("--finer-alpha", self.finer_alpha, MAX_FINER_ALPHA)
        at_least("--finer-compare", self.finer_compare, 1)
        at_most("--finer-compare", self.finer_compare, MAX_FINER_COMPARE)

    @property
    def occlusion_stride(self) -> int:
        return self.stride if self.stride is not None else max(1, self.window // 2)

    def used(self, methods: list[str]) -> dict[str, object]:
        """The parameters the named methods read, with their values (for records and the header)."""
        fields = [f for m in methods for f in USED_BY.get(m, ())]
        out: dict[str, object] = {}
        for f in fields:
            out[f] = self.occlusion_stride if f == "stride" else getattr(self, f)
        return out

    def setting(self, methods: list[str]) -> dict[str, dict[str, object]]:
        """``{"method_params": {...}}`` for a run's settings, or nothing when no method asked for takes any (so the
        settings of runs without such methods stay what they were)."""
        used = self.used(methods)
        return {"method_params": used} if used else {}

    def note(self, methods: list[str]) -> str:
        """`` · sscam-samples 2, masks 500`` for a run's header: the parameters set away from their defaults."""
        named = self.named(methods)
        return " · " + ", ".join(f"{k} {v}" for k, v in named) if named else ""

    def named(self, methods: list[str]) -> list[tuple[str, str]]:
        """(name, value) of each parameter the methods read that differs from its default (for output names)."""
        default = MethodParams()
        out = []
        for f, value in self.used(methods).items():
            if f == "signed":
                continue  # an extra file, not a different picture
            base = default.occlusion_stride if f == "stride" and default.stride is None else getattr(default, f)
            if f == "stride" and self.stride is None:
                continue
            if value != base:
                out.append((f.replace("_", "-"), f"{value:g}" if isinstance(value, float) else str(value)))
        return out


#: which parameters each method reads (its class's ``params``, written out here so that options need no torch; a test
#: keeps the two in step)
USED_BY: dict[str, tuple[str, ...]] = {
    "rollout": (),
    "gradrollout": (),
    "legrad": (),
    "ig": ("steps", "baseline", "signed"),
    "saliency": (),
    "smoothgrad": ("samples", "noise", "seed", "signed"),
    "occlusion": ("window", "stride", "baseline", "signed"),
    "rise": ("masks", "seed"),
    "random": ("seed",),
    "finercam": ("finer_base", "finer_alpha", "finer_compare"),
    "refinecam": ("refine_base",),
    "sscam": ("sscam_samples", "seed"),
    "iscam": ("iscam_steps",),
}
