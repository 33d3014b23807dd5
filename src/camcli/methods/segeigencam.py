"""Seg-Eigen-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod, Context
from .eigencam import projection


class SegEigenCAM(CamMethod):
    r"""Seg-Eigen-CAM: Eigen-CAM of the activations weighted, position by position, by the gradient's magnitude.

    .. math::  \tilde A = |\partial y^c / \partial A| \odot A, \qquad
               L^c = s \cdot (\tilde A - \bar{\tilde A})\, v_1, \qquad
               s = \begin{cases} -1 & |\min_{ij} L| > |\max_{ij} L| \\ 1 & \text{otherwise} \end{cases}

    with :math:`\tilde A` as an (h·w, C) matrix centred over positions and :math:`v_1` its first right singular
    vector; the sign :math:`s` makes the larger end of the projection positive (eq. 10–13). Chung & Ying,
    "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation Models", Applied Sciences
    15(13) 7562, 2025 (doi:10.3390/app15137562). As in pytorch-grad-cam 1.5.7's ``SegEigenCAM`` (NaNs set to 0,
    the same sign rule); camcli computes the projection in float64, as Eigen-CAM's
    (:func:`camcli.methods.eigencam.projection`).

    Made for segmenters, where :math:`y^c` is the class's logits summed over its mask (camcli's segmentation
    target); it takes any explained score, so it also runs on detectors' objects and on classifiers.
    """

    name = "segeigencam"
    summary = "first principal component of the activations weighted by |gradient| (segmentation)"
    paper = "Chung & Ying, Applied Sciences 2025"
    on_objects = True
    volumes = True
    cost = "≈1 forward + an SVD per image"

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        b, _c, h, w = acts.shape
        proj, _rows = projection(grads.abs() * acts)  # (B, hw), float64
        flip = proj.amin(1).abs() > proj.amax(1).abs()
        return torch.where(flip[:, None], -proj, proj).reshape(b, h, w).float()
