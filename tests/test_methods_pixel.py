"""The pixel-attribution family beyond saliency: Integrated Gradients, SmoothGrad, Occlusion and RISE, each against
numbers worked out by hand on a linear model, and (ig, smoothgrad, occlusion) against captum on resnet18."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from camcli.engine.scoring import Scorer
from camcli.errors import UsageError
from camcli.method_params import MethodParams
from camcli.methods import explain, get_method
from camcli.methods import rise as rise_module
from camcli.methods.ig import gauss_legendre
from camcli.methods.reference import gaussian_blur, make_reference
from camcli.methods.rise import rise_masks
from camcli.methods.whole import ModelContext, ModelMethod


class LinearNet(nn.Module):
    """Two class scores, each a weighted sum of the 12 input values: y_c = Σ W_c · x, so d y_c / d x = W_c.
    W_1 = 0.5, 1.5 … 11.5 and W_0 = −11.5 … −0.5 in the order of x.flatten(1) (channel, row, column)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.arange(24, dtype=torch.float32).view(2, 12) - 11.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _method(name: str) -> ModelMethod:
    m = get_method(name)
    assert isinstance(m, ModelMethod)
    return m


def _ctx(model: nn.Module, x: torch.Tensor, classes: list[int], **kw: object) -> ModelContext:
    signs = kw.pop("signs", torch.ones(len(classes)))
    return ModelContext(model, x, torch.tensor(classes), signs, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ by hand
def test_ig_of_a_linear_model_is_input_times_weights():
    # the gradient is W_c everywhere on the path and the Gauss–Legendre weights sum to 1, so from a zero baseline
    # IG = x ⊙ W_c exactly (the completeness axiom: Σ IG = y_c(x) − y_c(0)). x = 2 everywhere, class 1: summed over
    # the channels, pixel (0, 0) is 2 · (0.5 + 4.5 + 8.5) = 27, then 2 · 16.5 = 33, 2 · 19.5 = 39, 2 · 22.5 = 45
    model = LinearNet().eval()
    x = torch.full((1, 3, 2, 2), 2.0)
    made, signed = _method("ig").attribution(_ctx(model, x, [1], params=MethodParams(steps=7)))
    torch.testing.assert_close(signed[0], torch.tensor([[27.0, 33.0], [39.0, 45.0]]))
    torch.testing.assert_close(made, signed.abs())
    # class 0 (all weights negative): the signed values flip, the map is their magnitude
    made, signed = _method("ig").attribution(_ctx(model, x, [0], params=MethodParams(steps=3)))
    # W_0 at (0, 0): −11.5, −7.5, −3.5 → 2 · −22.5 = −45; then −39, −33, −27
    torch.testing.assert_close(signed[0], torch.tensor([[-45.0, -39.0], [-33.0, -27.0]]))
    torch.testing.assert_close(made[0], torch.tensor([[45.0, 39.0], [33.0, 27.0]]))
    # a black baseline for mean 0.5 and std 0.25 is (0 − 0.5) / 0.25 = −2 in every channel: IG = (x + 2) ⊙ W = twice
    # the zero-baseline values
    ctx = _ctx(model, x, [1], params=MethodParams(steps=5, baseline="black"), mean_std=((0.5,) * 3, (0.25,) * 3))
    torch.testing.assert_close(_method("ig").attribution(ctx)[1][0], torch.tensor([[54.0, 66.0], [78.0, 90.0]]))


def test_gauss_legendre_rule_is_captums():
    # captum's default rule: numpy's leggauss nodes t and weights v mapped to [0, 1] as (1 + t)/2 and v/2
    for n in (1, 2, 7, 50, 300):
        alphas, weights = gauss_legendre(n)
        t, v = np.polynomial.legendre.leggauss(n)
        np.testing.assert_allclose(alphas.numpy(), 0.5 * (1 + t), rtol=0, atol=1e-7)
        np.testing.assert_allclose(weights.numpy(), 0.5 * v, rtol=1e-6, atol=1e-9)
    # n = 2 by hand: nodes ±1/√3, weights 1 → alphas (1 ∓ 1/√3)/2 = 0.2113…, 0.7887…, weights 0.5 each
    alphas, weights = gauss_legendre(2)
    torch.testing.assert_close(alphas, torch.tensor([0.5 - 0.5 / math.sqrt(3), 0.5 + 0.5 / math.sqrt(3)]))
    torch.testing.assert_close(weights, torch.tensor([0.5, 0.5]))


def test_smoothgrad_of_a_linear_model_is_the_weights_magnitude():
    # the gradient of a linear model does not depend on the noise: every copy's |gradient| is |W_c|. Class 0, summed
    # over the channels: (0, 0) 11.5 + 7.5 + 3.5 = 22.5; (0, 1) 19.5; (1, 0) 16.5; (1, 1) 13.5; signed: their negatives
    model = LinearNet().eval()
    x = torch.randn(1, 3, 2, 2)
    made, signed = _method("smoothgrad").attribution(_ctx(model, x, [0], params=MethodParams(samples=5, noise=0.5)))
    torch.testing.assert_close(made[0], torch.tensor([[22.5, 19.5], [16.5, 13.5]]))
    torch.testing.assert_close(signed[0], -made[0])


def test_occlusion_of_a_linear_model():
    # input (3, 1, 4) of ones, class 1: W_1 per channel ch0 0.5 1.5 2.5 3.5, ch1 4.5 … 7.5, ch2 8.5 … 11.5, so a
    # column's share of y_1 is s = 13.5, 16.5, 19.5, 22.5. Window 2, stride 1: ⌈(4 − 2)/1⌉ + 1 = 3 patches along the
    # width (the height of 1 takes the whole window's cut of it), columns 0-1, 1-2, 2-3, each dropping the score by
    # 30, 36, 42. Per column, the mean over the patches covering it: 30, (30 + 36)/2 = 33, (36 + 42)/2 = 39, 42; each
    # channel holds it, so summed over the 3 channels: 90, 99, 117, 126
    model = LinearNet().eval()
    x = torch.ones(1, 3, 1, 4)
    made, signed = _method("occlusion").attribution(_ctx(model, x, [1], params=MethodParams(window=2, stride=1)))
    torch.testing.assert_close(signed[0], torch.tensor([[90.0, 99.0, 117.0, 126.0]]))
    torch.testing.assert_close(made, signed.abs())
    # stride 3 > window 2: patches at columns 0-1 and 3 (cut), column 2 is never covered and gets 0
    made, signed = _method("occlusion").attribution(_ctx(model, x, [1], params=MethodParams(window=2, stride=3)))
    torch.testing.assert_close(signed[0], torch.tensor([[90.0, 90.0, 0.0, 67.5]]))  # 3 · 30, 3 · 30, 0, 3 · 22.5


def test_rise_of_a_linear_model_on_fixed_masks(monkeypatch):
    # three masks, the identity head (f = the class score itself): on x = ones, y_1(x ⊙ M) = Σ_ij M_ij s_ij with the
    # pixels' shares s = [[13.5, 16.5], [19.5, 22.5]] (0.5 + 4.5 + 8.5 …).
    # M1 = [[1, 0], [0, 1]]: 13.5 + 22.5 = 36; M2 = [[0, 1], [1, 1]]: 16.5 + 19.5 + 22.5 = 58.5;
    # M3 = [[.5, .5], [0, 0]]: 0.5 · 30 = 15. Σ f_k M_k = [[36 + 7.5, 58.5 + 7.5], [58.5, 36 + 58.5]]
    # = [[43.5, 66], [58.5, 94.5]], over N p = 3 · 0.5: [[29, 44], [39, 63]]
    masks = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]], [[0.5, 0.5], [0.0, 0.0]]])

    def fixed(count, size, seed, chunk):  # the same chunks as the real one
        assert count == 3 and size == (2, 2)
        for start in range(0, count, chunk):
            yield masks[start : start + chunk]

    monkeypatch.setattr(rise_module, "rise_masks", fixed)
    ctx = _ctx(LinearNet().eval(), torch.ones(1, 3, 2, 2), [1], params=MethodParams(masks=3), score_batch=2)
    ctx.scorer = Scorer(head="identity")
    torch.testing.assert_close(_method("rise").model_map(ctx)[0], torch.tensor([[29.0, 44.0], [39.0, 63.0]]))


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_rise_equals_its_definition_with_its_masks():
    # Σ_i softmax(f(x ⊙ M_i))_c M_i / (N · 0.5), computed directly from the masks rise_masks makes, for a batch of
    # two images and a negated target (1 − p)
    model = SmallNet().eval()
    torch.manual_seed(5)
    x = torch.randn(2, 3, 20, 20)
    n = 11
    masks = torch.cat(list(rise_masks(n, (20, 20), 7, n)))
    expected = []
    for b, (cls, neg) in enumerate([(2, False), (4, True)]):
        with torch.no_grad():
            p = model(x[b][None] * masks[:, None]).softmax(1)[:, cls]
        p = 1 - p if neg else p
        expected.append((p.view(-1, 1, 1) * masks).sum(0) / (n * 0.5))
    ctx = _ctx(model, x, [2, 4], signs=torch.tensor([1.0, -1.0]), params=MethodParams(masks=n, seed=7), score_batch=4)
    torch.testing.assert_close(_method("rise").model_map(ctx), torch.stack(expected), rtol=1e-5, atol=1e-6)


