"""`camcli evaluate`: the metrics against hand-computed cases and the peers (torchcam, pytorch-grad-cam) on the
same maps and tensors, the sanity check, and the command on the sample images."""

from __future__ import annotations

import contextlib
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.metrics import deletion_insertion, drop_increase, impute, road, spearman, ssim
from camcli.metrics.faithfulness import baseline_input, pixel_ranks, road_unknown
from camcli.metrics.sanity import cascade, parameter_layers

from .conftest import SAMPLES


class SumNet(nn.Module):
    """logits = [sum of the pixels, 0]: the probability of class 0 is sigmoid(sum), by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_deletion_and_insertion_by_hand():
    """Four pixels 1, 2, 3, 4 (one channel), the map ranks them 4 > 2 > 3 > 1; four steps of one pixel."""
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    cam = torch.tensor([[[0.1, 0.8], [0.5, 0.9]]])
    c = deletion_insertion(SumNet(), x, cam, torch.tensor([0]), steps=4, deletion_baseline="zero",
                           insertion_baseline="zero")  # fmt: skip
    # deletion removes 4, then 2, then 3, then 1: sums 10, 6, 4, 1, 0
    want_del = [_sigmoid(v) for v in (10, 6, 4, 1, 0)]
    # insertion reveals in the same order: sums 0, 4, 6, 9, 10
    want_ins = [_sigmoid(v) for v in (0, 4, 6, 9, 10)]
    assert c.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(c.deletion[0].numpy(), want_del, rtol=1e-6)
    np.testing.assert_allclose(c.insertion[0].numpy(), want_ins, rtol=1e-6)
    trap = lambda ys: sum((a + b) / 2 * 0.25 for a, b in itertools.pairwise(ys))  # noqa: E731
    assert c.deletion_auc.item() == pytest.approx(trap(want_del), rel=1e-6)
    assert c.insertion_auc.item() == pytest.approx(trap(want_ins), rel=1e-6)


def test_drop_and_increase_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    cam = torch.tensor([[[0.0, 0.5], [1.0, 0.25]]])  # masked input: 0, 1, 3, 1 → sum 5
    drop, inc = drop_increase(SumNet(), x, cam, torch.tensor([0]))
    s, m = _sigmoid(10), _sigmoid(5)
    assert drop.item() == pytest.approx((s - m) / (s + 1e-7), rel=1e-5) and inc.item() == 0.0
    drop, inc = drop_increase(SumNet(), -x, cam, torch.tensor([0]))  # now masking raises the score
    assert drop.item() == 0.0 and inc.item() == 1.0


def test_pixel_ranks_highest_first_ties_by_position():
    r = pixel_ranks(torch.tensor([[[0.5, 0.9], [0.5, 0.1]]]))
    assert r.tolist() == [[[1, 0], [2, 3]]]


# ------------------------------------------------------------------------------------------- peers
@pytest.fixture(scope="module")
def net_and_maps():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(3, 3, 64, 64)
    coarse = torch.rand(3, 1, 4, 4)
    maps = torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    maps = (maps - maps.amin((1, 2), keepdim=True)) / (
        maps.amax((1, 2), keepdim=True) - maps.amin((1, 2), keepdim=True)
    )
    with torch.no_grad():
        classes = model(x).argmax(1)
    return model, x, maps, classes


class _GivenMaps:
    """A torchcam CAM extractor that hands out maps computed elsewhere (so both libraries score the same maps)."""

    def __init__(self, model: nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    def __call__(self, *args, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def test_drop_increase_equal_torchcam(net_and_maps):
    tcm = pytest.importorskip("torchcam.metrics")
    from functools import partial

    model, x, maps, classes = net_and_maps
    metric = tcm.ClassificationMetric(_GivenMaps(model, maps), partial(torch.softmax, dim=-1))
    metric.update(x, class_idx=classes.tolist())
    want = metric.summary()
    drop, inc = drop_increase(model, x, maps, classes)
    assert drop.mean().item() == pytest.approx(want["avg_drop"], abs=1e-5)
    assert inc.mean().item() == pytest.approx(want["conf_increase"], abs=1e-6)


@pytest.mark.parametrize("baseline", ["zero", "blur"])
def test_deletion_insertion_equal_torchcam(net_and_maps, baseline):
    tcm = pytest.importorskip("torchcam.metrics")
    if not hasattr(tcm, "DeletionInsertionMetric"):
        pytest.skip("this torchcam has no DeletionInsertionMetric")
    from functools import partial

    model, x, maps, classes = net_and_maps
    base = None if baseline == "zero" else (lambda t: baseline_input(t, "blur"))
    metric = tcm.DeletionInsertionMetric(
        _GivenMaps(model, maps), partial(torch.softmax, dim=-1), steps=16, baseline=base, batch_size=8
    )
    metric.update(x, class_idx=classes.tolist())
    want = metric.summary()
    c = deletion_insertion(model, x, maps, classes, steps=16, deletion_baseline=baseline,
                           insertion_baseline=baseline, chunk=8)  # fmt: skip
    assert c.deletion_auc.mean().item() == pytest.approx(want["deletion_auc"], abs=1e-5)
    assert c.insertion_auc.mean().item() == pytest.approx(want["insertion_auc"], abs=1e-5)


def test_road_equals_pytorch_grad_cam(net_and_maps):
    """Without noise, ROAD's MoRF/LeRF changes of probability and their combination equal pytorch-grad-cam's
    (which solves the imputation with scipy) to 1e-4."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, x, maps, classes = net_and_maps
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    cams = maps.numpy().astype(np.float32)
    ours = road(model, x, maps, classes, (20, 60), noise=0.0)
    for q in (20, 60):
        morf = PerturbationConfidenceMetric(RemoveMostRelevantFirst(100 - q, NoisyLinearImputer(noise=0.0)))
        lerf = PerturbationConfidenceMetric(RemoveLeastRelevantFirst(100 - q, NoisyLinearImputer(noise=0.0)))
        np.testing.assert_allclose(ours.morf[q].numpy(), morf(x, cams, targets, model), atol=1e-4)
        np.testing.assert_allclose(ours.lerf[q].numpy(), lerf(x, cams, targets, model), atol=1e-4)


