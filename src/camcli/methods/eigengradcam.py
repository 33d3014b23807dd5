"""Eigen-Grad-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod, Context
from .eigencam import first_component


class EigenGradCAM(CamMethod):
    r"""Eigen-Grad-CAM: the first principal component of the gradient-weighted activations (class-specific).

    Per image, the (h·w, C) matrix of :math:`G \odot A` (:math:`G_{kij} = \partial y^c / \partial A^k_{ij}`) is
    centred over positions, :math:`G \odot A - \bar{m} = U \Sigma V^\top`, and the map is its projection on the
    first right singular vector:

    .. math::  L^c_{ij} = \big((G \odot A)_{:,ij} - \bar{m}\big) \cdot v_1

    Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, arXiv:2008.00299) applied to :math:`G \odot A` instead of
    :math:`A`, as pytorch-grad-cam's ``EigenGradCAM`` does (the variant is that library's, not a paper's). The
    SVD's sign is arbitrary; as for ``eigencam``, camcli picks it so that the map correlates positively with
    :math:`\sum_k G \odot A` (the HiResCAM map, the class evidence), where pytorch-grad-cam leaves the sign as
    LAPACK returns it.
    """

    name = "eigengradcam"
    summary = "first principal component of gradients × activations"
    paper = "Muhammad & Yeasin, IJCNN 2020 (gradient variant: pytorch-grad-cam), arXiv:2008.00299"
    on_objects = True
    volumes = True
    cost = "≈1 forward + an SVD per image and class"

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        return first_component(grads * acts)