def test_rise_masks():
    chunks = list(rise_masks(50, (30, 23), 3, 7))
    masks = torch.cat(chunks)
    assert [c.shape[0] for c in chunks] == [7] * 7 + [1] and masks.shape == (50, 30, 23)
    torch.testing.assert_close(masks, torch.cat(list(rise_masks(50, (30, 23), 3, 50))))  # any chunk, same masks
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    assert abs(float(masks.mean()) - 0.5) < 0.08  # cells kept with p = 0.5
    assert not torch.equal(masks, torch.cat(list(rise_masks(50, (30, 23), 4, 50))))  # another seed, other masks
    # smooth: a 7 × 7 grid upsampled bilinearly to 8 cells of ⌈30/7⌉ = 5 rows: neighbours differ by at most 1/5
    assert float((masks[:, 1:] - masks[:, :-1]).abs().max()) <= 0.2 + 1e-6


def test_references():
    x = torch.randn(2, 3, 40, 40)
    assert torch.equal(make_reference(x, "zero"), torch.zeros_like(x))
    black = make_reference(x, "black", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    torch.testing.assert_close(black[1, :, 7, 9], torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    with pytest.raises(UsageError, match="mean_std"):
        make_reference(x, "black")
    with pytest.raises(UsageError, match="channel"):
        make_reference(x, "black", ((0.5,), (0.5,)))
    # blur: σ = 40/20 = 2 on each axis, taps −6 … 6 (⌈3σ⌉): an impulse becomes the outer product of the normalised
    # Gaussian exp(−k²/8) with itself
    impulse = torch.zeros(1, 1, 40, 40)
    impulse[0, 0, 20, 20] = 1.0
    g = torch.tensor([math.exp(-(k**2) / 8) for k in range(-6, 7)])
    g = g / g.sum()
    want = torch.zeros(40, 40)
    want[14:27, 14:27] = g[:, None] * g[None, :]
    torch.testing.assert_close(make_reference(impulse, "blur")[0, 0], want)
    # a constant picture stays constant (border pixels repeated, the kernel sums to 1)
    flat = torch.full((1, 3, 9, 30), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 9 / 20, 30 / 20), flat)


def test_the_model_is_left_as_it_was(resnet18):
    # a model in training mode stays in it, no parameter gets a .grad, and every method reads eval-mode outputs
    resnet18.train()
    x = torch.randn(1, 3, 32, 32)
    p = MethodParams(steps=2, samples=2, masks=2, window=16)
    for name in ("ig", "smoothgrad", "occlusion", "rise"):
        _method(name).attribution(_ctx(resnet18, x, [3], params=p))
        assert resnet18.training and all(m.training for m in resnet18.modules()), name
        assert all(q.grad is None and q.requires_grad for q in resnet18.parameters()), name


# ----------------------------------------------------------------------------------------------- captum
@pytest.fixture()
def attr():
    return pytest.importorskip("captum.attr")


def test_ig_equals_captum(resnet18, attr):
    # captum's default rule (Gauss–Legendre) with the same steps; a zero and a black baseline (its values worked
    # out here from the ImageNet mean and std), and a blur baseline (ours, given to captum as the baseline tensor)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    classes = torch.tensor([3, 7])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    black = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1).expand_as(x)
    for kind, base in (("zero", torch.zeros_like(x)), ("black", black), ("blur", make_reference(x, "blur"))):
        ctx = _ctx(resnet18, x, [3, 7], params=MethodParams(steps=12, baseline=kind), mean_std=(mean, std))
        made, signed = _method("ig").attribution(ctx)
        theirs = attr.IntegratedGradients(resnet18).attribute(x, baselines=base, target=classes, n_steps=12).sum(1)
        scale = float(theirs.abs().max())
        torch.testing.assert_close(signed, theirs, rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(made, theirs.abs(), rtol=1e-4, atol=1e-5 * scale)


def _shown(values: torch.Tensor) -> torch.Tensor:
    """A map as camcli shows it, computed here: values above the 98th percentile clipped, then min-max to [0, 1]."""
    flat = values.flatten(1)
    top = torch.quantile(flat, 0.98, dim=1).view(-1, 1, 1)
    clipped = torch.minimum(values, top)
    lo = clipped.flatten(1).min(1).values.view(-1, 1, 1)
    return (clipped - lo) / (top - lo)


def test_ig_after_normalisation_equals_captum(resnet18, attr):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 64, 64)
    ex = explain(resnet18, x, [], _method("ig"), targets=[5], params=MethodParams(steps=8))
    theirs = attr.IntegratedGradients(resnet18).attribute(x, target=5, n_steps=8).sum(1).abs()
    torch.testing.assert_close(ex.by_method["ig"][:, 0], _shown(theirs), rtol=1e-3, atol=1e-3)
    assert ex.signed == {}  # only with --signed
    signed = explain(resnet18, x, [], _method("ig"), targets=[5], params=MethodParams(steps=8, signed=True)).signed
    assert signed["ig"].shape == (1, 1, 64, 64)


def test_smoothgrad_equals_captum(resnet18, attr):
    # one image: captum's NoiseTunnel draws its noise with torch.normal from the global generator; seeded with
    # --seed, it draws the same numbers camcli draws from its own generator (C·H·W = 12288 is a multiple of 16),
    # in 3 batches of 2 here, 1 in captum
    torch.manual_seed(3)
    x = torch.randn(1, 3, 64, 64)
    p = MethodParams(samples=5, noise=0.1, seed=11)
    made, signed = _method("smoothgrad").attribution(_ctx(resnet18, x, [9], params=p, score_batch=2))
    stdev = float(0.1 * (x.max() - x.min()))
    torch.manual_seed(11)
    theirs = attr.NoiseTunnel(attr.Saliency(resnet18)).attribute(
        x, nt_type="smoothgrad", nt_samples=5, stdevs=stdev, target=9
    )
    scale = float(theirs.abs().max())
    torch.testing.assert_close(made, theirs.sum(1), rtol=1e-4, atol=1e-5 * scale)
    torch.manual_seed(11)
    theirs = attr.NoiseTunnel(attr.Saliency(resnet18)).attribute(
        x, nt_type="smoothgrad", nt_samples=5, stdevs=stdev, target=9, abs=False
    )
    torch.testing.assert_close(signed, theirs.sum(1), rtol=1e-4, atol=1e-5 * scale)
    # the same seed gives the same map whatever --score-batch is; another seed, another map
    again = _method("smoothgrad").attribution(_ctx(resnet18, x, [9], params=p, score_batch=5))[0]
    torch.testing.assert_close(again, made, rtol=1e-5, atol=1e-6 * scale)
    other = _method("smoothgrad").attribution(_ctx(resnet18, x, [9], params=MethodParams(samples=5, noise=0.1)))
    assert not torch.allclose(other[0], made)


def test_occlusion_equals_captum(resnet18, attr):
    torch.manual_seed(4)
    x = torch.randn(2, 3, 64, 64)
    classes = torch.tensor([1, 2])
    # window 24, stride 12: ⌈40/12⌉ + 1 = 5 patches per axis, the last ones (48 … 71) cut at the border; a zero and
    # a blur baseline
    for kind, base in (("zero", 0), ("blur", make_reference(x, "blur"))):
        p = MethodParams(window=24, stride=12, baseline=kind)
        made, signed = _method("occlusion").attribution(_ctx(resnet18, x, [1, 2], params=p, score_batch=10))
        theirs = attr.Occlusion(resnet18).attribute(
            x, sliding_window_shapes=(3, 24, 24), strides=(3, 12, 12), baselines=base, target=classes
        )
        scale = float(theirs.abs().max())
        torch.testing.assert_close(signed, theirs.sum(1), rtol=1e-4, atol=1e-5 * 3 * scale)
        torch.testing.assert_close(made, theirs.sum(1).abs(), rtol=1e-4, atol=1e-5 * 3 * scale)


# -------------------------------------------------------------------------------------------------- CLI
def _cam(*args: str):
    from typer.testing import CliRunner

    from camcli.cli import app
    from tests.conftest import SAMPLES

    return CliRunner().invoke(app, ["cam", str(SAMPLES / "coffee.png"), *args])


def test_cli_names_signed_and_records(tmp_path):
    out = tmp_path / "out"
    args = ["--method", "ig", "--method", "occlusion", "--steps", "3", "--window", "112", "--save-raw", "--signed"]
    result = _cam(*args, "--out", str(out))
    assert result.exit_code == 0, result.output
    # the names carry the parameters that differ from their defaults
    stems = {m: str(out / f"coffee.png.{m},steps=3,window=112.967-espresso") for m in ("ig", "occlusion")}
    for stem in stems.values():
        assert Path(stem + ".png").is_file() and Path(stem + ".npy").is_file()
        signed = np.load(stem + ".signed.npy")  # at the model input's size, not normalised, both signs
        assert signed.shape == (224, 224) and signed.dtype == np.float32
        assert float(signed.min()) < 0 < float(signed.max())
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["method"]: r["outputs"]["signed"] for r in records} == {m: s + ".signed.npy" for m, s in stems.items()}
    assert records[0]["settings"]["method_params"]["steps"] == 3
    # --skip-existing finds every file, the signed ones included
    again = _cam(*args, "--out", str(out), "--skip-existing")
    assert again.exit_code == 0 and "1 skipped" in again.output, again.output
    Path(stems["ig"] + ".signed.npy").unlink()
    redo = _cam(*args, "--out", str(out), "--skip-existing")
    assert redo.exit_code == 0 and "1 skipped" not in redo.output and Path(stems["ig"] + ".signed.npy").is_file()


def test_cli_smoothgrad_and_rise(tmp_path):
    out = tmp_path / "out"
    result = _cam("--method", "smoothgrad", "--method", "rise", "--samples", "2", "--masks", "6", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "no layer (whole-model methods) · method smoothgrad, rise · samples 2, masks 6 ·" in result.output
    for m in ("smoothgrad", "rise"):
        assert (out / f"coffee.png.{m},samples=2,masks=6.967-espresso.png").is_file()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--method", "ig", "--steps", "0"], "--steps 0 is too small"),
        (["--method", "ig", "--baseline", "grey"], "--baseline 'grey'"),
        (["--method", "smoothgrad", "--samples", "0"], "--samples 0 is too small"),
        (["--method", "smoothgrad", "--noise", "-1"], "--noise"),
        (["--method", "occlusion", "--window", "0"], "--window 0 is too small"),
        (["--method", "occlusion", "--stride", "0"], "--stride 0 is too small"),
        (["--method", "rise", "--masks", "0"], "--masks 0 is too small"),
        (["--method", "ig", "--signed"], "add --save-raw"),
    ],
)
def test_cli_bad_values_exit_2(args, said):
    result = _cam(*args)
    assert result.exit_code == 2, result.output
    assert said in result.output
