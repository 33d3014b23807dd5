"""`camcli report` as a small single-page app (issue 25): an address per view (Back and Forward, a copied address),
every picture enlarged to its full size, cards with each input's first overlay, filters by method, class, status
and kind, evaluate's page (the run's table, which way is better, the plots; baselines apart from the methods),
objects told apart, and images where nothing was found. The browser tests drive the system's Chromium with
Playwright and skip without it, as tests/test_report.py does."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from camcli.cli import app

from .conftest import SAMPLES
from .test_report import _chromium, needs_browser

runner = CliRunner()

# a detector of the user's own that always finds two objects of class 1 (its scores come from its random weights)
TWO_OF_A_KIND = """
import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class TwoOfAKind(nn.Module):
    def __init__(self):
        super().__init__()
        self.transform = GeneralizedRCNNTransform(64, 96, [0.0] * 3, [1.0] * 3)
        self.backbone = nn.Module()
        self.backbone.body = nn.Conv2d(3, 2, 1)

    def forward(self, images):
        batch, _ = self.transform(images)
        feats = self.backbone.body(batch.tensors)
        a = torch.sigmoid(feats[0, :, 10:30, 40:60].mean())
        b = torch.sigmoid(feats[0, :, 30:50, 5:25].mean()) * 0.9
        boxes = torch.tensor([[40.0, 10.0, 60.0, 30.0], [5.0, 30.0, 25.0, 50.0]])
        out = [{"boxes": boxes, "labels": torch.tensor([1, 1]), "scores": torch.stack([a, b])}]
        return self.transform.postprocess(out, batch.image_sizes, [tuple(i.shape[-2:]) for i in images])
