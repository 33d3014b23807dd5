"""Video classifiers and 3-D networks as models: torchvision's video models by name (offline, random weights),
checkpoints of them, MONAI networks (``monai:NAME``), the user's own 3-D class with ``--input-size``, and their
layer tables traced with a clip- or volume-shaped probe."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.engine.layers import _cache_entry, trace
from camcli.errors import CheckpointError, UsageError
from camcli.models import load_model
from camcli.models.video import clip_meta
from camcli.models.zoo import video_names

runner = CliRunner()

# what torchvision's weights documentation states for each architecture's KINETICS400_V1 evaluation (clip_len)
CLIP_LEN = {
    "mc3_18": 16,
    "mvit_v1_b": 16,
    "mvit_v2_s": 16,
    "r2plus1d_18": 16,
    "r3d_18": 16,
    "s3d": 128,
    "swin3d_b": 32,
    "swin3d_s": 32,
    "swin3d_t": 32,
}


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_every_torchvision_video_model_is_known():
    assert set(video_names()) == set(CLIP_LEN)


@pytest.mark.parametrize("name", sorted(CLIP_LEN))
def test_video_model_loads_offline_with_weights_none(name):
    m = load_model(name, weights="none")
    entry = torchvision.models.get_model_weights(name).DEFAULT
    tf = entry.transforms()
    assert (m.kind, m.weights, m.random_weights, m.in_channels) == ("video", "random", True, 3)
    assert m.clip_length == CLIP_LEN[name]
    assert m.input_size == tuple(tf.crop_size)
    assert m.mean == tuple(tf.mean) and m.std == tuple(tf.std)
    assert m.categories == entry.meta["categories"] and len(m.categories) == 400
    assert m.sample_shape() == (3, CLIP_LEN[name], *tf.crop_size)


def test_r3d_18_kinetics_names_preprocessing_and_a_tiny_clip():
    m = load_model("r3d_18", weights="none")
    meta = torchvision.models.video.R3D_18_Weights.KINETICS400_V1.meta
    assert len(m.categories) == 400 and m.categories[0] == meta["categories"][0] == "abseiling"
    assert m.categories[-1] == meta["categories"][-1] == "zumba"
    # torchvision's VideoClassification preset for the ResNet-3D family: crop 112, Kinetics' mean and std
    assert m.input_size == (112, 112)
    assert m.mean == pytest.approx((0.43216, 0.394666, 0.37645)) and m.std == pytest.approx(
        (0.22803, 0.22145, 0.216989)
    )
    assert (m.clip_length, m.clip_fps) == (16, 15.0)
    torch.manual_seed(0)
    with torch.no_grad():
        out = m.module(torch.randn(1, 3, 4, 32, 32))  # any clip length and size: it pools at the end
    assert out.shape == (1, 400) and torch.isfinite(out).all()


def test_clip_meta_reads_the_documented_evaluation():
    class Entry:
        def __init__(self, meta):
            self.meta = meta

    docs = "accuracies are estimated with parameters `frame_rate=7.5`, `clips_per_video=5`, and `clip_len=8`"
    assert clip_meta(Entry({"_docs": docs})) == (8, 7.5)
    assert clip_meta(Entry({"_docs": "no parameters", "min_temporal_size": 14})) == (14, None)
    assert clip_meta(Entry({})) == (16, None)


def test_input_size_is_refused_for_pictures_and_clips():
    with pytest.raises(UsageError, match="takes clips of 16 frames of 112×112"):
        load_model("r3d_18", weights="none", input_size="8,32,32")
    with pytest.raises(UsageError, match=r"for a 3-D network; resnet18 takes 224×224 pictures"):
        load_model("resnet18", weights="none", input_size="8,32,32")


def test_checkpoints_of_video_architectures(tmp_path):
    torch.manual_seed(0)
    full, five = tmp_path / "mc3.pt", tmp_path / "mc3_5.pt"
    torch.save(torchvision.models.video.mc3_18().state_dict(), full)
    torch.save(torchvision.models.video.mc3_18(num_classes=5).state_dict(), five)
    m = load_model(str(full))  # identified from its keys and shapes alone
    assert m.kind == "video" and m.clip_length == 16 and m.input_size == (112, 112)
    assert "architecture mc3_18 with 400 classes" in m.notes and m.categories[-1] == "zumba"
    m = load_model(str(five))
    assert m.kind == "video" and m.categories == [f"class_{i}" for i in range(5)]
    x = torch.randn(1, 3, 4, 32, 32)
    reference = torchvision.models.video.mc3_18(num_classes=5)
    reference.load_state_dict(torch.load(five))
    with torch.no_grad():
        torch.testing.assert_close(m.module(x), reference.eval()(x))


def test_layers_of_r3d_18_are_traced_with_a_clip():
    res = invoke("layers", "--model", "r3d_18", "--weights", "none", "--json")
    assert res.exit_code == 0, res.output
    recs = {r["name"]: r for r in map(json.loads, res.stdout.splitlines())}
    # 16 frames of 112²: the stem halves the sides only (56), layer2, 3, 4 halve time and sides: 8/28, 4/14, 2/7
    assert recs["stem"]["shape"] == [1, 64, 16, 56, 56]
    assert recs["layer2"]["shape"] == [1, 128, 8, 28, 28]
    assert recs["layer4"]["shape"] == [1, 512, 2, 7, 7]
    assert recs["fc"]["shape"] == [1, 400]
    res = invoke("layers", "--model", "r3d_18", "--weights", "none")
    assert res.exit_code == 0 and "1×3×16×112×112 input" in res.stdout and "1×512×2×7×7" in res.stdout


def test_models_lists_video_classifiers():
    res = invoke("models", "r3d", "--json")
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert recs == [
        {
            "name": "r3d_18",
            "task": "video classifier",
            "weights": "KINETICS400_V1",
            "offline": False,
            "where": "download on first use",
        }
    ]
    res = invoke("models", "swin3d")
    assert res.exit_code == 0 and res.stdout.count("video classifier") == 3
    res = invoke("inspect", "r3d_18", "--json")
    rec = json.loads(res.stdout)
    assert res.exit_code == 0 and rec["task"] == "video classifier" and rec["input"] == "3×16×112×112"
    assert rec["kind"] == "video" and rec["clip_fps"] == 15.0 and rec["classes"] == 400


NET3D = """
    import torch
    from torch import nn


    class Net3D(nn.Module):
        def __init__(self, in_channels=1, classes=3):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv3d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 8, 3, stride=2, padding=1), nn.ReLU()
            )
            self.head = nn.Linear(8, classes)

        def forward(self, x):
            return self.head(self.features(x).mean(dim=(2, 3, 4)))


    class Sized(Net3D):
        def __init__(self):
            super().__init__(in_channels=2, classes=4)
            self.img_size = (8, 16, 16)
