"""Every CAM method: a hand-computed tiny case and agreement with pytorch-grad-cam on the same tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camcli.errors import LayerError, UsageError
from camcli.methods import REGISTRY, explain, explain_smooth, get_method, normalize
from tests.conftest import calibrated


class SpatialNet(nn.Module):
    """1×1 conv (1→2 channels, weights 1 and −1), then flatten + linear: gradients vary over positions."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            w = torch.zeros(2, 8)
            # class 0: dy/dA1 = [[1, 0], [2, 0]], dy/dA2 = [[0, 2], [0, -1]] (flatten: channel, row, col)
            w[0] = torch.tensor([1.0, 0.0, 2.0, 0.0, 0.0, 2.0, 0.0, -1.0])
            self.fc.weight.copy_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feat(x).flatten(1))


X = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]]])  # A1 = X, A2 = -X


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        # w = mean g = [3/4, 1/4]; map = 3/4 X - 1/4 X = X/2 -> ReLU, min-max
        ("gradcam", [[0.5, 1.0], [0.0, 0.0]]),
        # sum_k g⊙A = [[1,0],[0,0]] + [[0,-4],[0,-1]] = [[1,-4],[0,-1]]
        ("hirescam", [[1.0, 0.0], [0.0, 0.0]]),
        # ReLU(g2)⊙A2 = [[0,-4],[0,0]]; + g1⊙A1 -> [[1,-4],[0,0]]
        ("layercam", [[1.0, 0.0], [0.0, 0.0]]),
        # w1 = (1·1)/ΣA1 = 1/2; w2 = (2·-2 + -1·1)/ΣA2 = -5/-2 = 5/2; map = X/2 - 5X/2 = -2X
        ("xgradcam", [[0.0, 0.0], [0.0, 1.0]]),
        # α1: g=1 -> 1/(2+2·1) = 1/4, g=2 -> 4/(8+2·8) = 1/6; w1 = 1/4 + 2/6 = 7/12
        # α2: g=2 -> 4/(8 + (-2)·8) = -1/2, g=-1 -> ReLU(g)=0; w2 = -1; map = 7/12 X + X
        ("gradcam++", [[0.5, 1.0], [0.0, 0.0]]),
    ],
)
def test_hand_computed_gradient_methods(method, expected):
    ex = explain(SpatialNet().eval(), X, "feat", get_method(method), targets=[0])
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor(expected), atol=1e-5, rtol=0)


def test_hand_computed_gradient_free_methods(tiny):
    # TinyNet: A1 = X, A2 = X/2, pool + linear with class-1 weights [0.5, 1]
    # CAM: 0.5 X + 1·X/2 = X -> [[.5, 1], [0, 0]]
    ex = explain(tiny, X, "feat", get_method("cam"), targets=[1])
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor([[0.5, 1.0], [0.0, 0.0]]))
    # Eigen-CAM: rows (X_ij, X_ij/2), centred; PC1 ∝ (1, 1/2); projection ∝ X - mean(X) = X - 0.5,
    # positively correlated with the channel sum -> [[.5, 1.5], [0, 0]] / 1.5 after ReLU and min-max
    ex = explain(tiny, X, "feat", get_method("eigencam"), targets=[1])
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor([[1 / 3, 1.0], [0.0, 0.0]]), atol=1e-6, rtol=0)
    # Score-CAM: both masks are (X+1)/3; masked input [[2/3, 2], [0, 0]]; equal scores -> softmax 1/2 each;
    # map = X/2 + X/4 = 3X/4 -> [[.5, 1], [0, 0]]
    ex = explain(tiny, X, "feat", get_method("scorecam"), targets=[1])
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor([[0.5, 1.0], [0.0, 0.0]]), atol=1e-6, rtol=0)


PEERS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}


def _model(name):
    return calibrated(name, 96)


@pytest.fixture(scope="module")
def peer_models():
    return {"resnet18": _model("resnet18"), "mobilenet_v3_large": _model("mobilenet_v3_large")}


def _peer(method_cls_name, model, layer, x, cls, size):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(pgc, method_cls_name)(model=model, target_layers=[dict(model.named_modules())[layer]])
    cam.batch_size = 64
    cam.get_target_width_height = lambda _t: (size[1], size[0])
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)] * x.shape[0])
    finally:
        cam.activations_and_grads.release()