def test_imputation_by_hand():
    """One unknown pixel in the middle of a 3×3 image: the weighted mean of its 8 neighbours."""
    x = torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3)
    unknown = torch.zeros(1, 3, 3, dtype=torch.bool)
    unknown[0, 1, 1] = True
    out = impute(x, unknown, noise=0.0)
    sides, corners = 1 + 3 + 5 + 7, 0 + 2 + 6 + 8
    assert out[0, 0, 1, 1].item() == pytest.approx(sides / 6 + corners / 12, abs=1e-5)
    assert torch.equal(out[0, 0][~unknown[0]], x[0, 0][~unknown[0]])
    with pytest.raises(ValueError, match="every pixel"):
        impute(x, torch.ones(1, 3, 3, dtype=torch.bool))


def test_road_thresholds_remove_the_right_share():
    m = torch.linspace(0, 1, 100).view(1, 10, 10)
    most = road_unknown(m, 20, True)
    least = road_unknown(m, 20, False)
    assert most.sum() == 20 and bool(most.flatten()[-20:].all())
    assert least.sum() == 20 and bool(least.flatten()[:20].all())


# ------------------------------------------------------------------------------------------ sanity
def test_spearman_and_ssim_against_references():
    scipy_stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(2, 16, 16, generator=gen)
    b = a + 0.3 * torch.rand(2, 16, 16, generator=gen)
    b[1] = torch.round(b[1] * 4) / 4  # ties
    rho = spearman(a, b)
    for i in range(2):
        want = scipy_stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert rho[i].item() == pytest.approx(want, abs=1e-6)
    assert ssim(a, a).tolist() == pytest.approx([1.0, 1.0], abs=1e-9)
    assert ssim(a, 1 - a).max().item() < 0.2


