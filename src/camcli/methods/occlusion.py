"""Occlusion."""

from __future__ import annotations

import math

import torch

from ..steps import report
from .reference import reference_input
from .whole import ModelContext, ModelMethod


class Occlusion(ModelMethod):
    r"""Occlusion: how much the class score drops when a square patch of the input is replaced by the baseline,
    averaged over the patches that cover each pixel.

    .. math::  A_{cij} = \frac{1}{|W_{ij}|} \sum_{w \in W_{ij}} \big(y^c(x) - y^c(x \odot (1 - m_w) + x' \odot
               m_w)\big), \qquad M_{ij} = \Big|\sum_c A_{cij}\Big| = C\,|A_{\cdot ij}|

    where :math:`m_w` is patch :math:`w` (every channel, ``--window`` × ``--window`` pixels), :math:`W_{ij}` the
    patches covering pixel (i, j) and :math:`x'` the ``--baseline`` (:mod:`camcli.methods.reference`). Zeiler &
    Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014 (arXiv:1311.2901), sec. 4.2.

    As captum's ``Occlusion`` with ``sliding_window_shapes=(C, window, window)`` and ``strides=(C, stride,
    stride)``: patches start at 0, stride, 2·stride … on each axis, ⌈(H − window)/stride⌉ + 1 of them (the last one
    cut at the border). The map is :math:`|\sum_c A_{cij}|` (``visualize_image_attr``'s ``absolute_value``);
    ``--signed`` keeps :math:`\sum_c A_{cij}`. Where camcli differs, on purpose: a window larger than the input is
    cut to the input (captum refuses it), and with a stride larger than the window the pixels no patch covers get 0
    (captum refuses that too, or divides by zero).

    The occluded copies go through the model ``--score-batch`` at a time (captum: ``perturbations_per_eval``).
    """

    name = "occlusion"
    summary = "score drop when a patch is replaced by the baseline, averaged per pixel (--window, --stride)"
    paper = "Zeiler & Fergus, ECCV 2014, arXiv:1311.2901"
    needs_grad = False
    cost = "1 + windows forwards per class (windows = (⌈(side − window)/stride⌉ + 1)²)"
    params = ("window", "stride", "baseline", "signed")

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        return self.attribution(ctx)[0]

    def attribution(self, ctx: ModelContext) -> tuple[torch.Tensor, torch.Tensor]:
        signed = occlusion(ctx) * ctx.x.shape[1]  # every channel of a pixel holds the same value
        return signed.abs(), signed


def windows(size: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[(start, end)] of the patches along one axis of ``size`` (captum's: ⌈(size − window)/stride⌉ + 1 patches)."""
    window = min(window, size)
    count = math.ceil((size - window) / stride) + 1
    return [(k * stride, min(k * stride + window, size)) for k in range(count)]


def occlusion(ctx: ModelContext) -> torch.Tensor:
    """(B, H, W) each pixel's mean score drop over the patches covering it (the same in every channel)."""
    x = ctx.x
    p = ctx.params
    base = reference_input(ctx).to(x.dtype)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    stride = p.occlusion_stride
    patches = [(y, xx) for y in windows(h, p.window, stride) for xx in windows(w, p.window, stride)]
    per_row = -(-len(patches) // ctx.score_batch)
    out = torch.zeros(x.shape[0], h, w, dtype=torch.float32, device=x.device)
    covered = torch.zeros(h, w, dtype=torch.float32, device=x.device)
    for (y0, y1), (x0, x1) in patches:
        covered[y0:y1, x0:x1] += 1
    for b in range(x.shape[0]):
        clean = ctx.scores_of(x[b : b + 1], b)[0]
        for done, start in enumerate(range(0, len(patches), ctx.score_batch), start=1):
            chunk = patches[start : start + ctx.score_batch]
            copies = x[b].expand(len(chunk), -1, -1, -1).clone()
            for j, ((y0, y1), (x0, x1)) in enumerate(chunk):
                copies[j, :, y0:y1, x0:x1] = base[b, :, y0:y1, x0:x1]
            drops = clean - ctx.scores_of(copies, b)
            for j, ((y0, y1), (x0, x1)) in enumerate(chunk):
                out[b, y0:y1, x0:x1] += drops[j]
            report("occlusion windows", b * per_row + done, x.shape[0] * per_row)
    return out / covered.clamp_min(1)