CASES = [("resnet18", "layer4", 96), ("resnet18", "layer3", 96), ("mobilenet_v3_large", "features.16", 96)]


# Score-CAM runs one forward per channel (per image): checked on narrower layers (128 and 112 channels) here, and
# on the two widest cases (512 and 960 channels, 3 × 3 maps) in the slow checks
SCORECAM_CASES = [("resnet18", "layer2", 96), ("mobilenet_v3_large", "features.12", 96)]
AGREEMENT = [
    *[(m, *c) for m in PEERS if m != "scorecam" for c in CASES],
    *[("scorecam", *c) for c in SCORECAM_CASES],
    *[pytest.param("scorecam", *c, marks=pytest.mark.slow) for c in CASES if c[1] != "layer3"],
]


@pytest.mark.parametrize(("method", "model_name", "layer", "size"), AGREEMENT)
def test_agreement_with_pytorch_grad_cam(peer_models, method, model_name, layer, size):
    model = peer_models[model_name]
    torch.manual_seed(5)
    x = torch.randn(2, 3, size, size)
    ours = explain(model, x, layer, get_method(method), targets=[11])
    ref = _peer(PEERS[method], model, layer, x, 11, tuple(ours.maps.shape[-2:]))
    np.testing.assert_allclose(ours.maps[:, 0].numpy(), ref, atol=1e-4)


