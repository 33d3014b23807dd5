"""Random-CAM: a baseline."""

from __future__ import annotations

import torch

from .base import CamMethod, Context


def random_weights(channels: int, seed: int) -> torch.Tensor:
    """(C,) channel weights uniform in [−1, 1), the same for the same ``seed`` and channel count (a CPU generator
    of its own: the global random state is neither read nor advanced)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.rand(channels, generator=gen, dtype=torch.float64) * 2 - 1


class RandomCAM(CamMethod):
    r"""Random-CAM: the channels weighted by random numbers, a baseline that a method should beat.

    .. math::  w_k \sim U[-1, 1], \qquad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    pytorch-grad-cam's ``RandomCAM`` (no paper) draws new weights for every image from NumPy's global random state;
    camcli draws them from ``--seed`` (:class:`~camcli.method_params.MethodParams`), one weight per channel, the same
    for every image, class and batch, so the same seed gives the same map wherever the image falls in a batch.
    """

    name = "random"
    summary = "channels weighted by random numbers in [-1, 1] (--seed), a baseline"
    paper = "baseline: pytorch-grad-cam's RandomCAM"
    needs_grad = False
    volumes = True
    params = ("seed",)
    cost = "≈1 forward"

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        w = random_weights(acts.shape[1], ctx.params.seed).to(acts.device, acts.dtype)
        return torch.einsum("c,bchw->bhw", w, acts)
