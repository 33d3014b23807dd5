"""Does a map point at what the model uses? Perturbation metrics, as tensor operations batched over images.

Every function takes the model, a batch ``x`` (B, C, H, W) of preprocessed inputs on the model's device, the maps
(B, H, W) in [0, 1] at the input's size, and the explained classes (B,); scores are the softmax probability of
that class, or, given :class:`~camcli.engine.scoring.Slots`, the probability the model's head gives the target
(a sigmoid, a negated target's ``1 − p``, a raw output or similarity). ``chunk`` caps how many perturbed inputs go
through the model at once (``--batch-size``).

* **Deletion / insertion** (Petsiuk et al., "RISE", BMVC 2018): the pixels are ranked by the map (highest first;
  ties by position) and, in ``steps`` equal steps, replaced by a baseline (deletion: from the image towards the
  baseline) or revealed (insertion: from the baseline towards the image). The curve is the class's probability
  after each step, on a fraction axis 0…1; its area (trapezoid rule) is the score: low for deletion and high for
  insertion mean that the map found what the model needs. The step size and endpoints are torchcam's
  (``ceil(H·W / steps)`` pixels a step; ``DeletionInsertionMetric``), so the two agree on the same maps.
* **Average Drop / Increase in Confidence** (Chattopadhyay et al., "Grad-CAM++", WACV 2018, as torchcam's
  ``ClassificationMetric`` computes them): the input is multiplied by the map; with ``s`` the probability on the
  input and ``m`` on the masked input, drop = ``relu(s − m) / s`` and increase = ``m > s``.
* **ROAD** (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022):
  the ``q`` % most (MoRF) or least (LeRF) relevant pixels are removed and filled in by noisy linear imputation
  (each removed pixel the weighted mean of its 8 neighbours, 1/6 sides and 1/12 corners, solved jointly; plus
  Gaussian noise of std ``noise``). The value is the change of the probability (after − before). Combined:
  ``(LeRF − MoRF) / 2`` averaged over the percentages; higher is better. Thresholds and ties are
  pytorch-grad-cam's (``metrics/road.py``), which solves the system with scipy per image on the CPU; here it is
  solved by conjugate gradients on all images, percentages and channels at once, on the model's device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.scoring import Slots
from ..steps import advance

BASELINES = ("zero", "blur", "mean")


def class_probs(model: nn.Module, x: torch.Tensor, classes: torch.Tensor | Slots, chunk: int) -> torch.Tensor:
    """The probability of each sample's target for the inputs ``x`` (N, C, H, W), ``chunk`` at a time: the
    softmax probability of ``classes`` (N,), or what :class:`~camcli.engine.scoring.Slots` say (a sigmoid, a
    negated target, a similarity)."""
    slots = Slots.of(classes)
    out = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], max(1, chunk)):
            out.append(slots[i : i + chunk].probability(model(x[i : i + chunk])).float())
            advance(out[-1].shape[0])  # evaluate's progress inside an image (camcli.steps.counting)
    return torch.cat(out) if out else torch.empty(0, device=x.device)


def baseline_input(x: torch.Tensor, kind: str) -> torch.Tensor:
    """What removed pixels become: ``zero`` (0 in the model's input space: the normalisation's mean colour),
    ``blur`` (Gaussian blur, kernel 11, sigma 5, as RISE's insertion uses) or ``mean`` (each image's mean colour)."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        k = torch.arange(11, dtype=torch.float32, device=x.device) - 5
        g = torch.exp(-(k**2) / (2 * 5.0**2))
        g = (g / g.sum()).to(x.dtype)
        c = x.shape[1]
        y = F.conv2d(F.pad(x, (5, 5, 0, 0), mode="reflect"), g.view(1, 1, 1, 11).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(F.pad(y, (0, 0, 5, 5), mode="reflect"), g.view(1, 1, 11, 1).repeat(c, 1, 1, 1), groups=c)
    raise ValueError(f"unknown baseline {kind!r}; use one of {', '.join(BASELINES)}")


@dataclass
class Curves:
    """Deletion and insertion curves of a batch: ``fractions`` (S,), ``deletion``/``insertion`` (B, S)."""

    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor

    @property
    def deletion_auc(self) -> torch.Tensor:
        return torch.trapezoid(self.deletion, self.fractions, dim=1)

    @property
    def insertion_auc(self) -> torch.Tensor:
        return torch.trapezoid(self.insertion, self.fractions, dim=1)


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) maps → (B, H, W) rank of each pixel, 0 for the highest value (ties: lower position first)."""
    flat = maps.flatten(1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks.view_as(maps)


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor | Slots,
    *,
    steps: int = 32,
    deletion_baseline: str = "zero",
    insertion_baseline: str = "blur",
    chunk: int = 32,
) -> Curves:
    """The deletion and insertion curves (see the module's notes); ``steps`` + 1 points each."""
    classes = Slots.of(classes)
    b, _, h, w = x.shape
    n = h * w
    step = math.ceil(n / steps)
    counts = torch.tensor([*range(0, n, step), n], device=x.device)
    ranks = pixel_ranks(maps.to(x.device))[:, None]  # (B, 1, H, W)
    dele = baseline_input(x, deletion_baseline)
    ins = baseline_input(x, insertion_baseline)
    s = len(counts)
    curves = {}
    for name, start, end in (("deletion", x, dele), ("insertion", ins, x)):
        # point (i, k): image i with its pixels ranked below counts[k] from ``end``, the others from ``start``;
        # built ``chunk`` at a time, so memory does not grow with --steps
        probs = []
        pairs = [(i, k) for i in range(b) for k in range(s)]
        for j in range(0, len(pairs), max(1, chunk)):
            part = pairs[j : j + chunk]
            batch = torch.stack([torch.where(ranks[i] < counts[k], end[i], start[i]) for i, k in part])
            probs.append(class_probs(model, batch, classes[[i for i, _ in part]], len(part)))
        curves[name] = torch.cat(probs).view(b, s)
    return Curves(counts.float().div(n).to(torch.float32), curves["deletion"], curves["insertion"])


def drop_increase(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor | Slots, chunk: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average Drop and Increase in Confidence terms per image: ``relu(s − m) / s`` and ``m > s`` (0/1). The drop
    is a share of a confidence, so it is NaN where ``s`` is negative (a raw output or similarity of an identity
    head)."""
    s = class_probs(model, x, classes, chunk)
    m = class_probs(model, x * maps.to(x.device)[:, None], classes, chunk)
    drop = torch.where(s >= 0, torch.relu(s - m).div(s + 1e-7), torch.full_like(s, float("nan")))
    return drop, (m > s).float()


# --------------------------------------------------------------------------------------------------------- ROAD
def _neighbour_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ_j w_ij t_j over the 8 neighbours inside the image (1/6 sides, 1/12 corners): shifted slices of a
    zero-padded copy (faster than a float64 convolution on the CPU)."""
    p = F.pad(t, (1, 1, 1, 1))
    sides = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    corners = p[..., :-2, :-2] + p[..., :-2, 2:] + p[..., 2:, :-2] + p[..., 2:, 2:]
    return sides / 6 + corners / 12


def impute(
    x: torch.Tensor,
    unknown: torch.Tensor,
    *,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    tol: float = 1e-4,
    max_iter: int = 3000,
) -> torch.Tensor:
    """Noisy linear imputation: ``x`` (N, C, H, W) with the pixels where ``unknown`` (N, H, W) is true replaced by
    the solution of ``s_i·v_i = Σ_j w_ij·v_j`` over their in-image neighbours j (weights 1/6 sides, 1/12 corners;
    ``s_i`` the sum of the in-image weights), known neighbours fixed, plus N(0, noise²) noise on those pixels.

    The system is symmetric positive definite wherever a group of unknown pixels touches a known one; it is
    solved by Jacobi-preconditioned conjugate gradients in float32 for every image and channel at once (the
    product with the matrix is a sum of 8 shifted copies). Raises ValueError if every pixel of an image is unknown.
    """
    if bool(unknown.flatten(1).all(1).any()):
        raise ValueError("cannot impute an image whose every pixel is removed")
    u = unknown.to(x.device, DTYPE)[:, None]  # (N, 1, H, W)
    known = x.to(DTYPE) * (1 - u)
    out = (known + _solve(known, u, tol, max_iter) * u).to(x.dtype)
    if noise:
        eps = torch.randn(out.shape, generator=generator, dtype=out.dtype).to(x.device)
        out = out + noise * eps * unknown.to(x.device, out.dtype)[:, None]
    return out


DTYPE = torch.float32  # float64 took 2.2× as long for the same answer at this tolerance (measured)
_COARSEST = 24  # below this side the nested start stops halving


def _solve(known: torch.Tensor, u: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """The unknown pixels' values (0 at known pixels) by preconditioned conjugate gradients, started from the
    same problem solved at half the resolution (nested iteration: the coarse solve removes the smooth part of
    the error; measured at 224×224 with holes of 20–80 %: 368 → 344 iterations at the full size, so it helps
    little). ``tol``: relative residual; at 1e-4 the ROAD scores are pytorch-grad-cam's within 1e-4 (tested; the
    combined score moved by 4e-7 from 1e-5, measured) in half the time of 1e-5."""
    h, w = known.shape[-2:]
    s = _neighbour_sum(torch.ones(1, 1, h, w, dtype=known.dtype, device=known.device))
    b = _neighbour_sum(known) * u  # what the known neighbours give each unknown pixel
    inv_diag = u / s

    def apply(v: torch.Tensor) -> torch.Tensor:  # A v on the unknown pixels (0 elsewhere)
        return (s * v - _neighbour_sum(v * u)) * u

    if min(h, w) >= 2 * _COARSEST:
        # half resolution: a 2×2 block is unknown if all its pixels are, else it keeps its known pixels' mean
        count = F.avg_pool2d(1 - u, 2, ceil_mode=True)
        cu = (count == 0).to(u.dtype)
        ck = F.avg_pool2d(known, 2, ceil_mode=True) / count.clamp_min(1e-12) * (1 - cu)
        coarse = ck + _solve(ck, cu, tol, max_iter) * cu
        v = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) * u
    else:
        v = b * inv_diag
    r = b - apply(v)
    z = r * inv_diag
    p = z.clone()
    rz = (r * z).sum(dim=(1, 2, 3), keepdim=True)
    tiny = torch.finfo(v.dtype).tiny
    norm_b = b.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(tiny)
    for i in range(max_iter):
        if i % 8 == 0 and bool((r.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt() <= tol * norm_b).all()):
            break
        ap = apply(p)
        alpha = rz / (p * ap).sum(dim=(1, 2, 3), keepdim=True).clamp_min(tiny)
        v = v + alpha * p
        r = r - alpha * ap
        z = r * inv_diag
        rz_new = (r * z).sum(dim=(1, 2, 3), keepdim=True)
        p = z + (rz_new / rz.clamp_min(tiny)) * p
        rz = rz_new
    return v


def road_unknown(maps: torch.Tensor, removed: float, most_relevant: bool) -> torch.Tensor:
    """Which pixels ROAD removes: for ``removed`` % most relevant, those at or above the (100 − removed)-th
    percentile of the map; least relevant, the same on ``1 − map`` (pytorch-grad-cam's thresholds, whose
    percentile argument is the share kept). Ties at the threshold are all removed, as there, so a map with
    flat parts loses more than ``removed`` %; where that would be every pixel (a blank map), which cannot be
    imputed, the share is taken by rank instead (highest first, ties by position)."""
    m = maps.flatten(1).to("cpu", torch.float32)  # (float64 quantiles: not on every device)
    m = m if most_relevant else 1.0 - m
    q = torch.quantile(m.double(), (100.0 - removed) / 100.0, dim=1, keepdim=True).to(torch.float32)
    out = m >= q
    full = out.all(1)
    if bool(full.any()):
        want = round(m.shape[1] * removed / 100.0)
        order = torch.argsort(m[full], dim=1, descending=True, stable=True)
        by_rank = torch.zeros_like(out[full])
        by_rank.scatter_(1, order[:, :want], True)
        out[full] = by_rank
    return out.view_as(maps).to(maps.device)


@dataclass
class Road:
    """ROAD per image: ``morf``/``lerf`` {percent removed: (B,) change of probability}, and their combination."""

    morf: dict[int, torch.Tensor]
    lerf: dict[int, torch.Tensor]

    @property
    def combined(self) -> torch.Tensor:
        return (torch.stack(list(self.lerf.values())).mean(0) - torch.stack(list(self.morf.values())).mean(0)) / 2


def road(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor | Slots,
    percents: Sequence[int] = (20, 40, 60, 80),
    *,
    noise: float = 0.01,
    seed: int = 0,
    chunk: int = 32,
) -> Road:
    """ROAD most- and least-relevant-first at each percentage removed (see the module's notes)."""
    classes = Slots.of(classes)
    before = class_probs(model, x, classes, chunk)
    gen = torch.Generator().manual_seed(seed)
    keys = [(q, most) for q in percents for most in (True, False)]
    filled = []
    for i in range(x.shape[0]):  # one image at a time: its percentages and directions together
        masks = torch.stack([road_unknown(maps[i : i + 1].to(x.device), q, most)[0] for q, most in keys])
        filled.append(impute(x[i : i + 1].expand(len(keys), -1, -1, -1), masks, noise=noise, generator=gen))
    after = class_probs(model, torch.cat(filled), classes.repeat_interleave(len(keys)), chunk)
    after = after.view(x.shape[0], len(keys))
    morf = {q: after[:, i] - before for i, (q, most) in enumerate(keys) if most}
    lerf = {q: after[:, i] - before for i, (q, most) in enumerate(keys) if not most}
    return Road(morf, lerf)