@pytest.mark.parametrize(("model_name", "layer", "size"), CASES)
def test_eigencam_agrees_up_to_the_documented_sign(peer_models, model_name, layer, size):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model = peer_models[model_name]
    torch.manual_seed(6)
    x = torch.randn(2, 3, size, size)
    ours = explain(model, x, layer, get_method("eigencam"))
    acts = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.update(a=o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    proj = torch.from_numpy(get_2d_projection(acts["a"].numpy()))
    energy = acts["a"].sum(1)
    for b in range(2):
        # the peer's projection, with the sign camcli documents: positive correlation with the channel sum
        p = proj[b]
        corr = ((p - p.mean()) * (energy[b] - energy[b].mean())).sum()
        expected = normalize(p if corr >= 0 else -p)
        torch.testing.assert_close(ours.maps[b, 0], expected, atol=1e-4, rtol=0)


def test_classic_cam_agrees_with_torchcam(peer_models):
    from torchcam.methods import CAM

    model = peer_models["resnet18"]
    torch.manual_seed(7)
    x = torch.randn(2, 3, 96, 96)
    ours = explain(model, x, "layer4", get_method("cam"), targets=[3])
    with CAM(model, "layer4", fc_layer="fc") as extractor, torch.no_grad():
        scores = model(x)
        ref = extractor(class_idx=[3, 3], scores=scores, normalized=False)[0]  # raw sum of W·A
    torch.testing.assert_close(ours.maps[:, 0], normalize(ref), atol=1e-4, rtol=0)


def test_classic_cam_needs_pool_linear_head():
    vgg = _model("vgg11")
    with pytest.raises(LayerError, match="global-pool"):
        explain(vgg, torch.randn(1, 3, 64, 64), "features", get_method("cam"))


def test_several_methods_share_one_pass_and_match_single_runs(peer_models):
    model = peer_models["resnet18"]
    x = torch.randn(1, 3, 96, 96)
    names = ["gradcam", "layercam", "eigencam"]
    both = explain(model, x, "layer4", [get_method(n) for n in names], top_k=2)
    for n in names:
        one = explain(model, x, "layer4", get_method(n), top_k=2)
        torch.testing.assert_close(both.by_method[n], one.maps)


def test_multi_layer_fusion_is_the_mean_of_upsampled_layer_maps(peer_models):
    from camcli.methods import upsample

    model = peer_models["resnet18"]
    x = torch.randn(1, 3, 96, 96)
    ex = explain(model, x, ["layer3", "layer4"], get_method("gradcam"), targets=[4])
    assert ex.maps.shape == (1, 1, 96, 96)
    l3 = explain(model, x, "layer3", get_method("gradcam"), targets=[4]).maps
    l4 = explain(model, x, "layer4", get_method("gradcam"), targets=[4]).maps
    torch.testing.assert_close(ex.per_layer[("gradcam", "layer3")], l3)
    torch.testing.assert_close(ex.per_layer[("gradcam", "layer4")], l4)
    expected = normalize((upsample(l3, (96, 96)) + upsample(l4, (96, 96))) / 2)
    torch.testing.assert_close(ex.maps, expected)


def test_smoothing_and_flip_augmentation(peer_models):
    model = peer_models["resnet18"]
    x = torch.randn(1, 3, 64, 64)
    plain = explain(model, x, "layer3", get_method("gradcam"))
    sm = explain_smooth(model, x, "layer3", get_method("gradcam"), smooth=3, noise=0.1)
    assert torch.equal(sm.classes, plain.classes)
    assert sm.maps.shape == plain.maps.shape and not torch.equal(sm.maps, plain.maps)
    assert sm.maps.max() == 1.0
    # flip only: the mean of the map and the mirrored map of the mirrored input
    aug = explain_smooth(model, x, "layer3", get_method("gradcam"), aug=True)
    flipped = explain(model, torch.flip(x, dims=[-1]), "layer3", get_method("gradcam"), classes=plain.classes)
    expected = normalize((plain.maps + torch.flip(flipped.maps, dims=[-1])) / 2)
    torch.testing.assert_close(aug.maps, expected)


def test_registry_names_and_unknown_method():
    cams = {"gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "scorecam", "eigencam", "cam"}
    assert cams <= set(REGISTRY)
    assert get_method("GradCAM-PP").name == "gradcam++"
    with pytest.raises(UsageError, match="choose one of"):
        get_method("nosuchcam")


def test_guided_backprop_agrees_with_pytorch_grad_cam(peer_models):
    from pytorch_grad_cam import GuidedBackpropReLUModel

    from camcli.methods.guided import guided_backprop

    model = peer_models["resnet18"]
    torch.manual_seed(8)
    x = torch.randn(1, 3, 64, 64)
    hooks_before = [len(m._forward_hooks) for m in model.modules()]
    ours = guided_backprop(model, x, torch.tensor([[9, 2]]))
    assert ours.shape == (1, 2, 3, 64, 64)
    assert [len(m._forward_hooks) for m in model.modules()] == hooks_before
    ref = GuidedBackpropReLUModel(model, device=torch.device("cpu"))(x.clone(), target_category=9)
    np.testing.assert_allclose(ours[0, 0].permute(1, 2, 0).numpy(), ref, atol=1e-5, rtol=1e-4)
    # guided backprop of a net without ReLUs is the plain input gradient; with ReLUs it differs
    xg = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(xg)[0, 9], xg)
    assert not torch.allclose(plain[0], ours[0, 0])


# y = sum(w * act(x)). Guided grad = ReLU(w) where the unit is in its linear part (ReLU: x > 0; ReLU6: 0 < x < 6).
# ReLU:  x = [1, 2, -3], w = [1, -1, 2] -> [1, 0, 0] (w < 0 at x=2, x < 0 at -3)
# ReLU6: x = [1, 7, -3], w = [1, 1, 2]  -> [1, 0, 0] (saturated at 7, x < 0 at -3)
@pytest.mark.parametrize(
    ("act", "x", "w"),
    [(nn.ReLU, [1.0, 2.0, -3.0], [1.0, -1.0, 2.0]), (nn.ReLU6, [1.0, 7.0, -3.0], [1.0, 1.0, 2.0])],
    ids=["relu", "relu6"],
)
def test_guided_activation_hand_computed(act, x, w):
    from camcli.methods.guided import guided_backprop

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = act()

        def forward(self, inp):
            return (torch.tensor(w).view(1, 3, 1, 1) * self.act(inp)).sum(dim=(1, 2, 3))[:, None]

    g = guided_backprop(Net(), torch.tensor(x).view(1, 3, 1, 1), torch.tensor([[0]]))
    torch.testing.assert_close(g[0, 0].flatten(), torch.tensor([1.0, 0.0, 0.0]))
