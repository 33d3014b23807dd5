"""User checkpoints: every form loads from the checkpoint alone, unsafe files are refused, errors are one line."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from camcli.cli import app
from camcli.errors import CheckpointError, UsageError
from camcli.models import archs, load_model
from camcli.models.archs import identify
from camcli.models.checkpoints import inspect_checkpoint, load_checkpoint_model
from camcli.models.labels import read_labels

from .conftest import SAMPLES

runner = CliRunner()


@pytest.fixture(scope="module")
def r18() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=7).state_dict()


def _same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return set(own) == set(state) and all(torch.equal(own[k], state[k]) for k in own)


@pytest.mark.parametrize(
    ("name", "wrap", "container", "stripped"),
    [
        ("plain.pt", lambda sd: sd, None, []),
        ("wrapped.pth", lambda sd: {"model": sd, "epoch": 9, "optimizer": {"lr": 0.1}}, "model", []),
        ("trainer.bin", lambda sd: {"model_state_dict": sd, "step": 3}, "model_state_dict", []),
        ("net.pt", lambda sd: {"net": sd}, "net", []),
        ("ddp.pt", lambda sd: {f"module.{k}": v for k, v in sd.items()}, None, ["module."]),
        ("compiled.pt", lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()}, None, ["_orig_mod."]),
        (
            "epoch=9.ckpt",
            lambda sd: {
                "state_dict": {f"model.{k}": v for k, v in sd.items()},
                "epoch": 9,
                "hyper_parameters": {"lr": 0.01, "classes": 7},
            },
            "state_dict",
            ["model."],
        ),
        (
            "ddp_compiled.pt",
            lambda sd: {f"module._orig_mod.{k}": v for k, v in sd.items()},
            None,
            ["module.", "_orig_mod."],
        ),
        ("ema_only.pt", lambda sd: {"model_ema": sd}, "model_ema", []),
    ],
)
def test_checkpoint_forms_load_from_the_file_alone(tmp_path, r18, name, wrap, container, stripped):
    path = tmp_path / name
    torch.save(wrap(r18), path)
    info = inspect_checkpoint(str(path))
    assert (info.arch, info.num_classes, info.container, info.stripped) == ("resnet18", 7, container, stripped)
    loaded = load_checkpoint_model(str(path))
    assert _same(loaded.module, r18) and loaded.categories == [f"class_{i}" for i in range(7)]
    assert not loaded.module.training


def test_prefix_is_stripped_only_when_every_key_has_it(tmp_path):
    # mobilenet_v3_small: its keys fit no timm architecture's stem and head, so the miss builds no timm candidates
    # (a resnet18's keys send 52 of them to be built before the answer)
    torch.manual_seed(0)
    state = torchvision.models.mobilenet_v3_small(num_classes=7).state_dict()
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    torch.save(mixed, tmp_path / "mixed.pt")
    info = inspect_checkpoint(str(tmp_path / "mixed.pt"))
    assert info.stripped == [] and info.arch is None
    with pytest.raises(CheckpointError, match="closest: mobilenet_v3_small"):
        load_checkpoint_model(str(tmp_path / "mixed.pt"))


def test_safetensors_and_arch_flag(tmp_path, r18):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in r18.items()}, str(path))
    loaded = load_checkpoint_model(str(path), arch="resnet18")
    assert _same(loaded.module, r18)
    with pytest.raises(CheckpointError, match="does not fit resnet34"):
        load_checkpoint_model(str(path), arch="resnet34")


def test_ema_alongside_main_weights_is_reported(tmp_path, r18):
    torch.save({"state_dict": r18, "model_ema": r18}, tmp_path / "both.pt")
    info = inspect_checkpoint(str(tmp_path / "both.pt"))
    assert info.container == "state_dict" and any("model_ema" in n for n in info.notes)


def _meta_state(name: str, num_classes: int) -> dict[str, torch.Tensor]:
    """A state_dict of the right shapes without memory, built by torchvision directly (not camcli)."""
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name, weights=None, num_classes=num_classes).state_dict()
    except NotImplementedError:  # regnet computes its widths with tensors: build it for real (it is small)
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes).state_dict()


@pytest.mark.parametrize(
    ("name", "classes"),
    [
        ("resnet50", 10),
        ("vgg16_bn", 3),
        ("mobilenet_v3_small", 5),
        ("efficientnet_b0", 2),
        ("densenet121", 100),
        ("convnext_tiny", 1000),
        ("vit_b_16", 21),
        ("swin_t", 4),
        ("regnet_y_400mf", 6),
    ],
)
def test_identify_across_families_and_head_sizes(name, classes):
    hits, _ = identify(_meta_state(name, classes))
    assert hits == [(name, classes)]


def test_ambiguous_and_unmatched(monkeypatch, r18):
    sigs = archs._signature_cache()
    monkeypatch.setattr(archs, "_signature_cache", lambda: {**sigs, "my_resnet18": sigs["resnet18"]})
    hits, _ = identify(r18)
    assert sorted(h[0] for h in hits) == ["my_resnet18", "resnet18"]
    partial = {k: v for k, v in r18.items() if k != "layer4.1.bn2.running_var"}
    hits, miss = identify(partial)
    assert hits == [] and "resnet18" in miss and "1 missing" in miss


def test_ambiguity_asks_for_arch(monkeypatch, tmp_path, r18):
    sigs = archs._signature_cache()
    monkeypatch.setattr(archs, "_signature_cache", lambda: {**sigs, "my_resnet18": sigs["resnet18"]})
    torch.save(r18, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"several architectures fit: .*--arch"):
        load_checkpoint_model(str(tmp_path / "x.pt"))


class _Evil:
    """Unpickling this creates a file: proof that code from the checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_code_in_a_checkpoint_never_runs(tmp_path, r18):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": r18, "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_model(str(path))
    assert not marker.exists()
    msg = str(e.value)
    assert "open" in msg and "--trust-checkpoint" in msg and "state_dict" in msg and "\n" not in msg
    res = runner.invoke(
        app, ["gradcam", str(SAMPLES / "coffee.png"), "--model", str(path), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "refused" in res.stderr and not marker.exists()


def test_pickled_module_and_objects_in_hyperparameters(tmp_path, r18):
    torch.manual_seed(0)
    full = torchvision.models.resnet18(num_classes=7).eval()
    torch.save(full, tmp_path / "full.pt")
    with pytest.raises(CheckpointError, match=r"torchvision.models.resnet.ResNet"):
        load_checkpoint_model(str(tmp_path / "full.pt"))
    trusted = load_checkpoint_model(str(tmp_path / "full.pt"), trust=True)
    assert _same(trusted.module, full.state_dict()) and trusted.num_classes == 7
    # plain data beside the weights loads safely (timm's train.py 'args', Lightning's paths); a function does not
    torch.save({"state_dict": r18, "hyper_parameters": {"args": argparse.Namespace(lr=1)}}, tmp_path / "hp.ckpt")
    assert _same(load_checkpoint_model(str(tmp_path / "hp.ckpt")).module, r18)
    partial = functools.partial(torch.optim.SGD, lr=0.1)
    torch.save({"state_dict": r18, "hyper_parameters": {"optimizer": partial}}, tmp_path / "fn.ckpt")
    with pytest.raises(CheckpointError, match=r"functools.partial.*training framework"):
        load_checkpoint_model(str(tmp_path / "fn.ckpt"))
    assert load_checkpoint_model(str(tmp_path / "fn.ckpt"), trust=True).module is not None


def test_torchscript_is_explained(tmp_path):
    scripted = torch.jit.script(torchvision.models.resnet18(num_classes=3).eval())
    scripted.save(str(tmp_path / "scripted.pt"))
    with pytest.raises(CheckpointError, match=r"TorchScript.*state_dict"):
        load_checkpoint_model(str(tmp_path / "scripted.pt"))


def test_garbage_empty_wrong_extension_truncated(tmp_path, r18):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pth").write_bytes(b"hello, not a checkpoint")
    (tmp_path / "image.pt").write_bytes((SAMPLES / "coffee.png").read_bytes())
    torch.save(r18, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    for name, reason in [
        ("empty.pt", "empty"),
        ("garbage.pth", "not a checkpoint"),
        ("image.pt", "not a checkpoint"),
        ("truncated.pt", "truncated"),
        ("bad.safetensors", "safetensors"),
    ]:
        res = runner.invoke(app, ["inspect", str(tmp_path / name)])
        assert res.exit_code == 2, (name, res.output)
        assert reason in res.stderr and "Traceback" not in res.output
        assert res.stderr.count("\n") <= 3  # one message (rich may wrap it)
    res = runner.invoke(app, ["inspect", str(tmp_path / "missing.pt")])
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_labels(tmp_path, r18):
    (tmp_path / "classes.txt").write_text("\n".join(f"c{i}" for i in range(7)) + "\n\n")
    (tmp_path / "classes.json").write_text(json.dumps({str(i): f"j{i}" for i in range(7)}))
    (tmp_path / "inverse.json").write_text(json.dumps({f"k{i}": i for i in range(7)}))
    assert read_labels(str(tmp_path / "classes.txt"), 7)[6] == "c6"
    assert read_labels(str(tmp_path / "classes.json"), 7)[0] == "j0"
    assert read_labels(str(tmp_path / "inverse.json"), 7)[3] == "k3"
    with pytest.raises(UsageError, match="7 names but the model has 8 classes"):
        read_labels(str(tmp_path / "classes.txt"), 8)


def test_cli_gradcam_with_checkpoint_and_labels(tmp_path, r18):
    torch.save({"state_dict": {f"model.{k}": v for k, v in r18.items()}}, tmp_path / "epoch=9.ckpt")
    (tmp_path / "classes.txt").write_text("\n".join(["cat", "dog", "cup", "car", "sky", "sea", "owl"]))
    res = runner.invoke(
        app,
        [
            "gradcam",
            str(SAMPLES / "coffee.png"),
            "--model",
            str(tmp_path / "epoch=9.ckpt"),
            "--labels",
            str(tmp_path / "classes.txt"),
            "--target",
            "owl",
            "--out",
            str(tmp_path / "o"),
            "--json",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[0])
    assert rec["class_name"] == "owl" and rec["layer"] == "layer4"
    # the checkpoint's file name is part of the output names (another model into one --out never clobbers)
    assert (tmp_path / "o" / "coffee.png.gradcam,model=epoch_9.6-owl.png").is_file()
    res = runner.invoke(
        app,
        [
            "gradcam",
            str(SAMPLES / "coffee.png"),
            "--model",
            str(tmp_path / "epoch=9.ckpt"),
            "--out",
            str(tmp_path / "o2"),
        ],
    )
    assert res.exit_code == 0
    assert "architecture resnet18 with 7 classes" in res.stderr and "stripped key prefix 'model.'" in res.stderr
    res = runner.invoke(app, ["inspect", str(tmp_path / "epoch=9.ckpt"), "--json"])
    info = json.loads(res.stdout)
    assert info["architecture"] == "resnet18" and info["num_classes"] == 7 and info["stripped_prefixes"] == ["model."]


def test_labels_of_a_pickled_model_are_checked_against_its_outputs(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=7).eval(), tmp_path / "full.pt")
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(UsageError, match="3 names but the model has 7 classes"):
        load_model(str(tmp_path / "full.pt"), trust_checkpoint=True, labels=str(tmp_path / "three.txt"))
