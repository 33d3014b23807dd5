"""Does a map point at the object? Localisation metrics against a mask or box, as tensor operations batched over maps.

Every function takes ``maps`` (N, h, w), float, ≥ 0 (evaluate normalises each to [0, 1]) and the object on the
same grid, ``masks`` (or ``boxes``) (N, h, w), bool; it returns (N,) float32 on the maps' device, NaN where the
score is undefined (each function says where). Nothing leaves the device and nothing loops over pixels.

* **Pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018): a hit (1.0)
  when the map's maximum lies within ``tolerance`` pixels of the object (15 px in the paper), else 0.0.
* **Energy-based pointing game** (Wang et al., "Score-CAM", CVPRW 2020): the share of the map's sum inside the
  object's bounding box.
* **Relevance mass** and **relevance rank accuracy** (Arras et al., "CLEVR-XAI", Information Fusion 2022): the
  share of the map's sum inside the mask; and, with K the mask's pixel count, the share of the K highest pixels
  that lie inside it.
* **IoU** (weakly-supervised localisation, as CAM's authors evaluate it): the pixels at or above ``threshold`` ×
  the map's maximum against the mask, intersection over union.

Quantus 0.6 (``PointingGame``, ``AttributionLocalisation``, ``RelevanceMassAccuracy``, ``RelevanceRankAccuracy``)
gives the same numbers on the same arrays (tested), except where a choice here is deliberate:

* pointing: one maximum, the first in row-major order (``argmax``), is the point; Quantus counts a hit if *any*
  of tied maxima is on the object, so a flat map hits any object. A constant map points nowhere: NaN (Quantus: a
  hit). Quantus has no tolerance (``tolerance=0`` here is its game), and gives 1.0 for an empty mask, here NaN.
* relevance rank: ties are ranked by position (stable sort, lower row-major index first), so the score is
  reproducible; Quantus sorts with numpy's default, unstable sort, whose order of tied pixels is unspecified.
* energy pointing: an all-zero map is NaN (Quantus divides by sum + 1e-9 and gives 0.0).
"""

from __future__ import annotations

import torch

_NAN = float("nan")


def _check(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, h, w) maps and masks of the same shape → flattened (N, h·w) float32 maps and bool masks."""
    if maps.dim() != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps and masks must both be (N, h, w); got {tuple(maps.shape)} and {tuple(masks.shape)}")
    return maps.flatten(1).float(), masks.to(maps.device).flatten(1) != 0


def _share(m: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Share of each row's sum inside ``inside``; NaN where the row sums to 0 or nothing is inside."""
    total = m.sum(1)
    within = (m * inside).sum(1)
    undefined = (total <= 0) | ~inside.any(1)
    return torch.where(undefined, torch.full_like(total, _NAN), within / total.clamp_min(torch.finfo(m.dtype).tiny))


def pointing(maps: torch.Tensor, masks: torch.Tensor, tolerance: float = 15.0) -> torch.Tensor:
    """Pointing game: 1.0 where the map's maximum is within ``tolerance`` pixels (Euclidean distance on this grid,
    to the nearest mask pixel; a distance of exactly ``tolerance`` is a hit) of the object, else 0.0. Ties: the
    first maximum in row-major order (``argmax``). NaN for a constant map (it points nowhere) or an empty mask."""
    m, inside = _check(maps, masks)
    h, w = maps.shape[-2:]
    best = m.argmax(1)
    py, px = (best // w).float(), (best % w).float()
    ys = torch.arange(h, device=m.device, dtype=torch.float32)
    xs = torch.arange(w, device=m.device, dtype=torch.float32)
    d2 = (ys[None, :, None] - py[:, None, None]) ** 2 + (xs[None, None, :] - px[:, None, None]) ** 2  # (N, h, w)
    d2 = d2.flatten(1).masked_fill(~inside, float("inf"))
    hit = (d2.min(1).values <= float(tolerance) ** 2).float()
    undefined = (m.amax(1) == m.amin(1)) | ~inside.any(1)
    return torch.where(undefined, torch.full_like(hit, _NAN), hit)


def energy_pointing(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Energy-based pointing game: the share of the map's sum inside the object's bounding box (``boxes``: the
    box's pixels, bool). NaN for an all-zero map or an empty box."""
    m, inside = _check(maps, boxes)
    return _share(m, inside)


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance mass accuracy: the share of the map's sum inside the mask. NaN for an all-zero map or an empty
    mask."""
    m, inside = _check(maps, masks)
    return _share(m, inside)


def relevance_rank(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance rank accuracy: with K the mask's pixel count, the share of the map's K highest pixels that lie
    inside the mask. Tied values are ranked by position (a stable descending sort: the lower row-major index
    first), as ``numpy.argsort(-map, kind="stable")`` would. NaN for an empty mask. An all-zero map is all ties:
    its score is the share of the first K pixels in row-major order that are in the mask (no NaN, as Quantus)."""
    m, inside = _check(maps, masks)
    k = inside.sum(1)
    order = torch.argsort(m, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(m.shape[1], device=m.device).expand_as(order))
    top = ranks < k[:, None]  # the K highest pixels of each row
    score = (top & inside).sum(1).float() / k.clamp_min(1).float()
    return torch.where(k == 0, torch.full_like(score, _NAN), score)


def iou(maps: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Localisation IoU: the pixels where the map is ≥ ``threshold`` × its maximum, against the mask:
    |both| / |either|. NaN for an all-zero map (every pixel would pass) or an empty mask."""
    m, inside = _check(maps, masks)
    peak = m.amax(1, keepdim=True)
    on = m >= threshold * peak
    inter = (on & inside).sum(1).float()
    union = (on | inside).sum(1).float()
    undefined = (peak[:, 0] <= 0) | ~inside.any(1)
    return torch.where(undefined, torch.full_like(inter, _NAN), inter / union.clamp_min(1))