"""


def _photo(path: Path, sample: str, size: tuple[int, int] = (96, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(SAMPLES / sample).convert("RGB").resize(size).save(path)
    return path


def _ok(res) -> None:
    assert res.exit_code == 0, res.output


def _data(out: Path) -> dict:
    (data_file,) = (out / "report").glob("data-*.js")
    return json.loads(data_file.read_text().removeprefix("window.CAMCLI_DATA = ").rstrip().rstrip(";"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """CAM maps (2 methods × 2 classes) of a cat and a cup, a failed input, a feature grid and an evaluate record
    of the cup (its baseline too)."""
    base = tmp_path_factory.mktemp("nav-mixed")
    cat, cup = _photo(base / "in" / "cat.png", "chelsea.png"), _photo(base / "in" / "cup.png", "coffee.png")
    (base / "in" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = base / "out"
    common = ["--out", str(out), "-q"]
    res = runner.invoke(
        app, ["cam", str(base / "in"), "--method", "gradcam", "--method", "eigencam", "--top-k", "2", *common]
    )
    assert res.exit_code == 1, res.output  # the broken input
    _ok(runner.invoke(app, ["features", str(cup), "--top", "2", *common]))
    rec = {"input": str(cup), "kind": "evaluate", "status": "ok", "class_index": 967, "class_name": "espresso"}
    with open(out / "metrics.jsonl", "w") as f:
        for method, baseline, auc in (("gradcam", False, 0.2), ("random", True, 0.4)):
            scores = {"deletion_auc": auc, "road_morf@20": -0.5}
            f.write(json.dumps({**rec, "method": method, "baseline": baseline, "probability": 0.9, "scores": scores}))
            f.write("\n")
    _ok(runner.invoke(app, ["report", str(out)]))
    assert cat.is_file()
    return out


@pytest.fixture(scope="module")
def detected(tmp_path_factory) -> Path:
    """A detector's folder: two objects of one class in each of two pictures, nothing in a third (min score)."""
    import torch

    base = tmp_path_factory.mktemp("nav-detector")
    (base / "two.py").write_text(TWO_OF_A_KIND)
    import importlib.util

    spec = importlib.util.spec_from_file_location("two_of_a_kind_for_test", base / "two.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.TwoOfAKind().state_dict(), base / "two.pt")
    out = base / "out"
    model = ["--model", str(base / "two.pt"), "--arch", f"{base}/two.py:TwoOfAKind", "--task", "detection"]
    model += ["--layer", "backbone.body", "--out", str(out), "-q"]
    found = [str(_photo(base / "in" / n, n)) for n in ("coffee.png", "chelsea.png")]
    _ok(runner.invoke(app, ["gradcam", *found, *model, "--min-score", "0"]))
    nothing = _photo(base / "in" / "astronaut.png", "astronaut.png")
    _ok(runner.invoke(app, ["gradcam", str(nothing), *model, "--min-score", "0.99"]))
    _ok(runner.invoke(app, ["report", str(out)]))
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """An evaluate-only folder: a real run with its baselines and its curves."""
    base = tmp_path_factory.mktemp("nav-evaluate")
    photos = [str(_photo(base / "in" / n, n, (64, 48))) for n in ("coffee.png", "chelsea.png")]
    args = ["evaluate", *photos, "--method", "gradcam", "--method", "eigencam", "--metric", "deletion"]
    _ok(runner.invoke(app, [*args, "--metric", "drop", "--steps", "4", "--out", str(base / "out"), "-q", "--report"]))
    return base / "out"


# ------------------------------------------------------------------------------------------------ without a browser
def test_captions_keep_their_spaces():
    """The caption "281 tabby" read "281tabby" on the pictures the report shows (--annotate, a detector's boxes, the
    panels): Pillow's default font has a space of a fifth of its size, 2 pixels at 11."""
    from camcli.render import _font, annotate, fit_caption

    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    for size in (10, 11, 13):
        font = _font(size)
        shown = fit_caption(draw, "281 tabby", font, 1000)
        assert draw.textlength(shown, font=font) - draw.textlength("281tabby", font=font) >= size / 4, size
    picture = Image.new("RGB", (451, 300), "black")
    captioned = annotate(picture, "281 tabby", "jet")
    strip = captioned.crop((0, 300, 120, captioned.height)).convert("L")
    # the widest run of blank columns inside the caption's text is the space between "281" and "tabby"
    inked = [x for x in range(strip.width) if max(strip.getpixel((x, y)) for y in range(strip.height)) > 80]
    gaps = [b - a - 1 for a, b in itertools.pairwise(inked)]
    assert max(gaps) >= 4  # 3 blank columns with the font's own space: no wider than between two letters


def test_ids_tell_inputs_apart():
    from camcli.report.entries import _ids

    # as many last parts as tell an input from the others; the same parts (a//x.png, a/x.png): numbered
    ids = _ids(["in/a/x.png", "in/b/x.png", "/abs/y.png", "z #1.png", "in/a//x.png", "c/x.png"])
    assert ids == ["in/a/x.png", "b/x.png", "y.png", "z%20%231.png", "in/a/x.png~2", "c/x.png"]


def test_the_data_of_objects_baselines_and_statuses(detected, evaluated, mixed):
    from camcli.io.thumbs import picture_name

    data = _data(detected)
    entries = {e["id"]: e for e in data["entries"]}
    assert set(entries) == {"coffee.png", "chelsea.png", "astronaut.png"}
    nothing = entries["astronaut.png"]
    assert nothing["status"] == "no_detection" and nothing["statuses"] == ["no_detection"]
    assert nothing["notes"] == ["no detection at score ≥ 0.99"] and nothing["kinds"] == ["objects"]
    maps = entries["coffee.png"]["maps"]
    assert [m["object"]["number"] for m in maps] == [1, 2] and {m["class_name"] for m in maps} == {"class_1"}
    assert maps[0]["object"]["box"] != maps[1]["object"]["box"]
    # the card shows the map of every object (the run's ….objects.png), as a thumbnail
    (combined,) = detected.glob("coffee.png.*.objects.png")
    assert entries["coffee.png"]["card"] == f"report/img/{picture_name(combined, 'thumb')}"
    data = _data(evaluated)
    assert data["methods"] == ["eigencam", "gradcam"] and data["baselines"] == ["edges", "gaussian", "random"]
    (run,) = data["evaluate"]["runs"]
    # the rows are the leaderboard: by mean rank over the scores, baselines ranked with the methods
    by_name = {r["method"]: r for r in run["rows"]}
    assert set(by_name) == {"gradcam", "eigencam", "random", "gaussian", "edges"}
    assert [r["rank"] for r in run["rows"]] == sorted(r["rank"] for r in run["rows"])
    assert [n for n, r in by_name.items() if r["baseline"]] == [
        n for n in by_name if n in ("random", "gaussian", "edges")
    ]
    assert run["keys"] == ["deletion_auc", "avg_drop", "increase"] and all(r["n"] == 2 for r in run["rows"])
    assert data["evaluate"]["scores"]["deletion_auc"]["better"] == "lower"
    assert [p["name"] for p in data["evaluate"]["plots"]] == ["curves.png", "scores.png", "leaderboard.png"]
    assert (evaluated / "index.html").is_file()
    data = _data(mixed)
    assert data["baselines"] == ["random"] and "random" not in data["methods"]
    cup = next(e for e in data["entries"] if e["id"] == "cup.png")
    assert sorted(cup["kinds"]) == ["cam", "evaluate", "features"]
    first = mixed / unquote(cup["maps"][0]["overlay"])
    assert cup["card"] == f"report/img/{picture_name(first, 'thumb')}" and cup["thumb"] != cup["card"]


def test_what_a_record_says_of_an_input_with_nothing_drawn(tmp_path):
    """Each status of an input done with nothing to draw is its own, with the reason its record gives."""
    det = {"kind": "detection", "model": "m", "method": "gradcam"}
    seg = {"kind": "segmentation", "model": "s", "method": "gradcam"}
    overlay = _photo(tmp_path / "s.png.gradcam.obj01-8-cat.png", "chelsea.png")
    records = [
        {
            **det,
            "input": "a.png",
            "status": "no_match",
            "settings": {"box": "1,2,3,4", "iou": 0.5, "min_score": 0.3},
            "target": {"label": None, "label_name": None, "iou": 0.25},
        },
        {
            **det,
            "input": "b.png",
            "status": "no_match",
            "settings": {"box": "1,2,3,4", "min_score": 0.3},
            "target": {"label": 3, "label_name": "dog"},
        },
        {
            **seg,
            "input": "c.png",
            "status": "empty_mask",
            "settings": {"region": "0,0,5,5"},
            "target": {"label": 8, "label_name": "cat", "mask_pixels": 0},
        },
        {**seg, "input": "d.png", "status": "empty_mask", "settings": {}, "target": {"label": None}},
        {
            "kind": "cam",
            "method": "gradcam",
            "input": "e.png",
            "status": "no_label",
            "threshold": 0.5,
            "top_k": [{"index": 281, "name": "tabby", "probability": 0.25}],
        },
        {
            **seg,
            "input": "s.png",
            "status": "ok",
            "target": {"label": 8, "label_name": "cat", "mask_pixels": 40},
            "outputs": {"overlay": str(overlay)},
        },
        {**seg, "input": "s.png", "status": "empty_mask", "target": {"label": 5, "label_name": "bottle"}},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    _ok(runner.invoke(app, ["report", str(tmp_path)]))
    entries = {e["id"]: e for e in _data(tmp_path)["entries"]}
    said = {k: (e["status"], e["notes"]) for k, e in entries.items()}
    assert said == {
        "a.png": ("no_match", ["no detection matched --box 1,2,3,4 (best IoU 0.25 < 0.5)"]),
        "b.png": ("no_match", ["no detection of dog matched --box 1,2,3,4 at score ≥ 0.3"]),
        "c.png": ("empty_mask", ["class cat has no pixels in --region"]),
        "d.png": ("empty_mask", ["no class found in the picture (background only)"]),
        "e.png": ("no_label", ["no label at or above 0.5"]),
        "s.png": ("ok", ["class bottle has no pixels in the picture"]),
    }
    assert entries["s.png"]["statuses"] == ["empty_mask", "ok"] and entries["e.png"]["top"][0]["name"] == "tabby"
    assert entries["s.png"]["maps"][0]["object"] == {"number": 1, "box": None, "pixels": 40}


# ------------------------------------------------------------------------------------------------ in a browser
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A page of one report: what it logged as an error, and every request that left the report's folder."""

    def __init__(self, browser, out: Path) -> None:
        self.root = out.resolve()
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", self._watch)

    def _watch(self, request) -> None:
        url = urlparse(request.url)
        if url.scheme != "data" and (url.scheme != "file" or not Path(unquote(url.path)).is_relative_to(self.root)):
            self.outside.append(request.url)

    def open(self, hash_: str = "") -> None:
        self.page.goto((self.root / "index.html").as_uri() + hash_)

    def hash(self) -> str:
        return self.page.evaluate("location.hash")

    def done(self) -> None:
        self.page.close()
        assert not self.errors, self.errors
        assert not self.outside, self.outside


def _cards(page) -> list[str]:
    return page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.input.split('/').pop())")


@needs_browser
def test_addresses_back_forward_and_keys(browser, mixed, tmp_path):
    p = Page(browser, mixed)
    page = p.page
    p.open()
    assert sorted(_cards(page)) == ["broken.jpg", "cat.png", "cup.png"]
    page.screenshot(path=str(tmp_path / "grid.png"))
    page.locator(".card", has_text="cat.png").click()
    assert p.hash() == "#/image/cat.png" and "cat.png" in page.inner_text("#detail-title")
    page.go_back()
    page.wait_for_function("!document.getElementById('overview').hidden")
    assert p.hash() == "" and page.locator("#detail").is_hidden()
    page.go_forward()
    page.wait_for_function("!document.getElementById('detail').hidden")
    assert "cat.png" in page.inner_text("#detail-title")
    page.keyboard.press("ArrowRight")  # the next image replaces this one in the history
    assert p.hash() == "#/image/cup.png" and "cup.png" in page.inner_text("#detail-title")
    page.keyboard.press("Escape")
    assert p.hash() == "#/" and page.locator("#overview").is_visible()
    page.go_back()
    page.wait_for_function("!document.getElementById('detail').hidden")
    assert "cup.png" in page.inner_text("#detail-title")
    # the filters are in the address too, and a copied address opens the same view with them
    page.keyboard.press("Escape")
    page.select_option("#method", "eigencam")
    assert "method=eigencam" in p.hash() and sorted(_cards(page)) == ["cat.png", "cup.png"]
    page.locator(".card", has_text="cup.png").click()
    copied = page.url
    assert "#/image/cup.png?method=eigencam" in copied
    titles = page.eval_on_selector_all("#detail .tile:has(.stack) .title", "els => els.map(e => e.textContent)")
    assert len(titles) == 2 and all(t.startswith("eigencam · ") for t in titles)  # the maps of that method
    other = Page(browser, mixed)
    other.page.goto(copied)
    assert "cup.png" in other.page.inner_text("#detail-title")
    assert other.page.eval_on_selector("#method", "s => s.value") == "eigencam"
    assert "2 of 2" in other.page.inner_text("#detail")  # ←/→ walk the filtered images
    other.page.goto((mixed / "index.html").resolve().as_uri() + "#/?status=error")
    assert _cards(other.page) == ["broken.jpg"]
    other.page.goto((mixed / "index.html").resolve().as_uri() + "#/image/no-such-input.png")
    assert other.page.locator("#overview").is_visible()  # an address of no input of this report: the overview
    other.done()
    p.done()


@needs_browser
def test_pictures_enlarge_to_their_full_size(browser, mixed, evaluated, tmp_path):
    p = Page(browser, mixed)
    page = p.page
    p.open("#/image/cup.png")
    pictures = page.locator("#detail .zoomable")
    # the input, 2 methods × 2 classes, a feature grid
    assert pictures.count() == 6
    data = _data(mixed)
    cup = next(e for e in data["entries"] if e["id"] == "cup.png")
    wanted = [cup["view"], *(m["overlay"] for m in cup["maps"]), cup["grids"][0]["grid"]]
    for k, src in enumerate(wanted):
        pictures.nth(k).click()
        box = page.locator("#lightbox")
        assert box.is_visible()
        shown = page.locator("#lb-img")
        shown.evaluate("i => i.decode()")
        natural, width, height = shown.evaluate(
            "i => [i.naturalWidth, i.getBoundingClientRect().width, i.naturalHeight]"
        )
        with Image.open(mixed / unquote(src)) as im:
            assert shown.get_attribute("src") == src and natural == im.width and height == im.height
        assert width == natural  # at its natural size, not fitted
        if k == 1:
            page.screenshot(path=str(tmp_path / "enlarged.png"))
        page.keyboard.press("Escape")
        assert box.is_hidden() and page.locator("#detail").is_visible() and p.hash() == "#/image/cup.png"
    p.done()
    p = Page(browser, evaluated)
    p.open("#/evaluate")
    p.page.locator("#evaluate .zoomable").first.click()
    assert p.page.locator("#lb-img").get_attribute("src") == "curves.png"
    p.page.locator("#lb-close").click()
    assert p.page.locator("#lightbox").is_hidden()
    p.done()


@needs_browser
def test_cards_show_the_first_overlay_and_the_input_on_hover(browser, mixed):
    data = {e["id"]: e for e in _data(mixed)["entries"]}
    p = Page(browser, mixed)
    page = p.page
    p.open()
    cat = page.locator(".card", has_text="cat.png")
    assert cat.locator("img.main").get_attribute("src") == data["cat.png"]["card"]
    alt = cat.locator("img.alt")
    assert alt.get_attribute("src") == data["cat.png"]["thumb"]
    assert alt.evaluate("i => getComputedStyle(i).opacity") == "0"
    cat.hover()
    page.wait_for_function("document.querySelector('.card:hover img.alt') !== null")
    page.wait_for_timeout(300)  # the fade
    assert alt.evaluate("i => getComputedStyle(i).opacity") == "1"
    page.select_option("#show", "inputs")
    assert "show=inputs" in p.hash()
    assert (
        page.locator(".card", has_text="cat.png").locator("img.main").get_attribute("src") == data["cat.png"]["thumb"]
    )
    # the overlay thumbnail is the overlay's picture: it differs from the input's
    with Image.open(mixed / data["cat.png"]["card"]) as a, Image.open(mixed / data["cat.png"]["thumb"]) as b:
        assert a.size == b.size and a.tobytes() != b.tobytes()
    p.done()


@needs_browser
def test_every_filter(browser, mixed, detected, evaluated):
    p = Page(browser, mixed)
    page = p.page
    p.open()
    methods = page.eval_on_selector_all("#method option", "els => els.map(e => e.value)")
    assert methods == ["", "eigencam", "gradcam"]  # the baseline (random) is not a method
    for key, value, cards in (
        ("status", "error", ["broken.jpg"]),
        ("status", "ok", ["cat.png", "cup.png"]),
        ("kind", "features", ["cup.png"]),
        ("kind", "evaluate", ["cup.png"]),
        ("kind", "cam", ["broken.jpg", "cat.png", "cup.png"]),
        ("cls", "espresso", ["cup.png"]),
        ("method", "gradcam", ["cat.png", "cup.png"]),
    ):
        page.select_option(f"#{key}", value)
        assert sorted(_cards(page)) == cards, (key, value)
        assert f"{key}={value}" in p.hash()
        page.select_option(f"#{key}", "")
    page.fill("#q", "cup")
    assert _cards(page) == ["cup.png"] and "q=cup" in p.hash()
    p.done()
    p = Page(browser, detected)
    p.open()
    statuses = p.page.eval_on_selector_all("#status option", "els => els.map(e => e.value)")
    assert statuses == ["", "ok", "no_detection", "error"]
    p.page.select_option("#status", "no_detection")
    assert _cards(p.page) == ["astronaut.png"]
    p.page.select_option("#status", "")
    p.page.select_option("#kind", "objects")
    assert len(_cards(p.page)) == 3
    p.done()
    p = Page(browser, evaluated)
    p.open()
    classes = p.page.eval_on_selector_all("#cls option", "els => els.map(e => e.value)")
    measured = {e["id"]: {m["class_name"] for m in e["metrics"]} for e in _data(evaluated)["entries"]}
    assert classes == ["", *sorted(set().union(*measured.values()))]
    p.page.select_option("#cls", classes[1])
    assert sorted(_cards(p.page)) == sorted(i for i, names in measured.items() if classes[1] in names)
    p.done()


@needs_browser
def test_an_evaluate_only_folder(browser, evaluated, tmp_path):
    data = _data(evaluated)
    p = Page(browser, evaluated)
    page = p.page
    p.open()
    for e in data["entries"]:  # the class and probability of the records
        first = e["metrics"][0]
        text = page.locator(".card", has_text=Path(e["input"]).name).inner_text()
        assert f"{first['class_name']} · {first['probability']:.3f}" in text
    page.locator("#to-evaluate").click()
    assert p.hash() == "#/evaluate"
    heads = page.eval_on_selector_all("#evaluate table.summary th", "els => els.map(e => e.textContent)")
    assert heads == ["map", "n", "deletion AUC ↓", "avg drop ↓", "increase ↑", "rank ↓"]
    rows = page.eval_on_selector_all("#evaluate table.summary tr", "els => els.map(e => e.innerText)")
    assert sorted(r.split("\t")[0] for r in rows[1:]) == [
        "edges (baseline)",
        "eigencam",
        "gaussian (baseline)",
        "gradcam",
        "random (baseline)",
    ]
    ranked = [float(r.split("\t")[-1]) for r in rows[1:]]  # the leaderboard: by mean rank
    assert ranked == sorted(ranked) and 1 <= ranked[0] <= ranked[-1] <= 5
    assert re.search(r"\d\.\d{3} ± \d\.\d{3}", rows[1])
    assert page.locator("#evaluate td.best").count() >= 1
    legend = page.inner_text("#evaluate .legend")
    assert "lower is better" in legend and "higher is better" in legend
    width = page.locator("#evaluate img").first.evaluate("i => i.decode().then(() => i.naturalWidth)")
    assert width > 100
    page.screenshot(path=str(tmp_path / "evaluate.png"), full_page=True)
    page.go_back()
    page.wait_for_function("!document.getElementById('overview').hidden")
    page.locator(".card").first.click()
    detail = page.inner_text("#detail")
    assert "deletion AUC ↓" in detail and "deletion_auc" not in detail and "(baseline)" in detail
    p.done()


@needs_browser
def test_a_detector_folder(browser, detected, tmp_path):
    p = Page(browser, detected)
    page = p.page
    p.open()
    assert "2 ok, 1 with nothing found, 0 failed" in page.inner_text("header")
    nothing = page.locator(".card", has_text="astronaut.png")
    assert "status-no_detection" in nothing.get_attribute("class")
    assert "no detection at score ≥ 0.99" in nothing.inner_text()
    nothing.click()
    assert "not drawn: no detection at score ≥ 0.99" in page.inner_text("#detail")
    page.keyboard.press("ArrowRight")
    titles = page.eval_on_selector_all("#detail .tile .title", "els => els.map(e => e.textContent)")
    assert titles[0] == "input" and len(titles) == 3
    assert titles[1].startswith("gradcam · object 1 · 1 class_1 · box ") and "object 2 · 1 class_1" in titles[2]
    assert titles[1].split(" · box ")[1] != titles[2].split(" · box ")[1]  # two objects of one class, told apart
    page.screenshot(path=str(tmp_path / "detail.png"))
    p.done()


@needs_browser
def test_pages_have_addresses(browser, tmp_path):
    records = [{"input": f"p{i:03}.png", "kind": "cam", "status": "error", "error": "gone"} for i in range(130)]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    _ok(runner.invoke(app, ["report", str(tmp_path)]))
    p = Page(browser, tmp_path)
    p.open()
    assert len(_cards(p.page)) == 120 and "page 1 of 2" in p.page.inner_text("#pager")
    p.page.locator("#pager button", has_text="next").click()
    assert p.hash() == "#/?page=2" and _cards(p.page)[0] == "p120.png" and len(_cards(p.page)) == 10
    p.page.locator(".card").first.click()
    p.page.keyboard.press("ArrowLeft")  # the list is every page's
    assert p.hash() == "#/image/p119.png"  # on page 1, where Esc leads
    p.page.go_back()
    p.page.wait_for_function("!document.getElementById('overview').hidden")
    assert p.hash() == "#/?page=2" and _cards(p.page)[0] == "p120.png"
    p.page.go_back()
    p.page.wait_for_function("document.querySelectorAll('.card').length === 120")
    p.page.go_forward()
    p.page.wait_for_function("document.querySelectorAll('.card').length === 10")
    p.page.locator(".card", has_text="p125.png").click()
    p.page.keyboard.press("Escape")
    assert p.hash() == "#/?page=2"
    p.done()
