from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camcli.errors import InputError, UsageError
from camcli.io.decode import decode
from camcli.io.inputs import iter_inputs
from camcli.io.outputs import atomic_save_picture, atomic_write_bytes


def _png(path: Path, im: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def test_iter_inputs_recursive_sorted_case_insensitive_and_skips_out(tmp_path):
    root = tmp_path / "photos"
    for rel in ["b.JPG", "a.png", "a.jpg", "sub/c.PNG", "notes.txt", "out/old.png"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("txt"):
            p.write_text("x")
        else:
            Image.new("RGB", (4, 4)).save(p, format="PNG")
    found = list(iter_inputs([str(root)], out_dir=root / "out"))
    assert [str(f.rel) for f in found] == ["a.jpg", "a.png", "b.JPG", "sub/c.PNG"]


def test_iter_inputs_files_globs_dedupe_and_mirroring(tmp_path):
    a = _png(tmp_path / "x" / "same.png", Image.new("RGB", (4, 4)))
    b = _png(tmp_path / "y" / "same.png", Image.new("RGB", (4, 4)))
    found = list(iter_inputs([str(a), str(b), str(tmp_path / "x" / "*.png")]))
    assert [str(f.rel) for f in found] == ["x/same.png", "y/same.png"]  # no collision, no duplicate
    with pytest.raises(UsageError, match="does not exist"):
        list(iter_inputs([str(tmp_path / "missing.jpg")]))
    with pytest.raises(UsageError, match="no files match"):
        list(iter_inputs([str(tmp_path / "*.gif")]))


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif)
    assert decode(p).size == (20, 40)


@pytest.mark.parametrize(
    ("mode", "make", "expected"),
    [
        ("L", lambda: Image.new("L", (3, 3), 128), (128, 128, 128)),
        ("RGBA", lambda: Image.new("RGBA", (3, 3), (255, 0, 0, 0)), (255, 255, 255)),  # on white
        ("LA", lambda: Image.new("LA", (3, 3), (0, 128)), (127, 127, 127)),
        ("CMYK", lambda: Image.new("CMYK", (3, 3), (0, 255, 255, 0)), (255, 0, 0)),
    ],
)
def test_odd_modes(tmp_path, mode, make, expected):
    p = tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    make().save(p)
    out = decode(p)
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out)[1, 1].astype(int) - np.array(expected)).max() <= 2


def test_palette_with_transparency_on_white(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([10, 20, 30] + [0] * 765)
    im.info["transparency"] = 0
    p = tmp_path / "p.png"
    im.save(p, transparency=0)
    assert tuple(np.asarray(decode(p))[0, 0]) == (255, 255, 255)


def test_16bit_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    got = np.asarray(decode(p))[..., 0]
    assert got[0, 0] == 0 and got[1, 0] == 255 and 126 <= got[0, 1] <= 129  # mid-grey, not white


def test_bad_inputs_have_reasons(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    corrupt = tmp_path / "corrupt.png"
    good = io.BytesIO()
    Image.new("RGB", (8, 8)).save(good, format="PNG")
    data = bytearray(good.getvalue())
    data[40:60] = b"\x00" * 20
    corrupt.write_bytes(bytes(data))
    for path, reason in [
        (empty, "empty"),
        (text, "not an image"),
        (trunc, "truncated"),
        (corrupt, "corrupt"),
    ]:
        with pytest.raises(InputError, match=reason) as e:
            decode(path)
        assert str(path) in str(e.value)


def test_decompression_bomb_guard(tmp_path):
    p = _png(tmp_path / "big.png", Image.new("L", (300, 300)))
    with pytest.raises(InputError, match="max-pixels"):
        decode(p, max_pixels=10_000)
    assert decode(p, max_pixels=100_000).size == (300, 300)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "o" / "x.png"
    atomic_save_picture(target, Image.new("RGB", (2, 2)))
    before = target.read_bytes()

    def fail(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == before  # the old complete file stays
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.png"]  # no temp file left


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (64, 48), (300, 451)])
def test_png_encoder_round_trips_through_pillow(shape):
    from camcli.io.png import encode_png

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    arr[: shape[0] // 2] = 255  # flat and noisy regions, wrap-around differences
    back = np.asarray(Image.open(io.BytesIO(encode_png(arr))))
    assert back.dtype == np.uint8 and np.array_equal(back, arr)


def test_png_encoder_uses_zlib_ng():
    """The dependency is installed and used (Pillow's zlib reads its output: the round trip above)."""
    from camcli.io import png

    assert png._deflate.__name__ == "zlib_ng.zlib_ng"


def test_overlay_blend_matches_the_formula():
    from camcli.render import colorize, overlay

    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8))
    cam = rng.random((20, 30)).astype(np.float32)
    got = np.asarray(overlay(base, cam, "viridis", 0.3, "uniform")).astype(int)
    expected = 0.7 * np.asarray(base).astype(float) + 0.3 * colorize(cam, "viridis").astype(float)
    assert np.abs(got - expected).max() <= 1
    # weighted: each pixel's opacity is alpha × its map value (0 where the map is 0: the photo as it was)
    got = np.asarray(overlay(base, cam, "viridis", 0.3, "weighted")).astype(int)
    a = 0.3 * cam[..., None]
    expected = (1 - a) * np.asarray(base).astype(float) + a * colorize(cam, "viridis").astype(float)
    assert np.abs(got - expected).max() <= 1.5
    cold = np.zeros_like(cam)
    assert np.array_equal(np.asarray(overlay(base, cold, "jet", 0.9, "weighted")), np.asarray(base))


def test_outputs_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "o.png"
    atomic_save_picture(target, Image.new("RGB", (2, 2)))
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_colorize_is_the_colormap_lookup():
    import matplotlib

    from camcli.render import colorize

    cam = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    expected = np.rint(matplotlib.colormaps["magma"](cam)[..., :3] * 255).astype(np.uint8)
    assert np.abs(colorize(cam, "magma").astype(int) - expected).max() <= 1
