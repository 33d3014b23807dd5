"""timm models (the camcli[timm] extra): by name, as checkpoints of every kind people save, identified by
fingerprint or by the 'arch' timm's train.py writes; preprocessing from pretrained_cfg; maps on the token/NHWC
grid. Random weights only (nothing downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from camcli.cli import app
from camcli.errors import CheckpointError
from camcli.models import load_model
from camcli.models.families import key_family

timm = pytest.importorskip("timm", reason="timm is not installed: pip install -e '.[dev]' installs the extras")
from safetensors.torch import save_file  # noqa: E402

from .conftest import SAMPLES  # noqa: E402

# the models of the issue: convolutional, ViT-like with 1 / 2 / 5 prefix tokens, NHWC Swin, MaxViT
MODELS = [
    "efficientnet_b0",
    "convnext_tiny",
    "vit_small_patch16_224",
    "deit_small_patch16_224",
    "swin_tiny_patch4_window7_224",
    "regnety_016",
    "mobilenetv3_large_100",
    "deit_small_distilled_patch16_224",
    "vit_small_patch14_reg4_dinov2",
    "maxvit_tiny_tf_224",
]
# architectures that are the same module under two names (ViT/DeiT small) or two paddings (tf_ variants): a plain
# state_dict cannot tell them apart, so identification must name both and not pick one
TWINS = {
    "efficientnet_b0": "tf_efficientnet_b0",
    "vit_small_patch16_224": "deit_small_patch16_224",
    "deit_small_patch16_224": "vit_small_patch16_224",
    "mobilenetv3_large_100": "tf_mobilenetv3_large_100",
}


def build(name: str, classes: int = 5):
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=classes).eval()


def save(model, kind: str, folder, name: str):
    state = model.state_dict()
    if kind == "state_dict":
        path = folder / f"{name}.pth"
        torch.save(state, path)
    elif kind == "safetensors":
        path = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif kind == "train.py":  # what timm's train.py writes (its checkpoint saver)
        path = folder / f"{name}.pth.tar"
        torch.save({"epoch": 3, "arch": name, "state_dict": state, "version": 2, "metric": 0.5}, path)
    else:  # a Lightning checkpoint of a LightningModule holding the timm model as self.model
        path = folder / f"{name}.ckpt"
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 1, "global_step": 9}, path)
    return path


def same_outputs(a, b, size) -> bool:
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-5)


def check_checkpoint(name: str, kind: str, tmp_path) -> None:
    original = build(name)
    path = save(original, kind, tmp_path, name)
    twin = TWINS.get(name)
    if twin and kind != "train.py":
        with pytest.raises(CheckpointError, match=f"timm:{twin}") as err:
            load_model(str(path))
        assert f"timm:{name}" in str(err.value) and "--arch" in str(err.value)
        loaded = load_model(str(path), arch=f"timm:{name}")
    else:
        loaded = load_model(str(path))
    cfg = original.pretrained_cfg
    assert loaded.input_size == tuple(cfg["input_size"][-2:])
    assert loaded.mean == tuple(cfg["mean"]) and loaded.interpolation == cfg["interpolation"]
    assert loaded.num_classes == 5
    assert same_outputs(original, loaded.module, loaded.input_size)


# each kind once; identification builds every candidate architecture (on the meta device, kept in the session's
# cache): the two DeiTs share most of their ~110, dinov2 has 8 (efficientnet_b0 has 172 and swin 102: they are
# checked with every other model and kind in the slow checks below)
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("vit_small_patch16_224", "train.py"),
        ("deit_small_distilled_patch16_224", "state_dict"),
        ("vit_small_patch14_reg4_dinov2", "lightning"),
        ("deit_small_patch16_224", "safetensors"),  # a twin: the same module as vit_small_patch16_224
    ],
)
def test_timm_checkpoints_load_and_are_identified(name, kind, tmp_path):
    check_checkpoint(name, kind, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_timm_model_in_every_checkpoint_kind(name, tmp_path):
    for kind in ("state_dict", "safetensors", "train.py", "lightning"):
        check_checkpoint(name, kind, tmp_path)


def test_identification_is_cached(tmp_path, monkeypatch):
    import time

    from camcli.models import timm_models

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache, whichever tests ran before
    state = build("vit_small_patch14_reg4_dinov2").state_dict()  # 8 candidates: the dinov2 ViTs
    start = time.perf_counter()
    first, considered = timm_models.identify(state)
    middle = time.perf_counter()
    again, _ = timm_models.identify(state)
    end = time.perf_counter()
    assert first == again == [("timm:vit_small_patch14_reg4_dinov2", 5)]
    assert 0 < considered < 200  # narrowed from timm's ~1,300 by the configs' fingerprints
    assert end - middle < middle - start  # the second time builds nothing
    assert list((tmp_path / "camcli").glob("timm-signatures-*.json"))  # kept on disk, not only in memory


def test_timm_by_name_offline_and_its_maps(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "gradcam",
            str(SAMPLES / "chelsea.png"),
            "--model",
            "timm:deit_small_distilled_patch16_224",
            "--weights",
            "none",
            "--save-raw",
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout.splitlines()[0])
    assert rec["layer"] == "blocks.11.norm1"
    raw = np.load(next(tmp_path.glob("*.npy")))
    assert np.isfinite(raw).all() and raw.max() > raw.min()  # a map, not a flat field


def test_timm_pretrained_weights_offline_say_what_works():
    result = CliRunner().invoke(app, ["layers", "--model", "timm:resnet18", "--weights", "default"])
    assert result.exit_code == 2
    assert "--weights none" in result.output and "Traceback" not in result.output


def test_unknown_timm_name_suggests():
    result = CliRunner().invoke(app, ["layers", "--model", "timm:vit_smal_patch16_224"])
    assert result.exit_code == 2 and "vit_small_patch16_224" in result.output


@pytest.mark.parametrize(
    ("model", "layer", "layout"),
    [
        ("timm:swin_tiny_patch4_window7_224", "layers.2", "nhwc"),
        ("timm:swin_tiny_patch4_window7_224", "norm", "nhwc"),
        ("timm:convnext_tiny", "stages.3.blocks.2.mlp.fc1", "nhwc"),
        ("timm:convnext_tiny", "stages.3.blocks.2.conv_dw", "nchw"),
        ("timm:vit_small_patch16_224", "blocks.5", "tokens:1"),
        ("timm:deit_small_distilled_patch16_224", "blocks.3.norm1", "tokens:2"),
        ("timm:vit_small_patch14_reg4_dinov2", "blocks.2", "tokens:5"),
        ("timm:maxvit_tiny_tf_224", "stages.2.blocks.0.attn_grid.norm1", "nhwc"),
    ],
)
def test_timm_layouts(model, layer, layout):
    result = CliRunner().invoke(app, ["layers", "--model", model, "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows[layer]["layout"] == layout, rows[layer]


def test_unmatched_timm_keys_name_the_family(tmp_path):
    state = build("vit_small_patch14_reg4_dinov2").state_dict()  # 8 candidates to rule out, not convnext's 58
    state.pop("head.bias")
    torch.save(state, tmp_path / "broken.pth")
    assert key_family(state) == "timm"
    result = CliRunner().invoke(app, ["layers", "--model", str(tmp_path / "broken.pth")])
    assert result.exit_code == 2
    assert "timm model" in result.output and "--arch timm:NAME" in result.output
    assert "closest: resnet" not in result.output


def test_an_arch_key_naming_a_torchvision_model_stays_torchvision(tmp_path):
    """PyTorch's ImageNet example saves {'arch': 'resnet18', 'state_dict': …}: torchvision's preprocessing, not
    timm's (timm has a resnet18 too)."""
    import torchvision

    torch.save({"arch": "resnet18", "state_dict": torchvision.models.resnet18().state_dict()}, tmp_path / "c.pth.tar")
    loaded = load_model(str(tmp_path / "c.pth.tar"))
    assert loaded.interpolation == "bilinear" and loaded.layer_key and "torchvision" in loaded.layer_key
