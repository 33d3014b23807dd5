"""Eigen-CAM, and the principal-component projection it shares with Eigen-Grad-CAM and KPCA-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod, Context


def orient(proj: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``proj`` (B, n) with each row's sign chosen so that it correlates positively (or not negatively) with the
    channel sum of ``values`` (B, n, C), the rows it was projected from.

    A principal component's sign is arbitrary (``v`` and ``-v`` are both eigenvectors); this makes the map
    highlight where the channels add up to most, rather than wherever LAPACK's sign happens to point.
    """
    total = values.sum(dim=2)
    corr = ((proj - proj.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))).sum(1)
    return proj * torch.where(corr < 0, -1.0, 1.0).to(proj.dtype)[:, None]


def first_component(values: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) → (B, h, w): each image's (h·w, C) matrix centred over positions and projected on its first
    right singular vector (:func:`projection`), oriented by :func:`orient`; returned as float32."""
    b, _c, h, w = values.shape
    proj, flat = projection(values)
    return orient(proj, flat).reshape(b, h, w).float()


def projection(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, h, w) → ((B, h·w) each image's (h·w, C) matrix centred over positions and projected on its first right
    singular vector, its sign as it comes; (B, h·w, C) the rows, uncentred), in float64.

    With ``M = U Σ Vᵀ`` the projection ``M v₁`` is ``σ₁ u₁``: it comes from the eigendecomposition of the smaller of
    ``M Mᵀ`` (h·w × h·w) and ``Mᵀ M`` (C × C), several times faster than the SVD of the (h·w, C) matrix (a late
    layer has 49 positions and 2,048 channels) and equal to it within float64 rounding.
    """
    b, c, h, w = values.shape
    flat = values.reshape(b, c, h * w).transpose(1, 2).double()  # (B, hw, C)
    flat = torch.nan_to_num(flat)  # as pytorch-grad-cam's projection does
    centred = flat - flat.mean(dim=1, keepdim=True)
    if h * w <= c:
        lam, vec = torch.linalg.eigh(centred @ centred.transpose(1, 2))
        proj = vec[:, :, -1] * lam[:, -1:].clamp_min(0).sqrt()  # σ₁ u₁
    else:
        _lam, vec = torch.linalg.eigh(centred.transpose(1, 2) @ centred)
        proj = (centred @ vec[:, :, -1:]).squeeze(-1)  # M v₁
    return proj, flat


class EigenCAM(CamMethod):
    r"""Eigen-CAM: the activations projected on their first principal component (class-agnostic).

    Per image, the (h·w, C) activation matrix is centred over positions, ``A = U Σ Vᵀ``, and the map is
    ``A v₁`` reshaped to (h, w). The SVD's sign is arbitrary; camcli fixes it so that the map correlates
    positively with the channel-summed activation (flip when the correlation is negative), so the map
    highlights where the layer is active. pytorch-grad-cam leaves the sign as LAPACK returns it.
    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020
    (arXiv:2008.00299).
    """

    name = "eigencam"
    summary = "first principal component of the activations (no gradients, class-agnostic)"
    paper = "Muhammad & Yeasin, IJCNN 2020, arXiv:2008.00299"
    on_objects = True
    volumes = True
    needs_grad = False
    cost = "≈1 forward + an SVD per image"

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        cached = ctx.cache.get(self.name)
        if cached is not None:  # class-agnostic: the same map for every class slot
            return cached
        out = first_component(acts)
        ctx.cache[self.name] = out
        return out
