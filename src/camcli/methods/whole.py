"""Methods made from the whole model rather than at one layer: pixel attribution (gradients with respect to the
input, perturbed inputs) and the transformer-native maps (every block's attention).

A method here derives from :class:`ModelMethod` and supplies :meth:`ModelMethod.model_map`: the batch and its
classes in, one (B, h, w) map out (the input's resolution, or the token grid's). What such methods need from the
model — the explained scalar of any batch of inputs, with or without gradients, in batches that fit in memory — is
in :class:`ModelContext`, once. :func:`~camcli.methods.explain.explain` runs them after the layer methods, on the same
classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..engine.hooks import eval_mode
from ..engine.scoring import Scorer
from ..method_params import MethodParams
from .base import CamMethod, normalize
from .costs import charged


@dataclass
class ModelContext:
    """One class slot of a batch, as a whole-model method sees it.

    ``classes`` (B,) and ``signs`` (B,) say what each row explains (−1: a negated target, ``not:``).
    """

    model: nn.Module
    x: torch.Tensor  # (B, C, H, W) preprocessed, on the model's device
    classes: torch.Tensor
    signs: torch.Tensor
    scorer: Scorer = field(default_factory=Scorer)
    score_batch: int = 32  # inputs per extra forward pass (--score-batch)
    params: MethodParams = field(default_factory=MethodParams)
    cache: dict[str, Any] = field(default_factory=dict)  # shared by the K class slots of one batch
    # the model's preprocessing, (mean, std) per channel, for a baseline made in picture space (--baseline black);
    # None: not known (a model called from Python without it)
    mean_std: tuple[Sequence[float], Sequence[float]] | None = None

    def output(self, x: torch.Tensor) -> object:
        """The model's raw output for ``x``, in eval mode, with gradients where enabled."""
        with eval_mode(self.model):
            return self.model(x)

    def explained(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The explained scalar (B',) for inputs ``x`` (B', C, H, W) whose rows belong to the batch's rows ``rows``
        (None: ``x`` is the batch, row by row): the class score, negated for ``not:``; differentiable."""
        rows = torch.arange(x.shape[0], device=self.classes.device) if rows is None else rows.to(self.classes.device)
        scores = self.scorer.scores(self.output(x))
        return self.scorer.explained(scores, self.classes[rows].to(scores.device), self.signs[rows])

    def input_gradient(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """d(explained scalar)/d(input) for ``x`` (B', C, H, W), each row's own; no parameter's ``.grad`` is set."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            score = self.explained(xg, rows).sum()
            (grad,) = torch.autograd.grad(score, xg)
        return grad

    def scores_of(self, x: torch.Tensor, row: int) -> torch.Tensor:
        """The explained scalar (N,) of N perturbed copies ``x`` (N, C, H, W) of batch row ``row``, without gradients,
        ``score_batch`` at a time."""
        rows = torch.full((x.shape[0],), row, dtype=torch.long)
        out = []
        with torch.inference_mode():
            for start in range(0, x.shape[0], self.score_batch):
                out.append(self.explained(x[start : start + self.score_batch], rows[start : start + self.score_batch]))
        return torch.cat(out).float()


class ModelMethod(CamMethod):
    """A method made from the whole model; subclasses supply :meth:`model_map`.

    ``outliers``: the percentage of the largest values clipped before the map is normalised (at the 98th
    percentile of the values; captum's ``visualize_image_attr`` clips 2 % too, but of the values' cumulative sum,
    which clips more on peaked maps): a pixel attribution's few largest values would otherwise leave every other
    pixel near zero, and the overlay blank; 0 for maps that are not so peaked.
    """

    scope = "model"
    family = "pixel attribution"
    outliers: float = 2.0

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        """(B, h, w) map before ReLU and normalisation, for the class slot ``ctx`` describes."""
        raise NotImplementedError

    def attribution(self, ctx: ModelContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(map (B, h, w) before ReLU and normalisation, the signed attribution summed over the colour channels
        (B, H, W) or None): what :func:`model_maps` calls; by default :meth:`model_map`'s map and no signed one."""
        return self.model_map(ctx), None

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Any) -> torch.Tensor:
        raise TypeError(f"{self.name} is made from the whole model, not at a layer")


def model_maps(
    methods: Sequence[CamMethod],
    model: nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    signs: torch.Tensor,
    scorer: Scorer,
    score_batch: int,
    params: MethodParams,
    mean_std: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each whole-model method's maps for the batch: {name: (B, K, h, w) in [0, 1], float32 on the CPU}; and with
    ``params.signed``, each one's signed attribution summed over the colour channels, where it has one: {name:
    (B, K, H, W) float32 on the CPU, not normalised}."""
    out: dict[str, list[torch.Tensor]] = {m.name: [] for m in methods}
    signed: dict[str, list[torch.Tensor]] = {m.name: [] for m in methods}
    cache: dict[str, Any] = {}
    signs = signs.to(classes.device) if signs is not None else torch.ones(classes.shape, device=classes.device)
    for k in range(classes.shape[1]):
        ctx = ModelContext(model, x, classes[:, k], signs[:, k], scorer, score_batch, params, cache, mean_std)
        for m in methods:
            if not isinstance(m, ModelMethod):
                raise TypeError(f"{m.name} is made at a layer")
            with torch.no_grad(), charged(m.name):
                made, attribution = m.attribution(ctx)
            out[m.name].append(normalize(clip_outliers(made.detach().float(), m.outliers)).cpu())
            if params.signed and attribution is not None:
                signed[m.name].append(attribution.detach().float().cpu())
    maps = {name: torch.stack(v, dim=1) for name, v in out.items()}
    return maps, {name: torch.stack(v, dim=1) for name, v in signed.items() if v}


def clip_outliers(maps: torch.Tensor, percent: float) -> torch.Tensor:
    """(B, h, w) maps with each one's values above its (100 − ``percent``)th percentile set to that value."""
    if percent <= 0:
        return maps
    flat = maps.flatten(1)
    top = torch.quantile(flat, 1 - percent / 100, dim=1) if flat.shape[1] <= 16_000_000 else flat.amax(1)
    return torch.minimum(maps, top.view(-1, 1, 1))
