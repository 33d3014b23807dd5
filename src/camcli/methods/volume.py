"""Maps of videos and 3-D volumes: a layer's (B, C, d, h, w) grid (time or depth, then space) explained by the same
methods, with the same formulas, as a picture's (B, C, h, w) grid.

How: the layer's output and its gradient are folded to (B, C, d·h, w) (:func:`camcli.engine.volumes.fold`: frames
or slices stacked along the rows) and handed, unchanged, to each method's :meth:`~CamMethod.raw_map`. A method whose
map is made from the grid's positions alone then computes exactly its 3-D formula: Grad-CAM's mean over positions is
the mean over d·h·w voxels (MONAI's ``GradCAM`` averages the gradient over ``*spatial``, the same thing),
Grad-CAM++'s and XGrad-CAM's sums run over every voxel, HiResCAM's and Layer-CAM's products are voxel by voxel,
Eigen-CAM's principal component is taken over the d·h·w positions, and the ReLU and min-max normalisation
(:func:`~camcli.methods.base.normalize`, over the last two dims) cover the whole volume. The map is then unfolded to
(d, h, w) and resized to the input's (D, H, W) with trilinear interpolation (``align_corners=False``, as MONAI's
``default_upsampler``) and min-max normalised again over the volume, as a picture's map is when it is drawn.

Against MONAI 1.6's ``monai.visualize.GradCAM`` on the same tensors (tests/test_volume_maps.py): the same maps once
MONAI's postprocessing is left out. Its default ``default_normalizer`` is ``ScaleIntensity(minv=1.0, maxv=0.0)`` per
sample, which maps (min, max) to (1, 0): the map inverted ("will flip magnitudes"), and a constant map left as it is.
Its ``GradCAMpp`` differs from the paper, which camcli follows: α's denominator is 2g² + Σ_ab A_ab g_ab³ (the paper:
g_ij³ Σ_ab A_ab), and the ReLU'd gradient is multiplied by exp(score), a (B,) tensor that broadcasts against the
last spatial axis (a batch of more than one fails, or is silently wrong when that axis has B cells); the two agree
where each channel's gradient is the same at every voxel (the layer feeding a global pool and a linear head).

Methods that need the input's 2-D size inside (Score-CAM and its refinements mask the input with upsampled channels;
Ablation-CAM; RefineCAM fuses several layers' upsampled maps; pixel attribution and the transformer methods work on
the whole model) say ``volumes = False`` and are refused in one line that names those that work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.scoring import Scorer
from ..engine.targets import Target
from ..engine.volumes import Size3, check_volume_layout, fold, volume_grid, volume_layout
from ..errors import UsageError
from ..method_params import MethodParams
from ..options import Layout
from .base import CamMethod, Explanation
from .explain import at_layers


def volume_methods() -> list[str]:
    """The registered methods that explain videos and volumes (``volumes = True``), in the registry's order."""
    from . import REGISTRY  # the registry imports this module: read when it is needed

    return [name for name, cls in REGISTRY.items() if cls.volumes]


def check_volume_methods(methods: Sequence[CamMethod], params: MethodParams) -> None:
    """A one-line :class:`UsageError` naming the methods that work on volumes when one of ``methods`` does not
    (or Finer-CAM's base method, ``params.finer_base``, does not)."""
    from . import get_method

    refused = [m.name for m in methods if not m.volumes]
    refused += [
        f"finercam's base {params.finer_base}"
        for m in methods
        if m.name == "finercam" and not get_method(params.finer_base).volumes
    ]
    if refused:
        raise UsageError(
            f"{', '.join(refused)} cannot explain a video or volume (made with the input's 2-D size or the "
            f"whole model); use one of: {', '.join(volume_methods())}"
        )


