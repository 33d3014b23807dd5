"""RISE (Randomized Input Sampling for Explanation)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..steps import report
from .whole import ModelContext, ModelMethod

GRID = 7  # s: the random grid's cells per side (the paper's ImageNet setting)
KEEP = 0.5  # p: the probability that a cell is kept (the paper's)


class RISE(ModelMethod):
    r"""RISE: the class probability of the input seen through random masks, each mask weighted by it.

    .. math::  M_{ij} = \frac{1}{N p} \sum_{k=1}^{N} f_c(x \odot m_k)\, m_{k,ij}

    Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018
    (arXiv:1806.07421). Black-box: forwards only. Masks as the authors' code (github.com/eclique/RISE,
    ``generate_masks``): a :math:`s \times s` grid (s = 7) of cells kept with probability p = 0.5, upsampled
    bilinearly to :math:`(s + 1) \lceil H/s \rceil \times (s + 1) \lceil W/s \rceil`, then cropped to H × W at a random
    shift of less than one cell on each axis; N = ``--masks``. :math:`f_c` is the target's probability as the head
    reads it (softmax, as the reference; 1 − p for ``not:``), :math:`x \odot m_k` multiplies the model input (zero is
    the mean colour for a model normalised by the dataset's mean and std, as in the reference). The normalisation
    is the reference's, :math:`1/(N p)` (an expectation over masks, :math:`E[f_c(x \odot m) \mid m_{ij} = 1]`),
    though the min–max normalisation that follows makes any constant factor moot.

    Where camcli differs: the upsampling is torch's bilinear (``align_corners=False``, border values held) where the
    reference's ``skimage.transform.resize`` reflects beyond the border: the masks differ only within half a cell of
    the upsampled grid's edge. Masks come from a CPU generator seeded with ``--seed`` (same seed, same masks), made
    ``--score-batch`` at a time and never all held at once. The map is smooth rather than peaked: none of its values
    is clipped before normalising (``outliers = 0``).
    """

    name = "rise"
    summary = "class probability through random masks, each mask weighted by it (black-box; --masks)"
    paper = "Petsiuk et al., BMVC 2018, arXiv:1806.07421"
    needs_grad = False
    cost = "masks forwards per class"
    params = ("masks", "seed")
    outliers = 0.0

    def model_map(self, ctx: ModelContext) -> torch.Tensor:
        x = ctx.x
        n = ctx.params.masks
        size = (int(x.shape[-2]), int(x.shape[-1]))
        out = torch.zeros(x.shape[0], *size, dtype=torch.float32, device=x.device)
        chunks = -(-n // ctx.score_batch)
        for done, masks in enumerate(rise_masks(n, size, ctx.params.seed, ctx.score_batch), start=1):
            masks = masks.to(x.device)
            for b in range(x.shape[0]):
                probs = masked_probability(ctx, x[b][None] * masks[:, None].to(x.dtype), b)
                out[b] += torch.einsum("n,nhw->hw", probs, masks)
            report("rise masks", done, chunks)
        return out / (n * KEEP)


def masked_probability(ctx: ModelContext, masked: torch.Tensor, row: int) -> torch.Tensor:
    """(n,) the probability of row ``row``'s target (as the head reads it) for each of ``masked`` (n, C, H, W)."""
    scorer = ctx.scorer
    cls = ctx.classes[row].view(1).expand(masked.shape[0])
    sign = ctx.signs[row].view(1).expand(masked.shape[0])
    with torch.inference_mode():
        probs = scorer.probabilities(scorer.scores(ctx.output(masked)))
        return scorer.probability(probs, cls.to(probs.device), sign.to(probs.device)).float().clone()


def rise_masks(count: int, size: tuple[int, int], seed: int, chunk: int) -> Iterator[torch.Tensor]:
    """RISE's ``count`` masks for inputs of ``size`` (H, W), (n, H, W) float32 in [0, 1], ``chunk`` at a time: the
    grids and shifts are drawn at once (``count`` · (s² + 2) numbers), the masks made as they are needed, so they are
    the same for any ``chunk``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    grids = (torch.rand(count, GRID, GRID, generator=gen) < KEEP).float()
    h, w = size
    cell_h, cell_w = math.ceil(h / GRID), math.ceil(w / GRID)
    dy = torch.randint(0, cell_h, (count,), generator=gen).tolist()
    dx = torch.randint(0, cell_w, (count,), generator=gen).tolist()
    up = ((GRID + 1) * cell_h, (GRID + 1) * cell_w)
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        big = F.interpolate(grids[start:stop, None], size=up, mode="bilinear", align_corners=False)[:, 0]
        big.clamp_(0, 1)  # rounding can leave 1 + 1e-7
        yield torch.stack([big[i, dy[k] : dy[k] + h, dx[k] : dx[k] + w] for i, k in enumerate(range(start, stop))])
