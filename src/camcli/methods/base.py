"""The shared steps of every CAM method: forward with hooks, gradients, weighted sum, ReLU, normalise, fuse.

A method subclasses :class:`CamMethod` and supplies its channel weights (or, for methods that are not a
weighted sum of channels, its raw map). Everything else lives here, once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.hooks import Captured, capture, eval_mode
from ..engine.layers import resolve
from ..engine.layouts import to_grid
from ..engine.scoring import Scorer, choose
from ..engine.targets import Target
from ..errors import LayerError
from ..options import Layout
from ..steps import report


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


class CamMethod:
    """A class-activation-map method.

    Subclasses set the class attributes and override :meth:`weights` (channel weights, shape (B, C)) or,
    when the map is not a weighted sum of channels, :meth:`raw_map`.
    """

    name: str = ""
    summary: str = ""
    paper: str = ""
    needs_grad: bool = True
    cost: str = "≈1 forward"

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        """(B, C, h, w) activations and gradients → (B, h, w) map before ReLU and normalisation."""
        w = self.weights(acts, grads)
        return torch.einsum("bc,bchw->bhw", w, acts)


@dataclass
class Explanation:
    """Result of :func:`explain` for one batch.

    Attributes:
        logits: (B, N) scores: the model's outputs, or similarities (:class:`~camcli.engine.scoring.Scorer`).
        probs: (B, N) the scores as the head reads them (softmax, sigmoid or the values themselves).
        classes: (B, K) class index explained in each slot.
        by_method: (B, K, h, w) maps in [0, 1] per method name, in the order asked for (float32, CPU): at the
            layer's resolution for one layer; at the input's resolution when several layers are fused.
        per_layer: {(method, layer): (B, K, h, w)} each layer's own map (several layers only).
    """

    logits: torch.Tensor
    probs: torch.Tensor
    classes: torch.Tensor
    by_method: dict[str, torch.Tensor]
    per_layer: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    signs: torch.Tensor | None = None  # (B, K) −1 where the slot's target is negated; None: none is
    valid: torch.Tensor | None = None  # (B, K) False for slots that only pad a batch (--threshold); None: all are

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


def as_pairs(targets: Sequence[Target | int] | None) -> list[tuple[int, bool]] | None:
    """Targets as (index, negate) pairs (a bare index is the class itself)."""
    if not targets:
        return None
    return [(t.index, t.negate) if isinstance(t, Target) else (int(t), False) for t in targets]


def explain(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | Sequence[str],
    method: CamMethod | Sequence[CamMethod],
    *,
    targets: Sequence[Target | int] | None = None,
    top_k: int = 1,
    classes: torch.Tensor | None = None,
    signs: torch.Tensor | None = None,
    score_batch: int = 32,
    layouts: Mapping[str, Layout | None] | None = None,
    scorer: Scorer | None = None,
    threshold: float | None = None,
) -> Explanation:
    """Run one or more CAM methods on a batch ``x`` (preprocessed, on the model's device) at one or more layers.

        One forward pass serves every method and layer. Only the layers after the first target layer record a
        graph; gradients come from ``torch.autograd.grad`` on the captured activations (computed once per class
        and shared by all gradient methods), so no parameter's ``.grad`` is touched. Training flags are restored
        afterwards. ``classes`` (B, K) (and ``signs`` (B, K), −1 for a negated target) override ``targets``/``top_k``
        (used by smoothing and per-image targets). ``scorer`` turns the model's output into the scores explained
        (default: the output's logits, softmax probabilities); ``threshold``: every entry at least that probable.
        ``layouts``: where each
    layer's grid is (:class:`~camcli.options.Layout`); a layer not given one has it read from its output's shape
    (:func:`camcli.engine.layouts.to_grid`), or a :class:`LayerError` when the shape cannot tell.

        Several layers: each layer's normalised map is upsampled to the input's size, the maps are averaged and
        normalised again (the fused map); each layer's own map is kept in ``per_layer``.
    """
    layers = [layer] if isinstance(layer, str) else list(layer)
    methods = [method] if isinstance(method, CamMethod) else list(method)
    if not layers or not methods:
        raise LayerError("explain needs at least one layer and one method")
    modules = {name: resolve(model, name) for name in layers}
    need_grad = any(m.needs_grad for m in methods)
    raw: dict[tuple[str, str], list[torch.Tensor]] = {(m.name, n): [] for m in methods for n in layers}
    scorer = scorer or Scorer()
    valid: torch.Tensor | None = None
    with eval_mode(model), capture(model, modules, grad=need_grad) as cap:
        with torch.no_grad():
            output = model(x)
        logits = scorer.scores(output)
        acts = cap.require(layers)
        for name, a in zip(layers, acts, strict=True):
            if a.shape[0] != x.shape[0]:
                raise LayerError(
                    f"layer '{name}' gives {a.shape[0]} rows for a batch of {x.shape[0]} (windows or heads folded "
                    "into the batch); pick the block that contains it (see: camcli layers)"
                )
        if classes is not None:
            chosen = classes.to(logits.device)
            signs = torch.ones(chosen.shape) if signs is None else signs
        else:
            chosen, signs, valid = choose(logits.detach(), scorer, as_pairs(targets), top_k, threshold)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        shapes = [(layouts or {}).get(n) for n in layers]
        kinds = [type(modules[n]).__name__ for n in layers]  # a conv's output is channels first, whatever its shape
        grids = [to_grid(a.detach(), lay, size, k).float() for a, lay, k in zip(acts, shapes, kinds, strict=True)]
        cache: dict[str, dict[str, Any]] = {n: {} for n in layers}
        k_total = chosen.shape[1]
        for k in range(k_total):
            grads: Sequence[torch.Tensor | None] = [None] * len(layers)
            if need_grad:
                if not logits.requires_grad:
                    raise LayerError(f"the model's output does not depend on layer '{layers[0]}'")
                score = scorer.explained(logits, chosen[:, k], signs[:, k]).sum()
                grads = torch.autograd.grad(score, acts, retain_graph=k < k_total - 1, allow_unused=True)
            with torch.no_grad():
                for name, a, g, lay, kind in zip(layers, grids, grads, shapes, kinds, strict=True):
                    if g is None and need_grad:
                        raise LayerError(f"the class score does not depend on layer '{name}'")
                    grad_grid = to_grid(g, lay, size, kind).float() if g is not None else torch.zeros(0)
                    ctx = Context(model, x, name, chosen[:, k], score_batch, cache[name], cap, scorer, signs[:, k])
                    for m in methods:
                        raw[(m.name, name)].append(normalize(m.raw_map(a, grad_grid, ctx)))
    with torch.no_grad():
        per_layer = {key: torch.stack(v, dim=1).cpu() for key, v in raw.items()}
        by_method: dict[str, torch.Tensor] = {}
        for m in methods:
            if len(layers) == 1:
                by_method[m.name] = per_layer[(m.name, layers[0])]
            else:
                size = (int(x.shape[-2]), int(x.shape[-1]))
                stack = torch.stack([upsample(per_layer[(m.name, n)], size) for n in layers])
                by_method[m.name] = normalize(stack.mean(0))
        logits = logits.detach().float()
        return Explanation(
            logits.cpu(),
            scorer.probabilities(logits).cpu(),
            chosen.cpu(),
            by_method,
            per_layer if len(layers) > 1 else {},
            signs.cpu(),
            valid.cpu() if valid is not None else None,
        )


def explain_smooth(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | Sequence[str],
    method: CamMethod | Sequence[CamMethod],
    *,
    smooth: int = 0,
    noise: float = 0.15,
    aug: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> Explanation:
    """:func:`explain` averaged over noisy copies of the input and/or a horizontal flip.

    ``smooth`` N > 0: SmoothGrad-style, N extra passes on ``x + ε`` with ε ~ N(0, (noise·(max−min of x))²) per
    image; ``aug``: one extra pass on the mirrored input, its maps mirrored back. The classes come from the
    clean pass and stay fixed; each pass's maps (already in [0, 1]) are averaged and normalised again. Applies
    to every method.
    """
    base = explain(model, x, layer, method, **kwargs)
    if smooth <= 0 and not aug:
        return base
    kwargs = {k: v for k, v in kwargs.items() if k not in ("targets", "top_k", "classes", "signs", "threshold")}
    sums = {name: m.clone() for name, m in base.by_method.items()}
    layer_sums = {key: m.clone() for key, m in base.per_layer.items()}
    passes = 1
    gen = torch.Generator(device="cpu").manual_seed(seed)
    span = (x.flatten(1).max(1).values - x.flatten(1).min(1).values).view(-1, 1, 1, 1)
    total = max(smooth, 0) + int(aug)

    def variants() -> Iterator[tuple[torch.Tensor, bool]]:
        """One input at a time (N noisy copies at once would hold N batches in memory)."""
        for _ in range(max(smooth, 0)):
            eps = torch.randn(x.shape, generator=gen).to(x.device) * (noise * span)
            yield x + eps, False
        if aug:
            yield torch.flip(x, dims=[-1]), True

    for done, (xv, flipped) in enumerate(variants(), start=1):
        report("smoothing passes", done - 1, total)
        ex = explain(model, xv, layer, method, classes=base.classes, signs=base.signs, **kwargs)
        for name, m in ex.by_method.items():
            sums[name] += torch.flip(m, dims=[-1]) if flipped else m
        for key, m in ex.per_layer.items():
            layer_sums[key] += torch.flip(m, dims=[-1]) if flipped else m
        passes += 1
    report("smoothing passes", total, total)
    by_method = {name: normalize(s / passes) for name, s in sums.items()}
    per_layer = {key: normalize(s / passes) for key, s in layer_sums.items()}
    return Explanation(base.logits, base.probs, base.classes, by_method, per_layer, base.signs, base.valid)
