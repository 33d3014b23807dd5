"""Running methods on a batch: one forward pass for every layer method, gradients once per class, then the methods
made from the whole model (:mod:`camcli.methods.whole`); and smoothing over noisy or mirrored copies."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ..engine.hooks import capture, eval_mode
from ..engine.layers import resolve
from ..engine.layouts import to_grid
from ..engine.scoring import Scorer, choose
from ..engine.targets import Target
from ..errors import LayerError
from ..method_params import MethodParams
from ..options import Layout
from ..steps import report
from .base import CamMethod, Context, Explanation, normalize
from .costs import charged
from .whole import model_maps

#: (layer name, its captured output, its module's type) → what lays out a tensor shaped like that output as its
#: (B, C, h, w) grid (the output itself, its gradient)
LayOut = Callable[[str, torch.Tensor, str], Callable[[torch.Tensor], torch.Tensor]]


def as_pairs(targets: Sequence[Target | int] | None) -> list[tuple[int, bool]] | None:
    """Targets as (index, negate) pairs (a bare index is the class itself)."""
    if not targets:
        return None
    return [(t.index, t.negate) if isinstance(t, Target) else (int(t), False) for t in targets]


def check_layers(methods: Sequence[CamMethod], layers: Sequence[str]) -> None:
    """A :class:`LayerError` when a method that fuses layers its own way (RefineCAM) is given too few."""
    for m in methods:
        if m.scope == "layer" and len(layers) < m.min_layers:
            raise LayerError(
                f"{m.name} fuses the maps of several layers: give {m.min_layers} or more --layer (see: camcli layers)"
            )


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
    params: MethodParams | None = None,
    mean_std: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Explanation:
    """Run one or more methods on a batch ``x`` (preprocessed, on the model's device) at one or more layers.

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
        normalised again (the fused map; a method with a rule of its own says so in :meth:`CamMethod.fuse`); each
        layer's own map is kept in ``per_layer``.

        Methods made from the whole model (``scope == "model"``: pixel attribution, attention rollout) ignore the
        layers and run after the layer methods, on the same classes, with ``params`` (:class:`MethodParams`);
        their maps are at their own resolution (the input's, or the token grid's). ``mean_std``: the model's
        preprocessing (mean, std per channel), for ``--baseline black``.
    """
    layers = [layer] if isinstance(layer, str) else list(layer)
    methods = [method] if isinstance(method, CamMethod) else list(method)
    at_layer = [m for m in methods if m.scope == "layer"]
    whole = [m for m in methods if m.scope != "layer"]
    if not methods or (at_layer and not layers):
        raise LayerError("explain needs at least one layer and one method")
    check_layers(at_layer, layers)
    params = params or MethodParams()
    params.check()
    scorer = scorer or Scorer()
    given = (classes, signs) if classes is not None else None
    if at_layer:
        logits, chosen, signs, valid, per_layer = at_layers(
            model, x, layers, at_layer, given, (targets, top_k, threshold), score_batch, layouts, scorer, params
        )
    else:
        with eval_mode(model), torch.no_grad():
            logits = scorer.scores(model(x))
        logits, per_layer, valid = logits.detach(), {}, None
        if classes is not None:
            chosen, signs = classes.to(logits.device), torch.ones(classes.shape) if signs is None else signs
        else:
            chosen, signs, valid = choose(logits, scorer, as_pairs(targets), top_k, threshold)
    by_method: dict[str, torch.Tensor] = {}
    signed: dict[str, torch.Tensor] = {}
    size = (int(x.shape[-2]), int(x.shape[-1]))
    for m in at_layer:
        if len(layers) == 1:
            by_method[m.name] = per_layer[(m.name, layers[0])]
        else:
            by_method[m.name] = m.fuse([per_layer[(m.name, n)] for n in layers], size)
    if whole:
        made, signed = model_maps(whole, model, x, chosen, signs, scorer, score_batch, params, mean_std)
        by_method = {m.name: by_method[m.name] if m.scope == "layer" else made[m.name] for m in methods}
    logits = logits.detach().float()
    return Explanation(
        logits.cpu(),
        scorer.probabilities(logits).cpu(),
        chosen.cpu(),
        by_method,
        per_layer if len(layers) > 1 else {},
        signs.cpu(),
        valid.cpu() if valid is not None else None,
        signed,
    )


def at_layers(
    model: nn.Module,
    x: torch.Tensor,
    layers: list[str],
    methods: list[CamMethod],
    given: tuple[torch.Tensor, torch.Tensor | None] | None,
    choice: tuple[Sequence[Target | int] | None, int, float | None],
    score_batch: int,
    layouts: Mapping[str, Layout | None] | None,
    scorer: Scorer,
    params: MethodParams,
    lay_out: LayOut | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, dict[tuple[str, str], torch.Tensor]]:
    """The layer methods of :func:`explain`: (logits, classes, signs, valid, {(method, layer): (B, K, h, w)}).

    ``lay_out`` (layer name, its captured output, its module's type) → what lays out a tensor shaped like that output
    as a (B, C, h, w) grid; None: :func:`~camcli.engine.layouts.to_grid` with ``layouts`` (a video's or volume's
    layers are folded to such a grid by :mod:`camcli.methods.volume`)."""
    modules = {name: resolve(model, name) for name in layers}
    need_grad = any(m.needs_grad for m in methods)
    keep_graph = any(m.needs_graph for m in methods)
    raw: dict[tuple[str, str], list[torch.Tensor]] = {(m.name, n): [] for m in methods for n in layers}
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
        if given is not None:
            chosen = given[0].to(logits.device)
            signs = torch.ones(chosen.shape) if given[1] is None else given[1]
        else:
            chosen, signs, valid = choose(logits.detach(), scorer, as_pairs(choice[0]), choice[1], choice[2])
        size = (int(x.shape[-2]), int(x.shape[-1]))
        kinds = [type(modules[n]).__name__ for n in layers]  # a conv's output is channels first, whatever its shape
        gridders: list[Callable[[torch.Tensor], torch.Tensor]]
        if lay_out is None:
            shapes = [(layouts or {}).get(n) for n in layers]
            gridders = [
                partial(to_grid, layout=lay, input_size=size, module_type=k)
                for lay, k in zip(shapes, kinds, strict=True)
            ]
        else:
            gridders = [lay_out(n, a, k) for n, a, k in zip(layers, acts, kinds, strict=True)]
        grids = [grid_of(a.detach()).float() for a, grid_of in zip(acts, gridders, strict=True)]
        cache: dict[str, dict[str, Any]] = {n: {} for n in layers}
        k_total = chosen.shape[1]
        for k in range(k_total):
            grads: Sequence[torch.Tensor | None] = [None] * len(layers)
            score: torch.Tensor | None = None
            if need_grad:
                if not logits.requires_grad:
                    raise LayerError(f"the model's output does not depend on layer '{layers[0]}'")
                score = scorer.explained(logits, chosen[:, k], signs[:, k]).sum()
                retain = keep_graph or k < k_total - 1
                grads = torch.autograd.grad(score, acts, retain_graph=retain, allow_unused=True)
            with torch.no_grad():
                for name, a, act, g, grid_of in zip(layers, grids, acts, grads, gridders, strict=True):
                    if g is None and need_grad:
                        raise LayerError(f"the class score does not depend on layer '{name}'")
                    grad_grid = grid_of(g).float() if g is not None else torch.zeros(0)
                    ctx = Context(
                        model, x, name, chosen[:, k], score_batch, cache[name], cap, scorer, signs[:, k], params
                    )
                    if keep_graph:
                        ctx.score, ctx.activation = score, act
                        ctx.output_scores = logits
                        ctx.grid = grid_of
                    for m in methods:
                        with charged(m.name):  # its own forward passes (Score-CAM's masks …), counted for evaluate
                            raw[(m.name, name)].append(normalize(m.raw_map(a, grad_grid, ctx)))
    per_layer = {key: torch.stack(v, dim=1).cpu() for key, v in raw.items()}
    return logits, chosen, signs, valid, per_layer


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
    signed_sums = {name: m.clone() for name, m in base.signed.items()}
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
        for name, m in ex.signed.items():
            signed_sums[name] += torch.flip(m, dims=[-1]) if flipped else m
        passes += 1
    report("smoothing passes", total, total)
    by_method = {name: normalize(s / passes) for name, s in sums.items()}
    per_layer = {key: normalize(s / passes) for key, s in layer_sums.items()}
    signed = {name: s / passes for name, s in signed_sums.items()}
    return Explanation(base.logits, base.probs, base.classes, by_method, per_layer, base.signs, base.valid, signed)
