"""`camcli report` (and the writers of a run) on hostile or careless output folders: nothing is written or removed
through a symbolic link, no file outside OUT is copied into it unless its run read it, no picture is decoded
beyond a bound whatever size it declares, a bad record is skipped and counted, a moved folder keeps its overlays,
and names that look like URL schemes or object prototypes show in the page (issue 30)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image
from typer.testing import CliRunner

from camcli.cli import app

from .conftest import SAMPLES
from .test_report import _chromium, needs_browser

runner = CliRunner()


def _photo(path: Path, size: tuple[int, int] = (64, 48), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(SAMPLES / "chelsea.png").convert("RGB").resize(size).save(path, fmt)
    return path


def _data(out: Path) -> dict:
    (data_file,) = (out / "report").glob("data-*.js")
    return json.loads(data_file.read_text().removeprefix("window.CAMCLI_DATA = ").rstrip().rstrip(";"))


def _entries(out: Path) -> dict[str, dict]:
    return {Path(e["input"]).name: e for e in _data(out)["entries"]}


def _append(out: Path, *records: dict, name: str = "manifest.jsonl") -> None:
    with open(out / name, "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _clean(res) -> None:
    assert "Traceback" not in res.output and "unexpected" not in res.stderr, res.output


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A run's folder (absolute paths in its records, --save-raw), without the report's pictures."""
    base = tmp_path_factory.mktemp("hostile-report")
    photo = _photo(base / "in" / "cat.png")
    out = base / "out"
    res = runner.invoke(app, ["gradcam", str(photo), "--save-raw", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def out(made, tmp_path) -> Path:
    """The run's folder, put back as it was (with its input) after the test."""
    saved = tmp_path / "saved"
    shutil.copytree(made.parent, saved, symlinks=True)
    yield made
    for name in ("in", "out"):
        shutil.rmtree(made.parent / name, ignore_errors=True)
        shutil.copytree(saved / name, made.parent / name, symlinks=True)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- defect 2: links
@pytest.mark.parametrize("linked", ["report", "report/img"])
def test_the_report_refuses_a_linked_report_folder(out, tmp_path, linked):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("app.js", "style.css", "data-0123456789abcdef.js", "keep.jpg"):
        (elsewhere / name).write_text("mine")
    (out / linked).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(elsewhere, out / linked)
    before = _tree(elsewhere)
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 2, res.output
    assert f"{out / linked} is a symbolic link" in res.stderr and "remove the link" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    _clean(res)
    assert _tree(elsewhere) == before and not (elsewhere / "img").exists()
    assert not (out / "index.html").exists()


def test_files_in_the_report_that_are_links_are_replaced_never_followed(out, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = _photo(elsewhere / "secret.png", (30, 30))
    for name in ("app.js", "style.css", "data-0123456789abcdef.js"):
        (elsewhere / name).write_text("mine")
    before = _tree(elsewhere)
    (out / "report").mkdir()
    for name in ("app.js", "style.css", "data-0123456789abcdef.js"):
        os.symlink(elsewhere / name, out / "report" / name)
    os.symlink(elsewhere / "app.js", out / "index.html")
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert _tree(elsewhere) == before
    for p in (out / "report" / "app.js", out / "report" / "style.css", out / "index.html"):
        assert not p.is_symlink() and p.read_text() != "mine"
    assert not (out / "report" / "data-0123456789abcdef.js").exists()  # the old data's link is gone, not its target
    # a planted link named like the input's thumbnail is not shown: the picture is made in its place
    from camcli.io.thumbs import picture_name

    (e,) = _data(out)["entries"]
    thumb = out / e["thumb"]
    thumb.unlink()
    os.symlink(secret, thumb)
    assert thumb.name == picture_name(Path(e["input"]), "thumb")
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert not thumb.is_symlink() and Image.open(thumb).format == "JPEG"


def test_a_run_writes_nothing_through_a_linked_subfolder_of_out(tmp_path):
    _photo(tmp_path / "in" / "sub" / "a.png")
    _photo(tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "sub")
    res = runner.invoke(app, ["gradcam", str(tmp_path / "in"), "--out", str(out), "-q"])
    assert res.exit_code == 1, res.output
    _clean(res)
    assert f"{out / 'sub'} is a symbolic link inside --out" in res.stderr
    assert list(elsewhere.iterdir()) == []
    assert list(out.glob("b.png.gradcam.*.png"))  # the other input is done


def test_a_linked_manifest_or_lock_is_never_written_through(tmp_path):
    photo = _photo(tmp_path / "in" / "a.png")
    elsewhere = tmp_path / "notes.jsonl"
    elsewhere.write_text('{"input": "x", "mine": 1}\n')
    for name in ("manifest.jsonl", ".camcli.lock"):
        out = tmp_path / f"out-{name}"
        out.mkdir()
        os.symlink(elsewhere, out / name)
        res = runner.invoke(app, ["gradcam", str(photo), "--out", str(out), "-q"])
        assert res.exit_code == 2, res.output
        assert "symbolic link" in res.stderr
        _clean(res)
        assert elsewhere.read_text() == '{"input": "x", "mine": 1}\n'
    # merge-manifests neither reads the linked file into OUT nor writes through it
    out = tmp_path / "out-merge"
    out.mkdir()
    os.symlink(elsewhere, out / "manifest.jsonl")
    (out / "manifest.shard-1-of-2.jsonl").write_text('{"input": "a.png", "status": "ok"}\n')
    res = runner.invoke(app, ["merge-manifests", str(out)])
    _clean(res)
    assert elsewhere.read_text() == '{"input": "x", "mine": 1}\n'
    assert not (out / "manifest.jsonl").is_symlink() and "mine" not in (out / "manifest.jsonl").read_text()


# ----------------------------------------------------------------------- defect 3: copies of files outside OUT
def test_the_report_copies_only_inputs_its_run_read(out, tmp_path):
    """The run records each input's SHA-256; the report makes pictures only of an input whose file still has it."""
    (rec,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rec["input_sha256"]) == 64
    private = tmp_path / "private"
    secret = _photo(private / "secret.jpg", (50, 40), "JPEG")
    forged = _photo(private / "forged.png", (50, 40))
    _append(
        out,
        {"input": str(secret), "status": "error"},  # the edited record
        {**rec, "input": str(forged), "input_sha256": "0" * 64},  # a digest that does not match
        {**rec, "input": str(private / "nodigest.png"), "input_sha256": None},
    )
    _photo(private / "nodigest.png", (50, 40))
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    entries = _entries(out)
    assert entries["secret.jpg"]["thumb"] is None and entries["secret.jpg"]["view"] is None
    for name in ("forged.png", "nodigest.png"):  # their overlay (inside OUT) is still the thumbnail
        assert entries[name]["view"] is None and entries[name]["thumb"].startswith("report/img/")
    assert entries["cat.png"]["view"] and entries["cat.png"]["thumb"]  # the run's own input
    assert len(list((out / "report" / "img").glob("*.jpg"))) == 2 + 1  # the cat's two, one thumbnail of the overlay
    # once the input changes, no new copy of it is made
    shutil.rmtree(out / "report")
    _photo(Path(entries["cat.png"]["input"]), (64, 48), "JPEG")
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0 and _entries(out)["cat.png"]["view"] is None


# ---------------------------------------------------------------------------- defect 5: declared picture sizes
def _png_claiming(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [12000, 20000])
def test_a_declared_size_is_never_trusted(out, side):
    (overlay,) = out.glob("cat.png.gradcam*.png")
    overlay.write_bytes(_png_claiming(side, side))
    assert len(overlay.read_bytes()) < 100
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    _clean(res)
    (e,) = _data(out)["entries"]
    assert e["view"] is not None
    from camcli.io.thumbs import MAX_VIEW

    with Image.open(out / e["view"]) as view:
        assert max(view.size) <= MAX_VIEW and view.size[0] == view.size[1]
    # with the input gone, the overlay's thumbnail cannot be made: left out, with a reason
    shutil.rmtree(out / "report")
    Path(e["input"]).unlink()
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 picture(s) left out" in res.stderr and str(overlay) in res.stderr
    assert _data(out)["entries"][0]["thumb"] is None


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(monkeypatch, tmp_path):
    from camcli.errors import InputError
    from camcli.io import decode as decode_mod
    from camcli.io.decode import decode_bounded
    from camcli.report import pictures

    big = _photo(tmp_path / "big.jpg", (2000, 1600), "JPEG")
    png = _photo(tmp_path / "big.png", (2000, 1600))
    loaded: list[tuple[int, int]] = []
    real = decode_mod.to_rgb
    monkeypatch.setattr(decode_mod, "to_rgb", lambda im: (loaded.append(im.size), real(im))[1])
    assert decode_bounded(big, 800, 1_000_000).size == (1000, 800)  # 1/2: still 800 long, 0.8 million pixels
    assert decode_bounded(big, 800, 500_000).size == (500, 400)  # 1/4: the bound comes first
    assert loaded == [(1000, 800), (500, 400)]  # what was decoded, not only what came back
    with pytest.raises(InputError, match="over the 1,000,000 pixels"):
        decode_bounded(png, 800, 1_000_000)  # no reduced scale for a PNG: refused before it is decoded
    assert pictures.MAX_DECODE <= 64_000_000


def _gray_jpeg(width: int, height: int) -> bytes:
    """A baseline grayscale JPEG of any size in a few bytes per 8x8 block: Huffman tables with one 1-bit code
    each, so that every block (DC difference 0, end of block) is two 0 bits."""

    def seg(marker: int, body: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body

    one_code = bytes([1] + [0] * 15)
    bits = 2 * -(-width // 8) * -(-height // 8)
    data = bytes(bits // 8) + (bytes([0xFF >> (bits % 8)]) if bits % 8 else b"")
    return (
        b"\xff\xd8"
        + seg(0xDB, b"\0" + bytes([1] * 64))
        + seg(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + seg(0xC4, b"\x00" + one_code + b"\x00" + b"\x10" + one_code + b"\x00")
        + seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + data
        + b"\xff\xd9"
    )


def test_a_photo_over_pillows_limit_is_read_at_a_reduced_scale(tmp_path):
    """What a run made with --max-pixels 200000000 on a 14000x13000 photo leaves (the run itself is too slow for
    a test: its folder is written here): the report reads the overlay's size from its header and the photo at
    1/2 scale, and is built (it stopped with "unexpected DecompressionBombError")."""
    import hashlib

    photo = tmp_path / "in" / "big.jpg"
    photo.parent.mkdir()
    photo.write_bytes(_gray_jpeg(14000, 13000))
    out = tmp_path / "out"
    out.mkdir()
    overlay = out / "big.jpg.gradcam.1-x.png"
    overlay.write_bytes(_png_claiming(14000, 13000))
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    record = {"input": str(photo), "kind": "cam", "status": "ok", "method": "gradcam", "class_index": 1}
    _append(out, {**record, "class_name": "x", "outputs": {"overlay": str(overlay)}, "input_sha256": sha})
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    _clean(res)
    (e,) = _data(out)["entries"]
    with Image.open(out / e["view"]) as view, Image.open(out / e["thumb"]) as thumb:
        assert view.size == (4096, 3803) and max(thumb.size) == 240


# -------------------------------------------------------------------------------------- defect 10: bad records
BAD = {
    "probability": 10**400,
    "top_k": [{"index": 1, "name": "x", "probability": float("nan")}],
    "class_index": float("inf"),
    "scores": {"drop": float("inf")},
    "settings": {"colormap": ["jet"]},
    "outputs": ["not", "an", "object"],
}


def test_a_bad_record_is_skipped_and_counted(out):
    (rec,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    bad = []
    for k, (field, value) in enumerate(BAD.items()):
        kind = {"kind": "evaluate"} if field == "scores" else {}
        bad.append({**rec, **kind, "input": f"bad{k}.png", field: value})
    bad.append({**rec, "input": "b" * 300 + ".png", "status": "error", "error": "no such file"})
    bad.append({**rec, "input": "c.png", "top_k": [{"index": 10**400, "name": "x", "probability": 0.5}]})
    with open(out / "manifest.jsonl", "a") as f:  # json.dumps writes NaN and Infinity, as an editor might
        f.writelines(json.dumps(r) + "\n" for r in bad)
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    _clean(res)
    # NaN and Infinity are not JSON: those three lines are skipped as they are read; the other four as built
    assert res.stderr.count("not a JSON record (") == 3
    assert "4 record(s) with a bad value skipped (e.g. bad0.png: probability" in res.stderr
    names = set(_entries(out))
    assert names == {"cat.png", "b" * 300 + ".png"}


def test_a_run_with_a_long_name_in_its_list_still_builds_its_report(tmp_path):
    photo = _photo(tmp_path / "in" / "a.png")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photo}\n{tmp_path / ('x' * 300 + '.png')}\n")
    res = runner.invoke(app, ["gradcam", str(listing), "--out", str(tmp_path / "out"), "--report", "-q"])
    assert res.exit_code == 1, res.output
    _clean(res)
    assert (tmp_path / "out" / "index.html").is_file()


# -------------------------------------------------------------------------------------- defect 16: moved folder
def test_a_moved_folder_with_absolute_paths_shows_its_overlays(made, tmp_path):
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(made, moved)
    (rec,) = [json.loads(line) for line in (moved / "manifest.jsonl").read_text().splitlines()]
    assert Path(rec["outputs"]["overlay"]).is_absolute()
    # the original folder is gone (renamed away), and a file outside the moved one is never used
    gone = made.with_name("gone")
    made.rename(gone)
    try:
        res = runner.invoke(app, ["report", str(moved)])
        assert res.exit_code == 0, res.output
        (e,) = _data(moved)["entries"]
        (m,) = e["maps"]
        assert (moved / unquote(m["overlay"])).is_file() and not m["overlay"].startswith("/")
        assert m["map"] is not None  # the raw map was found as well
        # a record whose output lies outside OUT (and whose tail does not lead into it) shows nothing
        _append(moved, {**rec, "input": "other.png", "outputs": {"overlay": str(gone.parent / "in" / "cat.png")}})
        res = runner.invoke(app, ["report", str(moved)])
        assert res.exit_code == 0 and "1 overlay(s) named in the records are not in" in res.stderr
    finally:
        gone.rename(made)


# ----------------------------------------------------------------------- defects 17 and 19: the page, in a browser
@needs_browser
def test_colon_names_and_proto_scores_show_in_the_page(tmp_path):
    from playwright.sync_api import sync_playwright

    photo = _photo(tmp_path / "in" / "shot-2024T12:30.png")
    out = tmp_path / "out"
    res = runner.invoke(app, ["gradcam", str(photo), "--out", str(out), "--report", "-q"])
    assert res.exit_code == 0, res.output
    scores = {"__proto__": 0.5, "constructor": 0.25, "drop": 0.125}
    record = {"input": str(photo), "kind": "evaluate", "status": "ok", "method": "gradcam", "scores": scores}
    _append(out, record, name="metrics.jsonl")
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    (e,) = _data(out)["entries"]
    assert ":" not in e["maps"][0]["overlay"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto((out / "index.html").resolve().as_uri())
        page.locator(".card").first.click()
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all(
            "#detail img", "els => Promise.all(els.map(i => i.decode().then(() => i.naturalWidth, () => 0)))"
        )
        srcs = page.eval_on_selector_all("#detail img", "els => els.map(e => e.getAttribute('src'))")
        assert len(widths) >= 3 and all(w > 0 for w in widths), dict(zip(srcs, widths, strict=True))
        heads = page.eval_on_selector_all("#detail table.scores th", "els => els.map(e => e.textContent)")
        cells = page.eval_on_selector_all("#detail table.scores td", "els => els.map(e => e.textContent)")
        browser.close()
    assert heads == ["map", "class", "__proto__", "constructor", "drop"]
    assert cells[2:] == ["0.500", "0.250", "0.125"]
    assert not errors, errors
