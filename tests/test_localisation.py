"""Localisation, complexity and random-logit metrics (camcli.metrics): hand-computed tiny cases, Quantus 0.6 on the
same maps and masks, and scikit-image's SSIM; where our definition differs from Quantus on purpose (ties,
constant maps, empty masks), the difference is asserted."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from camcli.errors import UsageError
from camcli.metrics import (
    complexity,
    energy_pointing,
    iou,
    other_classes,
    pointing,
    random_logit,
    relevance_mass,
    relevance_rank,
    sparseness,
)

NAN = float("nan")


def _one(h: int, w: int, *pixels: tuple[int, int]) -> torch.Tensor:
    """A (1, h, w) bool mask with the given pixels set."""
    m = torch.zeros(1, h, w, dtype=torch.bool)
    for y, x in pixels:
        m[0, y, x] = True
    return m


def _peak(h: int, w: int, y: int, x: int) -> torch.Tensor:
    """A (1, h, w) map of small noise-free values with its single maximum 1.0 at (y, x)."""
    m = torch.linspace(0, 0.5, h * w).view(1, h, w)
    m[0, y, x] = 1.0
    return m


def _same(got: torch.Tensor, want: list[float]) -> None:
    assert got.dtype == torch.float32 and got.shape == (len(want),)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7, equal_nan=True)


# ---------------------------------------------------------------------------------------------- hand-computed
def test_pointing_one_pixel_object_hit_and_miss():
    m = _peak(9, 9, 4, 4)
    assert pointing(m, _one(9, 9, (4, 4)), tolerance=0).item() == 1.0
    assert pointing(m, _one(9, 9, (4, 5)), tolerance=0).item() == 0.0
    assert pointing(m, _one(9, 9, (4, 5)), tolerance=1).item() == 1.0
    assert pointing(m, _one(9, 9, (5, 5)), tolerance=1).item() == 0.0  # √2 > 1
    assert pointing(m, _one(9, 9, (0, 0)), tolerance=15).item() == 1.0  # √32 ≤ 15: the default


def test_pointing_tolerance_boundary():
    """Peak at (0, 0); the object a single pixel at distance exactly 15 (9² + 12² = 15²) hits, just beyond misses."""
    m = _peak(40, 40, 0, 0)
    at = [(9, 12), (12, 9), (0, 15), (15, 0)]
    beyond = [(9, 13), (11, 11), (0, 16), (10, 12)]  # √250, √242, 16, √244
    maps = m.expand(8, -1, -1)
    masks = torch.cat([_one(40, 40, p) for p in at + beyond])
    _same(pointing(maps, masks), [1.0] * 4 + [0.0] * 4)
    # the nearest pixel of a larger object counts
    _same(pointing(m, _one(40, 40, (30, 30), (9, 12))), [1.0])


def test_pointing_undefined_and_ties():
    h = w = 6
    flat, zero = torch.full((1, h, w), 0.7), torch.zeros(1, h, w)
    mask = _one(h, w, (2, 2))
    _same(pointing(torch.cat([flat, zero]), mask.expand(2, -1, -1)), [NAN, NAN])  # points nowhere
    _same(pointing(_peak(h, w, 2, 2), _one(h, w)), [NAN])  # empty mask
    tie = torch.zeros(1, h, w)
    tie[0, 0, 5] = tie[0, 5, 0] = 1.0  # two maxima: (0, 5) comes first in row-major order
    _same(pointing(tie, _one(h, w, (5, 0)), tolerance=0), [0.0])
    _same(pointing(tie, _one(h, w, (0, 5)), tolerance=0), [1.0])
    _same(pointing(tie, _one(h, w, (5, 0)), tolerance=7), [0.0])  # (0, 5) → (5, 0): √50 ≈ 7.07
    _same(pointing(tie, _one(h, w, (5, 0)), tolerance=7.1), [1.0])


def test_energy_pointing_and_relevance_mass_by_hand():
    m = torch.zeros(1, 4, 4)
    m[0, 1:3, 1:3] = torch.tensor([[0.2, 0.4], [0.6, 1.0]])
    box = torch.zeros(1, 4, 4, dtype=torch.bool)
    box[0, 1:3, 1:3] = True
    _same(energy_pointing(m, box), [1.0])  # the whole mass in the box
    _same(relevance_mass(m, box), [1.0])
    half = _one(4, 4, (1, 1), (1, 2), (0, 0))  # 0.2 + 0.4 of 2.2
    _same(relevance_mass(m, half), [0.6 / 2.2])
    _same(energy_pointing(m, half), [0.6 / 2.2])
    _same(energy_pointing(torch.zeros(1, 4, 4), box), [NAN])
    _same(energy_pointing(m, _one(4, 4)), [NAN])
    _same(relevance_mass(torch.cat([torch.zeros(1, 4, 4), m]), torch.cat([box, _one(4, 4)])), [NAN, NAN])


def test_relevance_rank_by_hand_and_ties():
    m = torch.tensor([[[3.0, 2.0], [1.0, 0.0]]])
    _same(relevance_rank(m, _one(2, 2, (0, 0), (1, 1))), [0.5])  # K = 2: top pixels 3, 2; only 3 inside
    _same(relevance_rank(m, _one(2, 2, (0, 0), (0, 1))), [1.0])
    _same(relevance_rank(m, _one(2, 2, (0, 0), (0, 1), (1, 0), (1, 1))), [1.0])
    _same(relevance_rank(m, _one(2, 2)), [NAN])
    # ties by position: the lower row-major index ranks higher
    flat = torch.ones(1, 3, 3)
    _same(relevance_rank(flat, _one(3, 3, (0, 0))), [1.0])
    _same(relevance_rank(flat, _one(3, 3, (2, 2))), [0.0])
    _same(relevance_rank(flat, _one(3, 3, (0, 1), (2, 2))), [0.5])  # top 2: (0, 0), (0, 1)
    t = torch.tensor([[[0.0, 5.0, 1.0], [5.0, 0.0, 0.0]]])  # the two 5s: (0, 1) before (1, 0)
    _same(relevance_rank(t, _one(2, 3, (1, 0))), [0.0])
    _same(relevance_rank(t, _one(2, 3, (0, 1))), [1.0])


def test_iou_by_hand():
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0], m[0, 0, 1], m[0, 1, 0] = 1.0, 0.5, 0.4
    mask = _one(4, 4, (0, 0), (1, 0))
    _same(iou(m, mask), [1 / 3])  # on {(0,0), (0,1)} (0.5 ≥ 0.5·1 counts) vs mask: 1 / 3
    _same(iou(m, mask, threshold=0.4), [2 / 3])
    _same(iou(m, mask, threshold=0.0), [2 / 16])  # every pixel is on
    _same(iou(2 * m, mask), [1 / 3])  # scale-free
    _same(iou(torch.zeros(1, 4, 4), mask), [NAN])
    _same(iou(m, _one(4, 4)), [NAN])


def test_sparseness_and_complexity_by_hand():
    h, w = 3, 4
    n = h * w
    one = torch.zeros(1, h, w)
    one[0, 1, 2] = 0.8
    two = torch.zeros(1, h, w)
    two[0, 0, 0] = two[0, 2, 3] = 0.5
    maps = torch.cat([torch.full((1, h, w), 0.3), one, two, torch.zeros(1, h, w)])
    # Gini: constant 0; one pixel (n−1)/n; two equal pixels Σ(2i−n−1)a_(i)/(n·Σa) = (2·11−13 + 2·12−13)/(2n)
    _same(sparseness(maps), [0.0, (n - 1) / n, (9 + 11) / (2 * n), NAN])
    _same(complexity(maps), [math.log(n), 0.0, math.log(2), NAN])
    g = sparseness(torch.tensor([[[0.0, 0.0], [1.0, 3.0]]]))  # sorted 0 0 1 3, weights −3 −1 1 3: 10 / 16
    _same(g, [10 / 16])


def test_empty_batch_and_shapes():
    for f in (pointing, energy_pointing, relevance_mass, relevance_rank, iou):
        assert f(torch.zeros(0, 5, 5), torch.zeros(0, 5, 5, dtype=torch.bool)).shape == (0,)
    assert sparseness(torch.zeros(0, 5, 5)).shape == complexity(torch.zeros(0, 5, 5)).shape == (0,)
    with pytest.raises(ValueError):
        pointing(torch.zeros(2, 5, 5), torch.zeros(2, 5, 4, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------------- Quantus
def _random_case(n: int = 12, h: int = 24, w: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Untied random maps in [0, 1] (smooth plus noise), random blob masks and their bounding boxes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    maps, masks, boxes = [], [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 8)
        g = np.exp(-((yy - rng.uniform(0, h)) ** 2 + (xx - rng.uniform(0, w)) ** 2) / (2 * rng.uniform(2, 6) ** 2))
        m = g + 0.2 * rng.random((h, w))
        maps.append(m / m.max())
        blob = (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.5, 1.5)) ** 2 <= r**2
        blob[int(cy) % h, int(cx) % w] = True
        masks.append(blob)
        ys, xs = np.nonzero(blob)
        box = np.zeros_like(blob)
        box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
        boxes.append(box)
    return np.stack(maps), np.stack(masks), np.stack(boxes)


def _quantus(name: str, maps: np.ndarray, masks: np.ndarray | None = None, **kw) -> np.ndarray:
    """Quantus's metric on precomputed (N, h, w) maps and masks (one channel; no model: the maps are given)."""
    quantus = pytest.importorskip("quantus")
    n = maps.shape[0]
    a = maps[:, None].astype(np.float64).copy()
    s = None if masks is None else masks[:, None].astype(np.float64)
    x = np.zeros((n, 1, *maps.shape[1:]), dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")  # Quantus warns of empty masks and divides by x_batch[2:].size
        metric = getattr(quantus, name)(disable_warnings=True, **kw)
        y = np.zeros(n, dtype=int)
        out = metric(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s, channel_first=True)
    return np.asarray(out, dtype=np.float64)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).float() if a.dtype != bool else torch.from_numpy(a)


