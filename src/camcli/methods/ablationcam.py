"""Ablation-CAM."""

from __future__ import annotations

import torch
from torch import nn

from ..engine.layers import resolve
from ..engine.layouts import CHANNELS_FIRST_TYPES
from ..engine.suffix import Prefix, replayed, trace
from ..errors import LayerError
from ..steps import report
from .base import CamMethod, Context

NOT_ABLATED = -1  # a row of an ablated batch that keeps every channel


class AblationCAM(CamMethod):
    r"""Ablation-CAM: each channel weighted by how much the class score drops when that channel is zeroed.

    .. math::  w_k^c = \frac{y^c - y^c_{A^k = 0}}{|y^c|}, \qquad L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    where :math:`y^c_{A^k = 0}` is the score when channel k of the layer's output is set to zero at every position
    (every token, prefix tokens included, for a token layout), the rest of the output left as it was.
    Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free
    Localization", WACV 2020, eq. 3.

    camcli follows pytorch-grad-cam 1.5.7's ``AblationCAM`` with its default ``ratio_channels_to_ablate=1.0``
    (every channel is ablated), and differs on purpose in two places. The drop is divided by :math:`|y^c|` where
    pytorch-grad-cam divides by :math:`y^c`: the same weights for a positive score, but for a negative one
    pytorch-grad-cam's weights flip sign (a channel whose removal lowers the score would count against it), and a
    negated target (``not:CLASS``) would give the class's own map; with :math:`|y^c|` a weight is the drop of the
    explained score, whatever its sign. And a channel is always set to zero, as in the paper: pytorch-grad-cam
    zeroes it only where the layer's smallest value is 0 (after a ReLU: the usual case, where the two agree) and
    otherwise sets it to the smallest value less 10⁷, taken anew for each copy of a batch after the previous copy's
    ablation (copy i gets the minimum less (i+1)·10⁷), so that a channel's weight depends on its place in the batch.

    Cost: C extra runs per image (C = channels), ``--score-batch`` ablated copies at a time, under inference mode,
    shared by every class slot, and only of the network after the layer: the modules that finished before the layer
    began return what they returned for the picture instead of running again, and the layer returns the ablated
    copies (:mod:`camcli.engine.suffix`; the code between modules still runs on every copy). Whether that gives the
    model's own answer is checked once per image (an unablated copy must score as the model did, one row per copy);
    where it does not (or fails), a forward hook ablates the layer's output and the whole model runs on every copy,
    as in pytorch-grad-cam.
    """

    name = "ablationcam"
    summary = "channels weighted by the drop of the class score when each channel is zeroed (no gradients)"
    paper = "Desai & Ramaswamy, WACV 2020"
    on_objects = True
    needs_grad = False
    cost = "C extra runs per image of the network after the layer (C = channels)"
    split = True  # run only the network after the layer where that gives the model's own scores

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        cached = ctx.cache.get(self.name)
        if cached is None:
            cached = self.ablated_scores(acts, ctx)
            ctx.cache[self.name] = cached
        original, ablated = cached  # (B, N), (B, C, N)
        cls = ctx.classes.to(original.device).view(-1, 1)
        score = ctx.signed(original.gather(1, cls).squeeze(1))  # (B,)
        dropped = ctx.signed(ablated.gather(2, cls[:, :, None].expand(-1, ablated.shape[1], 1)).squeeze(2))
        scale = torch.where(score == 0, torch.ones_like(score), score.abs())
        weights = (score[:, None] - dropped) / scale[:, None]  # (B, C)
        return torch.einsum("bc,bchw->bhw", weights.to(acts.device), acts)

    def ablated_scores(self, acts: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, num_classes) the model's scores, (B, C, num_classes) with each channel of the layer zeroed)."""
        module = resolve(ctx.model, ctx.layer)
        x, channels = ctx.x, acts.shape[1]
        original = ctx.scores(x)
        per_image = -(-channels // ctx.score_batch)
        total, done = per_image * x.shape[0], 0
        kind = type(module).__name__
        out = []
        for b in range(x.shape[0]):
            one = x[b : b + 1]
            prefix = _prefix(ctx, module, one, acts, original[b]) if self.split else None
            rows = []
            for start in range(0, channels, ctx.score_batch):
                chosen = torch.arange(start, min(start + ctx.score_batch, channels))
                if prefix is not None:
                    got = _replayed(ctx, module, one, chosen, prefix, acts)[0]
                else:
                    got = _whole(ctx, module, one, chosen, acts, kind)
                if got.shape[0] != chosen.numel():
                    raise LayerError(
                        f"the model gave {got.shape[0]} score rows for a batch of {chosen.numel()} ablated copies; "
                        "run ablationcam with --score-batch 1"
                    )
                rows.append(got)
                done += 1
                report(f"ablationcam channels at {ctx.layer}", done, total)
            out.append(torch.cat(rows))
        return original.float(), torch.stack(out).float()


def _ablate(output: torch.Tensor, channels: torch.Tensor, acts: torch.Tensor, layer: str, kind: str) -> torch.Tensor:
    """``len(channels)`` copies of the first row of a layer's ``output``, channel ``channels[i]`` set to zero in copy
    i (:data:`NOT_ABLATED`: none) in the output's own layout (``acts``: the grid it was read as)."""
    dim = channel_dim(tuple(output.shape[1:]), tuple(int(s) for s in acts.shape[1:]), layer, kind)
    copies = output[:1].expand(int(channels.numel()), *output.shape[1:]).clone()
    rows = (channels >= 0).nonzero().flatten()
    copies.movedim(dim, 1)[rows.to(copies.device), channels[rows].to(copies.device)] = 0
    return copies


def _prefix(
    ctx: Context, module: nn.Module, one: torch.Tensor, acts: torch.Tensor, expected: torch.Tensor
) -> Prefix | None:
    """What the model computes before the layer for the picture ``one`` (:func:`camcli.engine.suffix.trace`), when
    a run from the layer on gives the model's own score (an unablated copy) and one row per copy; None: the whole
    model runs on every copy instead (any failure of that run means the same)."""
    try:
        prefix = trace(ctx.model, module, lambda: ctx.scores(one))
        if prefix is None:
            return None
        got, used = _replayed(ctx, module, one, torch.tensor([NOT_ABLATED, 0]), prefix, acts)
    except LayerError:
        raise
    except Exception:  # any error of the shortcut: the whole model runs on each copy instead
        return None
    if used != 1 or got.shape != (2, *expected.shape):
        return None
    tol = 1e-4 * float(expected.abs().max()) + 1e-6
    return prefix if bool(torch.allclose(got[0].float(), expected.float(), rtol=1e-3, atol=tol)) else None


def _replayed(
    ctx: Context, module: nn.Module, one: torch.Tensor, channels: torch.Tensor, prefix: Prefix, acts: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """(scores, the layer's calls) of the copies, run from the layer on: the modules before it replay ``prefix``."""
    rows = _ablate(prefix.output, channels, acts, ctx.layer, type(module).__name__)
    with replayed(prefix, module, rows) as used:
        scores = ctx.scores(one.expand(rows.shape[0], *one.shape[1:]))
    return scores, used[0]


def _whole(
    ctx: Context, module: nn.Module, one: torch.Tensor, channels: torch.Tensor, acts: torch.Tensor, kind: str
) -> torch.Tensor:
    """Scores of ``len(channels)`` copies of the picture ``one`` run through the whole model, a forward hook
    zeroing channel ``channels[i]`` of the layer's output in copy i."""
    calls = [0]

    def hook(_m: nn.Module, _inputs: object, output: object) -> torch.Tensor:
        calls[0] += 1
        if calls[0] > 1:
            raise LayerError(f"layer '{ctx.layer}' runs more than once in one forward pass; pick another")
        if not isinstance(output, torch.Tensor):
            raise LayerError(f"layer '{ctx.layer}' returns {type(output).__name__}, not a tensor; pick another")
        return _ablate(output, channels, acts, ctx.layer, kind)

    copies = one.expand(int(channels.numel()), *one.shape[1:]).contiguous(memory_format=torch.channels_last)
    handle = module.register_forward_hook(hook)
    try:
        return ctx.scores(copies)
    finally:
        handle.remove()


def channel_dim(shape: tuple[int, ...], grid: tuple[int, ...], layer: str, module_type: str = "") -> int:
    """The dimension of a layer's output (``shape`` without the batch) that holds the channels of its grid
    ``grid`` (C, h, w): 1 for channels first, the last one for channels last and tokens. A shape that reads both
    ways (C = h = w) is channels first for the module types whose output always is (as the grid was read)."""
    c, h, w = grid
    if len(shape) == 2 and shape[1] == c:  # tokens (N, C)
        return 2
    first, last = shape == (c, h, w), shape == (h, w, c)
    if first and (not last or module_type in CHANNELS_FIRST_TYPES):
        return 1
    if last and not first:
        return 3
    raise LayerError(
        f"ablationcam cannot tell which dimension of layer '{layer}''s output {list(shape)} holds its {c} channels "
        "(first or last); pick another layer"
    )
