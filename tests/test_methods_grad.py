"""Eigen-Grad-CAM, Grad-CAM element-wise, KPCA-CAM, ShapleyCAM, Random-CAM and FullGrad: a hand-computed tiny case
for each, and agreement with pytorch-grad-cam 1.5.7 on the same tensors (random weights, 64 × 64 inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camcli.errors import LayerError
from camcli.method_params import MethodParams
from camcli.methods import explain, get_method, get_methods, normalize
from camcli.methods.eigencam import orient
from camcli.methods.fullgrad import biases
from camcli.methods.kpcacam import DENSE_UP_TO, kernel_component
from camcli.methods.objects import ObjectQuery, explain_detections
from tests.conftest import calibrated

from .test_objects import BoxDetector

X = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]]])  # A1 = X, A2 = -X in the nets below


class ElementNet(nn.Module):
    """1×1 conv (1→2 channels, weights 1 and −1), flatten, linear: class 0's gradients are
    g1 = [[1, 1], [0, 0]], g2 = [[0, 2], [0, 0]] (flatten order: channel, row, column)."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            w = torch.zeros(2, 8)
            w[0] = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0])
            w[1, 0] = 1.0
            self.fc.weight.copy_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feat(x).flatten(1))


def test_gradcam_elementwise_by_hand():
    # g⊙A: channel 1 = [[1, 2], [0, 0]], channel 2 = [[0, -4], [0, 0]]
    # element-wise: ReLU each, then sum -> [[1, 2], [0, 0]] -> [[.5, 1], [0, 0]]
    # HiResCAM sums first: [[1, -2], [0, 0]] -> [[1, 0], [0, 0]] (the -4 cancels the 2)
    net = ElementNet().eval()
    ex = explain(net, X, "feat", get_methods(["gradcamelementwise", "hirescam"]), targets=[0])
    torch.testing.assert_close(ex.by_method["gradcamelementwise"][0, 0], torch.tensor([[0.5, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(ex.by_method["hirescam"][0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_eigengradcam_by_hand():
    # rows of g⊙A per position (p00, p01, p10, p11): (1, 0), (2, -4), (0, 0), (0, 0); mean (0.75, -1)
    # centred: (.25, 1), (1.25, -3), (-.75, 1), (-.75, 1); scatter S = [[2.75, -5], [-5, 12]]
    # λ1 = (14.75 + √(14.75² - 4·8)) / 2 = 14.18605; v1 ∝ (-5, λ1 - 2.75) = (-0.40060, 0.91625)
    # projections: 0.81610, -3.24950, 1.21670, 1.21670; channel sum of g⊙A (1, -2, 0, 0) correlates
    # positively (keep the sign); ReLU and min-max: [[0.67075, 0], [1, 1]]
    ex = explain(ElementNet().eval(), X, "feat", get_method("eigengradcam"), targets=[0])
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor([[0.67075, 0.0], [1.0, 1.0]]), atol=1e-5, rtol=0)


def test_kernel_pca_by_hand():
    # one channel, values [[2, 2], [0, 0]]: centred rows a = (1, 1, -1, -1), γ = 1/C = 1, c0 = 1
    # K = tanh(a aᵀ + 1): P = tanh(2) within a pair, Q = tanh(0) = 0 across; centred K = (P - Q)/2 · s sᵀ with
    # s = (1, 1, -1, -1): eigenvector s/2, λ = 2 (P - Q); component √λ · s/2 = ±√(tanh(2)/2) = ±0.694272,
    # positive where the activation is larger
    acts = torch.tensor([[[[2.0, 2.0], [0.0, 0.0]]]])
    v = float(np.sqrt(np.tanh(2.0) / 2))
    torch.testing.assert_close(kernel_component(acts), torch.tensor([[[v, v], [-v, -v]]]), atol=1e-6, rtol=0)
    # through a net: conv weight 1 gives those activations -> [[1, 1], [0, 0]]
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    ex = explain(net, acts, "0", get_method("kpcacam"))
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


class QuadNet(nn.Module):
    """1×1 conv (weights 1 and −1: A1 = X, A2 = −X); class 0's score is Σ A1² + 0.75 Σ A2 (class 1: Σ A1)."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.feat(x)
        y0 = (a[:, 0] ** 2).sum((1, 2)) + 0.75 * a[:, 1].sum((1, 2))
        return torch.stack([y0, a[:, 0].sum((1, 2))], dim=1)


def test_shapleycam_by_hand():
    # g1 = 2 A1, g2 = 0.75; Hessian·A: channel 1 = 2 A1, channel 2 = 0
    # ShapleyCAM: w1 = mean(2 A1 - A1) = mean(X) = 0.5, w2 = mean(0.75) = 0.75; map = 0.5 X - 0.75 X = -X/4
    #   -> ReLU keeps X = -1 only: [[0, 0], [0, 1]]
    # Grad-CAM:   w1 = mean(2 X) = 1, w2 = 0.75; map = X/4 -> [[.5, 1], [0, 0]]
    ex = explain(QuadNet().eval(), X, "feat", get_methods(["shapleycam", "gradcam"]), targets=[0])
    torch.testing.assert_close(ex.by_method["shapleycam"][0, 0], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(ex.by_method["gradcam"][0, 0], torch.tensor([[0.5, 1.0], [0.0, 0.0]]))


class OneHot(nn.Module):
    """The layer "feat" passes its input on; a head of pool + linear."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.feat = nn.Identity()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(x))


def _one_hot(batch: int) -> torch.Tensor:
    """(batch, 64, 8, 8) activations: channel k is 1 at position k (row k // 8, column k % 8), 0 elsewhere."""
    return torch.eye(64).view(64, 8, 8).expand(batch, 64, 8, 8).contiguous()


def test_random_cam_reveals_its_seeded_weights():
    torch.manual_seed(0)
    net = OneHot(64).eval()
    method = get_method("random")
    assert method.params == ("seed",) and not method.needs_grad and method.family == "CAM"
    raw = method.raw_map(_one_hot(1), torch.zeros(0), _ctx(net, seed=3))[0].flatten()
    # with one-hot channels the map at position k is channel k's weight: 64 numbers in [-1, 1], of both signs
    assert raw.shape == (64,) and float(raw.abs().max()) <= 1.0
    assert (raw > 0).sum() > 10 and (raw < 0).sum() > 10 and len(set(raw.tolist())) == 64
    state = torch.get_rng_state()
    a = explain(net, _one_hot(3), "feat", method, top_k=2, params=MethodParams(seed=3)).maps
    assert torch.equal(torch.get_rng_state(), state)  # its own generator: the global one is not drawn
    # the normalised map is ReLU(w) min-max scaled, the same for every image and class slot
    expected = normalize(raw.view(1, 8, 8))[0]
    for b in range(3):
        for k in range(2):
            torch.testing.assert_close(a[b, k], expected)
    again = explain(net, _one_hot(1), "feat", method, params=MethodParams(seed=3)).maps  # alone in its batch
    torch.testing.assert_close(again[0, 0], expected)
    other = explain(net, _one_hot(1), "feat", method, params=MethodParams(seed=4)).maps
    assert not torch.allclose(other[0, 0], expected)


def _ctx(model, seed):
    from camcli.methods.base import Context

    return Context(model, torch.zeros(1), "feat", torch.zeros(1, dtype=torch.long), params=MethodParams(seed=seed))


class BiasNet(nn.Module):
    """x (1 channel, 2×2) → conv 1×1 (w 1, b 0.5) → batch norm (γ 4, β 1, μ 0.2, σ² 3, ε 1) → class 0's score
    Σ M ⊙ u with M = [[1, 2], [0, 3]]; class 1's: Σ u."""

    M = torch.tensor([[1.0, 2.0], [0.0, 3.0]])

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.bn = nn.BatchNorm2d(1, eps=1.0)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(0.5)
            self.bn.weight.fill_(4.0)
            self.bn.bias.fill_(1.0)
            self.bn.running_mean.fill_(0.2)
            self.bn.running_var.fill_(3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.bn(self.conv(x))[:, 0]
        return torch.stack([(u * self.M).sum((1, 2)), u.sum((1, 2))], dim=1)


def test_fullgrad_by_hand():
    # batch norm in eval: u = 4 (z - 0.2) / √(3 + 1) + 1 = 2 z + 0.6: its bias is 1 - 0.2·4/2 = 0.6
    net = BiasNet().eval()
    found = {type(m).__name__: float(b) for m, b in biases(net)}
    assert found == pytest.approx({"Conv2d": 0.5, "BatchNorm2d": 0.6})
    # class 0: ∂y/∂u = M, ∂y/∂z = 2M, ∂y/∂x = 2M
    # x = [[2, -1], [4, 1]]: |2M ⊙ x| = [[4, 4], [0, 6]] -> scaled [[2/3, 2/3], [0, 1]]
    # batch norm: |M · 0.6| -> scaled M/3 = [[1/3, 2/3], [0, 1]]; conv: |2M · 0.5| -> the same
    # sum: [[4/3, 2], [0, 3]] -> normalised [[4/9, 2/3], [0, 1]]
    x = torch.tensor([[[[2.0, -1.0], [4.0, 1.0]]]])
    ex = explain(net, x, [], get_method("fullgrad"), targets=[0])
    torch.testing.assert_close(ex.maps[0, 0], torch.tensor([[4 / 9, 2 / 3], [0.0, 1.0]]))
    assert all(p.grad is None for p in net.parameters())
    assert not any(m._forward_hooks for m in net.modules())


# ----------------------------------------------------------------------------------------- pytorch-grad-cam
def _model(name: str) -> nn.Module:
    return calibrated(name)


@pytest.fixture(scope="module")
def resnet():
    return _model("resnet18")


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(5)
    return torch.randn(2, 3, 64, 64)


def _peer(cls_name, model, layers, x, cls, size, **kw):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    modules = dict(model.named_modules())
    cam = getattr(pgc, cls_name)(model=model, target_layers=[modules[n] for n in layers], **kw)
    cam.get_target_width_height = lambda _t: (size[1], size[0])  # the layer's grid: no resize
    try:
        return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)] * x.shape[0]))
    finally:
        cam.activations_and_grads.release()


def _acts_and_grads(model, layer, x, cls):
    """The layer's output and the class score's gradient there, by a hook and autograd (not camcli's)."""
    kept = {}

    def hook(_m, _i, out):
        kept["a"] = out
        return out.clone()

    h = dict(model.named_modules())[layer].register_forward_hook(hook)
    try:
        score = model(x)[:, cls].sum()
    finally:
        h.remove()
    (g,) = torch.autograd.grad(score, kept["a"])
    return kept["a"].detach(), g


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_gradcam_elementwise_equals_pytorch_grad_cam(resnet, batch, layer):
    ours = explain(resnet, batch, layer, get_method("gradcamelementwise"), targets=[11]).maps[:, 0]
    ref = _peer("GradCAMElementWise", resnet, [layer], batch, 11, tuple(ours.shape[-2:]))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def _oriented(proj: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The peer's (B, h, w) projections with camcli's documented sign (positive correlation with the channel sum
    of ``values`` (B, C, h, w)), normalised."""
    b, c, h, w = values.shape
    flat = values.reshape(b, c, h * w).transpose(1, 2).double()
    return normalize(orient(proj.reshape(b, h * w).double(), flat).reshape(b, h, w).float())


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_eigengradcam_equals_pytorch_grad_cam_up_to_the_documented_sign(resnet, batch, layer):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    ours = explain(resnet, batch, layer, get_method("eigengradcam"), targets=[11]).maps[:, 0]
    a, g = _acts_and_grads(resnet, layer, batch, 11)
    proj = torch.from_numpy(get_2d_projection((g * a).numpy()))  # what pgc's EigenGradCAM projects
    torch.testing.assert_close(ours, _oriented(proj, g * a), atol=1e-4, rtol=0)
    # and that projection is the peer's own map (its sign as LAPACK returns it)
    ref = _peer("EigenGradCAM", resnet, [layer], batch, 11, tuple(ours.shape[-2:]))
    torch.testing.assert_close(ref, normalize(proj), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", ["layer2", "layer3"])
def test_kpcacam_equals_pytorch_grad_cams_scikit_learn_up_to_the_documented_sign(resnet, batch, layer):
    pytest.importorskip("sklearn")
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    ours = explain(resnet, batch, layer, get_method("kpcacam")).maps[:, 0]
    a, _ = _acts_and_grads(resnet, layer, batch, 0)
    proj = torch.from_numpy(get_2d_projection_kernel(a.numpy()))  # KernelPCA(1, "sigmoid", gamma=None)
    torch.testing.assert_close(ours, _oriented(proj, a), atol=1e-4, rtol=0)
    ref = _peer("KPCA_CAM", resnet, [layer], batch, 0, tuple(ours.shape[-2:]))  # the peer's map is that projection
    torch.testing.assert_close(ref, normalize(proj), atol=1e-5, rtol=0)


def test_kpcacam_iterative_solver_equals_scikit_learn():
    # above DENSE_UP_TO positions the top eigenpair comes from LOBPCG; scikit-learn uses ARPACK there
    pytest.importorskip("sklearn")
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    torch.manual_seed(1)
    side = 36
    assert side * side > DENSE_UP_TO
    a = torch.relu(torch.randn(1, 8, side, side) + torch.linspace(-1, 1, side).view(1, 1, 1, side))
    ours = normalize(kernel_component(a))
    proj = torch.from_numpy(get_2d_projection_kernel(a.numpy()))
    torch.testing.assert_close(ours, _oriented(proj, a), atol=1e-4, rtol=0)


def test_kpcacam_refuses_a_layer_with_too_many_positions():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.LazyLinear(2)).eval()
    with pytest.raises(LayerError, match=r"kpcacam.*has 4225 .*deeper layer"):
        explain(net, torch.randn(1, 3, 65, 65), "0", get_method("kpcacam"))


@pytest.mark.parametrize(
    ("name", "layer", "differs"), [("efficientnet_b0", "features.5", True), ("resnet18", "layer3", False)]
)
def test_shapleycam_equals_pytorch_grad_cam(batch, name, layer, differs):
    # efficientnet's SiLU and sigmoid gates give the score a Hessian; resnet's ReLUs and linear head give none,
    # and ShapleyCAM is Grad-CAM there
    model = _model(name)
    ex = explain(model, batch, layer, get_methods(["shapleycam", "gradcam"]), targets=[11])
    ours = ex.by_method["shapleycam"][:, 0]
    ref = _peer("ShapleyCAM", model, [layer], batch, 11, tuple(ours.shape[-2:]))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    gap = float((ours - ex.by_method["gradcam"][:, 0]).abs().max())
    assert gap > 0.05 if differs else gap < 1e-5


def test_shapleycam_on_tokens_lays_the_hessian_product_out_like_the_gradients():
    import pytorch_grad_cam as pgc
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10).eval()
    for block in vit.blocks:
        block.attn.fused_attn = False  # torch has no second derivative of its fused attention kernel
    x = torch.randn(2, 3, 32, 32)
    ours = explain(vit, x, "blocks.0", get_methods(["shapleycam", "gradcam"]), targets=[3])

    def grid(t):  # the class token dropped, 4 × 4 patches
        return t[:, 1:, :].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    # pgc's ShapleyCAM cannot lay out a token layer's activations (get_cam_image gets them raw), so its weights
    # (which do lay the product out) are taken from get_cam_weights and applied here
    cam = pgc.ShapleyCAM(vit, [vit.blocks[0]], reshape_transform=grid)
    try:
        xg = x.clone().requires_grad_(True)
        out = cam.activations_and_grads(xg)
        torch.autograd.grad(out[:, 3].sum(), xg, retain_graph=True, create_graph=True)
        a, g = cam.activations_and_grads.activations[0], cam.activations_and_grads.gradients[0]
        w = torch.from_numpy(cam.get_cam_weights(xg, None, None, a, g)).float()
    finally:
        for h in cam.activations_and_grads.handles:
            h.remove()
    ref = normalize(torch.einsum("bc,bchw->bhw", w, grid(a.detach())))
    torch.testing.assert_close(ours.by_method["shapleycam"][:, 0], ref, atol=1e-5, rtol=0)
    assert float((ours.by_method["shapleycam"] - ours.by_method["gradcam"]).abs().max()) > 0.05


def test_shapleycam_says_when_torch_has_no_second_derivative():
    model = _model("mobilenet_v3_small")  # hard-sigmoid gates: no double backward in torch
    with pytest.raises(LayerError, match=r"shapleycam needs second derivatives.*layer 'features\.9'"):
        explain(model, torch.randn(1, 3, 64, 64), "features.9", get_method("shapleycam"))


def test_random_cam_is_pytorch_grad_cams_given_the_same_weights(resnet, batch, monkeypatch):
    import pytorch_grad_cam.random_cam as peer

    from camcli.methods.randomcam import random_weights

    w = random_weights(256, 7).numpy()
    monkeypatch.setattr(peer.np.random, "uniform", lambda low, high, size: np.broadcast_to(w, size))
    ours = explain(resnet, batch, "layer3", get_method("random"), params=MethodParams(seed=7)).maps[:, 0]
    ref = _peer("RandomCAM", resnet, ["layer3"], batch, 0, tuple(ours.shape[-2:]))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_fullgrad_equals_pytorch_grad_cam(resnet, batch, monkeypatch):
    import camcli.methods.fullgrad as fullgrad

    ours = explain(resnet, batch, [], get_method("fullgrad"), targets=[11]).maps[:, 0]
    ref = _peer("FullGrad", resnet, [], batch, 11, (64, 64))
    assert ours.shape == ref.shape == (2, 64, 64)
    # pgc scales each channel's map by max + 1e-7, which shrinks the channels whose values are tiny (here up to 3e-3
    # of the map); camcli scales them all to 1
    torch.testing.assert_close(ours, ref, atol=5e-3, rtol=0)
    # with pgc's scaling the rest is the same arithmetic
    monkeypatch.setattr(fullgrad, "_scale", _pgc_scale)
    same = explain(resnet, batch, [], get_method("fullgrad"), targets=[11]).maps[:, 0]
    torch.testing.assert_close(same, ref, atol=2e-5, rtol=0)
    assert not any(m._forward_hooks for m in resnet.modules())


def _pgc_scale(maps: torch.Tensor, _rel_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """pytorch-grad-cam's scale_cam_image: (m - min) / (1e-7 + max(m - min)), as (min, 1 / (1e-7 + span))."""
    lo, hi = torch.aminmax(maps.flatten(-2), dim=-1)
    return lo, 1.0 / (1e-7 + hi - lo)


def test_fullgrad_removes_its_hooks_after_a_failure(resnet):
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = resnet

        def forward(self, x):
            self.body(x)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        explain(Broken(), torch.randn(1, 3, 64, 64), [], get_method("fullgrad"), classes=torch.tensor([[0]]))
    assert not any(m._forward_hooks for m in resnet.modules())


# ----------------------------------------------------------------------------------------- detectors
def test_gradient_methods_land_in_a_toy_detectors_box():
    torch.manual_seed(0)
    model = BoxDetector((40, 10, 60, 30)).eval()
    picture = torch.rand(3, 100, 150)
    methods = get_methods(["gradcamelementwise", "eigengradcam"])
    assert all(m.on_objects for m in methods)
    (obj,) = explain_detections(model, picture, ["backbone.body"], methods, ObjectQuery(min_score=0)).objects
    x1, y1, x2, y2 = (62, 16, 94, 47)  # the box in the original picture, as test_objects works it out
    for name in ("gradcamelementwise", "eigengradcam"):
        cam = obj.maps[name]
        outside = cam.clone()
        outside[max(0, y1 - 3) : y2 + 3, max(0, x1 - 3) : x2 + 3] = 0
        assert float(outside.max()) == 0.0, name  # the score's gradient is zero outside the box
        assert float(cam[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].mean()) > 0.3, name
    # not offered: kpcacam (a detector's finest level has too many positions for its kernel), shapleycam (the
    # object's score is not handed on in a graph), fullgrad (made from the whole model), random (--seed)
    assert not any(m.on_objects for m in get_methods(["kpcacam", "shapleycam", "fullgrad", "random"]))


def test_on_a_random_detector_through_the_job(tmp_path):
    from PIL import Image

    from camcli.jobs.objects import cam_job
    from camcli.jobs.runner import run_job
    from camcli.options import CamOptions

    from .conftest import SAMPLES
    from .test_objects import random_detector

    picture = tmp_path / "odd.png"
    Image.open(SAMPLES / "astronaut.png").convert("RGB").resize((233, 151)).save(picture)
    methods = ["gradcamelementwise", "eigengradcam"]
    options = CamOptions(out=tmp_path, methods=methods, min_score=0.0, max_objects=1, save_raw=True)
    (result,) = list(
        run_job(cam_job(options, random_detector("fasterrcnn_mobilenet_v3_large_320_fpn")), [str(picture)])
    )
    assert result.ok, result.error
    assert sorted(o.method for o in result.written) == sorted(methods)
    for o in result.written:
        raw = np.load(o.raw)
        assert o.status == "ok" and raw.shape == (151, 233) and np.isfinite(raw).all() and raw.max() == 1.0


def test_method_all_leaves_shapleycam_out_where_torch_has_no_second_derivative():
    from timm.models.vision_transformer import VisionTransformer

    from camcli.methods import usable

    shapley = get_method("shapleycam")
    assert shapley.refusal(_model("resnet18"), ["layer4"]) is None
    assert shapley.refusal(_model("efficientnet_b0"), ["features.7"]) is None
    why = shapley.refusal(_model("mobilenet_v3_small"), ["features.9"])
    assert why is not None and "second derivatives" in why and "Hardsigmoid" in why
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=10).eval()
    assert "fused attention" in (shapley.refusal(vit, ["blocks.0"]) or "")
    kept, left = usable(get_methods(["gradcam", "shapleycam"]), vit, ["blocks.0"])
    assert [m.name for m in kept] == ["gradcam"] and "fused attention" in left["shapleycam"]
    vit.blocks[0].attn.fused_attn = False
    assert shapley.refusal(vit, ["blocks.0"]) is None
