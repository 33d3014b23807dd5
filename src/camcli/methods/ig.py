"""Integrated Gradients."""

from __future__ import annotations

import numpy as np
import torch

from ..steps import report
from .reference import reference_input
from .whole import ModelContext, ModelMethod


class IntegratedGradients(ModelMethod):
    r"""Integrated Gradients: the input's difference from a baseline :math:`x'`, times the class score's gradient
    averaged along the straight path from :math:`x'` to :math:`x`.

    .. math::  \mathrm{IG}_{cij}(x) = (x_{cij} - x'_{cij}) \int_0^1
               \frac{\partial y^c}{\partial x_{cij}}\Big|_{x' + \alpha (x - x')} d\alpha
               \approx (x_{cij} - x'_{cij}) \sum_{s=1}^{S} w_s \frac{\partial y^c}{\partial x_{cij}}\Big|_{x' +
               \alpha_s (x - x')}

    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017 (arXiv:1703.01365). The
    integral is taken as captum's ``IntegratedGradients`` takes it by default: Gauss–Legendre quadrature with
    :math:`S` = ``--steps`` nodes mapped to [0, 1] (:math:`\alpha_s = (1 + t_s)/2`, :math:`w_s = v_s/2` for
    numpy's ``leggauss`` nodes :math:`t_s` and weights :math:`v_s`, found here by Newton's method: see
    :func:`gauss_legendre`), exact for polynomials of degree < 2S (the paper uses a Riemann sum; with the same steps
    this is closer to the integral). :math:`x'` is ``--baseline``
    (:mod:`camcli.methods.reference`). The map is :math:`|\sum_c \mathrm{IG}_{cij}|` (captum's
    ``visualize_image_attr`` with ``sign="absolute_value"``); ``--signed`` keeps :math:`\sum_c \mathrm{IG}_{cij}`.

    The path's points go through the model ``--score-batch`` at a time (captum's ``internal_batch_size``; captum
    runs all steps at once by default), rows and steps of a batch together.
    """

    name = "ig"
    summary = "gradients along the path from a baseline to the input, times the input's difference (--steps)"
    paper = "Sundararajan et al., ICML 2017, arXiv:1703.01365"
    cost = "steps forwards + backwards per class"
    params = ("steps", "baseline", "signed")

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        return self.attribution(ctx)[0]

    def attribution(self, ctx: ModelContext) -> tuple[torch.Tensor, torch.Tensor]:
        signed = integrated_gradients(ctx).sum(dim=1)
        return signed.abs(), signed


def gauss_legendre(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(alphas, weights) (float32, alphas ascending) of the Gauss–Legendre rule with ``steps`` nodes on [0, 1]:
    captum's (numpy's ``leggauss`` mapped to [0, 1]), found here by Newton's method on the Legendre polynomial from
    the usual cosine guesses, O(steps²) (``leggauss`` solves a dense eigenproblem, O(steps³): a minute at 4096)."""
    n = steps
    x = np.cos(np.pi * (np.arange(n, 0, -1) - 0.25) / (n + 0.5))  # ascending
    for _ in range(100):
        p_n, dp = _legendre(n, x)
        dx = p_n / dp
        x = x - dx
        if float(np.abs(dx).max()) < 1e-15:
            break
    _, dp = _legendre(n, x)
    weights = 2 / ((1 - x**2) * dp**2)
    return torch.tensor(0.5 * (1 + x), dtype=torch.float32), torch.tensor(0.5 * weights, dtype=torch.float32)


def _legendre(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P_n(x), P_n'(x)) for n ≥ 1 by the three-term recurrence (|x| < 1)."""
    p_prev, p = np.ones_like(x), x.copy()
    for k in range(2, n + 1):
        p_prev, p = p, ((2 * k - 1) * x * p - (k - 1) * p_prev) / k
    return p, n * (x * p - p_prev) / (x**2 - 1)


def integrated_gradients(ctx: ModelContext) -> torch.Tensor:
    """(B, C, H, W) the signed attribution of every input value (see :class:`IntegratedGradients`)."""
    x = ctx.x
    base = reference_input(ctx).to(x.dtype)
    alphas, weights = gauss_legendre(ctx.params.steps)
    alphas, weights = alphas.to(x.device), weights.to(x.device)
    delta = x - base
    total = torch.zeros_like(x, dtype=torch.float32)
    b, steps = x.shape[0], alphas.numel()
    # every (row, step) point of the batch, row by row, cut into model batches of score_batch
    rows = torch.arange(b, device=x.device).repeat_interleave(steps)
    at = torch.arange(steps, device=x.device).repeat(b)
    chunks = -(-rows.numel() // ctx.score_batch)
    for done, start in enumerate(range(0, rows.numel(), ctx.score_batch), start=1):
        r, s = rows[start : start + ctx.score_batch], at[start : start + ctx.score_batch]
        points = base[r] + alphas[s].view(-1, 1, 1, 1).to(x.dtype) * delta[r]
        grads = ctx.input_gradient(points, r).float()
        total.index_add_(0, r, grads * weights[s].view(-1, 1, 1, 1))
        report("ig steps", done, chunks)
    return total * delta.float()
