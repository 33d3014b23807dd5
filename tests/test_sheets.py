"""Sheets (camcli.sheets): tiles where the layout puts them, captions under them, the title and colour scale,
sizes bounded however many tiles; a contact sheet of overlaid video frames whose maps follow the moving square."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from camcli import render
from camcli.sheets import SHEET_MAX_SIDE, captioned_sheet

PAD, TOP, FOOT = 6, 27, 30  # the sheet's margins (sheets._PAD, _TOP, _FOOT), restated
HEAD13 = 21  # a caption strip at tile widths of 128 and more: 13-pixel font + 8


def solid(colour: tuple[int, int, int], w: int = 64, h: int = 48) -> Image.Image:
    return Image.new("RGB", (w, h), colour)


COLOURS = [(200, 0, 0), (0, 160, 0), (0, 0, 220), (220, 180, 0), (120, 0, 160)]


def white(a: np.ndarray) -> bool:
    return bool((a == 255).all())


def test_tiles_in_a_grid_with_their_captions_under_them():
    tiles = [solid(c, 128, 96) for c in COLOURS]
    captions = ["a", "", "285 Egyptian cat · 1.25 s", "x" * 200, "e"]  # one empty: its strip must stay white
    sheet = np.asarray(captioned_sheet(tiles, captions, columns=3, tile_width=128))
    # by hand: 3 columns of 128 + 4 gaps of 6 = 408 wide; 2 rows of (96 + 21 + 6) + 6 = 252 high
    assert sheet.shape == (2 * (96 + HEAD13 + PAD) + PAD, 3 * (128 + PAD) + PAD, 3)
    for k, colour in enumerate(COLOURS):
        x, y = PAD + (k % 3) * (128 + PAD), PAD + (k // 3) * (96 + HEAD13 + PAD)
        np.testing.assert_array_equal(sheet[y : y + 96, x : x + 128], np.broadcast_to(colour, (96, 128, 3)))
        assert white(sheet[y - PAD : y, x : x + 128])  # white above each tile
        strip = sheet[y + 96 : y + 96 + HEAD13, x : x + 128]
        assert white(strip) == (captions[k] == ""), k  # text under every captioned tile, none under the empty one
        if captions[k]:
            assert (strip.min(axis=2) < 100).sum() > 10  # dark text, not a stray pixel
            assert white(strip[:, 126:])  # the 200 x's were cut to the tile's width (with "…")
    assert white(sheet[PAD + 96 + HEAD13 + PAD :, PAD + 2 * (128 + PAD) :])  # the sixth cell is empty


def test_columns_default_to_about_square_and_one_tile():
    for n, cols in ((1, 1), (2, 2), (4, 2), (5, 3), (10, 4), (12, 4)):
        sheet = captioned_sheet([solid((0, 0, 0))] * n, ["c"] * n, tile_width=64)
        rows = math.ceil(n / cols)
        assert sheet.size == (cols * (64 + PAD) + PAD, rows * (48 + 19 + PAD) + PAD), n  # 11-pixel font + 8 below 128
    one = np.asarray(captioned_sheet([solid((0, 0, 255))], ["only"], columns=4, tile_width=64))
    assert one.shape[1] == 64 + 2 * PAD  # never more columns than tiles
    assert (one[PAD : PAD + 48, PAD : PAD + 64] == (0, 0, 255)).all()


def test_title_and_colour_scale():
    sheet = np.asarray(captioned_sheet([solid((0, 0, 0))], ["c"], title="clip.mp4 · gradcam", colormap="jet"))
    assert sheet.shape[1] == 400  # widened for the scale (256 + 12 otherwise)
    assert sheet.shape[0] == TOP + PAD + 192 + HEAD13 + PAD + FOOT
    assert not white(sheet[:TOP])  # the title
    assert (sheet[TOP + PAD : TOP + PAD + 192, PAD : PAD + 256] == 0).all()  # the tile, under the title
    foot = sheet[-FOOT:].reshape(-1, 3)
    lut = render.colormap_lut("jet")
    for colour in (lut[0], lut[128], lut[255]):  # the scale's ends and middle are in the foot
        assert (np.abs(foot.astype(int) - colour).max(axis=1) <= 2).any()
    plain = np.asarray(captioned_sheet([solid((0, 0, 0))], ["c"]))
    assert plain.shape == (PAD + 192 + HEAD13 + PAD, 256 + 2 * PAD, 3)  # no title, no scale: no strips for them


def test_tiles_keep_their_aspect_and_tall_ones_are_narrowed():
    wide, tall = solid((255, 0, 0), 200, 50), solid((0, 0, 255), 10, 1000)
    sheet = np.asarray(captioned_sheet([wide, tall], ["wide", "tall"], tile_width=100))
    red = np.argwhere((sheet == (255, 0, 0)).all(axis=2))
    assert red.max(0).tolist() == [PAD + 24, PAD + 99] and red.min(0).tolist() == [PAD, PAD]  # 100 × 25
    blue = np.argwhere((sheet == (0, 0, 255)).all(axis=2))
    height, width = blue.max(0) - blue.min(0) + 1
    assert height == 200 and width == 2  # 2 × the tile width high at most: 1000 × 10 becomes 200 × 2, centred
    assert blue[:, 1].min() == PAD + 100 + PAD + 49


def test_many_tiles_stay_bounded():
    hundred = captioned_sheet([solid((9, 9, 9), 640, 480)] * 100, [f"{i}" for i in range(100)])
    assert hundred.size == (10 * (256 + PAD) + PAD, 10 * (192 + HEAD13 + PAD) + PAD)  # fits: tiles keep 256
    many = captioned_sheet([solid((9, 9, 9), 640, 480)] * 400, [f"{i}" for i in range(400)])
    tw = (SHEET_MAX_SIDE - PAD) // 20 - PAD  # 20 columns: the widest tile that fits across
    assert tw == 198 and many.size == (20 * (tw + PAD) + PAD, 20 * (round(tw * 0.75) + HEAD13 + PAD) + PAD)
    a, th = np.asarray(many), round(tw * 0.75)
    for r in range(20):  # the tiles of the first column, drawn whole at the shrunk size, one per cell
        y = PAD + r * (th + HEAD13 + PAD)
        assert (a[y : y + th, PAD : PAD + tw] == 9).all() and not (a[y + th, PAD : PAD + tw] == 9).any()
    tall = captioned_sheet([solid((9, 9, 9), 20, 1000)] * 300, [f"{i}" for i in range(300)])
    assert max(tall.size) <= SHEET_MAX_SIDE  # 18 × 17 cells of tiles twice as high as wide
    assert tall.height > 0.9 * SHEET_MAX_SIDE  # shrunk to fit the height, not further


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 tiles but 1 captions"):
        captioned_sheet([solid((0, 0, 0))] * 2, ["a"])
    with pytest.raises(ValueError, match="at least one tile"):
        captioned_sheet([], [])


def moving_square_frames(n: int = 12) -> tuple[list[Image.Image], list[np.ndarray], list[float]]:
    """Frames of a bright square moving right, a map that follows it (a Gaussian on its centre) and its x."""
    h, w = 90, 160
    frames, maps, xs = [], [], []
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        a = np.full((h, w, 3), 40, np.uint8)
        a[:, :, 2] = 90
        x0 = 8 + 11 * i
        a[30:50, x0 : x0 + 20] = 230
        cx = x0 + 9.5
        frames.append(Image.fromarray(a))
        maps.append(np.exp(-((xx - cx) ** 2 + (yy - 39.5) ** 2) / (2 * 8.0**2)).astype(np.float32))
        xs.append(cx)
    return frames, maps, xs


def test_a_contact_sheet_of_overlaid_frames_follows_the_square(tmp_path):
    frames, maps, xs = moving_square_frames()
    tiles = [render.overlay(f, m, "jet", 0.6) for f, m in zip(frames, maps, strict=True)]
    captions = [f"285 Egyptian cat · {i / 8:.2f} s" for i in range(len(tiles))]
    sheet = captioned_sheet(tiles, captions, title="clip.mp4 · gradcam · r3d_18", colormap="jet", tile_width=240)
    sheet.save(tmp_path / "contact.png")
    a = np.asarray(sheet).astype(int)
    cols, th = 4, 135  # 12 tiles: 4 columns; 160 × 90 scaled to 240 × 135
    for k, cx in enumerate(xs):
        x, y = PAD + (k % cols) * (240 + PAD), TOP + PAD + (k // cols) * (th + HEAD13 + PAD)
        tile = a[y : y + th, x : x + 240]
        red = (tile[:, :, 0] > 180) & (tile[:, :, 1] < 120) & (tile[:, :, 2] < 120)  # jet's top: the map's peak
        assert red.sum() > 20, k
        assert abs(np.argwhere(red)[:, 1].mean() - (cx + 0.5) * 1.5 + 0.5) < 4, k  # where the square is, scaled
        assert not white(a[y + th : y + th + HEAD13, x : x + 240])  # its caption
