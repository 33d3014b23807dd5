"""The model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

The weights of the model are re-initialised in cascade, from the output layers towards the input, and each
method's map is computed again after each step, for the classes explained on the trained model. A map that
depends on what the model learned loses its resemblance to the original (Spearman rank correlation and SSIM
fall); a map that stays the same describes the input, not the model, and fails the check.

The user's model is never touched: the check works on a deep copy, and a test compares the original's
parameters byte for byte afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..steps import report

MapFn = Callable[[nn.Module], torch.Tensor]  # a model → (B, H, W) maps in [0, 1] for the fixed classes


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, from the output back to the input (the reverse of
    their registration order, which follows the forward pass in torchvision, timm and camcli's bundled model)."""
    names = [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def cascade_steps(layers: list[str], steps: int) -> list[list[str]]:
    """Split the layers (output first) into at most ``steps`` cumulative groups of about equal size: step k
    randomises the first k groups."""
    steps = max(1, min(steps, len(layers)))
    bounds = [round(len(layers) * (k + 1) / steps) for k in range(steps)]
    return [layers[:b] for b in bounds]


def randomize(module: nn.Module, seed: int) -> None:
    """Re-initialise a module's own parameters (its ``reset_parameters`` where it has one, else N(0, 0.02))."""
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):  # the user's random state, CPU and GPU, is left as it was
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()  # type: ignore[operator]
        else:
            with torch.no_grad():
                for p in module.parameters(recurse=False):
                    p.normal_(0.0, 0.02)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps (B, H, W) → (B,), ties given their average rank. Where ``b``
    is constant: 0 (none of ``a``'s ranking is left); where ``a`` is constant: NaN (it has none to compare).
    Computed on the CPU (float64)."""
    ra, rb = _ranks(a.flatten(1).to("cpu", torch.float64)), _ranks(b.flatten(1).to("cpu", torch.float64))
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    den = (ra.pow(2).sum(1) * rb.pow(2).sum(1)).sqrt()
    # a constant second map keeps no ranking of the first: 0; a constant first map has none to keep: undefined
    flat = torch.where(ra.pow(2).sum(1) > 0, torch.zeros_like(den), torch.full_like(den, float("nan")))
    return torch.where(den > 0, (ra * rb).sum(1) / den.clamp_min(1e-300), flat).float()


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based) along dim 1, ties sharing the mean of their positions."""
    sorted_v, order = torch.sort(v, dim=1, stable=True)
    n = v.shape[1]
    pos = torch.arange(1, n + 1, dtype=torch.float64, device=v.device).expand_as(v)
    # groups of equal values: the mean position of each group
    new_group = torch.ones_like(sorted_v, dtype=torch.bool)
    new_group[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    group = new_group.cumsum(1) - 1
    sums = torch.zeros_like(pos).scatter_add_(1, group, pos)
    counts = torch.zeros_like(pos).scatter_add_(1, group, torch.ones_like(pos))
    avg = sums.gather(1, group) / counts.gather(1, group)
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, order, avg)
    return ranks


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each pair of maps (B, H, W) in [0, 1] → (B,): Wang et al. 2004, Gaussian window
    11 × 11 with sigma 1.5, C1 = 0.01², C2 = 0.03², averaged over the valid windows (on the CPU, float64)."""
    a, b = a.to("cpu"), b.to("cpu")
    k = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(k**2) / (2 * 1.5**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).view(1, 1, 11, 11)
    x, y = a[:, None].double(), b[:, None].double()
    if x.shape[-1] < 11 or x.shape[-2] < 11:
        raise ValueError("SSIM needs maps of at least 11×11")
    mx, my = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mx * mx
    syy = F.conv2d(y * y, win) - my * my
    sxy = F.conv2d(x * y, win) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).float()


def cascade(
    model: nn.Module, maps_of: MapFn, steps: int = 6, seed: int = 0
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Randomise a copy of ``model`` in ``steps`` cumulative steps from the output; after each, the maps
    ``maps_of(copy)`` are compared with ``maps_of(model)``. Returns, per step, the last layer randomised and the
    (B,) Spearman correlations and SSIMs."""
    original = maps_of(model)
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    out = []
    done: set[str] = set()
    groups = cascade_steps(parameter_layers(work), steps)
    for k, group in enumerate(groups):
        report("sanity: randomised steps", k, len(groups))
        for i, name in enumerate(group):
            if name not in done:
                randomize(modules[name], seed + 7919 * k + i)
                done.add(name)
        now = maps_of(work)
        out.append((group[-1], spearman(original, now), ssim(original, now)))
    report("sanity: randomised steps", len(groups), len(groups))
    return out
