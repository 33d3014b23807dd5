"""KPCA-CAM."""

from __future__ import annotations

import torch

from ..errors import LayerError
from .base import CamMethod, Context
from .eigencam import orient

MAX_POSITIONS = 4096  # the kernel matrix is (h·w)²: 4096 positions make 128 MiB in float64
DENSE_UP_TO = 1024  # positions up to which the whole eigendecomposition is cheaper than an iterative solver


def kernel_component(values: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) → (B, h, w): each image's first kernel principal component (sigmoid kernel, γ = 1/C, c₀ = 1)
    of its (h·w, C) rows centred over positions, scaled by √λ as scikit-learn's ``KernelPCA.fit_transform``
    returns it, oriented by :func:`~camcli.methods.eigencam.orient`; in float64, returned as float32."""
    b, c, h, w = values.shape
    flat = torch.nan_to_num(values.reshape(b, c, h * w).transpose(1, 2).double())  # (B, n, C)
    centred = flat - flat.mean(dim=1, keepdim=True)
    kernel = torch.tanh(centred @ centred.transpose(1, 2) / c + 1.0)  # (B, n, n)
    kernel = (
        kernel
        - kernel.mean(dim=1, keepdim=True)
        - kernel.mean(dim=2, keepdim=True)
        + kernel.mean(dim=(1, 2), keepdim=True)
    )
    lam, vec = _top_eigenpair(kernel)
    proj = vec * lam.clamp_min(0).sqrt()[:, None]  # a negative top eigenvalue (an indefinite kernel): no map
    return orient(proj, flat).reshape(b, h, w).float()


def _top_eigenpair(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest eigenvalue (B,) and a unit eigenvector (B, n) of each symmetric (n, n) matrix."""
    n = kernel.shape[-1]
    if n <= DENSE_UP_TO:
        lam, vec = torch.linalg.eigh(kernel)
        return lam[:, -1], vec[:, :, -1]
    start = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=kernel.dtype).to(kernel.device)
    pairs = [torch.lobpcg(k, X=start, largest=True) for k in kernel]  # a fixed start: the global RNG is not drawn
    return torch.stack([p[0][0] for p in pairs]), torch.stack([p[1][:, 0] for p in pairs])


class KPCACAM(CamMethod):
    r"""KPCA-CAM: the activations projected on their first *kernel* principal component (class-agnostic).

    Per image, the activations' (h·w, C) rows :math:`a_p` are centred over positions; the sigmoid kernel
    :math:`K_{pq} = \tanh(\gamma\, a_p \cdot a_q + c_0)` with :math:`\gamma = 1/C` and :math:`c_0 = 1` is
    centred in feature space, :math:`\tilde K = K - 1_n K - K 1_n + 1_n K 1_n`, and the map is the first
    component, :math:`L_p = \sqrt{\lambda_1}\, u_{1,p}` for the largest eigenpair of :math:`\tilde K`.

    Karmani et al., "KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA", 2024
    (arXiv:2410.00267). The kernel and its parameters are pytorch-grad-cam's ``KPCA_CAM`` defaults
    (scikit-learn's ``KernelPCA(n_components=1, kernel="sigmoid", gamma=None)``: γ = 1/C, coef0 = 1); camcli
    solves the eigenproblem in torch (a full ``eigh`` up to 1,024 positions, LOBPCG above), so scikit-learn is not
    needed. The component's sign is arbitrary: scikit-learn makes its largest entry positive, camcli orients it
    like ``eigencam`` (positive correlation with the channel-summed activation), so the map highlights where the
    layer is active. The kernel has one entry per pair of positions: layers with more than 4,096 positions are
    refused (and so it is not offered on detectors, whose finest feature levels have tens of thousands).
    """

    name = "kpcacam"
    summary = "first kernel principal component of the activations (sigmoid kernel; class-agnostic)"
    paper = "Karmani et al., 2024, arXiv:2410.00267"
    needs_grad = False
    volumes = True
    cost = "≈1 forward + an (h·w)² kernel eigenproblem per image"

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        cached = ctx.cache.get(self.name)
        if cached is not None:  # class-agnostic: the same map for every class slot
            return cached
        h, w = acts.shape[-2:]
        if h * w > MAX_POSITIONS:
            raise LayerError(
                f"kpcacam compares every pair of a layer's positions: layer '{ctx.layer}' has {h * w} "
                f"(at most {MAX_POSITIONS}); pick a deeper layer (see: camcli layers)"
            )
        out = kernel_component(acts)
        ctx.cache[self.name] = out
        return out
