"""Score-CAM, and the masked scoring that its refinements (SS-CAM, IS-CAM) share."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..steps import report
from .base import CamMethod, Context

#: what a refinement does to a chunk of masks (n, H, W) for image ``b`` at step ``i`` before they multiply the input
Vary = Callable[[torch.Tensor, int, int], torch.Tensor]


def upsampled_masks(acts: torch.Tensor, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """Score-CAM's masks as pytorch-grad-cam makes them: each channel upsampled to ``size`` (bilinear,
    ``align_corners=True``), then min-max normalised: (B, C, H, W)."""
    up = F.interpolate(acts.to(dtype), size=size, mode="bilinear", align_corners=True)
    flat = up.flatten(2)
    lo = flat.min(-1).values[..., None, None]
    hi = flat.max(-1).values[..., None, None]
    return (up - lo) / (hi - lo + 1e-8)


def normalized_masks(acts: torch.Tensor, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """The masks as torchcam makes them: each channel min-max normalised at the layer's resolution, then upsampled
    to ``size`` (bilinear, ``align_corners=False``): (B, C, H, W)."""
    a = acts.to(dtype)
    lo = a.amin(dim=(2, 3), keepdim=True)
    hi = (a - lo).amax(dim=(2, 3), keepdim=True)
    return F.interpolate((a - lo) / (hi + 1e-8), size=size, mode="bilinear", align_corners=False)


def masked_scores(
    ctx: Context, masks: torch.Tensor, what: str, steps: int = 1, vary: Vary | None = None, zero_stays: bool = True
) -> torch.Tensor:
    """(B, C, num_classes) scores of the input multiplied by each channel's mask, ``ctx.score_batch`` masked
    copies per forward, under inference mode, with progress reported as ``what``.

    ``vary`` (SS-CAM's noise, IS-CAM's scaling) changes each chunk of masks at each of ``steps`` steps, and the
    scores are the mean over the steps; the chunks run image by image, step by step, channel after channel (the
    order in which SS-CAM draws its noise). Channels whose masks are all zero (e.g. all-zero activations) all give
    the same masked input, the zero input, which is scored once (``zero_stays``: ``vary`` keeps a zero mask
    zero). Masked batches are laid out channels-last, which oneDNN runs faster on CPUs without touching the model's
    own weights.
    """
    x = ctx.x
    out = []
    with torch.inference_mode():
        zeros = masks.flatten(2).amax(2) == 0  # (B, C)
        if not zero_stays:
            zeros = torch.zeros_like(zeros)
        kept = [(~zeros[b]).nonzero().flatten() for b in range(x.shape[0])]
        total = steps * sum(-(-int(k.numel()) // ctx.score_batch) for k in kept)
        done = 0
        for b in range(x.shape[0]):
            mb, zero, keep = masks[b], zeros[b], kept[b]
            sums: torch.Tensor | None = None
            for step in range(steps):
                chunks = []
                for start in range(0, keep.numel(), ctx.score_batch):
                    sel = keep[start : start + ctx.score_batch]
                    m = mb[sel] if vary is None else vary(mb[sel], b, step)
                    masked = (x[b][None] * m[:, None]).contiguous(memory_format=torch.channels_last)
                    chunks.append(ctx.scores(masked))
                    done += 1
                    report(what, done, total)
                if chunks:
                    scored = torch.cat(chunks)
                    sums = scored if sums is None else sums + scored
            if zero.any():
                zero_score = ctx.scores(torch.zeros_like(x[b][None]))
                logits_b = zero_score.expand(mb.shape[0], -1).clone()
            else:
                logits_b = torch.empty(mb.shape[0], sums.shape[1], device=x.device)  # type: ignore[union-attr]
            if sums is not None:
                logits_b[keep] = sums / steps if steps > 1 else sums
            out.append(logits_b)
    return torch.stack(out).clone()


class ScoreCAM(CamMethod):
    r"""Score-CAM: each channel weighted by the class score of the input masked with that channel.

    For every channel k the activation is upsampled to the input size (bilinear, ``align_corners=True`` as in
    pytorch-grad-cam), min-max normalised to a mask :math:`M_k`, and the model scores :math:`x \odot M_k`;
    :math:`w^c = \mathrm{softmax}_k(y^c(x \odot M_k))`, :math:`L^c = \mathrm{ReLU}(\sum_k w^c_k A^k)`.
    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks", CVPR-W 2020
    (arXiv:1910.01279).

    Cost: C extra forward passes per image (C = channels of the layer), run in batches of ``--score-batch``
    under inference mode. Masked forwards are shared by every class slot (all class scores come out of one
    pass), channels whose masks are identical (e.g. all-zero activations) are scored once, and the masked
    batches are laid out channels-last, which oneDNN runs faster on CPUs (measured: 1.3× resnet18, 1.75×
    EfficientNet-Lite0, 1.2× resnet50 forwards) without touching the model's own weights.
    """

    name = "scorecam"
    summary = "channels weighted by the score of the input masked with each channel (no gradients)"
    paper = "Wang et al., CVPR-W 2020, arXiv:1910.01279"
    on_objects = True
    needs_grad = False
    cost = "C extra forwards per image (C = channels)"

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        scores = ctx.cache.get(self.name)
        if scores is None:
            scores = self.channel_scores(acts, ctx)
            ctx.cache[self.name] = scores
        idx = ctx.classes.to(scores.device).view(-1, 1, 1).expand(-1, scores.shape[1], 1)
        weights = torch.softmax(ctx.signed(scores.gather(2, idx).squeeze(2)), dim=1)  # (B, C)
        return torch.einsum("bc,bchw->bhw", weights.to(acts.device), acts)

    def channel_scores(self, acts: torch.Tensor, ctx: Context) -> torch.Tensor:
        """(B, C, num_classes) the scores each channel's weight is the softmax of (over channels)."""
        with torch.inference_mode():
            masks = upsampled_masks(acts, tuple(ctx.x.shape[-2:]), ctx.x.dtype)  # type: ignore[arg-type]
        return masked_scores(ctx, masks, f"scorecam masks at {ctx.layer}")
