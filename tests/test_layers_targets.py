from __future__ import annotations

import pytest
import torch
import torchvision

from camcli.engine.layers import _trace, default_layer, resolve, trace
from camcli.engine.layouts import to_grid
from camcli.engine.targets import resolve_target
from camcli.errors import LayerError, TargetError
from camcli.models import imagenet_categories


def test_resolve_dotted_names(resnet18):
    assert resolve(resnet18, "layer4") is resnet18.layer4
    assert resolve(resnet18, "layer4.1.conv2") is resnet18.layer4[1].conv2


def test_unknown_layer_lists_closest(resnet18):
    with pytest.raises(LayerError) as e:
        resolve(resnet18, "layer5", "resnet18")
    msg = str(e.value)
    assert "layer5" in msg and "layer4" in msg and "camcli layers --model resnet18" in msg


def test_meta_trace_matches_real_forward(resnet18):
    meta = trace(resnet18, (224, 224), lambda: torchvision.models.resnet18(weights=None))
    real = _trace(resnet18, torch.zeros(1, 3, 224, 224))
    assert [(i.name, i.shape, i.calls) for i in meta] == [(i.name, i.shape, i.calls) for i in real]
    shapes = {i.name: i.shape for i in meta}
    assert shapes["layer4"] == (1, 512, 7, 7) and shapes["layer2.0.conv1"] == (1, 128, 28, 28)


def test_default_layers(resnet18, bundled):
    assert default_layer(trace(resnet18, (224, 224))) == "layer4"
    assert default_layer(trace(bundled.module, bundled.input_size, bundled.builder)) == "_head_act"
    vgg = torchvision.models.vgg11(weights=None)
    assert default_layer(trace(vgg, (224, 224))) == "features"


def test_token_grid_reshape():
    t = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)  # class token + 2x2 patches
    g = to_grid(t)
    assert g.shape == (2, 3, 2, 2)
    assert torch.equal(g[0, :, 0, 0], t[0, 1]) and torch.equal(g[1, :, 1, 1], t[1, 4])


def test_vit_gradcam_runs_on_token_layer():
    from camcli.methods import explain, get_method

    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    torch.nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    ex = explain(vit, torch.randn(1, 3, 224, 224), "encoder.layers.encoder_layer_11.ln_1", get_method("gradcam"))
    assert ex.maps.shape == (1, 1, 14, 14) and ex.maps.max() == 1.0


CATS = imagenet_categories()


@pytest.mark.parametrize(
    ("value", "index"),
    [("281", 281), (285, 285), ("tabby", 281), ("Egyptian cat", 285), ("tabby cat", 281), ("espresso", 967)],
)
def test_targets_by_index_and_name(value, index):
    assert resolve_target(value, CATS) == index


def test_ambiguous_and_unknown_targets():
    assert resolve_target("crane", CATS) == 517  # the exact name wins over 134 'crane bird'
    with pytest.raises(TargetError, match="ambiguous") as e:
        resolve_target("cat", CATS)
    assert "285 'Egyptian cat'" in str(e.value) and "--target" in str(e.value)
    with pytest.raises(TargetError, match="closest") as e:
        resolve_target("expresso", CATS)
    assert "espresso" in str(e.value)
    with pytest.raises(TargetError, match="out of range"):
        resolve_target("1000", CATS)


def test_preferred_layer_for_vit_models_and_checkpoints():
    from camcli.models.zoo import preferred_layer

    with torch.device("meta"):
        vit = torchvision.models.vit_b_16(weights=None)
    assert preferred_layer("vit_b_16", vit) == "encoder.layers.encoder_layer_11.ln_1"
    assert preferred_layer("resnet18", torchvision.models.resnet18(weights=None)) is None
