"""camcli features: channel ranking and selection, grid geometry, raw activations, CLI runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.errors import UsageError
from camcli.jobs.features import FeatureJob, rank_channels
from camcli.models import LoadedModel
from camcli.options import FeatureOptions, parse_channels
from camcli.render import feature_grid

from .conftest import SAMPLES

runner = CliRunner()


class KnownChannels(nn.Module):
    """A 1×1 conv whose 6 output channels are the (constant) input scaled by 0, 5, 1, 3, 3, -2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, kernel_size=1, bias=False)
        with torch.no_grad():
            w = torch.tensor([0.0, 5.0, 1.0, 3.0, 3.0, -2.0]).view(6, 1, 1, 1) / 3
            self.conv.weight.copy_(w.expand(6, 3, 1, 1))
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


def _known_model() -> LoadedModel:
    return LoadedModel("known", KnownChannels().eval(), (32, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), ["a", "b"])


def test_rank_channels_strongest_first_ties_by_index():
    act = torch.tensor([0.0, 5.0, 1.0, 3.0, 3.0, -2.0]).view(6, 1, 1).expand(6, 4, 4)
    assert rank_channels(act, 4) == [1, 3, 4, 2]
    assert rank_channels(act, 100) == [1, 3, 4, 2, 0, 5]


def test_parse_channels():
    assert parse_channels("0,5,17-20") == [0, 5, 17, 18, 19, 20]
    assert parse_channels("3, 1-2,3") == [3, 1, 2]
    for bad in ["a", "5-2", ","]:
        with pytest.raises(UsageError):
            parse_channels(bad)


def test_job_ranks_known_channels_and_raw_equals_layer_output(tmp_path):
    img = tmp_path / "white.png"
    Image.new("RGB", (40, 30), (255, 255, 255)).save(img)
    job = FeatureJob(
        FeatureOptions(layers=["conv"], top=3, out=tmp_path / "o", save_raw=True, device="cpu"), model=_known_model()
    )
    from camcli.jobs.features import feature_files

    results = list(feature_files([str(img)], job.options, model=job.model))
    assert results[0].ok
    rec = json.loads((tmp_path / "o" / "manifest.jsonl").read_text().splitlines()[0])
    assert rec["channels"] == [1, 3, 4] and rec["means"] == [5.0, 3.0, 3.0]
    raw = np.load(rec["outputs"]["raw"])
    # independent: the conv applied to the preprocessed (all-ones) input
    with torch.no_grad():
        expected = job.model.module.conv(torch.ones(1, 3, 32, 32))[0].numpy()
    np.testing.assert_allclose(raw, expected, rtol=1e-6)
    assert rec["stats"]["channels"] == 6 and rec["stats"]["height"] == 32


