"""The reference input of a pixel attribution (``--baseline``): where Integrated Gradients' path starts, what
Occlusion's patch is filled with.

* ``zero``: the model input's zeros (for a model normalised by the dataset's mean and std: the mean colour);
* ``black``: a black picture as the model's preprocessing makes it, ``(0 − mean) / std`` per channel;
* ``blur``: the input blurred by a Gaussian of σ = 1/20 of its size on each axis (σ_y = H/20, σ_x = W/20): a
  separable kernel g_k ∝ exp(−k²/2σ²) for k = −⌈3σ⌉ … ⌈3σ⌉ (at least −1 … 1), summing to 1, with the border
  pixels repeated beyond the edges. Blurring the model input is blurring the picture (the
  preprocessing is affine per channel and the kernel sums to 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import UsageError
from .whole import ModelContext


def reference_input(ctx: ModelContext) -> torch.Tensor:
    """(B, C, H, W) the baseline ``ctx.params.baseline`` for the batch ``ctx.x`` (shared by the class slots)."""
    kind = ctx.params.baseline
    key = f"reference:{kind}"
    made = ctx.cache.get(key)
    if made is None:
        made = make_reference(ctx.x, kind, ctx.mean_std)
        ctx.cache[key] = made
    return made


def make_reference(
    x: torch.Tensor, kind: str, mean_std: tuple[Sequence[float], Sequence[float]] | None = None
) -> torch.Tensor:
    """(B, C, H, W) the baseline ``kind`` (zero, black, blur) of inputs ``x``; ``mean_std`` (mean, std per channel)
    for ``black``."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "black":
        if mean_std is None:
            raise UsageError(
                "the black baseline needs the model's preprocessing (mean, std), which was not passed (Python: "
                "explain(..., mean_std=(mean, std))); use the zero or blur baseline"
            )
        mean = torch.as_tensor(mean_std[0], dtype=x.dtype, device=x.device).flatten()
        std = torch.as_tensor(mean_std[1], dtype=x.dtype, device=x.device).flatten()
        if mean.numel() != x.shape[1] or std.numel() != x.shape[1]:
            raise UsageError(
                f"--baseline black: the model's preprocessing has {mean.numel()} channel means for an input of "
                f"{x.shape[1]} channels; use --baseline zero"
            )
        return (-mean / std).view(1, -1, 1, 1).expand_as(x).contiguous()
    if kind == "blur":
        return gaussian_blur(x, x.shape[-2] / 20, x.shape[-1] / 20)
    raise UsageError(f"--baseline {kind!r}: use zero, black, blur")


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The 1-D Gaussian of ``sigma`` on ``-⌈3σ⌉ … ⌈3σ⌉``, summing to 1 (float64)."""
    radius = max(1, math.ceil(3 * sigma))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(k**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_blur(x: torch.Tensor, sigma_y: float, sigma_x: float) -> torch.Tensor:
    """(B, C, H, W) blurred separably (rows, then columns), border pixels repeated (see the module's text)."""
    c = x.shape[1]
    out = x.float()
    for sigma, dim in ((sigma_x, 3), (sigma_y, 2)):
        g = gaussian_kernel(sigma).to(out.device, torch.float32)
        r = g.numel() // 2
        if dim == 3:
            weight, pad = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), (r, r, 0, 0)
        else:
            weight, pad = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), (0, 0, r, r)
        out = F.conv2d(F.pad(out, pad, mode="replicate"), weight, groups=c)
    return out.to(x.dtype)
