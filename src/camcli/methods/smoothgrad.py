"""SmoothGrad."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..steps import report
from .whole import ModelContext, ModelMethod


class SmoothGrad(ModelMethod):
    r"""SmoothGrad: the input gradient's magnitude averaged over noisy copies of the input.

    .. math::  M_{ij} = \sum_c \frac{1}{n} \sum_{k=1}^{n}
               \left| \frac{\partial y^c}{\partial x_{cij}}\Big|_{x + \varepsilon_k} \right|,
               \qquad \varepsilon_k \sim \mathcal{N}\big(0, (\sigma (\max x - \min x))^2\big)

    Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding noise", ICML-W 2017
    (arXiv:1706.03825). As captum's ``NoiseTunnel(Saliency(model))`` with ``nt_type="smoothgrad"`` (the mean of
    the absolute gradients), summed over the colour channels (``visualize_image_attr``): :math:`n` = ``--samples``,
    σ = ``--noise`` (the paper's noise level, a fraction of each input's range; the paper finds 10–20 % best).
    ``--signed`` keeps :math:`\sum_c \frac{1}{n}\sum_k \partial y^c / \partial x_{cij}` (the paper's own average,
    of the signed gradients).

    The noise is drawn on the CPU from a generator seeded with ``--seed``, one copy at a time, row after row (the
    same seed gives the same map on any device and for any ``--score-batch``; it is also the sequence captum draws
    from ``torch.manual_seed(seed)`` for one image, when C·H·W is a multiple of 16). The copies go through the model
    ``--score-batch`` at a time (captum: ``nt_samples_batch_size``).
    """

    name = "smoothgrad"
    summary = "absolute input gradients averaged over noisy copies of the input (--samples, --noise)"
    paper = "Smilkov et al., ICML-W 2017, arXiv:1706.03825"
    cost = "samples forwards + backwards per class"
    params = ("samples", "noise", "seed", "signed")

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        return self.attribution(ctx)[0]

    def attribution(self, ctx: ModelContext) -> tuple[torch.Tensor, torch.Tensor]:
        magnitude, signed = smooth_gradients(ctx)
        return magnitude.sum(dim=1), signed.sum(dim=1)


def noisy_copies(
    x: torch.Tensor, samples: int, noise: float, seed: int, chunk: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(rows (n,), noise (n, C, H, W)) for every (row, sample) of ``x``, ``chunk`` at a time, rows in order, drawn
    as they are needed; each copy's noise has std ``noise`` · (max − min) of its row."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    flat = x.detach().flatten(1).float()
    span = (flat.amax(1) - flat.amin(1)).cpu()
    shape = tuple(x.shape[1:])
    rows: list[int] = []
    draws: list[torch.Tensor] = []
    for b in range(x.shape[0]):
        std = float(noise * span[b])
        for _ in range(samples):
            rows.append(b)
            draws.append(torch.randn(shape, generator=gen) * std)
            if len(rows) == chunk:
                yield torch.tensor(rows), torch.stack(draws)
                rows, draws = [], []
    if rows:
        yield torch.tensor(rows), torch.stack(draws)


def smooth_gradients(ctx: ModelContext) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean |gradient|, mean gradient), each (B, C, H, W), over the noisy copies of each row."""
    x = ctx.x
    p = ctx.params
    magnitude = torch.zeros_like(x, dtype=torch.float32)
    signed = torch.zeros_like(x, dtype=torch.float32)
    chunks = -(-x.shape[0] * p.samples // ctx.score_batch)
    for done, (rows, eps) in enumerate(noisy_copies(x, p.samples, p.noise, p.seed, ctx.score_batch), start=1):
        rows = rows.to(x.device)
        grads = ctx.input_gradient(x[rows] + eps.to(x.device, x.dtype), rows).float()
        magnitude.index_add_(0, rows, grads.abs())
        signed.index_add_(0, rows, grads)
        report("smoothgrad samples", done, chunks)
    return magnitude / p.samples, signed / p.samples
