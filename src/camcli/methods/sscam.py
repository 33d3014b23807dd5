"""SS-CAM: Smoothed Score-CAM."""

from __future__ import annotations

import torch

from .base import Context
from .scorecam import ScoreCAM, masked_scores, normalized_masks


class SSCAM(ScoreCAM):
    r"""SS-CAM: Score-CAM whose masks are smoothed with Gaussian noise, the scores averaged over N noisy samples.

    .. math::  \hat M_k^{(i)} = M_k + \delta^{(i)}, \quad \delta^{(i)} \sim \mathcal{N}(0, \sigma^2)
               \text{ per pixel}, \qquad
               w_k^c = \mathrm{softmax}_k\Big(\frac{1}{N}\sum_{i=1}^{N} y^c(x \odot \hat M_k^{(i)})\Big), \qquad
               L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    Wang et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization", arXiv 2020
    (arXiv:2006.14255). Where the paper leaves choices open camcli follows torchcam 0.5's ``SSCAM``: the mask
    :math:`M_k` is channel k min-max normalised at the layer's resolution, then upsampled to the input's
    (bilinear, ``align_corners=False``); the noise is drawn at the input's resolution, :math:`N = 35` samples of
    :math:`\sigma = 2` (on masks in [0, 1]; N is ``--sscam-samples``, σ the class attribute ``std``); torchcam
    subtracts the input's own score from every masked score, which the softmax over channels ignores.

    On purpose, camcli draws each image's noise from a generator of its own seeded with ``--seed`` (sample after
    sample, channel after channel), so an image's map does not depend on the batch it came in; torchcam draws
    one stream for the whole batch from torch's global generator (the same numbers for a batch of one after
    ``torch.manual_seed(seed)``). Cost: N × C extra forwards per image, shared by every class slot.
    """

    name = "sscam"
    summary = "Score-CAM with noisy masks, scores averaged over noisy samples (no gradients)"
    paper = "Wang et al., arXiv 2020, arXiv:2006.14255"
    cost = "35 × C extra forwards per image (C = channels; --sscam-samples sets the 35)"
    params = ("sscam_samples", "seed")
    std = 2.0  # the noise's standard deviation, on masks in [0, 1] (torchcam's std)

    def channel_scores(self, acts: torch.Tensor, ctx: Context) -> torch.Tensor:
        with torch.inference_mode():
            masks = normalized_masks(acts, tuple(ctx.x.shape[-2:]), ctx.x.dtype)  # type: ignore[arg-type]
        drawn: dict[int, torch.Generator] = {}

        def noisy(m: torch.Tensor, b: int, _step: int) -> torch.Tensor:
            if b not in drawn:  # a new image: its own stream, from the start
                drawn.clear()
                drawn[b] = torch.Generator(device="cpu").manual_seed(ctx.params.seed)
            noise = torch.randn(m.shape, generator=drawn[b], dtype=torch.float32) * self.std
            return m + noise.to(m.device, m.dtype)

        return masked_scores(
            ctx, masks, f"sscam masks at {ctx.layer}", ctx.params.sscam_samples, noisy, zero_stays=False
        )
