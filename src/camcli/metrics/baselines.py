"""Maps that explain nothing, measured beside the methods so that their numbers mean something.

* ``random``: uniform noise at the resolution of the methods' maps (a fixed seed per run), upsampled like them:
  the "no explanation" row (noise at the pixel level would be an unfair foil: removing scattered pixels
  destroys an image far faster than removing any region);
* ``gaussian``: a centred Gaussian (sigma a quarter of each side), the "objects are in the middle" prior;
* ``edges``: the Sobel gradient magnitude of the input, an explanation that never looks at the model.

Each takes the batch ``x`` (B, C, H, W) and returns (B, H, W) maps in [0, 1] on ``x``'s device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BASELINE_MAPS = ("random", "gaussian", "edges")


def _unit(maps: torch.Tensor) -> torch.Tensor:
    lo = maps.flatten(1).min(1).values[:, None, None]
    hi = maps.flatten(1).max(1).values[:, None, None]
    span = hi - lo
    return torch.where(
        span > 0, (maps - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(maps)
    )


def random_map(x: torch.Tensor, seed: int = 0, cells: tuple[int, int] | None = None) -> torch.Tensor:
    """Uniform noise at ``cells`` (h, w) (default: the input's size / 32, a CNN's last stage), bilinearly
    upsampled to the input's size and scaled to [0, 1]."""
    h, w = x.shape[-2:]
    ch, cw = cells or (max(1, h // 32), max(1, w // 32))
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand((x.shape[0], 1, ch, cw), generator=gen).to(x.device)
    return _unit(F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[:, 0])


def gaussian_map(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ys = (torch.arange(h, device=x.device, dtype=torch.float32) - (h - 1) / 2) / (h / 4)
    xs = (torch.arange(w, device=x.device, dtype=torch.float32) - (w - 1) / 2) / (w / 4)
    g = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / 2)
    return _unit(g.expand(x.shape[0], h, w).clone())


def edge_map(x: torch.Tensor) -> torch.Tensor:
    grey = x.float().mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device).view(1, 1, 3, 3)
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, kx)
    gy = F.conv2d(padded, kx.transpose(-1, -2))
    return _unit(torch.sqrt(gx**2 + gy**2)[:, 0])


def baseline_maps(name: str, x: torch.Tensor, seed: int = 0, cells: tuple[int, int] | None = None) -> torch.Tensor:
    """The baseline map ``name`` for the batch ``x``; ``cells``: the resolution of the methods' maps."""
    if name == "random":
        return random_map(x, seed, cells)
    if name == "gaussian":
        return gaussian_map(x)
    if name == "edges":
        return edge_map(x)
    raise ValueError(f"unknown baseline map {name!r}; use one of {', '.join(BASELINE_MAPS)}")
