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


def test_model_input_of_a_large_picture_is_within_two_levels_of_the_exact_resize(big_jpeg, bundled):
    """preprocess shrinks a large picture by whole factors first (Pillow's reducing_gap): the input differs from
    the exact resize's by at most two levels of 255 per pixel."""
    import torch

    from camcli.models import normalized, preprocess

    image = decode(big_jpeg)
    exact = image.resize((224, 224), Image.Resampling.BILINEAR)
    want = normalized(torch.from_numpy(np.array(exact)).permute(2, 0, 1), bundled)
    std = torch.tensor(bundled.std).view(3, 1, 1)
    levels = ((preprocess(image, bundled) - want) * std * 255).abs()
    assert levels.max() <= 2.001 and levels.mean() < 0.3, (levels.max(), levels.mean())


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


# ------------------------------------------------------------------------ the tensor render path (GPU runs)
@pytest.mark.parametrize("blend", ["weighted", "uniform"])
def test_tensor_overlay_equals_pillows(blend):
    """The overlay as tensor operations (what a --device cuda run draws with) gives Pillow's pixels: the same
    levels, table and rounding. Random pictures and maps, maps with exact 0/1 and half-level values."""
    import torch

    from camcli import render

    rng = np.random.default_rng(1)
    for trial in range(12):
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cam = rng.random((h, w)).astype(np.float32)
        cam[::3] = 0.0
        cam[1::4] = 1.0
        cam[2::5] = (np.arange(w) % 256 + 0.5) / 255  # half-way between two levels: the rounding shows
        for alpha in (0.0, 0.35, 0.5, 1.0):
            cmap = ("jet", "viridis", "gray")[trial % 3]
            want = np.asarray(render.overlay(Image.fromarray(base), cam, cmap, alpha, blend))
            got = render.overlay_tensor(torch.from_numpy(base), torch.from_numpy(cam), cmap, alpha, blend).numpy()
            assert got.dtype == np.uint8 and got.shape == want.shape
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # the bound: 1/255
            assert (got == want).mean() == 1.0, (trial, alpha)  # and here, in fact, equal


def test_tensor_pictures_encode_like_pillow_pictures(tmp_path):
    """A uint8 tensor is written like the Pillow picture it holds (PNG: the same bytes); a JPEG made by
    torchvision's encoder (the one a GPU run uses) carries camcli's tags in the comment read_tags reads."""
    import torch
    import torchvision.io

    from camcli.io.formats import encode_picture, with_jpeg_comment

    pixels = np.asarray(Image.open(SAMPLES / "coffee.png").convert("RGB"))
    tags = {"camcli-input": "a" * 16, "camcli-settings": '{"format": "jpg"}'}
    assert encode_picture(torch.from_numpy(pixels.copy()), "png", 90, tags) == encode_picture(
        Image.fromarray(pixels), "png", 90, tags
    )
    with pytest.warns(DeprecationWarning) if _tv_io_deprecated() else _nothing():
        raw = torchvision.io.encode_jpeg(torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous(), quality=90)
    path = tmp_path / "x.jpg"
    path.write_bytes(with_jpeg_comment(raw.numpy().tobytes(), tags))
    assert read_tags(path) == tags
    back = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert np.abs(back - pixels.astype(int)).mean() < 3


def _tv_io_deprecated() -> bool:
    import torchvision

    major, minor = (int(v) for v in torchvision.__version__.split(".")[:2])
    return (major, minor) >= (0, 29)


def _nothing():
    import contextlib

    return contextlib.nullcontext()


@pytest.mark.parametrize("annotate", [False, True])
def test_the_cam_job_draws_the_same_files_with_tensors(tmp_path, annotate):
    """The job's tensor path (taken on a GPU) run on the CPU writes the same PNGs and maps as its Pillow path,
    with several methods, --per-layer, --annotate or not, and --save-raw."""
    import torch

    from camcli.jobs.cam import CamJob
    from camcli.jobs.runner import run_job
    from camcli.options import CamOptions

    outs = {}
    for how in ("pillow", "tensor"):
        opts = CamOptions(
            out=tmp_path / how,
            methods=["gradcam", "layercam"],
            layers=["_blocks.15", "_head_act"],
            per_layer=True,
            annotate=annotate,
            save_raw=True,
            blend="weighted",
            device="cpu",
        )
        job = CamJob(opts)
        if how == "tensor":
            job.render_on = torch.device("cpu")
        results = list(run_job(job, [str(SAMPLES)]))
        assert all(r.ok for r in results)
        outs[how] = sorted(p.relative_to(tmp_path / how) for p in (tmp_path / how).rglob("*.png"))
    assert outs["pillow"] == outs["tensor"] and len(outs["pillow"]) == 3 * 2 * 3
    for rel in outs["pillow"]:
        a = np.asarray(Image.open(tmp_path / "pillow" / rel))
        b = np.asarray(Image.open(tmp_path / "tensor" / rel))
        assert np.array_equal(a, b), rel
    for raw in (tmp_path / "pillow").glob("*.npy"):
        assert np.array_equal(np.load(raw), np.load(tmp_path / "tensor" / raw.name))


