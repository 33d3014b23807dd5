"""What every method shares: the method's class, what it is given (:class:`Context`), its result
(:class:`Explanation`), and normalising and resizing maps. Running methods on a batch is
:mod:`camcli.methods.explain`.

A method subclasses :class:`CamMethod` and supplies its channel weights (or, for methods that are not a
weighted sum of channels, its raw map). Everything else lives here and there, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.hooks import Captured, eval_mode
from ..engine.scoring import Scorer
from ..method_params import MethodParams


@dataclass
class Context:
    """What a method may need besides activations and gradients (Score-CAM and CAM use it)."""

    model: nn.Module
    x: torch.Tensor
    layer: str
    classes: torch.Tensor  # (B,) class explained in this slot
    score_batch: int = 32
    cache: dict[str, Any] = field(default_factory=dict)  # shared across the K classes of one batch
    captured: Captured | None = None
    scorer: Scorer = field(default_factory=Scorer)  # the model's output → scores (logits, similarities)
    signs: torch.Tensor | None = None  # (B,) −1 where the slot's target is negated (not:), else +1
    params: MethodParams = field(default_factory=MethodParams)  # --steps, --masks, --seed …
    # methods with ``needs_graph``: the explained scalar (summed over the batch) and the layer's output as the model
    # gave it (not laid out as a grid), both still in the autograd graph, for gradients of their own
    score: torch.Tensor | None = None
    activation: torch.Tensor | None = None
    # and (also for them) the (B, N) scores, still in the graph, and what lays out a tensor shaped like the layer's
    # output as its (B, C, h, w) grid (a gradient of the activation); Finer-CAM refines the explained scalar with them
    output_scores: torch.Tensor | None = None
    grid: Callable[[torch.Tensor], torch.Tensor] | None = None

    def run(self, x: object) -> object:
        """The model's output for an extra input, with the capture hooks standing aside, under inference mode."""
        with torch.inference_mode(), eval_mode(self.model):
            if self.captured is None:
                return self.model(x)
            with self.captured.paused():
                return self.model(x)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (logits, or similarities) for an extra batch (see :meth:`run`)."""
        return self.scorer.scores(self.run(x)).float()

    def signed(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (B, …) with each row negated where the slot's target is (``not:``)."""
        if self.signs is None:
            return values
        return values * self.signs.to(values.device, values.dtype).view(-1, *([1] * (values.dim() - 1)))


#: the families ``camcli methods`` groups methods by
FAMILIES = ("CAM", "target refiner", "transformer", "pixel attribution")


