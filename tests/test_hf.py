"""Hugging Face transformers classifiers (the camcli[hf] extra): save_pretrained folders built from small configs
with random weights (nothing downloads); preprocessing, class names, default layers and layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from camcli.cli import app
from camcli.models import load_model

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed: pip install -e '.[dev]' installs the extras"
)

from .conftest import SAMPLES  # noqa: E402

LABELS = {0: "cat", 1: "dog", 2: "cup"}


def configs():
    t = transformers
    kw = {"num_labels": 3, "id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    small_vit = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
    return {
        "vit": (t.ViTForImageClassification, t.ViTConfig(**small_vit, image_size=96, patch_size=16, **kw)),
        "deit": (t.DeiTForImageClassification, t.DeiTConfig(**small_vit, image_size=96, patch_size=16, **kw)),
        "swin": (
            t.SwinForImageClassification,
            t.SwinConfig(
                image_size=96, patch_size=4, embed_dim=24, depths=[1, 1, 1], num_heads=[1, 2, 4], window_size=3, **kw
            ),
        ),
        "convnext": (
            t.ConvNextForImageClassification,
            t.ConvNextConfig(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], **kw),
        ),
        "resnet": (
            t.ResNetForImageClassification,
            t.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], **kw),
        ),
    }


# the default layer each family gets and the layout it is read with
EXPECTED = {
    "vit": ("layernorm_before", "tokens:1"),
    "deit": ("layernorm_before", "tokens:2"),  # class and distillation tokens
    "swin": ("swin.layernorm", "tokens:0"),
    "convnext": ("convnext.encoder.stages.3", "nchw"),
    "resnet": ("resnet.encoder.stages.3", "nchw"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("hf")
    out = {}
    for kind, (cls, config) in configs().items():
        torch.manual_seed(0)
        model = cls(config).eval()
        model.save_pretrained(base / kind)
        out[kind] = (base / kind, model)
    processor = {"size": {"height": 96, "width": 96}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 3}
    (base / "vit" / "preprocessor_config.json").write_text(json.dumps(processor))
    return out


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_save_pretrained_folder_loads_as_saved(kind, folders):
    folder, original = folders[kind]
    loaded = load_model(str(folder))
    assert loaded.categories == ["cat", "dog", "cup"]
    x = torch.randn(1, 3, *loaded.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(loaded.module(x).logits, original(x).logits, atol=1e-5)


def test_preprocessor_config_is_used(folders):
    loaded = load_model(str(folders["vit"][0]))
    assert loaded.input_size == (96, 96) and loaded.mean == (0.5, 0.5, 0.5) and loaded.interpolation == "bicubic"
    also = load_model(str(folders["vit"][0] / "model.safetensors"))  # the weights file beside config.json
    assert also.categories == loaded.categories


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_default_layer_layout_and_map(kind, folders, tmp_path):
    folder, _ = folders[kind]
    runner = CliRunner()
    listing = runner.invoke(app, ["layers", "--model", str(folder), "--json"])
    assert listing.exit_code == 0, listing.output
    default = next(r for r in map(json.loads, listing.stdout.splitlines()) if r["default"])
    name, layout = EXPECTED[kind]
    assert name in default["name"] and default["layout"] == layout
    result = runner.invoke(
        app,
        [
            "gradcam",
            str(SAMPLES / "chelsea.png"),
            "--model",
            str(folder),
            "--save-raw",
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout.splitlines()[0])
    assert rec["class_name"] in ("cat", "dog", "cup")
    raw = np.load(next(tmp_path.glob("*.npy")))
    assert np.isfinite(raw).all() and raw.max() > raw.min()


def test_hub_name_offline_is_one_line():
    result = CliRunner().invoke(app, ["layers", "--model", "hf:google/vit-base-patch16-224"])
    assert result.exit_code == 2
    assert "not in the Hugging Face cache" in result.output and "Traceback" not in result.output


def test_a_folder_without_weights_says_so(tmp_path, folders):
    (tmp_path / "config.json").write_text((folders["vit"][0] / "config.json").read_text())
    result = CliRunner().invoke(app, ["layers", "--model", str(tmp_path)])
    assert result.exit_code == 2 and "no weights" in result.output


def test_hub_name_from_the_cache(folders, tmp_path, monkeypatch):
    """``hf:ORG/NAME`` reads the hub's cache layout (models--ORG--NAME/snapshots/REV, refs/main) offline."""
    import shutil

    repo = tmp_path / "hub" / "models--someone--tiny-vit"
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(folders["vit"][0], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_model("hf:someone/tiny-vit")
    assert loaded.categories == ["cat", "dog", "cup"] and loaded.input_size == (96, 96)  # preprocessor_config.json
    assert loaded.interpolation == "bicubic" and loaded.weights == "hf someone/tiny-vit"


def test_folder_options_that_cannot_apply_are_refused(folders):
    for extra, says in [(["--weights", "none"], "holds its own weights"), (["--arch", "resnet18"], "config.json")]:
        result = CliRunner().invoke(
            app, ["gradcam", str(SAMPLES / "chelsea.png"), "--model", str(folders["vit"][0]), *extra]
        )
        assert result.exit_code == 2 and says in result.output, result.output


def test_a_folder_named_like_a_model_is_the_model_unless_written_as_a_path(folders, tmp_path, monkeypatch):
    import shutil

    from camcli.models import folder_model

    shutil.copytree(folders["vit"][0], tmp_path / "resnet18")
    monkeypatch.chdir(tmp_path)
    assert folder_model("resnet18") is None
    assert folder_model("./resnet18") is not None
