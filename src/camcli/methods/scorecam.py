"""Score-CAM."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..steps import report
from .base import CamMethod, Context


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
            scores = self._masked_scores(acts, ctx)
            ctx.cache[self.name] = scores
        idx = ctx.classes.to(scores.device).view(-1, 1, 1).expand(-1, scores.shape[1], 1)
        weights = torch.softmax(ctx.signed(scores.gather(2, idx).squeeze(2)), dim=1)  # (B, C)
        return torch.einsum("bc,bchw->bhw", weights.to(acts.device), acts)

    @staticmethod
    def _masked_scores(acts: torch.Tensor, ctx: Context) -> torch.Tensor:
        """(B, C, num_classes) logits of the input masked by each channel's normalised activation."""
        x = ctx.x
        out = []
        with torch.inference_mode():
            up = F.interpolate(acts.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=True)
            flat = up.flatten(2)
            lo = flat.min(-1).values[..., None, None]
            hi = flat.max(-1).values[..., None, None]
            masks = (up - lo) / (hi - lo + 1e-8)  # (B, C, H, W)
            # channels with an all-zero mask all give the same masked input: score it once
            zeros = masks.flatten(2).amax(2) == 0  # (B, C)
            kept = [(~zeros[b]).nonzero().flatten() for b in range(x.shape[0])]
            total = sum(-(-int(k.numel()) // ctx.score_batch) for k in kept)
            done = 0
            for b in range(x.shape[0]):
                mb, zero, keep = masks[b], zeros[b], kept[b]
                chunks = []
                for start in range(0, keep.numel(), ctx.score_batch):
                    sel = keep[start : start + ctx.score_batch]
                    masked = (x[b][None] * mb[sel][:, None]).contiguous(memory_format=torch.channels_last)
                    chunks.append(ctx.scores(masked))
                    done += 1
                    report(f"scorecam masks at {ctx.layer}", done, total)
                if zero.any():
                    zero_score = ctx.scores(torch.zeros_like(x[b][None]))
                    logits_b = zero_score.expand(mb.shape[0], -1).clone()
                else:
                    logits_b = torch.empty(mb.shape[0], chunks[0].shape[1], device=x.device)
                if chunks:
                    logits_b[keep] = torch.cat(chunks)
                out.append(logits_b)
        return torch.stack(out).clone()
