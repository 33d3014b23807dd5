"""Grad-CAM numbers: a hand-computed case, agreement with pytorch-grad-cam, and the user's model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from camcli.errors import LayerError, TargetError
from camcli.methods import explain, get_method, normalize, upsample

GRADCAM = get_method("gradcam")


def test_hand_computed_tiny_case(tiny):
    # A = [x, 0.5x]; y_c = sum_k W[c,k] * mean(A_k)  =>  dy_c/dA_k = W[c,k] / 4 everywhere.
    # class 1: w = [0.5/4, 1/4] = [0.125, 0.25]  =>  map = 0.125x + 0.125x = 0.25x
    x = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])
    ex = explain(tiny, x, "feat", GRADCAM, targets=[1])
    # 0.25x = [[.25, -.5], [.75, 0]] -> ReLU [[.25, 0], [.75, 0]] -> min-max [[1/3, 0], [1, 0]]
    expected = torch.tensor([[1 / 3, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(ex.maps[0, 0], expected)
    assert ex.classes.tolist() == [[1]]
    # logits: mean(A) = [0.5, 0.25]; y = [0.5 - 0.5, 0.25 + 0.25] = [0, 0.5]
    torch.testing.assert_close(ex.logits[0], torch.tensor([0.0, 0.5]))


def test_constant_map_is_zeros_not_nan(tiny):
    # class 0: w = [1/4, -2/4] => map = 0.25x - 0.25x = 0 everywhere
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    ex = explain(tiny, x, "feat", GRADCAM, targets=[0])
    assert not torch.isnan(ex.maps).any()
    assert torch.equal(ex.maps[0, 0], torch.zeros(2, 2))


def test_normalize_and_upsample_ranges():
    m = torch.tensor([[[-1.0, 0.0], [2.0, 4.0]]])
    n = normalize(m)
    torch.testing.assert_close(n, torch.tensor([[[0.0, 0.0], [0.5, 1.0]]]))
    up = upsample(n[0], (5, 7))
    assert up.shape == (5, 7) and up.min() >= 0 and up.max() <= 1


def _peer_gradcam(model, x, layer_name, cls, size):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = dict(model.named_modules())[layer_name]
    cam = GradCAM(model=model, target_layers=[layer])
    cam.get_target_width_height = lambda _t: (size[1], size[0])  # keep the layer's resolution
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)] * x.shape[0])
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer4.1.conv2", "layer2.0.conv1"])
def test_agrees_with_pytorch_grad_cam_on_resnet18(resnet18, layer):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    ours = explain(resnet18, x, layer, GRADCAM, targets=[7])
    ref = _peer_gradcam(resnet18, x, layer, 7, tuple(ours.maps.shape[-2:]))
    np.testing.assert_allclose(ours.maps[:, 0].numpy(), ref, atol=1e-4)


def test_intended_difference_layer_followed_by_inplace_add(resnet18):
    """layer4.1.bn2's output is modified in place by ``out += identity; relu_(out)`` in the block.

    pytorch-grad-cam keeps a reference to that tensor, so it sees the post-add, post-ReLU values; camcli
    keeps the layer's output as the layer returned it. Check ours against that definition directly.
    """
    torch.manual_seed(2)
    x = torch.randn(1, 3, 224, 224)
    ours = explain(resnet18, x, "layer4.1.bn2", GRADCAM, targets=[3])
    # independent computation: run the tail by hand from the captured bn2 output
    blk = resnet18.layer4[1]
    with torch.no_grad():
        pre = resnet18.layer4[0](
            resnet18.layer3(
                resnet18.layer2(resnet18.layer1(resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(x))))))
            )
        )
        a = blk.bn2(blk.conv2(blk.relu(blk.bn1(blk.conv1(pre)))))
    a = a.clone().requires_grad_(True)
    y = resnet18.fc(torch.flatten(resnet18.avgpool(torch.relu(a + pre)), 1))[0, 3]
    (g,) = torch.autograd.grad(y, a)
    expected = normalize((g.mean((2, 3))[:, :, None, None] * a.detach()).sum(1))
    torch.testing.assert_close(ours.maps[:, 0], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "layer"),
    [("vgg11", "features.18"), ("densenet121", "features.norm5"), ("resnet18", "layer4.0.bn2")],
)
def test_models_with_inplace_relu_after_the_layer(name, layer):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    ex = explain(model, torch.randn(1, 3, 224, 224), layer, GRADCAM, top_k=1)
    assert ex.maps.shape[-2:] == (14, 14) if name == "vgg11" else True
    assert torch.isfinite(ex.maps).all() and ex.maps.max() <= 1 and ex.maps.min() >= 0
    assert ex.maps.max() == 1.0  # a real map, not the all-zero fallback


def _state(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    )


def _same_state(a, b):
    assert a[0] == b[0], "training flags changed"
    assert a[1] == b[1], "requires_grad flags changed"
    for ga, gb in zip(a[2], b[2], strict=True):
        assert (ga is None and gb is None) or torch.equal(ga, gb), ".grad changed"
    assert a[3] == b[3], "a hook survived"


def test_user_model_state_is_untouched(resnet18):
    resnet18.train()
    resnet18.layer2.eval()  # mixed flags must come back exactly
    for p in resnet18.layer1.parameters():
        p.requires_grad_(False)
    resnet18.fc.weight.grad = torch.full_like(resnet18.fc.weight, 3.0)
    before = _state(resnet18)
    bn_stats = resnet18.bn1.running_mean.clone()
    explain(resnet18, torch.randn(2, 3, 64, 64), "layer4", GRADCAM, top_k=2)
    _same_state(before, _state(resnet18))
    assert torch.equal(bn_stats, resnet18.bn1.running_mean), "ran in train mode: BN statistics moved"


def test_user_model_state_is_untouched_after_injected_failure(resnet18):
    resnet18.train()
    before = _state(resnet18)

    def boom(*_):
        raise RuntimeError("injected")

    handle = resnet18.fc.register_forward_hook(boom)  # fails after the target layer's hook has run
    with pytest.raises(RuntimeError, match="injected"):
        explain(resnet18, torch.randn(1, 3, 64, 64), "layer4", GRADCAM)
    handle.remove()
    _same_state(before, _state(resnet18))
    assert torch.is_grad_enabled()


def test_bad_target_fails_cleanly(resnet18):
    before = _state(resnet18)
    with pytest.raises(TargetError):
        explain(resnet18, torch.randn(1, 3, 64, 64), "layer4", GRADCAM, targets=[5000])
    _same_state(before, _state(resnet18))


def test_only_the_tail_builds_a_graph(resnet18):
    """The trunk runs without a graph: no saved tensors for layers before the target."""
    seen = []

    def pack(t):
        seen.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        explain(resnet18, torch.randn(1, 3, 224, 224), "layer4", GRADCAM)
    # only avgpool/flatten/fc after layer4 save anything; the trunk's 64/128/256-channel maps never are
    assert seen, "expected the tail to save tensors"
    assert all(not (len(s) == 4 and s[1] in (64, 128, 256)) for s in seen), seen


def test_shared_module_is_refused():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            x = self.conv(self.conv(x))
            return self.head(x.mean((2, 3)))

    with pytest.raises(LayerError, match="more than once"):
        explain(Shared().eval(), torch.randn(1, 3, 8, 8), "conv", GRADCAM)


def test_top_k_gives_k_distinct_classes(resnet18):
    ex = explain(resnet18, torch.randn(3, 3, 64, 64), "layer4", GRADCAM, top_k=3)
    assert ex.maps.shape == (3, 3, 2, 2)
    for row in ex.classes.tolist():
        assert len(set(row)) == 3
    assert torch.equal(ex.classes, ex.logits.topk(3).indices)


def test_batch_results_equal_single_image_results(resnet18):
    torch.manual_seed(3)
    x = torch.randn(3, 3, 96, 96)
    batch = explain(resnet18, x, "layer3", GRADCAM, targets=[10])
    for i in range(3):
        one = explain(resnet18, x[i : i + 1], "layer3", GRADCAM, targets=[10])
        torch.testing.assert_close(batch.maps[i], one.maps[0], atol=1e-5, rtol=1e-4)


def test_channels_last_input_gives_the_same_maps(resnet18):
    """The pipeline feeds CPU batches channels-last (faster kernels); the maps must not change."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 96, 96)
    plain = explain(resnet18, x, "layer3", GRADCAM, targets=[5])
    cl = explain(resnet18, x.contiguous(memory_format=torch.channels_last), "layer3", GRADCAM, targets=[5])
    torch.testing.assert_close(cl.maps, plain.maps, atol=1e-4, rtol=0)
    torch.testing.assert_close(cl.logits, plain.logits, atol=1e-4, rtol=1e-4)
