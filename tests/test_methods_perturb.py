"""Gradient-free CAMs that re-run the model (ablationcam, sscam, iscam) and Seg-Eigen-CAM: hand-computed tiny cases,
agreement with pytorch-grad-cam (AblationCAM, SegEigenCAM) and torchcam (SSCAM, ISCAM) on the same tensors, the
split run of Ablation-CAM against the whole-model run, hook lifetime, and detectors' and segmenters' objects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from camcli.errors import LayerError
from camcli.method_params import MethodParams
from camcli.methods import REGISTRY, explain, get_method, get_methods, normalize
from camcli.methods.ablationcam import channel_dim
from camcli.methods.base import Context
from camcli.methods.objects import ObjectQuery, explain_detections, explain_segmentation
from tests.conftest import calibrated

from .test_objects import BoxDetector, ChannelSegmenter

# ------------------------------------------------------------------------------------------- the tiny case
X0 = torch.tensor([[1.0, 2.0], [0.0, -2.0]])  # mean 1/4
X1 = torch.tensor([[-1.0, 2.0], [2.0, 1.0]])  # mean 1
X = torch.stack([X0, X1])[None]  # (1, 2, 2, 2)


class ChannelNet(nn.Module):
    """Identity 1×1 conv (A1 = input channel 0, A2 = channel 1), global average, linear with class rows
    [1, 1] and [1, -3]: y0 = mean A1 + mean A2, y1 = mean A1 - 3 mean A2 (linear, no bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(2, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -3.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feat(x).mean((2, 3)))


def _map(w0: float, w1: float) -> torch.Tensor:
    return normalize(w0 * X0 + w1 * X1)


def _maps(method, targets, **params):
    ex = explain(ChannelNet().eval(), X, "feat", method, targets=targets, params=MethodParams(**params))
    return ex.maps[0, 0]


def test_ablationcam_hand_computed():
    from camcli.engine.targets import Target

    m = get_method("ablationcam")
    # class 0: y = 1/4 + 1 = 5/4; A1 zeroed: 1 -> w1 = (5/4 - 1)/(5/4) = 1/5; A2 zeroed: 1/4 -> w2 = 4/5
    # map = X0/5 + 4 X1/5 = [[-3/5, 2], [8/5, 2/5]] -> ReLU, /2 -> [[0, 1], [.8, .2]]
    torch.testing.assert_close(_maps(m, [0]), torch.tensor([[0.0, 1.0], [0.8, 0.2]]), atol=1e-6, rtol=0)
    # class 1, a negative score: y = 1/4 - 3 = -11/4; A1 zeroed: -3 -> w1 = (-11/4 + 3)/|-11/4| = 1/11;
    # A2 zeroed: 1/4 -> w2 = (-11/4 - 1/4)/(11/4) = -12/11; map = (X0 - 12 X1)/11 = [[13, -22], [-24, -14]]/11
    # -> [[1, 0], [0, 0]] (pytorch-grad-cam divides by y itself: the weights and the map flip, see below)
    torch.testing.assert_close(_maps(m, [1]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), atol=1e-6, rtol=0)
    # not:1: the explained score is 11/4; A1 zeroed: 3 -> w1 = -1/11; A2 zeroed: -1/4 -> w2 = 12/11
    # map = (-X0 + 12 X1)/11 = [[-13, 22], [24, 14]]/11 -> /24 -> [[0, 22/24], [1, 14/24]]
    expected = torch.tensor([[0.0, 22 / 24], [1.0, 14 / 24]])
    torch.testing.assert_close(_maps(m, [Target(1, True)]), expected, atol=1e-6, rtol=0)


def test_ablationcam_divides_by_the_score_magnitude_where_pytorch_grad_cam_divides_by_the_score():
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    # the input without its negative values: the layer's minimum is 0, where pytorch-grad-cam zeroes a channel too
    # (elsewhere it sets it to its minimum less 10⁷·i). X0 = [[1, 2], [0, 0]] (mean 3/4), X1 = [[0, 2], [2, 1]]
    # (mean 5/4); class 1: y = 3/4 - 15/4 = -3; A1 zeroed: -15/4, A2 zeroed: 3/4
    net, x = ChannelNet().eval(), X.clamp(min=0)
    acts = net.feat(x).detach()
    cam = AblationCAM(model=net, target_layers=[net.feat])
    try:
        ref = cam.get_cam_weights(x, net.feat, [ClassifierOutputTarget(1)], acts, None)
    finally:
        cam.activations_and_grads.release()
    # pytorch-grad-cam: (y - y_k)/y = (-3 + 15/4)/-3 = -1/4 and (-3 - 3/4)/-3 = 5/4: the drop counts against
    np.testing.assert_allclose(ref[0], [-1 / 4, 5 / 4], rtol=1e-5)
    ctx = Context(net, x, "feat", torch.tensor([1]))
    original, ablated = get_method("ablationcam").ablated_scores(acts, ctx)
    ours = (original[:, 1:2] - ablated[:, :, 1]) / original[:, 1:2].abs()
    np.testing.assert_allclose(ours[0].numpy(), [1 / 4, -5 / 4], rtol=1e-5)  # camcli: (y - y_k)/|y|


def _score_cam_scores(masks: torch.Tensor) -> torch.Tensor:
    """Class-0 score of x ⊙ M for each mask M (2, 2, 2): mean((X0 + X1) ⊙ M), the net being linear."""
    return ((X0 + X1) * masks).mean((1, 2))


# the masks of the tiny case (the layer's grid is the input's: no resize): each channel min-max normalised
M = torch.stack([(X0 + 2) / 4, (X1 + 1) / 3])  # [[3/4, 1], [1/2, 0]] and [[0, 1], [1, 2/3]]
# X0 + X1 = [[0, 4], [2, -1]]: s1 = (4 + 1)/4 = 5/4, s2 = (4 + 2 - 2/3)/4 = 4/3


def test_iscam_hand_computed():
    # step i scales the masked input by a_i = sum_{j<=i} j/10 = i(i+1)/20; the net is linear, so the mean score is
    # mean(a) = (385 + 55)/200 = 2.2 times Score-CAM's: softmax(2.2 · [5/4, 4/3])
    s = _score_cam_scores(M)
    torch.testing.assert_close(s, torch.tensor([5 / 4, 4 / 3]))
    w1 = 1 / (1 + math.exp(2.2 * (4 / 3 - 5 / 4)))
    torch.testing.assert_close(_maps(get_method("iscam"), [0]), _map(w1, 1 - w1), atol=1e-6, rtol=0)
    # with one step (a = 1) it is Score-CAM: softmax([5/4, 4/3]), another map
    w1 = 1 / (1 + math.exp(4 / 3 - 5 / 4))
    torch.testing.assert_close(_maps(get_method("iscam"), [0], iscam_steps=1), _map(w1, 1 - w1), atol=1e-6, rtol=0)
    torch.testing.assert_close(_maps(get_method("scorecam"), [0]), _map(w1, 1 - w1), atol=1e-6, rtol=0)


def test_sscam_hand_computed_with_the_same_noise():
    # no noise: Score-CAM's weights softmax([5/4, 4/3])
    quiet = get_method("sscam")
    quiet.std = 0.0  # type: ignore[attr-defined]
    w1 = 1 / (1 + math.exp(4 / 3 - 5 / 4))
    torch.testing.assert_close(_maps(quiet, [0]), _map(w1, 1 - w1), atol=1e-6, rtol=0)
    # with noise, directly: the net is linear, so the mean score over the samples is that of the mask plus the
    # mean noise; the noise is drawn as documented: a generator seeded with --seed (0), one (2, 2, 2) draw of
    # N(0, 2²) per sample (both channels in one chunk of --score-batch)
    gen = torch.Generator().manual_seed(0)
    mean_noise = torch.stack([torch.randn((2, 2, 2), generator=gen) * 2.0 for _ in range(35)]).mean(0)
    s = _score_cam_scores(M + mean_noise)
    w = torch.softmax(s, 0)
    torch.testing.assert_close(_maps(get_method("sscam"), [0]), _map(float(w[0]), float(w[1])), atol=1e-5, rtol=0)


def test_segeigencam_hand_computed():
    # class 1: dy/dA1 = 1/4, dy/dA2 = -3/4 everywhere: |g| ⊙ A = (X0/4, 3 X1/4). Centred over positions:
    # a = [.75, 1.75, -.25, -2.25]/4 (Σa² = 8.75/16), b = 3·[-2, 1, 1, 0]/4 (Σb² = 54/16), a·b = 0: the first
    # component is b's axis; the projection ±b ∝ [-2, 1, 1, 0] has |min| > |max|: flipped -> [2, -1, -1, 0]
    # -> ReLU, min-max -> [[1, 0], [0, 0]]
    torch.testing.assert_close(
        _maps(get_method("segeigencam"), [1]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), atol=1e-6, rtol=0
    )
    # class 0: |g| = 1/4 for both: Σa² = 8.75/16 > Σ(b/3)² = 6/16: X0's axis, ±[.75, 1.75, -.25, -2.25];
    # |min| > |max|: [-.75, -1.75, .25, 2.25] -> [[0, 0], [1/9, 1]] (what Eigen-CAM gives for both classes)
    torch.testing.assert_close(
        _maps(get_method("segeigencam"), [0]), torch.tensor([[0.0, 0.0], [1 / 9, 1.0]]), atol=1e-6, rtol=0
    )


# ------------------------------------------------------------------------------------------- the peers
def _resnet18():
    return calibrated("resnet18")


@pytest.fixture(scope="module")
def resnet():
    return _resnet18()


def _positive_class(model, x):
    """A class whose logit is positive for every image (pytorch-grad-cam's ratio and camcli's agree there)."""
    with torch.no_grad():
        logits = model(x)
    cls = int(logits.min(0).values.argmax())
    assert bool((logits[:, cls] > 0).all())
    return cls


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize(("split", "batch"), [(True, 2), (False, 1)])
def test_ablationcam_agrees_with_pytorch_grad_cam(resnet, split, batch):
    """Both runs: the layers after layer3 on the copies of its output, and the whole model on every copy. The
    weights are differences of nearly equal scores (a channel of 256 moves the score by about 1%): float32
    rounding of a score, which differs with the batch's size, is about 1e-5 of the largest weight, and the
    weighted sum of 256 channels carries it to about 3e-4 of the map."""
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(5)
    x = torch.randn(batch, 3, 64, 64)
    cls = _positive_class(resnet, x)
    layer = dict(resnet.named_modules())["layer3"]
    before = _hooks(resnet)
    m = get_method("ablationcam")
    m.split = split  # type: ignore[attr-defined]
    ours = explain(resnet, x, "layer3", m, targets=[cls], score_batch=64)
    assert _hooks(resnet) == before
    targets = [ClassifierOutputTarget(cls)] * batch
    cam = AblationCAM(model=resnet, target_layers=[layer], batch_size=64)
    cam.get_target_width_height = lambda _t: (4, 4)
    try:
        ref = cam(input_tensor=x, targets=targets)
        acts = cam.activations_and_grads.activations[0]
        ref_w = cam.get_cam_weights(x, layer, targets, acts, None)
    finally:
        cam.activations_and_grads.release()
    np.testing.assert_allclose(ours.maps[:, 0].numpy(), ref, atol=1e-3)
    # before normalisation: the weights, (y - y_k)/|y|
    original, ablated = m.ablated_scores(acts, Context(resnet, x, "layer3", torch.tensor([cls] * batch), 64))
    w = (original[:, cls, None] - ablated[:, :, cls]) / original[:, cls, None].abs()
    np.testing.assert_allclose(w.numpy(), ref_w, atol=1e-4 * float(np.abs(ref_w).max()))


class Tokens(nn.Module):
    """A tiny ViT-like net: 4×4 patch embedding, a class token, two blocks of tokens (B, 17, 8), the class token's
    head. ``way``: "plain"; "batch": the head reads the batch size from the input and concatenates the patch
    embedding (a tensor from before the layer), as many real models do; "inplace": the embedding gets a position
    term added in place, which copies of a recorded embedding cannot take (the whole model runs instead)."""

    def __init__(self, way: str = "plain") -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(torch.randn(1, 16, 8))
        self.block1 = nn.Sequential(nn.Linear(8, 8), nn.GELU())
        self.block2 = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, 5)
        self.way = way

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x).flatten(2)
        if self.way == "inplace":
            e += self.pos.transpose(1, 2)
        e = e.transpose(1, 2)  # (B, 16, 8)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), e], 1)
        t = self.block2(self.block1(t))
        if self.way == "batch":
            t = torch.cat([t, e], 1).view(x.shape[0], 33, 8)
        return self.head(t[:, 0])