class Toy(nn.Module):
    """conv → relu → conv → global average → linear: small enough to randomise completely."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.b(torch.relu(self.a(x))))
        return self.fc(h.mean((2, 3)))


def test_sanity_check_leaves_the_model_alone_and_decorrelates_a_faithful_map():
    from camcli.methods import explain, get_method, upsample_normalized

    torch.manual_seed(0)
    model = Toy().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        classes = model(x).argmax(1, keepdim=True)

    def gradcam(m: nn.Module) -> torch.Tensor:
        ex = explain(m, x, "b", get_method("gradcam"), classes=classes)
        return torch.stack([upsample_normalized(v, (32, 32)) for v in ex.maps[:, 0]])

    steps = cascade(model, gradcam, steps=3)
    assert [layer for layer, _, _ in steps] == ["fc", "b", "a"]
    assert parameter_layers(model) == ["fc", "b", "a"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # byte for byte
    assert steps[-1][1].mean().item() < 0.5  # fully randomised: the map no longer follows the trained one
    # a map that ignores the model (the input's own brightness) does not move at all: it would fail the check
    same = cascade(model, lambda m: x.mean(1), steps=3)
    assert all(rho.min().item() > 0.999 for _, rho, _ in same)


# --------------------------------------------------------------------------------------------- CLI
runner = CliRunner()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    res = runner.invoke(
        app,
        ["evaluate", str(SAMPLES), "--method", "gradcam", "--method", "layercam", "--steps", "4",
         "--road-percents", "40", "--out", str(out)],
    )  # fmt: skip
    return out, res


def test_evaluate_writes_records_table_and_plot(evaluated):
    out, res = evaluated
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 3 * 5  # 3 images × (2 methods + 3 baselines)
    assert {r["method"] for r in recs} == {"gradcam", "layercam", "random", "gaussian", "edges"}
    for r in recs:
        assert r["kind"] == "evaluate" and r["status"] == "ok"
        assert set(r["scores"]) >= {"deletion_auc", "insertion_auc", "avg_drop", "increase", "road_combined"}
        assert len(r["curves"]["deletion"]) == 5 and 0 <= r["scores"]["deletion_auc"] <= 1
    assert "layercam" in res.stderr and "random (baseline)" in res.stderr and "insertion" in res.stderr
    assert (out / "curves.png").stat().st_size > 10_000
    from PIL import Image

    assert Image.open(out / "curves.png").size[0] > 800


def test_evaluate_resumes_and_reports_every_image(evaluated):
    out, _ = evaluated
    res = runner.invoke(
        app,
        ["evaluate", str(SAMPLES), "--method", "gradcam", "--method", "layercam", "--steps", "4",
         "--road-percents", "40", "--out", str(out), "--skip-existing"],
    )  # fmt: skip
    assert res.exit_code == 0 and "3 skipped" in res.stderr
    assert "gradcam" in res.stderr and "3 " in res.stderr  # the table still covers the 3 images measured before
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 15


def test_evaluate_sanity_on_the_sample_images(tmp_path):
    res = runner.invoke(
        app, ["evaluate", str(SAMPLES / "chelsea.png"), "--sanity", "--sanity-steps", "3", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in rec["sanity"]] == [1, 2, 3] and "scores" not in rec
    assert rec["sanity"][-1]["spearman"] < 0.5
    assert (tmp_path / "sanity.png").is_file() and "passes" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "auc"], "--metric"),
        (["--baseline", "black"], "--baseline"),
        (["--steps", "1"], "--steps"),
        (["--road-percents", "0,50"], "--road-percents"),
        (["--road-percents", "a"], "--road-percents"),
    ],
)
def test_evaluate_usage_errors(tmp_path, args, message):
    res = runner.invoke(app, ["evaluate", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path), *args])
    assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "metrics.jsonl").exists()


# ------------------------------------------------------------------------------- found in review
def test_a_blank_map_does_not_stop_road():
    """A map with no ranking (all zero) would lose every pixel to ROAD's threshold, which cannot be imputed: the
    share is then taken by rank."""
    blank = torch.zeros(1, 10, 10)
    for most in (True, False):
        assert road_unknown(blank, 30, most).sum() == 30
    half = torch.cat([torch.zeros(50), torch.linspace(0.1, 1, 50)]).view(1, 10, 10)
    assert road_unknown(half, 20, True).sum() == 20  # a normal map keeps pytorch-grad-cam's threshold


def test_spearman_of_constant_maps():
    a = torch.rand(1, 8, 8)
    assert spearman(a, torch.zeros(1, 8, 8)).item() == 0.0  # the randomised map kept nothing
    assert math.isnan(spearman(torch.zeros(1, 8, 8), a).item())  # the original had nothing to keep


def test_grey_image_among_photos_and_sharded_runs_merge(tmp_path):
    """An image whose edge map is blank goes through ROAD; shards write their own parts and plots, and
    merge-manifests joins the metrics parts."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (64, 48), (128, 128, 128)).save(src / "grey.png")
    Image.open(SAMPLES / "coffee.png").save(src / "coffee.png")
    out = tmp_path / "out"
    common = ["evaluate", str(src), "--metric", "road", "--road-percents", "50", "--out", str(out), "-q"]
    for k in (1, 2):
        res = runner.invoke(app, [*common, "--shard", f"{k}/2"])
        assert res.exit_code == 0, res.output
    parts = sorted(p.name for p in out.glob("metrics.shard-*.jsonl"))
    assert parts == ["metrics.shard-1-of-2.jsonl", "metrics.shard-2-of-2.jsonl"]
    assert sorted(p.name for p in out.glob("curves*.png")) == []  # ROAD alone draws no curves
    res = runner.invoke(app, ["merge-manifests", str(out)])
    assert res.exit_code == 0 and "metrics.jsonl: 8 records" in res.stderr  # 2 images × 4 maps
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" and r["scores"]["road_combined"] is not None for r in recs)


def test_resume_measures_again_when_the_settings_or_methods_change(tmp_path):
    img = str(SAMPLES / "chelsea.png")
    base = ["evaluate", img, "--metric", "drop", "--out", str(tmp_path), "--skip-existing"]
    assert "1 done" in runner.invoke(app, base).stderr
    assert "1 skipped" in runner.invoke(app, base).stderr
    res = runner.invoke(app, [*base, "--method", "layercam"])  # a method not measured yet
    assert "1 done" in res.stderr
    # the table shows this run's maps only (not the gradcam rows of the first run)
    table = res.stderr[res.stderr.index("interval") :]
    assert "layercam" in table and "gradcam" not in table
    assert "1 done" in runner.invoke(app, [*base, "--no-baselines", "--layer", "_blocks.15"]).stderr


@pytest.mark.parametrize(
    ("args", "message"), [(["--score-batch", "0"], "--score-batch"), (["--sanity", "--metric", "road"], "--sanity")]
)
def test_more_usage_errors(tmp_path, args, message):
    res = runner.invoke(app, ["evaluate", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path), *args])
    assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.output
