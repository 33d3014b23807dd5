"""JPEG inputs decoded by the job's device (nvjpeg on a GPU): the same code run on the CPU against Pillow's path.

On the CPU, torchvision's decoder and Pillow's are both libjpeg-turbo and give the same pixels, so the orientation
and the fall-backs are checked exactly; the resizes are torch's against Pillow's, within a level or two.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from camcli.errors import InputError
from camcli.io.decode import decode, fit_long_side, read_jpeg
from camcli.io.picture import Picture, decode_jpegs, fit_pixels, resize_pixels

from .conftest import SAMPLES

CPU = torch.device("cpu")


def _photo(seed: int = 0, size: tuple[int, int] = (40, 24)) -> Image.Image:
    """A small picture whose every turn and mirror differs (smooth, so JPEG keeps it recognisable)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 255 // size[0], y * 255 // size[1], (x * y) % 256], axis=-1).astype(np.int32)
    noisy = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")


def _on_device(path) -> np.ndarray:
    jpeg = read_jpeg(path)
    assert jpeg is not None
    (pixels,) = decode_jpegs([jpeg], CPU)
    assert pixels is not None
    return pixels.numpy()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_device_decode_turns_each_exif_orientation_like_pillow(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    _photo().save(path, quality=95, exif=exif)
    want = np.asarray(decode(path))
    got = _on_device(path)
    assert got.shape == want.shape and np.array_equal(got, want)
    if orientation in (5, 6, 7, 8):
        assert got.shape[:2] == (40, 24)  # turned a quarter


def test_grayscale_and_progressive_jpegs_decode_on_the_device(tmp_path):
    _photo(1).convert("L").save(tmp_path / "gray.jpg")
    _photo(2).save(tmp_path / "progressive.jpg", progressive=True, quality=80)
    for name in ("gray.jpg", "progressive.jpg"):
        assert np.array_equal(_on_device(tmp_path / name), np.asarray(decode(tmp_path / name)))


def test_what_the_device_cannot_decode_is_left_to_pillow(tmp_path):
    """PNG, CMYK JPEG and a JPEG cut short are read with Pillow (which refuses the last with its reason); what
    is no image at all is refused at once, like decode() refuses it."""
    _photo().save(tmp_path / "a.png")
    _photo().convert("CMYK").save(tmp_path / "cmyk.jpg")
    _photo().save(tmp_path / "whole.jpg", quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "text.jpg").write_text("not a picture")
    for name in ("a.png", "cmyk.jpg", "cut.jpg"):
        assert read_jpeg(tmp_path / name) is None, name
    with pytest.raises(InputError, match="truncated or corrupt"):
        decode(tmp_path / "cut.jpg")
    with pytest.raises(InputError, match="not an image"):
        read_jpeg(tmp_path / "text.jpg")
    jpeg = read_jpeg(tmp_path / "whole.jpg")
    assert jpeg is not None and jpeg.size == (40, 24) and jpeg.data == data


def test_a_file_the_device_decoder_refuses_gives_none(tmp_path):
    _photo().save(tmp_path / "ok.jpg")
    jpeg = read_jpeg(tmp_path / "ok.jpg")
    assert jpeg is not None
    broken = type(jpeg)(jpeg.path, jpeg.data[:200] + b"\xff\xd9", jpeg.size, 1)  # header, then nothing
    ok, bad = decode_jpegs([jpeg, broken], CPU)
    assert ok is not None and bad is None


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_tensor_resize_matches_pillows(interpolation):
    for name in ("chelsea", "coffee", "astronaut"):
        im = Image.open(SAMPLES / f"{name}.png").convert("RGB")
        for size in ((224, 224), (240, 260), (900, 700)):  # down, mixed, up
            resample = getattr(Image.Resampling, interpolation.upper())
            want = np.asarray(im.resize((size[1], size[0]), resample)).astype(int)
            chw = torch.from_numpy(np.array(im)).permute(2, 0, 1)
            got = resize_pixels(chw, size, interpolation).permute(1, 2, 0).numpy().astype(int)
            diff = np.abs(got - want)
            assert diff.mean() < 0.3 and np.quantile(diff, 0.999) <= 2, (name, size, diff.mean())


def test_fit_pixels_gives_fit_long_sides_sizes():
    im = Image.open(SAMPLES / "chelsea.png").convert("RGB")  # 451×300
    hwc = torch.from_numpy(np.array(im))
    for cap in (None, 451, 450, 300, 97, 8):
        want = fit_long_side(im, cap)
        got = fit_pixels(hwc, cap)
        assert (got.shape[1], got.shape[0]) == want.size, cap
        if cap is not None and cap < 64:
            continue  # a thumbnail of a few pixels: Pillow's box reduction first decides more of each pixel
        diff = np.abs(got.numpy().astype(int) - np.asarray(want).astype(int))
        assert diff.mean() < 0.5 and np.quantile(diff, 0.999) <= 2, (cap, diff.mean())  # Pillow reduces by boxes first


def test_picture_makes_each_form_once():
    im = _photo()
    p = Picture(im)
    pixels = p.pixels(CPU)
    assert p.pixels(CPU) is pixels and (p.width, p.height) == (40, 24)
    q = Picture(pixels=pixels)
    assert q.pil() is q.pil() and np.array_equal(np.asarray(q.pil()), np.asarray(im))
    with pytest.raises(ValueError):
        Picture()


def _run(out, decode_on, inputs, **extra):
    from camcli.jobs.cam import CamJob
    from camcli.jobs.runner import run_job
    from camcli.options import CamOptions

    job = CamJob(CamOptions(out=out, device="cpu", batch_size=4, **extra))
    if decode_on:
        job.render_on = job.decode_on = CPU
    return {r.input: r for r in run_job(job, [str(inputs)])}


@pytest.mark.parametrize("max_size", [None, 300])
def test_the_run_decoding_on_its_device_matches_the_pillow_run(tmp_path, monkeypatch, max_size):
    """The runner's device path (taken on a GPU), run on the CPU: JPEGs (one turned by EXIF) decode there, the
    rest goes through Pillow; the same files, the same classes, the same pictures within the resizes' rounding,
    and the same one-line failure for a broken file."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("chelsea", "coffee", "astronaut"):
        im = Image.open(SAMPLES / f"{name}.png").convert("RGB")
        im.save(inputs / f"{name}.jpg", quality=92)
    Image.open(SAMPLES / "chelsea.png").convert("RGB").transpose(Image.Transpose.ROTATE_90).save(
        inputs / "turned.jpg", quality=92, exif=exif
    )
    Image.open(SAMPLES / "coffee.png").convert("RGB").save(inputs / "coffee.png")
    Image.open(SAMPLES / "coffee.png").convert("CMYK").save(inputs / "cmyk.jpg")
    (inputs / "cut.jpg").write_bytes((inputs / "chelsea.jpg").read_bytes()[:5000])
    extra = {"max_size": max_size} if max_size else {}
    from camcli.jobs import prepare

    decoded_there: list[str] = []

    def counted(jpegs, device):
        decoded_there.extend(j.path.name for j in jpegs)
        return decode_jpegs(jpegs, device)

    monkeypatch.setattr(prepare, "decode_jpegs", counted)
    runs = {how: _run(tmp_path / how, how == "device", inputs, **extra) for how in ("pillow", "device")}
    assert runs["pillow"].keys() == runs["device"].keys() and len(runs["pillow"]) == 7
    for key, a in runs["pillow"].items():
        b = runs["device"][key]
        assert (a.ok, a.error) == (b.ok, b.error), key
        if not a.ok:
            assert "truncated or corrupt" in (a.error or "")
            continue
        assert a.size == b.size, key
        assert a.predictions[0].index == b.predictions[0].index, key
        assert abs(a.predictions[0].probability - b.predictions[0].probability) < 0.02, key
        for oa, ob in zip(a.written, b.written, strict=True):
            pa = np.asarray(Image.open(oa.overlay)).astype(int)  # type: ignore[attr-defined]
            pb = np.asarray(Image.open(ob.overlay)).astype(int)  # type: ignore[attr-defined]
            assert pa.shape == pb.shape and np.abs(pa - pb).mean() < 2.0, key
    assert sorted(decoded_there) == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "turned.jpg"]
    turned = runs["device"][str(inputs / "turned.jpg")]
    assert turned.size == ((451, 300) if max_size is None else (300, 200))  # stored 300×451, shown turned
    records = [json.loads(line) for line in (tmp_path / "device" / "manifest.jsonl").read_text().splitlines()]
    assert sum(r["status"] == "ok" for r in records) == 6


def _exif_orientation(kind: int, value: bytes) -> bytes:
    """An EXIF block whose orientation tag has TIFF type ``kind`` (2 ASCII, 3 SHORT, 5 RATIONAL) and ``value``."""
    import struct

    inline = len(value) <= 4
    field = value.ljust(4, b"\0") if inline else struct.pack("<I", 26)
    count = len(value) // 8 if kind == 5 else len(value) // 2 if kind == 3 else len(value)
    ifd = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, kind, count) + field + struct.pack("<I", 0)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd + (b"" if inline else value)


@pytest.mark.parametrize(
    ("kind", "value", "turned"),
    [
        (3, (6).to_bytes(2, "little"), True),  # SHORT 6: turned a quarter
        (2, b"6\0", False),  # ASCII "6": Pillow leaves it as stored
        (5, (12).to_bytes(4, "little") + (2).to_bytes(4, "little"), True),  # RATIONAL 12/2 = 6
        (5, (13).to_bytes(4, "little") + (2).to_bytes(4, "little"), False),  # RATIONAL 13/2
        (3, (13).to_bytes(2, "little"), False),
        (3, (0).to_bytes(2, "little"), False),
    ],
)
def test_odd_orientation_tags_turn_the_picture_as_pillow_does(tmp_path, kind, value, turned):
    path = tmp_path / "odd.jpg"
    _photo().save(path, quality=95, exif=_exif_orientation(kind, value))
    want = np.asarray(decode(path))
    assert want.shape[:2] == ((40, 24) if turned else (24, 40))
    assert np.array_equal(_on_device(path), want)


def test_pixels_on_the_jobs_device_are_not_copied_again():
    """A job on ``cuda`` (no index) draws on pixels decoded on ``cuda:0`` as they are."""
    from types import SimpleNamespace

    from camcli.io.picture import on

    gpu0 = SimpleNamespace(device=torch.device("cuda", 0))
    assert on(gpu0, torch.device("cuda")) and on(gpu0, torch.device("cuda:0"))  # type: ignore[arg-type]
    assert not on(gpu0, torch.device("cuda:1")) and not on(gpu0, CPU)  # type: ignore[arg-type]
    assert on(torch.zeros(1), CPU)