def _direct_weights(model, x, layer, cls):
    """(y - y_k)/|y| with channel k of ``layer``'s output zeroed (last dim: tokens), one whole forward per k."""
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        y = model(x)[0, cls]
        out = []
        for k in range(8):
            h = module.register_forward_hook(lambda _m, _i, o, k=k: o.index_fill(-1, torch.tensor([k]), 0.0))
            try:
                out.append(model(x)[0, cls])
            finally:
                h.remove()
    return (y - torch.stack(out)) / y.abs()


@pytest.mark.parametrize(("way", "split"), [("plain", True), ("batch", True), ("inplace", False)])
def test_ablationcam_on_tokens_zeroes_a_channel_of_every_token(way, split, monkeypatch):
    from camcli.methods import ablationcam

    model = Tokens(way).eval()
    torch.manual_seed(4)
    x = torch.randn(1, 3, 16, 16)
    splits = []
    real = ablationcam._prefix
    monkeypatch.setattr(ablationcam, "_prefix", lambda *a: splits.append(real(*a)) or splits[-1])
    ex = explain(model, x, "block1", get_method("ablationcam"), targets=[2], score_batch=3)
    assert [p is not None for p in splits] == [split]  # run from the layer on, or the whole model on every copy
    seen: dict[str, torch.Tensor] = {}
    h = model.block1.register_forward_hook(lambda _m, _i, o: seen.update(a=o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    acts = seen["a"][:, 1:].transpose(1, 2).reshape(1, 8, 4, 4)  # the grid after the class token
    w = _direct_weights(model, x, "block1", 2)
    torch.testing.assert_close(ex.maps[0, 0], normalize(torch.einsum("c,chw->hw", w, acts[0])), atol=1e-5, rtol=0)
    assert _hooks(model) == 0 and not any("forward" in vars(m) for m in model.modules())


def test_trace_finds_what_ran_before_the_layer_and_replay_puts_every_forward_back(resnet):
    from camcli.engine.suffix import replayed, trace

    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        prefix = trace(resnet, resnet.layer3, lambda: resnet(x))
        assert prefix is not None
        names = {m: n for n, m in resnet.named_modules()}
        # the outermost modules that finished before layer3 began (their children are not replayed on their own)
        assert sorted(names[m] for m, _ in prefix.done) == ["bn1", "conv1", "layer1", "layer2", "maxpool", "relu"]
        torch.testing.assert_close(prefix.output, resnet.layer3(resnet.layer2(resnet.layer1(resnet.maxpool(
            resnet.relu(resnet.bn1(resnet.conv1(x))))))))  # fmt: skip
        rows = prefix.output.expand(3, -1, -1, -1).clone()
        rows[1:] = 0
        with replayed(prefix, resnet.layer3, rows) as used:
            out = resnet(x.expand(3, -1, -1, -1))
        assert used == [1]
        torch.testing.assert_close(out[0], resnet(x)[0], atol=1e-5, rtol=1e-5)
        zero = resnet.fc(resnet.avgpool(resnet.layer4(torch.zeros_like(prefix.output))).flatten(1))
        torch.testing.assert_close(out[1:], zero.expand(2, -1), atol=1e-5, rtol=1e-5)
        with pytest.raises(ZeroDivisionError), replayed(prefix, resnet.layer3, rows):
            1 / 0  # noqa: B018
    assert not any("forward" in vars(m) for m in resnet.modules()) and _hooks(resnet) == 0


def test_ablationcam_leaves_no_hook_after_a_failure(resnet):
    class Boom(RuntimeError):
        pass

    calls = [0]

    def fail(_m, _i, _o):
        calls[0] += 1
        if calls[0] == 6:  # the main pass, the model's score, two traced runs, the check, the first ablated batch
            raise Boom

    h = resnet.fc.register_forward_hook(fail)
    try:
        with pytest.raises(Boom):
            explain(resnet, torch.randn(1, 3, 64, 64), "layer3", get_method("ablationcam"), targets=[0])
    finally:
        h.remove()
    assert calls[0] == 6 and _hooks(resnet) == 0 and not any("forward" in vars(m) for m in resnet.modules())


def test_channel_dim_of_each_layout():
    assert channel_dim((8, 4, 4), (8, 4, 4), "l") == 1
    assert channel_dim((4, 4, 8), (8, 4, 4), "l") == 3
    assert channel_dim((17, 8), (8, 4, 4), "l") == 2
    assert channel_dim((4, 4, 4), (4, 4, 4), "l", "Conv2d") == 1  # as the grid was read: a conv's is channels first
    with pytest.raises(LayerError, match="cannot tell which dimension"):
        channel_dim((4, 4, 4), (4, 4, 4), "l", "Linear")


def _torchcam(cls_name, model, layer, x, classes, seed=None, **kw):
    import torchcam.methods as tcm

    with getattr(tcm, cls_name)(model, layer, input_shape=tuple(x.shape[1:]), **kw) as extractor:
        with torch.no_grad():
            scores = model(x)
        if seed is not None:
            torch.manual_seed(seed)
        return extractor(class_idx=classes, scores=scores, normalized=False)[0]


def test_iscam_agrees_with_torchcam(resnet):
    torch.manual_seed(6)
    x = torch.randn(2, 3, 64, 64)
    m = get_method("iscam")
    few = MethodParams(iscam_steps=2)  # fewer steps than the default 10, for the test's speed
    ours = explain(resnet, x, "layer2", m, targets=[7], score_batch=64, params=few)
    ref = _torchcam("ISCAM", resnet, "layer2", x, [7, 7], num_samples=2, batch_size=64)
    torch.testing.assert_close(ours.maps[:, 0], normalize(ref), atol=1e-4, rtol=0)


def test_sscam_agrees_with_torchcam_seeded_alike(resnet):
    """torchcam draws from torch's global generator: seeded with the same seed, a batch of one gets the same noise
    (camcli draws it chunk by chunk, in the same order: each chunk's numbers are those of the one big draw)."""
    torch.manual_seed(7)
    x = torch.randn(1, 3, 64, 64)
    m = get_method("sscam")
    few = MethodParams(sscam_samples=3)  # fewer samples than the default 35, for the test's speed
    ours = explain(resnet, x, "layer2", m, targets=[4], score_batch=48, params=few)
    ref = _torchcam("SSCAM", resnet, "layer2", x, [4], seed=0, num_samples=3, batch_size=64)
    torch.testing.assert_close(ours.maps[:, 0], normalize(ref), atol=1e-4, rtol=0)


def test_sscam_map_of_an_image_does_not_depend_on_its_batch_and_follows_the_seed():

    net = ChannelNet().eval()
    m = get_method("sscam")
    alone = explain(net, X, "feat", m, targets=[0]).maps
    both = explain(net, torch.cat([-X, X]), "feat", m, targets=[0]).maps
    torch.testing.assert_close(both[1], alone[0])
    reseeded = explain(net, X, "feat", m, targets=[0], params=MethodParams(seed=1)).maps
    assert float((reseeded - alone).abs().max()) > 1e-3  # another seed, other noise


@pytest.mark.slow
def test_sscam_and_iscam_defaults_agree_with_torchcam(resnet):
    torch.manual_seed(8)
    x = torch.randn(1, 3, 64, 64)
    ours = explain(resnet, x, "layer2", get_method("iscam"), targets=[3], score_batch=64)
    ref = _torchcam("ISCAM", resnet, "layer2", x, [3], batch_size=64)
    torch.testing.assert_close(ours.maps[:, 0], normalize(ref), atol=1e-4, rtol=0)
    ours = explain(resnet, x, "layer2", get_method("sscam"), targets=[3], score_batch=64)
    ref = _torchcam("SSCAM", resnet, "layer2", x, [3], seed=0, batch_size=64)
    torch.testing.assert_close(ours.maps[:, 0], normalize(ref), atol=1e-4, rtol=0)


def test_segeigencam_agrees_with_pytorch_grad_cam_on_a_classifier(resnet):
    from pytorch_grad_cam import SegEigenCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(9)
    x = torch.randn(2, 3, 64, 64)
    ours = explain(resnet, x, "layer3", get_method("segeigencam"), targets=[5])
    cam = SegEigenCAM(model=resnet, target_layers=[resnet.layer3])
    cam.get_target_width_height = lambda _t: (4, 4)
    try:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(5)] * 2)
    finally:
        cam.activations_and_grads.release()
    np.testing.assert_allclose(ours.maps[:, 0].numpy(), ref, atol=1e-4)


