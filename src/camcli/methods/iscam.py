"""IS-CAM: Integrated Score-CAM."""

from __future__ import annotations

import torch

from .base import Context
from .scorecam import ScoreCAM, masked_scores, normalized_masks


class ISCAM(ScoreCAM):
    r"""IS-CAM: Score-CAM whose scores are averaged along a path of growing masks (an integral over the mask).

    .. math::  \alpha_i = \sum_{j=1}^{i} \frac{j}{N}, \qquad
               w_k^c = \mathrm{softmax}_k\Big(\frac{1}{N}\sum_{i=1}^{N} y^c(\alpha_i\, x \odot M_k)\Big), \qquad
               L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    Naidu et al., "IS-CAM: Integrated Score-CAM for axiomatic-based explanations", arXiv 2020
    (arXiv:2010.03023). camcli follows torchcam 0.5's ``ISCAM``, where the paper's sum leaves the path open: the
    mask :math:`M_k` is channel k min-max normalised at the layer's resolution, then upsampled to the input's
    (bilinear, ``align_corners=False``); step i multiplies the masked input by the running sum
    :math:`\alpha_i` above (so the last steps scale it up to :math:`(N+1)/2`), :math:`N = 10` (``--iscam-steps``);
    torchcam subtracts the input's own score from every masked score, which the softmax over channels ignores.
    Cost: N × C extra forwards per image (channels whose mask is all zero: once), shared by every class slot.
    """

    name = "iscam"
    summary = "Score-CAM with scores integrated over masks of growing strength (no gradients)"
    paper = "Naidu et al., arXiv 2020, arXiv:2010.03023"
    cost = "10 × C extra forwards per image (C = channels; --iscam-steps sets the 10)"
    params = ("iscam_steps",)

    def channel_scores(self, acts: torch.Tensor, ctx: Context) -> torch.Tensor:
        with torch.inference_mode():
            masks = normalized_masks(acts, tuple(ctx.x.shape[-2:]), ctx.x.dtype)  # type: ignore[arg-type]
        n = ctx.params.iscam_steps
        alphas = [sum((j + 1) / n for j in range(i + 1)) for i in range(n)]  # torchcam's running coefficient

        def scaled(m: torch.Tensor, _b: int, step: int) -> torch.Tensor:
            return m * alphas[step]

        return masked_scores(ctx, masks, f"iscam masks at {ctx.layer}", n, scaled)