class CamMethod:
    """A class-activation-map method: a map at one layer's grid, from its activations (and gradients).

    Subclasses set the class attributes and override :meth:`weights` (channel weights, shape (B, C)) or,
    when the map is not a weighted sum of channels, :meth:`raw_map`. Methods whose map is not made at a layer
    (pixel attribution, attention rollout) derive from :class:`camcli.methods.whole.ModelMethod` instead.
    """

    name: str = ""
    summary: str = ""
    paper: str = ""
    family: str = "CAM"  # one of FAMILIES
    needs_grad: bool = True
    needs_graph: bool = False  # the method takes gradients of its own from Context.score / Context.activation
    cost: str = "≈1 forward"
    scope: str = "layer"  # "layer": made at the chosen layer(s); "model": from the whole model (ModelMethod)
    params: tuple[str, ...] = ()  # the MethodParams fields it reads (camcli.method_params.USED_BY)
    on_objects: bool = False  # it explains detectors' and segmenters' objects too (camcli.methods.objects)
    min_layers: int = 1  # the layers it needs at once (a method that fuses layers its own way: see fuse)
    # it explains a video's or volume's (B, C, D, H, W) layers too (camcli.methods.volume): its map is made from the
    # layer's grid alone (sums, means, products and principal components over positions), so it is the same formula
    # on a grid folded to (B, C, D·H, W); False for methods that need the input's 2-D size (masks, ablation)
    volumes: bool = False

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        """(B, C, h, w) activations and gradients → (B, h, w) map before ReLU and normalisation."""
        w = self.weights(acts, grads)
        return torch.einsum("bc,bchw->bhw", w, acts)

    def refusal(self, model: nn.Module, layers: list[str]) -> str | None:
        """Why this method cannot explain ``model`` at ``layers`` (for ``--method all``, which leaves it out and says
        why), or None. Checked without running the model; a method may still refuse later, in one line."""
        if self.scope == "layer" and len(layers) < self.min_layers:
            return f"fuses {self.min_layers} or more --layer"
        return None

    def fuse(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Several layers' (B, K, h, w) maps in [0, 1] → one (B, K, H, W) map at the input's ``size``: their mean,
        upsampled, normalised again (a method with a fusion rule of its own overrides this)."""
        return normalize(torch.stack([upsample(m, size) for m in maps]).mean(0))


@dataclass
class Explanation:
    """Result of :func:`explain` for one batch.

    Attributes:
        logits: (B, N) scores: the model's outputs, or similarities (:class:`~camcli.engine.scoring.Scorer`).
        probs: (B, N) the scores as the head reads them (softmax, sigmoid or the values themselves).
        classes: (B, K) class index explained in each slot.
        by_method: (B, K, h, w) maps in [0, 1] per method name, in the order asked for (float32, CPU): at the
            layer's resolution for one layer; at the input's resolution when several layers are fused. A video's or
            volume's (:func:`~camcli.methods.volume.explain_volume`): (B, K, D, H, W) at the input's resolution.
        per_layer: {(method, layer): (B, K, h, w)} each layer's own map (several layers only; a video's or volume's
            (B, K, d, h, w) layer map always).
        signed: {method: (B, K, H, W)} with ``MethodParams.signed``: a pixel attribution's signed values summed
            over the colour channels, at the input's resolution, not normalised (ig, smoothgrad, occlusion).
    """

    logits: torch.Tensor
    probs: torch.Tensor
    classes: torch.Tensor
    by_method: dict[str, torch.Tensor]
    per_layer: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    signs: torch.Tensor | None = None  # (B, K) −1 where the slot's target is negated; None: none is
    valid: torch.Tensor | None = None  # (B, K) False for slots that only pad a batch (--threshold); None: all are
    signed: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def maps(self) -> torch.Tensor:
        """The first method's maps (the only ones when one method was asked for)."""
        return next(iter(self.by_method.values()))


def normalize(maps: torch.Tensor, rel_eps: float = 1e-6) -> torch.Tensor:
    """ReLU, then min-max normalise each map over its last two dims to [0, 1]; a constant map → zeros.

    "Constant" is relative (span ≤ 1e-6 · max |value|), so maps of any scale normalise the same way: a
    randomly initialised network's map of 1e-11 is as valid as one of 1e3.
    """
    m = maps.clamp_min(0)
    flat = m.flatten(-2)
    lo = flat.min(-1).values[..., None, None]
    hi = flat.max(-1).values[..., None, None]
    span = hi - lo
    flat_enough = span <= rel_eps * hi.abs()
    safe = torch.where(flat_enough, torch.ones_like(span), span)
    return torch.where(flat_enough, torch.zeros_like(m), (m - lo) / safe)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (..., h, w) maps to ``size`` (H, W), staying in [0, 1]."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size).clamp_(0, 1)


def upsample_normalized(maps: torch.Tensor, size: tuple[int, int], rel_eps: float = 1e-6) -> torch.Tensor:
    """``normalize(upsample(maps, size))`` for one (h, w) map, with the same arithmetic but in place: one min/max
    pass and two in-place passes over the full-size map instead of several full-size temporaries (a 12-MP
    photo's map is 48 MB)."""
    up = upsample(maps, size)  # already in [0, 1]: the ReLU of normalize changes nothing
    lo, hi = torch.aminmax(up)
    span = hi - lo
    if bool(span <= rel_eps * hi.abs()):
        return up.zero_()
    return up.sub_(lo).div_(span)
