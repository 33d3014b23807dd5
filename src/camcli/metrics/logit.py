"""The random-logit test (Sixt et al., "When explanations lie: why many modified BP attributions fail", ICML 2020).

A map that explains *a class* should change when another class is explained on the same image. The test draws,
per row, a class other than the explained one (uniformly, from a seeded generator, so a run is reproducible),
the caller computes that class's map, and the score is the SSIM between the two maps: high means the map hardly
depends on the class (it fails the test), low means it does.

The SSIM is :func:`camcli.metrics.sanity.ssim`, the 2-D one of Wang et al. 2004 (Gaussian window 11 × 11, sigma
1.5, data range 1), equal to scikit-image's ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` (tested). Quantus 0.6's ``RandomLogit`` measures a different
similarity: scikit-image's default SSIM (a 7-sample uniform window) on each map *flattened to one row*, so its
windows run along image rows and wrap from one row into the next; the 2-D window here is what the paper and the
model-randomisation check compare, so the two do not agree (tested, with Quantus's function on the same maps).
"""

from __future__ import annotations

import torch

from ..errors import UsageError
from .sanity import ssim


def other_classes(classes: torch.Tensor, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Per row of ``classes`` (N,) a class in ``0 … num_classes − 1`` other than the given one, each of the
    ``num_classes − 1`` others equally likely; the same for the same ``seed`` (a CPU ``torch.Generator``, so
    on any device). Returns (N,) int64 on ``classes``' device."""
    if num_classes < 2:
        raise UsageError(
            f"the random-logit test needs a model with at least 2 classes (this one has {num_classes}); "
            "leave random-logit out of --metric"
        )
    given = classes.to("cpu", torch.int64).flatten()
    if given.numel() and (int(given.min()) < 0 or int(given.max()) >= num_classes):
        raise ValueError(f"classes must lie in 0 … {num_classes - 1}")
    gen = torch.Generator().manual_seed(seed)
    draw = torch.randint(0, num_classes - 1, given.shape, generator=gen)  # one of the num_classes − 1 others
    return (draw + (draw >= given).long()).view(classes.shape).to(classes.device)


def random_logit(maps: torch.Tensor, other_maps: torch.Tensor) -> torch.Tensor:
    """SSIM of each map (N, h, w) in [0, 1] with the map of the row's other class (N, h, w) → (N,) float32 on
    the maps' device: lower means the map depends more on the class. Maps must be at least 11 × 11 (ValueError)."""
    if maps.shape != other_maps.shape or maps.dim() != 3:
        raise ValueError(f"maps must be two (N, h, w) of one shape; got {tuple(maps.shape)}, {tuple(other_maps.shape)}")
    return ssim(maps.float(), other_maps.float()).to(maps.device)