def test_localisation_equals_quantus():
    maps, masks, boxes = _random_case()
    got = pointing(_t(maps), _t(masks), tolerance=0).numpy()  # Quantus's game has no tolerance
    np.testing.assert_array_equal(got, _quantus("PointingGame", maps, masks))
    assert 0 < got.sum() < len(got)  # both hits and misses among the cases
    want = _quantus("RelevanceMassAccuracy", maps, masks)
    np.testing.assert_allclose(relevance_mass(_t(maps), _t(masks)).numpy(), want, rtol=1e-5)
    want = _quantus("AttributionLocalisation", maps, boxes)
    np.testing.assert_allclose(energy_pointing(_t(maps), _t(boxes)).numpy(), want, rtol=1e-5)
    want = _quantus("RelevanceRankAccuracy", maps, masks)
    np.testing.assert_allclose(relevance_rank(_t(maps), _t(masks)).numpy(), want, rtol=1e-6)


def test_complexity_equals_quantus():
    maps, _, _ = _random_case(seed=1)
    big = np.random.default_rng(2).random((2, 224, 224)) ** 4  # a 224² map: float32 sums still agree
    for m in (maps, big):
        want = _quantus("Sparseness", m, normalise=False, abs=False)
        np.testing.assert_allclose(sparseness(_t(m)).numpy(), want, rtol=1e-5, atol=1e-6)
        want = _quantus("Complexity", m, normalise=False, abs=False)
        np.testing.assert_allclose(complexity(_t(m)).numpy(), want, rtol=1e-5)


