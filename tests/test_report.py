"""`camcli report`: the static HTML report, tested in a real browser (the system's Chromium, driven by
Playwright). Without Chromium these tests skip and say how to enable them; `.ci/run` installs it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from typer.testing import CliRunner

from camcli.cli import app

from .conftest import ROOT, SAMPLES

HOSTILE = "<img src=x onerror=alert(1)>"
runner = CliRunner()


def _chromium() -> str | None:
    for name in (os.environ.get("CAMCLI_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    return None


needs_browser = pytest.mark.skipif(
    _chromium() is None,
    reason="no Chromium: `apt-get install chromium` (or CAMCLI_CHROMIUM=/path/to/chrome) runs the browser tests",
)


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """A folder with what runs leave: overlays of 2 methods × 2 classes, a failed input, feature grids, evaluate
    records, and a class name that is an HTML attack (from --labels)."""
    base = tmp_path_factory.mktemp("report")
    src = base / "in"
    src.mkdir()
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        shutil.copy(SAMPLES / name, src / name)
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    names = (ROOT / "src/camcli/models/imagenet_classes.txt").read_text().splitlines()
    names[285] = HOSTILE  # chelsea's class
    labels = base / "labels.txt"
    labels.write_text("\n".join(names) + "\n")
    o = base / "out"
    common = ["--labels", str(labels), "--out", str(o), "-q"]
    res = runner.invoke(
        app, ["cam", str(src), "--method", "gradcam", "--method", "eigencam", "--top-k", "2", "--save-raw", *common]
    )
    assert res.exit_code == 1  # the broken input
    res = runner.invoke(app, ["features", str(src / "coffee.png"), "--top", "4", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(src / "coffee.png"), "--metric", "drop", "--no-baselines", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(o)])
    assert res.exit_code == 0, res.output
    assert "report:" in res.stderr and "4 input(s), 1 failed" in res.stderr
    return o


def test_report_files_and_escaping(out):
    """Every path is relative to OUT; the data file cannot end its script element; jinja2 escapes the page."""
    html = (out / "index.html").read_text()
    (data_file,) = list((out / "report").glob("data-*.js"))
    assert f"report/{data_file.name}" in html
    text = data_file.read_text()
    assert "<" not in text and ">" not in text  # \u003c… inside the JSON
    data = json.loads(text.removeprefix("window.CAMCLI_DATA = ").rstrip().rstrip(";"))
    entries = {Path(e["input"]).name: e for e in data["entries"]}
    assert set(entries) == {"chelsea.png", "coffee.png", "astronaut.png", "broken.jpg"}
    assert entries["broken.jpg"]["status"] == "error" and "broken.jpg" in entries["broken.jpg"]["error"]
    assert len(entries["chelsea.png"]["maps"]) == 4 and entries["chelsea.png"]["top"][0]["name"] == HOSTILE
    assert entries["coffee.png"]["grids"] and entries["coffee.png"]["metrics"]
    # with --save-raw the page gets each map alone (colours, opacity = the map's value) to blend over the input
    for m in entries["chelsea.png"]["maps"]:
        assert m["map"].startswith("report/img/") and m["map"].endswith(".png")
    for e in data["entries"]:
        for rel in [e["thumb"], e["view"], *(m["overlay"] for m in e["maps"]), *(g["grid"] for g in e["grids"])]:
            if rel is not None:
                assert not rel.startswith("/") and (out / unquote(rel)).is_file(), rel


def test_rebuild_keeps_pictures_and_replaces_the_data(out):
    before = {p.name for p in (out / "report" / "img").iterdir()}
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0
    assert {p.name for p in (out / "report" / "img").iterdir()} == before
    assert len(list((out / "report").glob("data-*.js"))) == 1


def test_report_of_a_folder_without_records_is_one_line(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no records" in res.stderr and "Traceback" not in res.output


@needs_browser
def test_the_report_in_a_browser(out, tmp_path):
    from playwright.sync_api import sync_playwright

    root = out.resolve()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        outside: list[str] = []
        dialogs: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        def watch(request):
            url = urlparse(request.url)
            if url.scheme == "data":
                return
            if url.scheme != "file" or not Path(unquote(url.path)).resolve().is_relative_to(root):
                outside.append(request.url)

        page.on("request", watch)
        page.goto((root / "index.html").as_uri())
        cards = page.locator(".card")
        assert cards.count() == 4  # every input in the records
        assert "4 input(s): 3 ok, 1 failed" in page.inner_text("header")
        # filters
        page.fill("#q", "coffee")
        assert cards.count() == 1
        page.fill("#q", "")
        page.select_option("#status", "error")
        assert cards.count() == 1 and "broken.jpg" in cards.first.inner_text()
        page.select_option("#status", "")
        page.select_option("#method", "eigencam")
        assert cards.count() == 3  # the failed input has no map
        page.select_option("#method", "")
        page.fill("#q", "onerror")  # the hostile class name is searchable text
        assert cards.count() == 1 and HOSTILE in cards.first.inner_text()
        page.fill("#q", "")
        # sort by probability: the most confident first
        page.select_option("#sort", "prob-desc")
        first = cards.first.inner_text()
        assert "coffee.png" in first  # espresso, 0.899
        page.screenshot(path=str(tmp_path / "overview.png"))
        # detail view, slider, keyboard
        cards.first.click()
        assert page.locator("#detail").is_visible() and "coffee.png" in page.inner_text("#detail-title")
        tiles = page.locator("#detail .tile")
        assert tiles.count() == 1 + 4 + 1  # input, 2 methods × 2 classes, one feature grid
        assert page.locator("#detail table.scores").count() == 1
        page.fill("#opacity", "25")
        page.dispatch_event("#opacity", "input")
        opacities = page.eval_on_selector_all("#detail img.over", "els => els.map(e => e.style.opacity)")
        assert opacities and set(opacities) == {"0.25"}
        layers = page.eval_on_selector_all("#detail img.over", "els => els.map(e => e.getAttribute('src'))")
        assert all(src.startswith("report/img/") for src in layers)  # the maps themselves, not the overlays
        page.locator("#detail-title").click()  # focus off the slider, so the arrows move between images
        page.keyboard.press("ArrowRight")
        assert "chelsea.png" in page.inner_text("#detail-title")  # 0.791 comes next
        assert HOSTILE in page.inner_text("#detail")  # shown as text
        page.screenshot(path=str(tmp_path / "detail.png"))
        page.keyboard.press("Escape")
        assert page.locator("#overview").is_visible()
        # every picture of every view loads
        srcs = set(page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src'))"))
        for i in range(4):
            page.locator(".card").nth(i).click()
            srcs |= set(page.eval_on_selector_all("#detail img", "els => els.map(e => e.getAttribute('src'))"))
            page.keyboard.press("Escape")
        widths = page.evaluate(
            """srcs => Promise.all(srcs.map(s => new Promise(ok => {
                   const i = new Image(); i.onload = () => ok(i.naturalWidth); i.onerror = () => ok(0); i.src = s;
               })))""",
            sorted(srcs),
        )
        assert len(srcs) >= 10 and all(w > 0 for w in widths), dict(zip(sorted(srcs), widths, strict=True))
        assert page.locator("img[src='x']").count() == 0 and not dialogs  # the attack stayed text
        browser.close()
    assert not errors, errors
    assert not outside, outside


def test_a_run_with_report_makes_the_pictures_itself(tmp_path):
    """`--report` writes each input's thumbnail and viewing copy (the overlays' size), and its overlay's
    thumbnail (the card's picture), during the run, so the build at the end finds them all and makes none of its
    own."""
    from PIL import Image

    from camcli.io.thumbs import picture_name

    out = tmp_path / "out"
    res = runner.invoke(app, ["gradcam", str(SAMPLES), "--max-size", "200", "--report", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    want = set()
    for name in ("astronaut.png", "chelsea.png", "coffee.png"):
        src = SAMPLES / name
        (overlay,) = out.glob(f"{name}.gradcam*.png")
        want |= {picture_name(src, "thumb"), picture_name(src, f"view{Image.open(overlay).size}")}
        want.add(picture_name(overlay, "thumb"))
    assert {p.name for p in (out / "report" / "img").iterdir()} == want
    assert (out / "index.html").is_file()


def test_report_from_another_folder_odd_names_and_edited_records(tmp_path, monkeypatch):
    """Built from another working folder, the report still finds the run's outputs (records hold paths relative
    to where the run started); a '#' or undecodable bytes in a file name and a NaN in an edited record do not
    break it."""
    from PIL import Image

    run_dir = tmp_path / "run"
    (run_dir / "in").mkdir(parents=True)
    photo = Image.open(SAMPLES / "coffee.png").convert("RGB").resize((120, 90))
    photo.save(run_dir / "in" / "a#1.png")
    photo.save(os.fsdecode(bytes(run_dir / "in") + b"/b\xff.png"))
    monkeypatch.chdir(run_dir)
    res = runner.invoke(app, ["gradcam", "in", "--out", "o", "--report", "-q"])
    assert res.exit_code == 0, res.output
    manifest = run_dir / "o" / "manifest.jsonl"
    rec = json.loads(manifest.read_text().splitlines()[0])
    manifest.write_text(manifest.read_text() + json.dumps({**rec, "probability": None, "top_k": [{"x": 1}]}) + "\n")
    edited = '{"input": "in/a#1.png", "kind": "evaluate", "status": "ok", "method": "gradcam", "scores": {"r": NaN}}'
    (run_dir / "o" / "metrics.jsonl").write_text(edited + "\n")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["report", "run/o"])
    assert res.exit_code == 0, res.output
    (data_file,) = (run_dir / "o" / "report").glob("data-*.js")
    data = json.loads(data_file.read_text().removeprefix("window.CAMCLI_DATA = ").rstrip().rstrip(";"))
    overlays = [m["overlay"] for e in data["entries"] for m in e["maps"]]
    assert len(overlays) == 2 and any("%23" in o for o in overlays)  # '#' quoted for the browser
    for o in overlays:
        assert (run_dir / "o" / unquote(o, errors="surrogateescape")).is_file()