def test_raw_activation_matches_independent_hook_on_resnet(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    loaded = LoadedModel("r18", model, (64, 64))
    from camcli.jobs.features import feature_files
    from camcli.models import preprocess

    opts = FeatureOptions(layers=["layer2"], channels="0,5,17-24", out=tmp_path / "o", save_raw=True, device="cpu")
    (res,) = list(feature_files([str(SAMPLES / "coffee.png")], opts, model=loaded))
    assert res.outputs[0]["channels"] == [0, 5, *range(17, 25)]
    captured = {}
    h = model.layer2.register_forward_hook(lambda m, i, o: captured.update(a=o.detach()))
    with torch.no_grad():
        model(preprocess(Image.open(SAMPLES / "coffee.png").convert("RGB"), loaded)[None])
    h.remove()
    np.testing.assert_allclose(np.load(res.outputs[0]["outputs"]["raw"]), captured["a"][0].numpy(), atol=1e-5)


@pytest.mark.parametrize("n", [1, 8, 16])
def test_grid_geometry_and_labels(n):
    maps = np.random.default_rng(0).random((n, 7, 7)).astype(np.float32)
    labels = [f"ch {i}" for i in range(n)]
    grid = feature_grid(Image.new("RGB", (50, 40), (200, 0, 0)), maps, labels, tile=64)
    tiles = n + 1
    cols = math.ceil(math.sqrt(tiles))
    rows = math.ceil(tiles / cols)
    assert grid.size == (cols * (64 + 3) + 3, rows * (64 + 16 + 3) + 3)
    arr = np.asarray(grid)
    # the first tile is the input picture; each caption strip has dark text pixels
    assert tuple(arr[3 + 10, 3 + 10]) == (200, 0, 0)
    for t in range(tiles):
        r, c = divmod(t, cols)
        y0 = 3 + r * (64 + 16 + 3) + 64
        x0 = 3 + c * (64 + 3)
        strip = arr[y0 : y0 + 16, x0 : x0 + 64]
        assert (strip.sum(axis=2) < 300).any(), f"no caption under tile {t}"


def test_layer_normalization_keeps_relative_strength():
    maps = np.stack([np.full((4, 4), 1.0), np.full((4, 4), 3.0)]).astype(np.float32)
    maps[:, 0, 0] = 0.0
    per_tile = np.asarray(feature_grid(Image.new("RGB", (8, 8)), maps, ["a", "b"], tile=16, normalize="tile"))
    per_layer = np.asarray(feature_grid(Image.new("RGB", (8, 8)), maps, ["a", "b"], tile=16, normalize="layer"))
    cols = 2
    tile_b = (slice(3 + 35 + 8, 3 + 35 + 9), slice(3 + 8, 3 + 9))  # row 1 (tile 16 + caption 16 + pad 3), col 0
    tile_a = (slice(3 + 8, 3 + 9), slice(3 + (16 + 3) * (cols - 1) + 8, 3 + (16 + 3) * (cols - 1) + 9))
    assert np.array_equal(per_tile[tile_a], per_tile[tile_b])  # both saturate on their own scale
    assert not np.array_equal(per_layer[tile_a], per_layer[tile_b])  # one scale: b is brighter


def test_cli_features_bundled_and_checkpoint(tmp_path):
    out = tmp_path / "grids"
    res = runner.invoke(app, ["features", str(SAMPLES), "--out", str(out), "--top", "8", "--stats", "--json"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(recs) == 3 and all(r["layer"] == "_head_act" and len(r["channels"]) == 8 for r in recs)
    assert sorted(p.name for p in out.glob("*.png")) == [
        "astronaut.png.features._head_act,top=8.png",
        "chelsea.png.features._head_act,top=8.png",
        "coffee.png.features._head_act,top=8.png",
    ]
    assert "layer statistics" in res.stderr
    # one statistics row per image, even though --json also prints the records
    assert len([line for line in res.stderr.splitlines() if "_head_act" in line and "│" in line]) == 3
    # a checkpoint saved here: resnet18 state_dict with 7 classes, found without --arch
    torch.manual_seed(0)
    ckpt = tmp_path / "best.pt"
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), ckpt)
    res = runner.invoke(
        app,
        [
            "features",
            str(SAMPLES / "coffee.png"),
            "--model",
            str(ckpt),
            "--layer",
            "layer1",
            "--layer",
            "layer3",
            "--out",
            str(out / "ck"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "ck").glob("*.png")) == [
        "coffee.png.features.layer1,model=best.png",
        "coffee.png.features.layer3,model=best.png",
    ]


def test_cli_features_errors(tmp_path):
    res = runner.invoke(app, ["features", str(SAMPLES / "coffee.png"), "--layer", "_fc", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no spatial output" in res.stderr and "_head_act" in res.stderr
    res = runner.invoke(app, ["features", str(SAMPLES / "coffee.png"), "--channels", "5000", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "channels 0…1279" in res.stderr


def test_cli_features_all_layers(tmp_path):
    res = runner.invoke(
        app,
        [
            "features",
            str(SAMPLES / "coffee.png"),
            "--model",
            "resnet18",
            "--weights",
            "none",
            "--all",
            "--top",
            "4",
            "--tile",
            "32",
            "--out",
            str(tmp_path),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    # names: INPUT.features.NN-LAYER,SETTINGS.png, NN the place of the layer's output in the forward pass
    settings = ",model=resnet18,weights=none,top=4,tile=32.png"
    found = sorted(p.name.split(".features.")[1].removesuffix(settings) for p in tmp_path.glob("*.png"))
    order = [int(n.split("-", 1)[0]) for n in found]
    names = [n.split("-", 1)[1] for n in found]
    assert {"conv1", "layer1", "layer4", "layer4.1.conv2"} <= set(names)
    assert "fc" not in names and "avgpool" not in names
    assert order == list(range(1, len(found) + 1))  # numbered 01, 02, … with no gap
    assert names.index("conv1") < names.index("bn1") < names.index("layer1.0.conv1") < names.index("layer4.1.conv2")


def test_vit_token_layer_is_laid_back_on_its_grid(tmp_path):
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    loaded = LoadedModel("vit", vit, (224, 224))
    from camcli.jobs.features import feature_files

    opts = FeatureOptions(layers=["encoder.layers.encoder_layer_5"], top=4, out=tmp_path, save_raw=True, device="cpu")
    (res,) = list(feature_files([str(SAMPLES / "chelsea.png")], opts, model=loaded))
    assert res.ok and res.outputs[0]["stats"]["height"] == 14 and res.outputs[0]["stats"]["channels"] == 768
    assert np.load(res.outputs[0]["outputs"]["raw"]).shape == (768, 14, 14)