def test_deliberate_differences_from_quantus():
    """Ties, constant maps, empty masks and all-zero maps: what Quantus does, and what we do instead."""
    h = w = 8
    tie = np.zeros((1, h, w))
    tie[0, 0, 7] = tie[0, 7, 0] = 1.0
    far = np.zeros((1, h, w), dtype=bool)
    far[0, 7, 0] = True  # the second of the tied maxima
    # pointing: Quantus counts any tied maximum; we take the first (argmax), which is 7·√2 px from the object
    assert _quantus("PointingGame", tie, far)[0] == 1.0
    assert pointing(_t(tie), _t(far), tolerance=0).item() == 0.0
    # Quantus refuses a batch whose maps are all constant, so each odd case rides with an ordinary map (row 0)
    ok, ok_mask = np.linspace(0, 1, h * w).reshape(1, h, w), np.ones((1, h, w), dtype=bool)
    # a constant map: a hit for Quantus; NaN here (it points nowhere)
    flat = np.concatenate([ok, np.full((1, h, w), 0.5)])
    both = np.concatenate([ok_mask, far])
    assert _quantus("PointingGame", flat, both)[1] == 1.0
    assert math.isnan(pointing(_t(flat), _t(both))[1].item())
    # an empty mask: Quantus writes NaN into a bool array, which reads 1.0; NaN here
    empty = np.concatenate([ok_mask, np.zeros((1, h, w), dtype=bool)])
    two = np.concatenate([ok, tie])
    assert _quantus("PointingGame", two, empty)[1] == 1.0
    assert math.isnan(pointing(_t(two), _t(empty))[1].item())
    # an all-zero map: Quantus's energy pointing divides by sum + 1e-9 → 0, its Gini adds 1e-7 → 0; NaN here
    zero = np.concatenate([ok, np.zeros((1, h, w))])
    assert _quantus("AttributionLocalisation", zero, both, normalise=False)[1] == 0.0
    assert math.isnan(energy_pointing(_t(zero), _t(both))[1].item())
    assert _quantus("Sparseness", zero, normalise=False)[1] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(sparseness(_t(zero))[1].item())