# ------------------------------------------------------------------------------------------ --panel
def test_panel_geometry_and_tiles():
    """A row per class, the input then one tile per map, every tile the same size and holding that picture."""
    from camcli import render

    photo = Image.open(SAMPLES / "chelsea.png").convert("RGB")  # 451×300
    reds = [(f"m{i}", Image.new("RGB", photo.size, (40 * i, 0, 0))) for i in range(1, 4)]
    out = render.panel(photo, [reds, reds[:2]], "jet", tile=200, title="t")
    w, h = 200, round(200 * 300 / 451)
    pad, head, top, foot = 6, 13 + 8, 13 + 14, 30
    assert out.size == (pad + 4 * (w + pad), top + 2 * (head + h + pad) + pad + foot)
    px = np.asarray(out).astype(int)
    for r, row in enumerate([reds, reds[:2]]):
        y = top + pad + r * (head + h + pad) + head
        want_input = np.asarray(photo.resize((w, h), Image.Resampling.BILINEAR)).astype(int)
        assert np.array_equal(px[y : y + h, pad : pad + w], want_input)
        for c, (_, tile) in enumerate(row, start=1):
            x = pad + c * (w + pad)
            assert (px[y + h // 2, x + w // 2] == np.asarray(tile)[0, 0]).all()
        if len(row) < 3:  # a shorter row leaves its last cells white
            x = pad + 3 * (w + pad)
            assert (px[y + h // 2, x + w // 2] == 255).all()


@pytest.mark.parametrize("size", [(43, 64), (1, 1), (15, 300)])
def test_panel_of_a_small_picture_has_room_for_its_scale(size):
    """A picture narrower than the colour scale (a small portrait) still gets its panel, with the scale."""
    from camcli import render

    photo = Image.new("RGB", size, (200, 10, 10))
    out = render.panel(photo, [[("m", photo)]], "jet", title="t")
    assert out.width >= 400
    foot = np.asarray(out)[-20:]
    assert (foot[..., 2].astype(int) - foot[..., 0] > 100).any()  # the blue end of jet's scale is drawn


def test_cli_panel_is_written_recorded_and_resumed(tmp_path):
    res = invoke("cam", str(SAMPLES / "coffee.png"), "--method", "gradcam", "--method", "eigencam", "--top-k", "2",
                 "--panel", "--out", str(tmp_path), "-q")  # fmt: skip
    assert res.exit_code == 0
    panel = tmp_path / "coffee.png.panel-gradcam_eigencam.png"  # the methods joined by "_"
    pic = Image.open(panel)
    assert pic.size[0] == 6 + 3 * (320 + 6)  # the input and two methods, 320 pixels wide each
    recs = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and {r["outputs"]["panel"] for r in recs} == {str(panel)}
    assert read_tags(panel)["camcli-input"]
    again = invoke("cam", str(SAMPLES / "coffee.png"), "--method", "gradcam", "--method", "eigencam", "--top-k", "2",
                   "--panel", "--out", str(tmp_path), "--skip-existing")  # fmt: skip
    assert "1 skipped" in again.stderr
    panel.unlink()  # a missing panel means the input is not done
    again = invoke("cam", str(SAMPLES / "coffee.png"), "--method", "gradcam", "--method", "eigencam", "--top-k", "2",
                   "--panel", "--out", str(tmp_path), "--skip-existing")  # fmt: skip
    assert "1 done" in again.stderr and panel.is_file()
    # another set of methods makes another panel, next to the first
    assert invoke("cam", str(SAMPLES / "coffee.png"), "--panel", "--out", str(tmp_path), "-q").exit_code == 0
    assert (tmp_path / "coffee.png.panel-gradcam.png").is_file() and panel.is_file()