def test_segeigencam_agrees_with_pytorch_grad_cam_on_a_segmenter():
    from pytorch_grad_cam import SegEigenCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    torch.manual_seed(0)
    seg = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3, aux_loss=False
    ).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pred = seg(x)["out"].argmax(1)[0]
    cls = int(torch.bincount(pred.flatten(), minlength=3)[1:].argmax()) + 1  # the largest class but background
    _, objects = explain_segmentation(
        seg, x, ["backbone.16"], get_methods(["segeigencam"]), ObjectQuery({cls}), (64, 64)
    )
    (obj,) = objects
    assert obj.status == "ok"

    class Out(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seg = seg

        def forward(self, t):
            return self.seg(t)["out"]

    wrapped = Out().eval()
    cam = SegEigenCAM(model=wrapped, target_layers=[seg.backbone["16"]])
    try:
        ref = cam(input_tensor=x, targets=[SemanticSegmentationTarget(cls, (pred == cls).float().numpy())])
    finally:
        cam.activations_and_grads.release()
    # camcli draws the normalised 4 × 4 map at the picture's size and normalises it again, pytorch-grad-cam
    # resizes the ReLU'd map with OpenCV and normalises it: the same bilinear resize, up to rounding
    np.testing.assert_allclose(obj.maps["segeigencam"].numpy(), ref[0], atol=2e-3)


# ------------------------------------------------------------------------------------------- objects
class EveryImageBoxDetector(BoxDetector):
    """The toy detector of tests/test_objects.py, one detection per picture of a batch (that one scores the first
    picture only): its score is sigmoid(mean of the feature channels inside the box)."""

    def forward(self, images):
        batch, _ = self.transform(images)
        feats = self.backbone.body(batch.tensors)
        x1, y1, x2, y2 = self.box
        scores = torch.sigmoid(feats[:, :, y1:y2, x1:x2].mean((1, 2, 3)))
        box = torch.tensor([self.box], dtype=torch.float32)
        out = [{"boxes": box, "labels": torch.tensor([1]), "scores": s[None]} for s in scores]
        return self.transform.postprocess(out, batch.image_sizes, [tuple(i.shape[-2:]) for i in images])


@pytest.mark.parametrize("split", [True, False])
def test_ablationcam_sscam_iscam_explain_a_detection(split, monkeypatch):
    """Channel 1's weights are set to 0, so it is all zero: zeroing it changes nothing (Ablation-CAM's weight 0),
    zeroing channel 0 lowers the score (a positive weight); SS-CAM's and IS-CAM's weights are positive (softmax),
    and channel 1 adds nothing to the sum. Each map is then channel 0 alone, drawn like the detector's picture.
    Ablation-CAM's weights are also checked against the detector's scores with channel 0 zeroed by hand."""
    from camcli.methods import ablationcam
    from camcli.methods.objects import _fuse

    torch.manual_seed(0)
    model = EveryImageBoxDetector((40, 10, 60, 30)).eval()
    with torch.no_grad():
        model.backbone.body.weight[1].zero_()
    picture = torch.rand(3, 100, 150)
    names = ["ablationcam", "sscam", "iscam"]
    methods = get_methods(names)
    methods[0].split = split  # type: ignore[attr-defined]
    prefixes = []
    real = ablationcam._prefix
    monkeypatch.setattr(ablationcam, "_prefix", lambda *a: prefixes.append(real(*a)) or prefixes[-1])
    weights = []
    real_map = methods[0].raw_map
    monkeypatch.setattr(methods[0], "raw_map", lambda a, g, c: weights.append(c.cache) or real_map(a, g, c))
    query = ObjectQuery(min_score=0, params=MethodParams(sscam_samples=2, iscam_steps=2))
    found = explain_detections(model, picture, ["backbone.body"], methods, query)
    (obj,) = found.objects
    assert obj.status == "ok" and [p is not None for p in prefixes] == ([True] if split else [])
    seen: dict[str, torch.Tensor] = {}
    h = model.backbone.body.register_forward_hook(lambda _m, _i, o: seen.update(a=o.detach()))
    with torch.no_grad():
        model([picture])
    h.remove()
    channel0 = seen["a"][0, 0]  # (64, 96): the picture resized by the detector's transform, channels summed
    expected = _fuse([normalize(channel0)], (64, 96), (64, 96), (100, 150))
    for name in names:
        torch.testing.assert_close(obj.maps[name], expected, atol=1e-5, rtol=0)
    original, ablated = weights[0]["ablationcam"]
    score = torch.sigmoid(seen["a"][0, :, 10:30, 40:60].mean())
    dropped = torch.sigmoid(seen["a"][0, 1:, 10:30, 40:60].sum() / seen["a"][0, :, 10:30, 40:60].numel())
    torch.testing.assert_close(original[0, 1], score)
    torch.testing.assert_close(ablated[0, :, 1], torch.stack([dropped, score]))


def test_ablationcam_refuses_a_model_that_answers_one_row_for_a_batch():
    # tests/test_objects.py's toy detector scores the first picture of a batch only: one score row for 2 copies
    model = BoxDetector((40, 10, 60, 30)).eval()
    with pytest.raises(LayerError, match="--score-batch 1"):
        explain_detections(
            model, torch.rand(3, 100, 150), ["backbone.body"], get_methods(["ablationcam"]), ObjectQuery()
        )


def test_ablationcam_on_a_segmenter_scores_the_class_over_its_mask():
    # ChannelSegmenter: class c's logit is input channel c; the score of class 2 over its region is the sum of
    # channel 2 there; zeroing channel 2 of the layer drops it to 0 (weight 1), other channels change nothing
    # (weight 0): the map is channel 2 itself
    x = torch.rand(1, 3, 40, 60) + 0.1
    query = ObjectQuery(labels={2}, region=(30.0, 20.0, 60.0, 40.0))
    layers = ["backbone.body"]
    _, (obj,) = explain_segmentation(
        ChannelSegmenter().eval(), x, layers, get_methods(["ablationcam"]), query, (40, 60)
    )
    torch.testing.assert_close(obj.maps["ablationcam"], normalize(x[0, 2]), atol=1e-5, rtol=0)


def test_registered_with_their_parameters():
    from camcli.method_params import USED_BY
    from camcli.options import METHOD_NAMES

    for name in ("ablationcam", "sscam", "iscam", "segeigencam"):
        assert name in REGISTRY and name in METHOD_NAMES and REGISTRY[name].on_objects
    assert USED_BY["sscam"] == ("sscam_samples", "seed") and USED_BY["iscam"] == ("iscam_steps",)
    assert REGISTRY["sscam"].params == USED_BY["sscam"] and REGISTRY["iscam"].params == USED_BY["iscam"]
    assert not REGISTRY["ablationcam"].needs_grad and REGISTRY["segeigencam"].needs_grad
    assert MethodParams(sscam_samples=4, iscam_steps=3).named(["sscam", "iscam", "gradcam"]) == [
        ("sscam-samples", "4"),
        ("iscam-steps", "3"),
    ]


@pytest.mark.parametrize("name, field", [("sscam", "sscam_samples"), ("iscam", "iscam_steps")])
def test_their_samples_reach_them_on_images_and_on_detections(monkeypatch, name, field):
    """--sscam-samples / --iscam-steps: the noisy copies or path points each channel's mask is scored with, on a
    classifier (explain's params) and on a detector (the object query's params)."""
    import importlib

    module = importlib.import_module(f"camcli.methods.{name}")
    seen = []
    real = module.masked_scores
    monkeypatch.setattr(module, "masked_scores", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    _maps(get_method(name), [0], **{field: 3})
    query = ObjectQuery(min_score=0, params=MethodParams(**{field: 2}))
    explain_detections(EveryImageBoxDetector((40, 10, 60, 30)).eval(), torch.rand(3, 100, 150),
                       ["backbone.body"], get_methods([name]), query)  # fmt: skip
    assert seen == [3, 2]


def test_refinecam_and_finercam_take_them_as_their_base(resnet):

    x = torch.randn(1, 3, 64, 64)
    refined = explain(resnet, x, ["layer3", "layer4"], get_method("refinecam"), targets=[1],
                      params=MethodParams(refine_base="ablationcam"))  # fmt: skip
    a3 = explain(resnet, x, "layer3", get_method("ablationcam"), targets=[1]).maps
    a4 = explain(resnet, x, "layer4", get_method("ablationcam"), targets=[1]).maps
    from camcli.methods import upsample

    product = normalize(upsample(a3, (64, 64))) * normalize(upsample(a4, (64, 64)))
    torch.testing.assert_close(refined.maps, normalize(product), atol=1e-5, rtol=0)
    finer = explain(
        resnet, x, "layer3", get_method("finercam"), targets=[1], params=MethodParams(finer_base="segeigencam")
    )
    assert finer.maps.shape == (1, 1, 4, 4) and float(finer.maps.max()) == 1.0


def test_cli_sscam_samples_and_iscam_steps_are_named_shown_and_checked(tmp_path):
    from typer.testing import CliRunner

    from camcli.cli import app
    from tests.conftest import SAMPLES

    out = tmp_path / "out"
    args = ["cam", str(SAMPLES / "coffee.png"), "--method", "sscam", "--method", "iscam", "--layer", "_blocks.0"]
    result = CliRunner().invoke(app, [*args, "--sscam-samples", "1", "--iscam-steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "sscam-samples 1, iscam-steps 2" in result.output  # the header says what was set
    for m in ("sscam", "iscam"):
        assert (out / f"coffee.png.{m},layer=_blocks.0,sscam-samples=1,iscam-steps=2.967-espresso.png").is_file()
    bad = CliRunner().invoke(app, [*args, "--sscam-samples", "0"])
    assert bad.exit_code == 2 and "--sscam-samples 0 is too small" in bad.output, bad.output