def test_relevance_rank_ties_stable_vs_quantus():
    """On heavily tied maps our score is the definition with a stable sort (ties by position), Quantus's the same
    definition with numpy's default sort, whose order of tied pixels is unspecified."""
    maps, masks, _ = _random_case(seed=3)
    tied = np.round(maps * 4) / 4  # five levels
    k = masks.reshape(len(masks), -1).sum(1)

    def by(order: np.ndarray) -> np.ndarray:
        chosen = np.take_along_axis(masks.reshape(len(masks), -1), order, 1)
        return np.array([c[:kk].mean() for c, kk in zip(chosen, k, strict=True)])

    flat = -tied.reshape(len(tied), -1)
    np.testing.assert_allclose(relevance_rank(_t(tied), _t(masks)).numpy(), by(np.argsort(flat, 1, kind="stable")))
    np.testing.assert_allclose(_quantus("RelevanceRankAccuracy", tied, masks), by(np.argsort(flat, 1)))


# ---------------------------------------------------------------------------------------------- random logit
def test_other_classes():
    given = torch.tensor([0, 2, 4] * 4000)
    out = other_classes(given, 5, seed=3)
    assert out.dtype == torch.int64 and out.shape == given.shape
    assert bool((out != given).all()) and bool(((out >= 0) & (out < 5)).all())
    assert torch.equal(out, other_classes(given, 5, seed=3))
    assert not torch.equal(out, other_classes(given, 5, seed=4))
    for c in (0, 2, 4):  # uniform over the 4 others: each ≈ 1000 of 4000 (4 sigma ≈ 110)
        counts = torch.bincount(out[given == c], minlength=5)
        assert counts[c] == 0
        others = counts[torch.arange(5) != c]
        assert bool(((others - 1000).abs() < 110).all()), counts.tolist()
    assert torch.equal(other_classes(torch.tensor([0, 1, 1]), 2), torch.tensor([1, 0, 0]))
    with pytest.raises(UsageError, match="at least 2 classes"):
        other_classes(torch.tensor([0]), 1)
    with pytest.raises(ValueError):
        other_classes(torch.tensor([5]), 5)


def test_random_logit_equals_skimage_ssim():
    metrics = pytest.importorskip("skimage.metrics")
    maps, _, _ = _random_case(n=4, seed=5)
    other, _, _ = _random_case(n=4, seed=6)
    got = random_logit(_t(maps), _t(other)).numpy()
    want = [
        metrics.structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        for a, b in zip(maps, other, strict=True)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(random_logit(_t(maps), _t(maps)).numpy(), 1.0, rtol=1e-6)


def test_random_logit_differs_from_quantus_on_purpose():
    """Quantus's RandomLogit similarity is scikit-image's default SSIM on the maps flattened to one row each (its
    7-sample windows run along rows and wrap into the next); ours is the 2-D SSIM. Shown on the same maps."""
    pytest.importorskip("quantus")
    metrics = pytest.importorskip("skimage.metrics")
    from quantus.functions.similarity_func import ssim as quantus_ssim

    maps, _, _ = _random_case(n=4, seed=7)
    other, _, _ = _random_case(n=4, seed=8)
    a, b = maps.reshape(4, -1), other.reshape(4, -1)
    theirs = np.array(quantus_ssim(a, b, batched=True))
    rng = [float(np.ptp(np.concatenate([x, y]))) for x, y in zip(a, b, strict=True)]
    flat = [metrics.structural_similarity(x, y, data_range=r) for x, y, r in zip(a, b, rng, strict=True)]
    np.testing.assert_allclose(theirs, flat, rtol=1e-9)  # what Quantus computes
    ours = random_logit(_t(maps), _t(other)).numpy()
    assert np.abs(ours - theirs).max() > 1e-2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_same_as_cpu():
    """Every metric runs on the maps' device and gives there what it gives on the CPU (ties included)."""
    maps, masks, boxes = _random_case(seed=9)
    m, s, b = _t(np.round(maps * 8) / 8), _t(masks), _t(boxes)
    for f, args in (
        (pointing, (m, s)),
        (energy_pointing, (m, b)),
        (relevance_mass, (m, s)),
        (relevance_rank, (m, s)),
        (iou, (m, s)),
        (sparseness, (m,)),
        (complexity, (m,)),
        (random_logit, (m, m.flip(1))),
    ):
        gpu = f(*(a.cuda() for a in args))
        assert gpu.device.type == "cuda", f.__name__
        torch.testing.assert_close(gpu.cpu(), f(*args), rtol=1e-5, atol=1e-6, equal_nan=True, msg=f.__name__)
    given = torch.tensor([1, 2, 3])
    assert torch.equal(other_classes(given.cuda(), 10, seed=1).cpu(), other_classes(given, 10, seed=1))
