"""Start-up: the bundled model's path imports no torchvision/matplotlib, shipped tables equal their sources,
layer tables are cached and read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from camcli.engine import layers as layers_mod
from camcli.models import load_bundled

from .conftest import SAMPLES


def _profile(*args: str, tmp_path) -> str:
    env = {**os.environ, "CAMCLI_PROFILE": "1", "CAMCLI_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-m", "camcli", *args], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stderr


def test_bundled_model_path_imports_no_torchvision_or_matplotlib(tmp_path):
    err = _profile("gradcam", str(SAMPLES / "chelsea.png"), "-q", "--out", str(tmp_path / "o"), tmp_path=tmp_path)
    assert "torch=yes" in err  # the report is there and tells the truth about what it can see
    assert "torchvision=no" in err and "matplotlib=no" in err, err
    err = _profile("features", str(SAMPLES / "chelsea.png"), "-q", "--out", str(tmp_path / "f"), tmp_path=tmp_path)
    assert "torchvision=no" in err and "matplotlib=no" in err, err


def test_a_torchvision_model_does_import_torchvision(tmp_path):
    err = _profile("layers", "--model", "resnet18", tmp_path=tmp_path)
    assert "torchvision=yes" in err


def test_shipped_imagenet_names_equal_torchvisions():
    from torchvision.models import ResNet18_Weights

    from camcli.models import imagenet_categories

    assert imagenet_categories() == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_shipped_colour_tables_equal_matplotlibs():
    import matplotlib

    from camcli.render import SHIPPED_LUTS, colormap_lut

    for name in SHIPPED_LUTS:
        colormap_lut.cache_clear()
        ours = colormap_lut(name)
        ref = np.rint(matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(ours, ref, err_msg=name)


def test_tile_grid_lays_out_like_make_grid():
    from torchvision.utils import make_grid

    from camcli.render import tile_grid

    rng = np.random.default_rng(0)
    tiles = [Image.fromarray(rng.integers(0, 255, (9, 7, 3), dtype=np.uint8)) for _ in range(5)]
    ours = np.asarray(tile_grid(tiles, 3))
    ref = make_grid(
        torch.stack([torch.from_numpy(np.asarray(t).copy()).permute(2, 0, 1) for t in tiles]),
        nrow=3,
        padding=3,
        pad_value=255,
    )
    np.testing.assert_array_equal(ours, ref.permute(1, 2, 0).numpy())


def test_layer_table_is_cached_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = load_bundled()
    first = layers_mod.trace(model.module, model.input_size, model.builder, model.layer_key)
    entries = list((tmp_path / "camcli").glob("layers-*.json"))
    assert len(entries) == 1

    def no_trace(*_a, **_k):
        raise AssertionError("traced again although the table was cached")

    monkeypatch.setattr(layers_mod, "_trace_model", no_trace)
    second = layers_mod.trace(model.module, model.input_size, model.builder, model.layer_key)
    assert second == first
    # another input size is another entry: not read from this one
    with pytest.raises(AssertionError, match="traced again"):
        layers_mod.trace(model.module, (160, 160), model.builder, model.layer_key)


def test_a_broken_layer_table_is_traced_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = load_bundled()
    first = layers_mod.trace(model.module, model.input_size, model.builder, model.layer_key)
    (entry,) = (tmp_path / "camcli").glob("layers-*.json")
    entry.write_text(json.dumps([["x", "y"]]))  # readable JSON of the wrong shape
    assert layers_mod.trace(model.module, model.input_size, model.builder, model.layer_key) == first
    entry.write_text("{not json")
    assert layers_mod.trace(model.module, model.input_size, model.builder, model.layer_key) == first
    assert json.loads(entry.read_text())[0][0] == first[0].name  # and the entry is repaired
