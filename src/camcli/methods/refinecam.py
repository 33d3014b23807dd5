"""RefineCAM: several layers' maps multiplied, so that a deep layer's coarse map picks out a shallow layer's detail."""

from __future__ import annotations

import torch

from .base import CamMethod, Context, normalize, upsample


class RefineCAM(CamMethod):
    r"""RefineCAM: the product of a base method's maps at several layers (Grad-CAM++ by default).

    .. math::  L^c = \mathrm{norm}\Big(\prod_{l} \mathrm{norm}\big(\mathrm{up}(\mathrm{norm}(L^c_l))\big)\Big)

    :math:`L^c_l` is the base method's map (``--refine-base``) at layer :math:`l` (each ``--layer``, two or more),
    :math:`\mathrm{norm}` ReLU and min-max to [0, 1], :math:`\mathrm{up}` bilinear upsampling to the input's
    size. A pixel stays bright only where every layer's map is bright: the deep layer says where the class is,
    the shallow layers add their resolution and drop their noise elsewhere. (camcli's default for several
    layers, for every other method, is the mean of the same upsampled maps.)

    Domeniconi et al., "How to Evaluate and Refine your CAM", 2026 (arXiv:2605.14641). camcli follows
    pytorch-grad-cam 1.5.7's ``RefineCAM``: each layer's map normalised, resized to the input's size and
    normalised again (upsampling between a coarse grid's pixel centres can lower its peak below 1), the maps
    multiplied and the product normalised; its base method Grad-CAM++. torchcam 0.5's ``RefineCAM`` differs in
    two details: it does not normalise the maps again after resizing them, and it resizes them to the largest
    layer's grid unless given a size (camcli's fused maps are at the input's size for every method).
    """

    name = "refinecam"
    summary = "a base method's maps at several layers, multiplied (high-resolution, denoised)"
    paper = "Domeniconi et al., preprint 2026, arXiv:2605.14641"
    cost = "≈1 forward (the base method's cost)"
    params = ("refine_base",)
    min_layers = 2

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        from . import get_method  # the registry holds this module: imported when it is needed

        return get_method(ctx.params.refine_base).raw_map(acts, grads, ctx)

    def fuse(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        product = normalize(upsample(maps[0], size))
        for m in maps[1:]:
            product = product * normalize(upsample(m, size))
        return normalize(product)