"""


@pytest.fixture()
def net3d(tmp_path: Path) -> Path:
    code = tmp_path / "net3d.py"
    code.write_text(textwrap.dedent(NET3D))
    return code


def _module(code: Path, cls: str, **kwargs: int) -> nn.Module:
    scope: dict[str, object] = {}
    exec(compile(code.read_text(), str(code), "exec"), scope)
    torch.manual_seed(0)
    return scope[cls](**kwargs)  # type: ignore[operator]


def test_user_3d_class_with_input_size(tmp_path, net3d):
    ckpt = tmp_path / "net3d.pt"
    torch.save(_module(net3d, "Net3D").state_dict(), ckpt)
    with pytest.raises(UsageError, match=r"is a 3-D network .* pass --input-size D,H,W"):
        load_model(str(ckpt), arch=f"{net3d}:Net3D")
    with pytest.raises(UsageError, match=r"--input-size '8,24': give D,H,W"):
        load_model(str(ckpt), arch=f"{net3d}:Net3D", input_size="8,24")
    m = load_model(str(ckpt), arch=f"{net3d}:Net3D", input_size="8,24,16")
    assert (m.kind, m.in_channels, m.volume_size, m.input_size) == ("volume", 1, (8, 24, 16), (24, 16))
    assert m.categories == ["class_0", "class_1", "class_2"]  # counted on a blank 1×8×24×16 volume
    assert m.mean == (0.0,) and m.std == (1.0,)
    assert not any("ImageNet" in n for n in m.notes)
    # its layers, traced with a (1, 1, 8, 24, 16) volume: a stride-2 3×3×3 conv with padding 1 halves each side
    infos = {i.name: i.shape for i in trace(m.module, m.input_size, lead=m.sample_shape()[:-2])}
    assert infos["features.0"] == (1, 4, 8, 24, 16) and infos["features.2"] == (1, 8, 4, 12, 8)
    assert infos["head"] == (1, 3)


def test_user_3d_class_that_says_its_size(tmp_path, net3d):
    ckpt = tmp_path / "sized.pt"
    torch.save(_module(net3d, "Sized").state_dict(), ckpt)
    m = load_model(str(ckpt), arch=f"{net3d}:Sized")
    assert (m.kind, m.in_channels, m.volume_size, m.num_classes) == ("volume", 2, (8, 16, 16), 4)
    assert m.sample_shape() == (2, 8, 16, 16)


def test_picture_cache_entries_are_unchanged_and_clips_get_their_own():
    assert _cache_entry("k", (224, 224)) == _cache_entry("k", (224, 224), (3,))
    assert _cache_entry("k", (112, 112), (3, 16)) != _cache_entry("k", (112, 112), (3, 8))


MONAI_ARGS = '{"spatial_dims": 3, "in_channels": 1, "out_channels": 2}'


def test_monai_densenet121_3d_random_and_from_a_checkpoint(tmp_path):
    pytest.importorskip("monai")
    from monai.networks.nets import DenseNet121

    with pytest.raises(UsageError, match="--input-size D,H,W"):
        load_model("monai:DenseNet121", arch_args=MONAI_ARGS)
    m = load_model("monai:DenseNet121", arch_args=MONAI_ARGS, input_size="32,32,32")
    assert isinstance(m.module, DenseNet121) and m.module.features.conv0.weight.dim() == 5
    assert (m.kind, m.in_channels, m.volume_size, m.weights) == ("volume", 1, (32, 32, 32), "random")
    assert m.random_weights and m.categories == ["class_0", "class_1"]

    ckpt = tmp_path / "dn.pt"
    torch.manual_seed(1)
    saved = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    torch.save(saved.state_dict(), ckpt)
    loaded = load_model(str(ckpt), arch="monai:DenseNet121", arch_args=MONAI_ARGS, input_size="32,32,32")
    assert loaded.kind == "volume" and loaded.weights == "checkpoint" and loaded.num_classes == 2
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), saved(x))

    wrong = '{"spatial_dims": 3, "in_channels": 1, "out_channels": 3}'
    with pytest.raises(CheckpointError) as info:
        load_model(str(ckpt), arch="monai:DenseNet121", arch_args=wrong, input_size="32,32,32")
    message = str(info.value)
    assert "\n" not in message and "does not fit monai:DenseNet121" in message
    assert "class_layers.out.weight [2, 1024]≠[3, 1024]" in message


def test_monai_errors_are_one_line(monkeypatch):
    pytest.importorskip("monai")
    with pytest.raises(UsageError, match="no network 'DenseNet12'; closest: DenseNet121"):
        load_model("monai:DenseNet12", arch_args=MONAI_ARGS, input_size="32,32,32")
    with pytest.raises(UsageError, match="MONAI networks come without trained weights"):
        load_model("monai:DenseNet121", weights="default", arch_args=MONAI_ARGS, input_size="32,32,32")
    with pytest.raises(UsageError, match=r"--model monai:DenseNet121 --arch-args JSON"):
        load_model("resnet18", arch="monai:DenseNet121")
    monkeypatch.setitem(sys.modules, "monai", None)  # as if not installed: importing it raises ImportError
    monkeypatch.setitem(sys.modules, "monai.networks", None)
    with pytest.raises(UsageError, match=r"^MONAI networks need monai: pip install 'camcli\[monai\]'$"):
        load_model("monai:DenseNet121", arch_args=MONAI_ARGS, input_size="32,32,32")
