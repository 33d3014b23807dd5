"""Seg-Eigen-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod, Context


class SegEigenCAM(CamMethod):
    r"""Seg-Eigen-CAM: Eigen-CAM of the activations weighted, position by position, by the gradient's magnitude.

    .. math::  \tilde A = |\partial y^c / \partial A| \odot A, \qquad
               L^c = s \cdot (\tilde A - \bar{\tilde A})\, v_1, \qquad
               s = \begin{cases} -1 & |\min_{ij} L| > |\max_{ij} L| \\ 1 & \text{otherwise} \end{cases}

    with :math:`\tilde A` as an (h·w, C) matrix centred over positions and :math:`v_1` its first right singular
    vector; the sign :math:`s` makes the larger end of the projection positive (eq. 10–13). Chung & Ying,
    "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation Models", Applied Sciences
    15(13) 7562, 2025 (doi:10.3390/app15137562). As in pytorch-grad-cam 1.5.7's ``SegEigenCAM`` (NaNs set to 0,
    the same sign rule); camcli takes the SVD in float64.

    Made for segmenters, where :math:`y^c` is the class's logits summed over its mask (camcli's segmentation
    target); it takes any explained score, so it also runs on detectors' objects and on classifiers.
    """

    name = "segeigencam"
    summary = "first principal component of the activations weighted by |gradient| (segmentation)"
    paper = "Chung & Ying, Applied Sciences 2025"
    on_objects = True
    cost = "≈1 forward + an SVD per image"

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        b, c, h, w = acts.shape
        weighted = grads.abs() * acts
        weighted = torch.where(weighted.isnan(), torch.zeros_like(weighted), weighted)
        flat = weighted.reshape(b, c, h * w).transpose(1, 2).double()  # (B, hw, C)
        centred = flat - flat.mean(dim=1, keepdim=True)
        _u, _s, vh = torch.linalg.svd(centred, full_matrices=False)
        proj = (centred @ vh[:, 0, :, None]).squeeze(-1)  # (B, hw)
        flip = proj.amin(1).abs() > proj.amax(1).abs()
        proj = torch.where(flip[:, None], -proj, proj)
        return proj.reshape(b, h, w).float()
