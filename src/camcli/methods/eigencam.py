"""Eigen-CAM."""

from __future__ import annotations

import torch

from .base import CamMethod, Context


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
    needs_grad = False
    cost = "≈1 forward + an SVD per image"

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        cached = ctx.cache.get(self.name)
        if cached is not None:  # class-agnostic: the same map for every class slot
            return cached
        b, c, h, w = acts.shape
        flat = acts.reshape(b, c, h * w).transpose(1, 2).double()  # (B, hw, C)
        centred = flat - flat.mean(dim=1, keepdim=True)
        _u, _s, vh = torch.linalg.svd(centred, full_matrices=False)
        proj = (centred @ vh[:, 0, :, None]).squeeze(-1)  # (B, hw)
        energy = flat.sum(dim=2)
        corr = ((proj - proj.mean(1, keepdim=True)) * (energy - energy.mean(1, keepdim=True))).sum(1)
        sign = torch.where(corr < 0, -1.0, 1.0).to(proj.dtype)[:, None]
        out = (proj * sign).reshape(b, h, w).float()
        ctx.cache[self.name] = out
        return out