def upsample_volume(maps: torch.Tensor, size: Size3, rel_eps: float = 1e-6) -> torch.Tensor:
    """(..., d, h, w) maps in [0, 1] → (..., D, H, W): trilinear (``align_corners=False``) to ``size``, then each map
    min-max normalised over its whole volume (a constant map → zeros, as :func:`~camcli.methods.base.normalize`).

    One full-size map at a time, normalised in place: a 512 × 512 × 300 scan's map is 315 MB in float32.
    """
    lead = maps.shape[:-3]
    flat = maps.reshape(-1, 1, *maps.shape[-3:]).float()
    out = torch.empty((flat.shape[0], *size), dtype=torch.float32, device=maps.device)
    for i in range(flat.shape[0]):
        up = F.interpolate(flat[i : i + 1], size=size, mode="trilinear", align_corners=False)[0, 0]
        lo, hi = torch.aminmax(up)
        span = hi - lo
        if bool(span <= rel_eps * hi.abs()):
            out[i].zero_()
        else:
            out[i] = up.sub_(lo).div_(span).clamp_(0, 1)
    return out.reshape(*lead, *size)


def explain_volume(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    methods: Sequence[CamMethod] | CamMethod,
    targets: Sequence[Target | int] | None = None,
    top_k: int = 1,
    layout: str | Layout | None = None,
    score_batch: int = 32,
    *,
    classes: torch.Tensor | None = None,
    signs: torch.Tensor | None = None,
    scorer: Scorer | None = None,
    threshold: float | None = None,
    params: MethodParams | None = None,
) -> Explanation:
    """Explain a batch of clips or volumes ``x`` (B, C, D, H, W) (D: time for a video, depth for a scan;
    preprocessed, on the model's device) at one ``layer`` with one or more ``methods`` (``volumes = True``).

    One forward pass serves every method; only the part of the network after the layer records a graph; the
    gradients come from ``torch.autograd.grad`` on the captured output (no parameter's ``.grad`` is touched); the
    model's hooks, training and ``requires_grad`` flags are as they were afterwards, also after an error (the same
    machinery as :func:`~camcli.methods.explain.explain`, with the grid folded: see the module's text).

    The layer's output is (B, C, d, h, w) or (B, d, h, w, C): ``layout`` (``ncdhw``/``ndhwc``) says which, or it is
    read from the shape (:func:`camcli.engine.volumes.volume_layout`; a :class:`LayerError` when the shape cannot
    tell). ``targets``/``top_k``/``threshold``, ``classes`` (B, K) with ``signs``, ``scorer`` and ``params`` are as
    for :func:`~camcli.methods.explain.explain`.

    Returns an :class:`Explanation` whose ``by_method`` maps are (B, K, D, H, W) float32 in [0, 1] at the input's
    (D, H, W) (trilinear, normalised over each volume: :func:`upsample_volume`) and whose ``per_layer[(method,
    layer)]`` are the layer's own (B, K, d, h, w) maps, normalised over each volume.
    """
    if x.dim() != 5:
        raise UsageError(f"a video or volume batch is (B, C, D, H, W); got shape {list(x.shape)}")
    methods = [methods] if isinstance(methods, CamMethod) else list(methods)
    if not methods:
        raise UsageError("explain_volume needs at least one method")
    params = params or MethodParams()
    params.check()
    scorer = scorer or Scorer()
    check_volume_methods(methods, params)
    wanted = check_volume_layout(None if layout is None else str(layout))
    size: Size3 = (int(x.shape[-3]), int(x.shape[-2]), int(x.shape[-1]))
    grids: dict[str, Size3] = {}

    def lay_out(name: str, act: torch.Tensor, kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
        shape = tuple(act.shape)
        found = volume_layout(shape, wanted, size, name, kind)
        grids[name] = volume_grid(shape, found)
        return partial(fold, layout=found)

    given = (classes, signs) if classes is not None else None
    logits, chosen, signs, valid, folded = at_layers(
        model,
        x,
        [layer],
        methods,
        given,
        (targets, top_k, threshold),
        score_batch,
        None,
        scorer,
        params,
        lay_out=lay_out,
    )
    per_layer = {key: m.reshape(*m.shape[:2], *grids[layer]) for key, m in folded.items()}
    by_method = {m.name: upsample_volume(per_layer[(m.name, layer)], size) for m in methods}
    logits = logits.detach().float()
    return Explanation(
        logits.cpu(),
        scorer.probabilities(logits).cpu(),
        chosen.cpu(),
        by_method,
        per_layer,
        signs.cpu(),
        valid.cpu() if valid is not None else None,
    )
