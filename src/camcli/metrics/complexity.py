"""How concentrated is a map? Complexity metrics of the map alone, as tensor operations batched over maps.

Both take ``maps`` (N, h, w), float, ≥ 0 (evaluate normalises each to [0, 1]) and return (N,) float32 on the
maps' device; an all-zero map has no distribution to measure and scores NaN.

* **Sparseness** (Chalasani et al., "Concise explanations of neural networks using adversarial training", ICML
  2020): the Gini index of the map's values, ``Σ_i (2i − n − 1)·a_(i) / (n·Σ a)`` with ``a_(i)`` sorted
  ascending (i = 1…n). 0 for a constant map, (n − 1)/n for a single non-zero pixel; higher is sparser.
* **Complexity** (Bhatt et al., "Evaluating and aggregating feature-based model explanations", IJCAI 2020): the
  entropy (natural log) of the map as a distribution ``p = a / Σ a``, with 0·log 0 = 0. log(h·w) for a constant
  map, 0 for a single non-zero pixel; lower is simpler.

Quantus 0.6 (``Sparseness``, ``Complexity``) gives the same numbers on the same maps (tested), up to its
``1e-7`` added to every value (Sparseness) and ``1e-12`` inside the log (Complexity). For an all-zero map Quantus
gives 0.0 (Sparseness: after its 1e-7 the map is constant) and NaN (Complexity: 0/0); here both are NaN.
"""

from __future__ import annotations

import torch


def _flat(maps: torch.Tensor) -> torch.Tensor:
    if maps.dim() != 3:
        raise ValueError(f"maps must be (N, h, w); got {tuple(maps.shape)}")
    return maps.flatten(1).float()


def sparseness(maps: torch.Tensor) -> torch.Tensor:
    """Gini index of each map (N, h, w) → (N,): 0 for a constant map, up to (n − 1)/n for one non-zero pixel
    among n. NaN for an all-zero map."""
    a = torch.sort(_flat(maps), dim=1).values
    n = a.shape[1]
    weights = 2 * torch.arange(1, n + 1, device=a.device, dtype=a.dtype) - n - 1
    total = a.sum(1)
    gini = (a * weights).sum(1) / (n * total.clamp_min(torch.finfo(a.dtype).tiny))
    return torch.where(total > 0, gini, torch.full_like(gini, float("nan")))


def complexity(maps: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each map (N, h, w) as a distribution → (N,): log(h·w) for a constant map, 0 for one
    non-zero pixel. NaN for an all-zero map."""
    a = _flat(maps)
    total = a.sum(1, keepdim=True)
    p = a / total.clamp_min(torch.finfo(a.dtype).tiny)
    h = -torch.xlogy(p, p).sum(1)
    return torch.where(total[:, 0] > 0, h, torch.full_like(h, float("nan")))
