"""Picture formats and size caps (issue 14): --format png|jpg|webp with --quality, --max-size with a reduced
JPEG decode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from camcli.cli import app
from camcli.errors import InputError
from camcli.io.decode import decode
from camcli.io.formats import read_tags
from camcli.io.outputs import atomic_save_picture

from .conftest import SAMPLES

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> Path:
    """The cat photo, 9× larger (4059×2700), as a JPEG: a phone-photo-sized input."""
    path = tmp_path_factory.mktemp("big") / "cat.jpg"
    photo = Image.open(SAMPLES / "chelsea.png").convert("RGB")
    photo.resize((photo.width * 9, photo.height * 9), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_formats_round_trip_close_to_the_png(tmp_path, fmt):
    img = str(SAMPLES / "chelsea.png")
    assert invoke("gradcam", img, "--out", str(tmp_path), "-q").exit_code == 0
    assert invoke("gradcam", img, "--out", str(tmp_path), "--format", fmt, "--quality", "95", "-q").exit_code == 0
    png = np.asarray(Image.open(tmp_path / "chelsea.png.gradcam.285-Egyptian_cat.png")).astype(int)
    lossy_path = tmp_path / f"chelsea.png.gradcam,quality=95.285-Egyptian_cat.{fmt}"
    lossy = np.asarray(Image.open(lossy_path).convert("RGB")).astype(int)
    assert lossy.shape == png.shape
    assert np.abs(lossy - png).mean() < 2.5  # the same picture, within lossy-coding error
    tags = read_tags(lossy_path)
    assert json.loads(tags["camcli-settings"])["format"] == fmt and len(tags["camcli-input"]) == 16
    recs = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert recs[-1]["outputs"]["overlay"] == str(lossy_path)
    again = invoke("gradcam", img, "--out", str(tmp_path), "--format", fmt, "--quality", "95", "--skip-existing")
    assert "1 skipped" in again.stderr


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_a_picture_of_another_input_is_never_replaced_in_any_format(tmp_path, fmt):
    target = tmp_path / f"x.{fmt}"
    picture = Image.new("RGB", (40, 30), (200, 10, 10))
    atomic_save_picture(target, picture, "a" * 16, '{"s":1}', fmt, 90)
    before = target.read_bytes()
    with pytest.raises(InputError, match="another input"):
        atomic_save_picture(target, picture, "b" * 16, '{"s":1}', fmt, 90)
    with pytest.raises(InputError, match="other settings"):
        atomic_save_picture(target, picture, "a" * 16, '{"s":2}', fmt, 90)
    assert target.read_bytes() == before
    atomic_save_picture(target, picture, "a" * 16, '{"s":1}', fmt, 90)  # the same input and settings: a rerun


def test_max_size_caps_the_long_side_and_keeps_the_aspect(tmp_path, big_jpeg):
    res = invoke("gradcam", str(big_jpeg), str(SAMPLES / "coffee.png"), "--out", str(tmp_path), "--max-size", "800")
    assert res.exit_code == 0, res.output
    (cat,) = tmp_path.rglob("cat.jpg.gradcam,max-size=800.*.png")
    (coffee,) = tmp_path.rglob("coffee.png.gradcam,max-size=800.*.png")
    w, h = Image.open(cat).size
    assert max(w, h) == 800 and abs(w / h - 4059 / 2700) < 0.01
    assert Image.open(coffee).size == (600, 400)  # smaller than the cap: as it was


def test_reduced_jpeg_decode_is_smaller_and_large_enough(big_jpeg):
    full = decode(big_jpeg)
    reduced = decode(big_jpeg, max_side=512, min_size=(224, 224))
    assert full.size == (4059, 2700)
    assert max(reduced.size) >= 512 and min(reduced.size) >= 224 and reduced.width < full.width // 2


def test_reduced_decode_keeps_the_top_class(tmp_path):
    """Each sample photo as a large JPEG: the top-1 class with --max-size 256 equals the full decode's."""
    photos = tmp_path / "in"
    photos.mkdir()
    for name in ["chelsea", "coffee", "astronaut"]:
        im = Image.open(SAMPLES / f"{name}.png").convert("RGB")
        im.resize((im.width * 6, im.height * 6), Image.Resampling.BICUBIC).save(photos / f"{name}.jpg", quality=92)
    classes = {}
    for extra in [[], ["--max-size", "256"]]:
        res = invoke("gradcam", str(photos), "--out", str(tmp_path / "o"), "--json", "-q", *extra)
        assert res.exit_code == 0
        classes[tuple(extra)] = {r["input"]: r["class_index"] for r in map(json.loads, res.stdout.splitlines())}
    assert classes[()] == classes[("--max-size", "256")] and len(classes[()]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "gif"], "--format 'gif'"),
        (["--format", "jpg", "--quality", "0"], "--quality 0 is too small"),
        (["--max-size", "4"], "--max-size 4 is too small"),
    ],
)
def test_bad_format_options_are_one_line(tmp_path, args, message):
    res = invoke("gradcam", str(SAMPLES / "coffee.png"), "--out", str(tmp_path), *args)
    assert res.exit_code == 2 and message in res.stderr


def test_in_place_upsample_normalise_is_bit_identical():
    import torch

    from camcli.methods import normalize, upsample, upsample_normalized

    torch.manual_seed(0)
    for shape, size in [((7, 7), (300, 451)), ((14, 14), (1512, 2016)), ((7, 7), (7, 7))]:
        m = normalize(torch.randn(*shape))
        assert torch.equal(upsample_normalized(m, size), normalize(upsample(m, size)))
    flat = torch.full((7, 7), 0.5)
    assert torch.equal(upsample_normalized(flat, (20, 20)), torch.zeros(20, 20))
