"""`camcli report` of videos and volumes (issue 27): a video's card is its contact sheet and its page plays the overlay
video; a volume's card and page show its montage with a link to its NIfTI map; their inputs' pictures are a video's
first frame and a volume's middle axial slice; an input that cannot be read costs its own pictures only.

Checked against independent things: the first frame against the frame examples/make_media.py drew, the middle slice
against the scan's voxels put in radiological orientation by hand (nibabel's canonical RAS array), the words against
the records. The browser test drives the system's Chromium (skipped without it, as tests/test_report.py does)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from camcli.cli import app

from .conftest import ROOT, SAMPLES, make_media_files
from .test_report import _chromium, needs_browser

nib = pytest.importorskip("nibabel")
pytest.importorskip("av")

runner = CliRunner()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A picture and a video explained by the bundled picture model, a scan by the example 3-D net, all in one
    folder; the last run (``--report``) builds the report."""
    folder = make_media_files(tmp_path_factory.mktemp("media"))
    (folder / "cat.png").write_bytes((SAMPLES / "chelsea.png").read_bytes())
    out = folder / "out"
    res = runner.invoke(app, ["gradcam", str(folder / "clip.mp4"), str(folder / "cat.png"), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    args = ["gradcam", str(folder / "scan.nii.gz"), "--model", str(folder / "net3d.pt"), "--input-size", "32,40,36"]
    args += ["--arch", f"{ROOT / 'examples' / 'net3d.py'}:Net3d", "--save-raw", "--report", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and "left out" not in res.output, res.output
    return out


def _data(out: Path) -> dict:
    (data,) = (out / "report").glob("data-*.js")
    text = data.read_text()
    return json.loads(text[text.index("=") + 1 :].strip().rstrip(";"))


def _records(out: Path) -> dict[str, dict]:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return {Path(r["input"]).name: r for r in map(json.loads, lines)}


def _entries(out: Path) -> dict[str, dict]:
    return {Path(e["input"]).name: e for e in _data(out)["entries"]}


def _grey(out: Path, link: str) -> np.ndarray:
    return np.asarray(Image.open(out / unquote(link)).convert("L"), dtype=np.float64) / 255.0


def test_a_video_shows_its_overlay_video_its_sheet_and_its_first_frame(media):
    from camcli.io.thumbs import picture_name

    entries, rec = _entries(media), _records(media)["clip.mp4"]
    e = entries["clip.mp4"]
    assert e["status"] == "ok" and e["kinds"] == ["video"] and entries["cat.png"]["kinds"] == ["cam"]
    (m,) = e["maps"]
    assert unquote(m["overlay"]) == Path(rec["outputs"]["overlay"]).name and m["overlay"].endswith(".mp4")
    assert m["map"] is None  # (a video's maps are not blended over one picture)
    media_ = m["media"]
    assert media_["kind"] == "video" and media_["playable"] is True
    sheet = Path(rec["outputs"]["sheet"])
    assert unquote(media_["sheet"]) == sheet.name
    assert media_["lines"] == [
        "24 frames of the file's 24 explained (frames 0–23, from 0.00 s to 1.92 s)",
        "the overlay video plays them at 12 frames per second: 2.00 s",
        "overlay video encoded with libx264",
    ]
    assert e["card"] == f"report/img/{picture_name(sheet, 'thumb')}"  # the contact sheet, not the .mp4
    assert e["view_note"] == "first frame" and e["thumb"] and e["view"]
    # the first frame as examples/make_media.py drew it: the cat (160 x 120) at x = 0 on a grey (40) frame
    cat = Image.open(SAMPLES / "chelsea.png").convert("L").resize((160, 120))
    drawn = np.full((120, 200), 40 / 255.0)
    drawn[:, :160] = np.asarray(cat, dtype=np.float64) / 255.0
    view = _grey(media, e["view"])
    assert view.shape == (120, 200) and np.abs(view - drawn).mean() < 0.04
    for link in (e["thumb"], e["view"], e["card"], m["overlay"], media_["sheet"]):
        assert (media / unquote(link)).is_file(), link
    # the page loads the tiles' script, and it makes the <video> element with the attributes a page needs
    html = (media / "index.html").read_text()
    assert html.index("report/media.js") < html.index("report/app.js")
    script = (media / "report" / "media.js").read_text()
    assert 'tools.el("video"' in script and all(k in script for k in ("controls", "muted", "loop", "playsinline"))


def test_a_volume_shows_its_montage_its_map_and_its_middle_slice(media):
    from camcli.io.thumbs import picture_name

    e, rec = _entries(media)["scan.nii.gz"], _records(media)["scan.nii.gz"]
    assert e["status"] == "ok" and e["kinds"] == ["volume"]
    (m,) = e["maps"]
    montage = Path(rec["outputs"]["overlay"])
    assert unquote(m["overlay"]) == montage.name and montage.name.endswith(".montage.png")
    assert e["card"] == f"report/img/{picture_name(montage, 'thumb')}"
    media_ = m["media"]
    assert unquote(media_["map"]) == Path(rec["outputs"]["map"]).name and media_["map"].endswith(".nii.gz")
    assert "3D Slicer" in media_["map_text"] and "ITK-SNAP" in media_["map_text"]
    assert media_["lines"] == [
        f"scan of 32 × 40 × 36 voxels ({rec['media']['axes']})",
        f"intensities scaled to [0, 1] for the network: {rec['media']['intensity']}",
    ]
    assert m["map"] is None  # its .npy is a volume, not a picture's map: nothing left out for it
    # the middle axial slice, by hand: the scan in RAS order, z = 18 of 36, anterior at the top and the patient's
    # right on the left (rows: y from 39 down to 0; columns: x from 31 down to 0), scaled by its 0.5/99.5 percentiles
    scan = np.asarray(nib.as_closest_canonical(nib.load(media.parent / "scan.nii.gz")).dataobj, dtype=np.float64)
    low, high = np.percentile(scan, [0.5, 99.5])
    expected = np.clip((scan[:, :, 18] - low) / (high - low), 0, 1)[::-1, ::-1].T  # (40 rows, 32 columns)
    view = _grey(media, e["view"])
    assert e["view_note"] == "middle axial slice"
    assert view.shape[0] * 32 == view.shape[1] * 40  # 1 x 1 mm pixels: the slice's shape kept
    small = np.asarray(Image.fromarray(view).resize((32, 40), Image.Resampling.BOX), dtype=np.float64)
    assert np.corrcoef(small.ravel(), expected.ravel())[0, 1] > 0.97
    row, col = np.unravel_index(int(small.argmax()), small.shape)
    assert abs(row - (39 - 26)) <= 2 and abs(col - (31 - 10)) <= 2  # the blob at voxel (10, 26, 20)


def test_the_words_of_a_sampled_video_of_clips_and_of_a_resized_volume():
    """Every 3rd frame of 24 by a video classifier whose overlay is MPEG-4 part 2; a scan resized for its network."""
    from camcli.report.media import video_part, volume_part

    media = {"frames": list(range(0, 24, 3)), "times": [i / 12 for i in range(0, 24, 3)], "fps": 4.0,
             "source_frames": 24, "clips": [[0, 15], [18, 21]], "codec": "mpeg4"}  # fmt: skip
    part = video_part(media, None)
    assert part["lines"] == [
        "8 frames of the file's 24 explained (frames 0, 3, 6, …, 21, from 0.00 s to 1.75 s)",
        "the overlay video plays them at 4 frames per second: 2.00 s",
        "explained clip by clip by the video classifier: 2 clip(s), frames 0–15, 18–21",
        "overlay video encoded with mpeg4: browsers may not play it (the contact sheet shows its frames)",
    ]
    assert part["playable"] is False and part["sheet"] is None
    for bad in ({**media, "times": [0.0]}, {**media, "fps": 0}, {**media, "clips": [[0]]}, {**media, "frames": []}):
        with pytest.raises(ValueError, match="media"):
            video_part(bad, None)
    part = volume_part(
        {"shape": [64, 64, 40], "input_size": [32, 32, 20], "intensity": "window -1000…400"}, None, "m.npy"
    )
    assert part["lines"] == [
        "scan of 64 × 64 × 40 voxels",
        "resized (trilinear) to the network's input, 32 × 32 × 20; the map resized back",
        "intensities scaled to [0, 1] for the network: window -1000…400",
    ]
    assert part["map"] is None and ".npy" in part["map_text"] and "Slicer" not in part["map_text"]


def test_an_unreadable_video_or_volume_costs_its_own_pictures_only(media, tmp_path):
    """Inputs that are not what their names say (with records whose digests match them, as after a run that
    failed later): their pictures are left out with a reason, the report is built and shows the rest."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(media, out)
    recs = _records(out)
    added = []
    for name, good in (("bad.mp4", "clip.mp4"), ("bad.nii.gz", "scan.nii.gz")):
        bad = tmp_path / name
        bad.write_bytes(b"\x00not a " + name.encode() * 100)
        added.append({**recs[good], "input": str(bad), "input_sha256": hashlib.sha256(bad.read_bytes()).hexdigest()})
    edited = {**recs["clip.mp4"], "input": "odd.mp4", "media": {"kind": "video", "frames": "all"}}
    added += [edited, {**recs["scan.nii.gz"], "input": "odd.nii.gz", "media": {"kind": "audio"}}]
    with open(out / "manifest.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in added)
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 picture(s) left out" in res.output and "bad.mp4: cannot decode video" in res.output, res.output
    assert "2 record(s) with a bad value skipped" in res.output and "media.frames is not a list" in res.output
    entries = _entries(out)
    assert set(entries) == {"bad.mp4", "bad.nii.gz", "cat.png", "clip.mp4", "scan.nii.gz"}
    for name in ("bad.mp4", "bad.nii.gz"):  # their cards still show their sheet or montage
        assert (
            entries[name]["view"] is None and entries[name]["card"] and entries[name]["thumb"] == entries[name]["card"]
        )
    for name in ("clip.mp4", "scan.nii.gz"):
        assert entries[name]["view"] == _entries(media)[name]["view"]


@needs_browser
def test_the_video_plays_and_the_volume_links_its_map_in_a_browser(media, tmp_path):
    from playwright.sync_api import sync_playwright

    from .test_report_nav import Page, _cards

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        p = Page(browser, media)
        page = p.page
        p.open()
        assert sorted(_cards(page)) == ["cat.png", "clip.mp4", "scan.nii.gz"]
        kinds = page.eval_on_selector_all("#kind option", "els => els.map(e => e.value)")
        assert kinds == ["", "cam", "video", "volume"]
        for kind, cards in (("video", ["clip.mp4"]), ("volume", ["scan.nii.gz"]), ("cam", ["cat.png"])):
            page.select_option("#kind", kind)
            assert _cards(page) == cards
        page.select_option("#kind", "")
        page.screenshot(path=str(tmp_path / "overview.png"))
        p.open("#/image/clip.mp4")
        video = page.locator("#detail video")
        assert video.count() == 1
        attrs = video.evaluate(
            "v => [v.controls, v.muted, v.loop, v.hasAttribute('playsinline'), v.getAttribute('src')]"
        )
        assert attrs[:4] == [True, True, True, True] and attrs[4].endswith(".mp4") and "/" not in attrs[4]
        if page.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.64001e\"')"):
            page.wait_for_function("document.querySelector('#detail video').readyState >= 1", timeout=15000)
            assert video.evaluate("v => [v.videoWidth, v.videoHeight, Math.round(v.duration)]") == [200, 120, 2]
        else:  # a Chromium without H.264 (Playwright's own build): the page says so, and the sheet is there
            page.wait_for_selector("#detail .media-tile p.hint:not([hidden])")
        assert "24 frames of the file's 24 explained" in page.inner_text("#detail")
        assert "input · first frame" in page.inner_text("#detail")
        page.locator("#detail img.sheet").click()  # the contact sheet at its full size
        assert page.locator("#lightbox").is_visible() and page.get_attribute("#lb-img", "src").endswith(".sheet.png")
        page.keyboard.press("Escape")
        p.open("#/image/scan.nii.gz")
        href = page.get_attribute("#detail a.file-link", "href")
        assert href.endswith(".nii.gz") and (media / unquote(href)).is_file()
        assert "scan of 32 × 40 × 36 voxels" in page.inner_text("#detail")
        page.wait_for_function("document.querySelector('#detail img.montage').naturalWidth > 0")
        page.screenshot(path=str(tmp_path / "volume.png"), full_page=True)
        p.done()
        browser.close()
