"""Finer-CAM and RefineCAM: hand-computed tiny cases, agreement with pytorch-grad-cam and torchcam on the same
tensors, and their command-line parameters."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from camcli.engine.scoring import Scorer
from camcli.engine.targets import Target
from camcli.errors import LayerError, TargetError, UsageError
from camcli.method_params import FINER_BASES, REFINE_BASES, MethodParams
from camcli.methods import REGISTRY, explain, get_method, normalize, upsample
from camcli.methods.base import Context
from camcli.methods.finercam import FinerCAM, refined, rivals
from tests.conftest import SAMPLES
from tests.test_methods import _model


class RivalNet(nn.Module):
    """1×1 conv (1 → 2 channels, weights 1 and −1: A1 = X, A2 = −X), flatten, linear 8 → 4 classes with a bias.

    With X = [[1, 2], [3, 4]] (flattened: channel, row, col) the rows r and biases b give the logits:
        r0 = ch1 [[1, 1], [0, 0]]                      → 1 + 2      + b0 2 = 5
        r1 = ch1 [[1, 0], [0, 0]], ch2 [[0, 0], [-1, 0]] → 1 + (−1)(−3)     = 4
        r2 = ch2 [[0, 0], [0, -1]]                     → (−1)(−4)          = 4
        r3 = 0                                         →                     0
    The gradient of class j's logit with respect to (A1, A2) is row r_j, laid out as two 2 × 2 grids.
    """

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.feat.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(
                torch.tensor(
                    [
                        [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0],
                        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0],
                        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                    ]
                )
            )
            self.fc.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feat(x).flatten(1))


X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])


def _finer(targets, base="hirescam", alpha=1.0, compare=3, signs=None):
    params = MethodParams(finer_base=base, finer_alpha=alpha, finer_compare=compare)
    return explain(RivalNet().eval(), X, "feat", get_method("finercam"), targets=targets, params=params).maps[0, 0]


def test_the_tiny_net_scores_what_its_docstring_says():
    with torch.no_grad():
        torch.testing.assert_close(RivalNet()(X), torch.tensor([[5.0, 4.0, 4.0, 0.0]]))


@pytest.mark.parametrize(
    ("targets", "base", "compare", "expected"),
    [
        # class 0 (5) against its 2 closest rivals, 1 and 2 (both 4, |Δ| = 1; class 3 is 5 away). Their softmax weights
        # restricted to the rivals are q = 1/2 each, and ∂ỹ/∂y_k = −α q_k (1 + y_k − ȳ) = −1/2 (y_k = ȳ), so
        # g = r0 − (r1 + r2)/2: ch1 [[.5, 1], [0, 0]], ch2 [[0, 0], [.5, .5]].
        # HiResCAM Σ_k g_k ⊙ A_k = [[.5, 2], [0, 0]] + [[0, 0], [−1.5, −2]] → ReLU, ÷ 2 → [[.25, 1], [0, 0]]
        # (plain HiResCAM of class 0: r0 ⊙ A = [[1, 2], [0, 0]] → [[.5, 1], [0, 0]])
        ([0], "hirescam", 2, [[0.25, 1.0], [0.0, 0.0]]),
        # not:0 negates the refined score: [[−.5, −2], [1.5, 2]] → ReLU, ÷ 2 → [[0, 0], [.75, 1]]
        ([Target(0, True)], "hirescam", 2, [[0.0, 0.0], [0.75, 1.0]]),
        # class 1 (4), one rival: class 2 (|Δ| = 0; class 0 is 1 away). g = r1 − r2: ch1 [[1, 0], [0, 0]],
        # ch2 [[0, 0], [−1, 1]]; HiResCAM [[1, 0], [0, 0]] + [[0, 0], [3, −4]] → ReLU, ÷ 3 → [[1/3, 0], [1, 0]]
        # (had class 0 been the rival: g = r1 − r0 → [[0, −2], [3, 0]] → [[0, 0], [1, 0]])
        ([1], "hirescam", 1, [[1 / 3, 0.0], [1.0, 0.0]]),
        # the same gradient through Layer-CAM, Σ_k ReLU(g_k) ⊙ A_k: ch2 keeps [[0, 0], [0, 1]] → [[1, 0], [0, −4]]
        # → ReLU → [[1, 0], [0, 0]]
        ([1], "layercam", 1, [[1.0, 0.0], [0.0, 0.0]]),
    ],
)
def test_hand_computed_finercam(targets, base, compare, expected):
    torch.testing.assert_close(_finer(targets, base, compare=compare), torch.tensor(expected), atol=1e-5, rtol=0)


def test_alpha_zero_is_the_base_method():
    # ỹ = Σ q_d y_0 / Σ q_d = y_0: the class's own gradient, so the base method's own map
    plain = explain(RivalNet().eval(), X, "feat", get_method("hirescam"), targets=[0]).maps[0, 0]
    torch.testing.assert_close(_finer([0], alpha=0.0, compare=2), plain, atol=1e-6, rtol=0)
    torch.testing.assert_close(plain, torch.tensor([[0.5, 1.0], [0.0, 0.0]]))


def test_refined_score_and_its_gradient_by_hand():
    # y = (5, 4, 3.5, 0), class 0, 2 rivals: 1 and 2. Their weights are softmax(y) restricted to them:
    # q = (1/(1 + e^−0.5), e^−0.5/(1 + e^−0.5)) = (0.622459, 0.377541); ȳ = Σ q y = 3.811230;
    # ỹ = y0 − α ȳ = 1.188770 (α = 1). The weights stay in the graph (as in pytorch-grad-cam), so
    # ∂ỹ/∂y_k = −α q_k (1 + y_k − ȳ): (−0.739961, −0.260039); ∂ỹ/∂y0 = 1, class 3 takes no part.
    # (Weights left out of the graph would give −q = (−0.622459, −0.377541).)
    y = torch.tensor([[5.0, 4.0, 3.5, 0.0]], requires_grad=True)
    value = refined(y, torch.tensor([0]), None, 1.0, 2)
    assert float(value) == pytest.approx(1.188770, abs=1e-5)
    (g,) = torch.autograd.grad(value.sum(), y)
    torch.testing.assert_close(g, torch.tensor([[1.0, -0.739961, -0.260039, 0.0]]), atol=1e-5, rtol=0)
    # α = 0.5 halves the rivals' part: ỹ = 5 − 0.5 · 3.811230
    assert float(refined(y, torch.tensor([0]), None, 0.5, 2)) == pytest.approx(5 - 0.5 * 3.811230, abs=1e-5)
    # a negated slot (sign −1) negates it
    assert float(refined(y, torch.tensor([0]), torch.tensor([-1.0]), 1.0, 2)) == pytest.approx(-1.188770, abs=1e-5)


def test_rivals_are_the_closest_scores_not_the_next_ranks():
    scores = torch.tensor([[5.0, 4.0, 0.0, 4.5], [1.0, 2.0, 3.0, 10.0]])
    # row 0, class 1 (4): |Δ| = 1, 4, 0.5 for classes 0, 2, 3 → 3, 0, 2; row 1, class 3 (10): 2, 1, 0
    torch.testing.assert_close(rivals(scores, torch.tensor([1, 3]), 2), torch.tensor([[3, 0], [2, 1]]))
    assert rivals(scores, torch.tensor([1, 3]), 50).shape == (2, 3)  # at most N − 1, as both references cap it
    with pytest.raises(TargetError, match="one score"):
        rivals(torch.zeros(2, 1), torch.tensor([0, 0]), 3)


# ------------------------------------------------------------------------------------ against the peers


@pytest.fixture(scope="module")
def resnet():
    return _model("resnet18")


class Recording(FinerCAM):
    """Finer-CAM that keeps its raw maps (before ReLU and normalisation) for the comparison with the peers."""

    def __init__(self) -> None:
        self.raw: list[torch.Tensor] = []

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor, ctx: Context) -> torch.Tensor:
        out = super().raw_map(acts, grads, ctx)
        self.raw.append(out.clone())
        return out


def _pgc_finer(model, layer, x, cls, alpha, compare, base, size):
    """pytorch-grad-cam's FinerCAM: (its maps, its raw maps before ReLU) at the layer's resolution."""
    import pytorch_grad_cam as pgc

    module = dict(model.named_modules())[layer]
    cam = pgc.FinerCAM(model, [module], base_method=getattr(pgc, base))
    cam.base_cam.get_target_width_height = lambda _t: (size[1], size[0])
    ag = cam.base_cam.activations_and_grads
    try:
        maps = cam(x, alpha=alpha, comparison_categories=list(range(1, compare + 1)), target_idx=cls)
        acts, grads = ag.activations[0].numpy(), ag.gradients[0].numpy()
        raw = cam.base_cam.get_cam_image(x, module, None, acts, grads, False)
    finally:
        ag.release()
        model.zero_grad(set_to_none=True)
    return maps, raw


@pytest.mark.parametrize(
    ("layer", "base", "alpha", "compare"),
    [
        ("layer4", "gradcam", 1.0, 3),
        ("layer3", "gradcam", 1.0, 3),
        ("layer3", "gradcam++", 0.6, 2),
        ("layer3", "layercam", 1.5, 5),
    ],
)
def test_finercam_agrees_with_pytorch_grad_cam(resnet, layer, base, alpha, compare):
    peer = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "layercam": "LayerCAM"}[base]
    torch.manual_seed(3)
    x = torch.randn(2, 3, 64, 64)
    rec = Recording()
    params = MethodParams(finer_base=base, finer_alpha=alpha, finer_compare=compare)
    ours = explain(resnet, x, layer, rec, targets=[11], params=params)
    maps, raw = _pgc_finer(resnet, layer, x, 11, alpha, compare, peer, tuple(ours.maps.shape[-2:]))
    mine = rec.raw[0].numpy()
    # before ReLU and normalisation: the same raw map (relative to its size)
    np.testing.assert_allclose(mine, raw, rtol=1e-4, atol=1e-5 * float(np.abs(raw).max()))
    # and after
    np.testing.assert_allclose(ours.maps[:, 0].numpy(), maps, atol=1e-4)
    # the refined score is not the class's own: plain base maps differ
    plain = explain(resnet, x, layer, get_method(base), targets=[11]).maps
    assert float((plain - ours.maps).abs().max()) > 0.05


def test_finercam_agrees_with_torchcam_for_one_rival(resnet):
    # torchcam takes the mean of the rivals' scores with γ (α) = 0.6; with one rival it is pytorch-grad-cam's target
    from torchcam.methods import FinerCAM as TorchcamFiner
    from torchcam.methods import GradCAM as TorchcamGradCAM

    torch.manual_seed(4)
    x = torch.randn(2, 3, 64, 64)
    rec = Recording()
    params = MethodParams(finer_alpha=0.6, finer_compare=1)
    ours = explain(resnet, x, "layer3", rec, targets=[7], params=params)
    with TorchcamFiner(
        resnet, "layer3", input_shape=(3, 64, 64), base_method=TorchcamGradCAM, gamma=0.6, num_references=1
    ) as extractor:
        scores = resnet(x)
        raw = extractor([7, 7], scores, normalized=False)[0].detach()
    resnet.zero_grad(set_to_none=True)
    # torchcam's raw map is after the ReLU
    mine = rec.raw[0].clamp_min(0)
    torch.testing.assert_close(mine, raw, rtol=1e-4, atol=1e-5 * float(raw.abs().max()))
    torch.testing.assert_close(ours.maps[:, 0], normalize(raw), atol=1e-4, rtol=0)


def test_finercam_on_similarities_and_negated_targets(resnet):
    # with --reference the scores are cosine similarities: the rivals are the other references
    embed = _model("resnet18")
    embed.fc = nn.Identity()
    torch.manual_seed(6)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        concepts = nn.functional.normalize(embed(torch.randn(3, 3, 64, 64)), dim=1)
    scorer = Scorer("identity", concepts, ["a", "b", "c"])
    ex = explain(embed, x, "layer3", get_method("finercam"), targets=[0], scorer=scorer)
    assert ex.maps.shape == (2, 1, 4, 4) and float(ex.maps.amax()) == 1.0
    one = Scorer("identity", concepts[:1], ["a"])
    with pytest.raises(TargetError, match="one score"):
        explain(embed, x, "layer3", get_method("finercam"), targets=[0], scorer=one)
    # not:CLASS is the refined score negated: a raw map of the opposite sign
    rec, neg = Recording(), Recording()
    explain(resnet, x, "layer3", rec, targets=[Target(11)])
    explain(resnet, x, "layer3", neg, targets=[Target(11, True)])
    torch.testing.assert_close(neg.raw[0], -rec.raw[0])


# --------------------------------------------------------------------------------------------- RefineCAM


def test_refinecam_fuse_by_hand():
    # a 1 × 3 map [1, 0, 1] upsampled to 1 × 6 (bilinear, half-pixel centres: source x = (i + .5)/2 − .5, clamped
    # to [0, 2]): [1, .75, .25, .25, .75, 1]; its trough no longer reaches 0, so it is normalised again:
    # [1, 2/3, 0, 0, 2/3, 1]. Times the 1 × 6 map [1, 1, 1, .5, .5, 0] → [1, 2/3, 0, 0, 1/3, 0] (already in [0, 1])
    coarse = torch.tensor([[[[1.0, 0.0, 1.0]]]])
    fine = torch.tensor([[[[1.0, 1.0, 1.0, 0.5, 0.5, 0.0]]]])
    fused = get_method("refinecam").fuse([coarse, fine], (1, 6))
    torch.testing.assert_close(fused, torch.tensor([[[[1.0, 2 / 3, 0.0, 0.0, 1 / 3, 0.0]]]]))
    # (without normalising again: [1, .75, .25, .125, .375, 0], torchcam's rule)
    # every other method takes the mean: [1, .875, .625, .375, .625, .5] → min-max → [1, .8, .4, 0, .4, .2]
    mean = get_method("gradcam").fuse([coarse, fine], (1, 6))
    torch.testing.assert_close(mean, torch.tensor([[[[1.0, 0.8, 0.4, 0.0, 0.4, 0.2]]]]))


def test_refinecam_is_the_product_of_the_base_methods_layer_maps(resnet):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 64, 64)
    ex = explain(resnet, x, ["layer3", "layer4"], get_method("refinecam"), targets=[4])
    l3 = explain(resnet, x, "layer3", get_method("gradcam++"), targets=[4]).maps
    l4 = explain(resnet, x, "layer4", get_method("gradcam++"), targets=[4]).maps
    torch.testing.assert_close(ex.per_layer[("refinecam", "layer3")], l3)
    # each upsampled map normalised again (as pytorch-grad-cam does), then the product normalised
    expected = normalize(normalize(upsample(l3, (64, 64))) * normalize(upsample(l4, (64, 64))))
    torch.testing.assert_close(ex.maps, expected)


def test_refinecam_agrees_with_pytorch_grad_cam(resnet):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(5)
    x = torch.randn(2, 3, 64, 64)
    layers = ["layer2", "layer3", "layer4"]
    ours = explain(resnet, x, layers, get_method("refinecam"), targets=[11])
    modules = dict(resnet.named_modules())
    cam = pgc.RefineCAM(resnet, [modules[n] for n in layers])  # Grad-CAM++, as camcli's default
    try:
        ref = cam(x, [ClassifierOutputTarget(11)] * 2)
    finally:
        for c in cam.base_cam_per_layer:
            c.activations_and_grads.release()
        resnet.zero_grad(set_to_none=True)
    np.testing.assert_allclose(ours.maps[:, 0].numpy(), ref, atol=1e-4)


def test_refinecam_agrees_with_torchcam(resnet):
    # torchcam's Grad-CAM++ differs from the paper's (camcli.methods.gradcampp): compared on Grad-CAM. torchcam
    # resizes to the largest layer's grid unless given the size (camcli: the input's), and does not normalise the
    # maps again after resizing them (camcli and pytorch-grad-cam do)
    from torchcam.methods import GradCAM as TorchcamGradCAM
    from torchcam.methods import RefineCAM as TorchcamRefine

    torch.manual_seed(8)
    x = torch.randn(2, 3, 64, 64)
    layers = ["layer3", "layer4"]
    params = MethodParams(refine_base="gradcam")
    ours = explain(resnet, x, layers, get_method("refinecam"), targets=[3], params=params)
    with TorchcamRefine(resnet, layers, (3, 64, 64), base_method=TorchcamGradCAM) as extractor:
        ref = extractor([3, 3], resnet(x), target_shape=(64, 64))[0].detach()
        per_layer = extractor.base_cam([3, 3], resnet(x), normalized=True)
    resnet.zero_grad(set_to_none=True)
    # each layer's map is the same
    for name, theirs in zip(layers, per_layer, strict=True):
        torch.testing.assert_close(ours.per_layer[("refinecam", name)][:, 0], theirs.detach(), atol=1e-5, rtol=0)
    # torchcam's product of the maps camcli multiplies (resized and normalised again) is camcli's map
    resized = [normalize(upsample(ours.per_layer[("refinecam", n)][:, 0], (64, 64))) for n in layers]
    torch.testing.assert_close(ours.maps[:, 0], TorchcamRefine.fuse_cams(resized, (64, 64)), atol=1e-5, rtol=0)
    # and its own map, without that second normalisation, is close
    assert float((ours.maps[:, 0] - ref).abs().max()) < 0.05


def test_refinecam_needs_two_layers(resnet):
    with pytest.raises(LayerError, match="refinecam fuses the maps of several layers: give 2 or more --layer"):
        explain(resnet, torch.randn(1, 3, 64, 64), "layer4", get_method("refinecam"))


# ------------------------------------------------------------------------------ parameters and the CLI


def test_bases_are_the_registrys_layer_methods():
    # method_params lists them so that options need no torch; the registry says which methods they must be
    layer = {n for n, c in REGISTRY.items() if c.scope == "layer"} - {"finercam", "refinecam"}
    # refinecam hands its base the plain layer context: not the graph a needs_graph method (shapleycam) takes
    assert set(REFINE_BASES) == {n for n in layer if not REGISTRY[n].needs_graph}
    assert set(FINER_BASES) == {n for n in layer if REGISTRY[n].needs_grad}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (MethodParams(finer_base="eigencam"), "--finer-base 'eigencam': use gradcam"),
        (MethodParams(finer_base="finercam"), "--finer-base 'finercam'"),
        (MethodParams(refine_base="refinecam"), "--refine-base 'refinecam': use gradcam"),
        (MethodParams(finer_alpha=-1), "--finer-alpha -1 is too small"),
        (MethodParams(finer_alpha=math.nan), "--finer-alpha nan is not a number"),
        (MethodParams(finer_compare=0), "--finer-compare 0 is too small"),
        (MethodParams(finer_compare=1001), "--finer-compare 1001 is too large; use at most 1000"),
        (MethodParams(finer_alpha=101), "--finer-alpha 101 is too large; use at most 100"),
    ],
)
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(UsageError, match=message.replace("+", r"\+")):
        params.check()
    # explain checks them too (the Python API)
    with pytest.raises(UsageError):
        explain(RivalNet().eval(), X, "feat", get_method("finercam"), params=params)


def test_parameters_name_outputs_only_when_they_differ():
    p = MethodParams(finer_base="layercam", finer_alpha=0.5)
    assert p.named(["finercam"]) == [("finer-base", "layercam"), ("finer-alpha", "0.5")]
    assert p.named(["refinecam", "gradcam"]) == []
    assert MethodParams(refine_base="gradcam").named(["refinecam"]) == [("refine-base", "gradcam")]
    assert p.setting(["finercam"]) == {
        "method_params": {"finer_base": "layercam", "finer_alpha": 0.5, "finer_compare": 3}
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--method", "finercam", "--finer-base", "scorecam"], "--finer-base 'scorecam': use gradcam, gradcam++"),
        (["--method", "finercam", "--finer-alpha", "-0.5"], "--finer-alpha -0.5 is too small; use 0 or more"),
        (["--method", "finercam", "--finer-compare", "0"], "--finer-compare 0 is too small; use 1 or more"),
        (["--method", "refinecam", "--refine-base", "nope"], "--refine-base 'nope': use gradcam"),
        (["--method", "refinecam"], "refinecam fuses the maps of several layers: give 2 or more --layer"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(tmp_path, flags, message):
    from camcli.cli import app

    result = CliRunner().invoke(app, ["cam", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path), *flags])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_cli_runs_both_and_names_the_parameters(tmp_path):
    from camcli.cli import app

    args = ["cam", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path), "--method", "finercam"]
    args += ["--method", "refinecam", "--layer", "_blocks.10", "--layer", "_head_act", "--finer-alpha", "0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == [
        "chelsea.png.finercam,layer=_blocks.10+_head_act,finer-alpha=0.5.285-Egyptian_cat.png",
        "chelsea.png.refinecam,layer=_blocks.10+_head_act,finer-alpha=0.5.285-Egyptian_cat.png",
    ]
    record = json.loads((tmp_path / "manifest.jsonl").read_text().splitlines()[0])
    assert record["settings"]["method_params"] == {
        "finer_base": "gradcam",
        "finer_alpha": 0.5,
        "finer_compare": 3,
        "refine_base": "gradcam++",
    }
