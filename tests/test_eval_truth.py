"""`camcli evaluate --annotations`: the localisation scores of whole runs against hand-computed cases (a model
whose Grad-CAM map is a known square), the ground-truth pictures, the lines about what has no annotation, the
option errors, and the command on the sample images with the shipped COCO file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.jobs.api import evaluate_files
from camcli.models import LoadedModel
from camcli.options import EvalOptions

from .conftest import SAMPLES


class RedSquare(nn.Module):
    """``feat`` is the input's red channel (a 1×1 convolution); class a's logit is its mean, class b's minus it.
    Grad-CAM of class a at ``feat`` is therefore the red channel itself: the map is wherever the picture is red."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(3, 1, kernel_size=1, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.feat(x).mean((1, 2, 3))
        return torch.stack([m, -m], 1)


def _model() -> LoadedModel:
    return LoadedModel("red", RedSquare().eval(), (32, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), ["a", "b"])


@pytest.fixture()
def pictures(tmp_path: Path) -> Path:
    """32×32 pictures (the model's input size: nothing is resized), black with a red square at x 8…16, y 16…24:
    the map is 1 on those 64 pixels and 0 elsewhere."""
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("one.png", "two.png", "three.png"):
        pixels = np.zeros((32, 32, 3), dtype=np.uint8)
        pixels[16:24, 8:16, 0] = 255
        Image.fromarray(pixels).save(folder / name)
    return folder


def _run(folder: Path, out: Path, annotations: Path, **kw) -> dict[tuple[str, str], dict]:
    o = EvalOptions(out=out, layers=["feat"], methods=["gradcam"], annotations=str(annotations), baselines=True, **kw)
    results = list(evaluate_files([str(folder)], o, model=_model()))
    assert all(r.ok for r in results), [r.error for r in results]
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {(Path(r["input"]).name, r["method"]): r for r in recs}


def test_scores_by_hand_on_a_known_square(pictures: Path, tmp_path: Path):
    csv = tmp_path / "boxes.csv"
    csv.write_text(
        "input,class,x0,y0,x1,y1\n"
        "one.png,a,8,16,16,24\n"  # exactly the square
        "two.png,a,0,0,8,8\n"  # the top-left corner: away from it
        "three.png,a,8,16,12,24\n"  # the square's left half
    )
    metrics = ["pointing", "energy-pointing", "relevance-mass", "relevance-rank", "iou", "sparseness"]
    recs = _run(pictures, tmp_path / "out", csv, metrics=metrics, tolerance=0.0)
    one, two, three = (recs[(n, "gradcam")]["scores"] for n in ("one.png", "two.png", "three.png"))
    for key in ("pointing", "energy_pointing", "relevance_mass", "relevance_rank", "iou"):
        assert one[key] == pytest.approx(1.0, abs=1e-6), key
    # the corner box (0…8 × 0…8 on the grid) holds none of the map
    assert two["pointing"] == 0.0 and two["relevance_mass"] == 0.0 and two["iou"] == 0.0
    # half the square: half the mass, the K = 32 highest cells are all the square's 64 tied cells' first half in
    # any order, so relevance rank is what falls in the box; IoU = 32 / 64
    assert three["relevance_mass"] == pytest.approx(0.5, abs=1e-6)
    assert three["iou"] == pytest.approx(0.5, abs=1e-6)
    assert three["pointing"] == 1.0  # the first maximum in row-major order is the square's top-left cell
    # Gini of 64 ones among 1024 cells, by the formula: sum((2i − n − 1) x_i) / (n sum x), x ascending
    x = np.sort(np.r_[np.zeros(1024 - 64), np.ones(64)])
    n = x.size
    gini = ((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum())
    assert one["sparseness"] == pytest.approx(gini, abs=1e-5)
    # the baselines are measured against the same truth: the centred Gaussian puts some, not all, mass in the box
    gauss = recs[("one.png", "gaussian")]["scores"]["relevance_mass"]
    assert 0.0 < gauss < 0.5


def test_tolerance_turns_a_near_miss_into_a_hit(pictures: Path, tmp_path: Path):
    """The corner box ends at grid cell 7; the map's first maximum is at row 16, column 8: 9.06 cells away."""
    csv = tmp_path / "boxes.csv"
    csv.write_text("one.png,a,0,0,8,8\n")
    near = _run(pictures, tmp_path / "a", csv, metrics=["pointing"], tolerance=9.5)
    far = _run(pictures, tmp_path / "b", csv, metrics=["pointing"], tolerance=9.0)
    assert near[("one.png", "gradcam")]["scores"]["pointing"] == 1.0
    assert far[("one.png", "gradcam")]["scores"]["pointing"] == 0.0
    # the inputs the CSV does not name are measured, without localisation scores
    assert near[("two.png", "gradcam")]["scores"]["pointing"] is None


def test_truth_picture_draws_the_outline_and_is_recorded(pictures: Path, tmp_path: Path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("one.png,a,8,16,16,24\n")
    out = tmp_path / "out"
    recs = _run(pictures, out, csv, metrics=["pointing"])
    rec = recs[("one.png", "gradcam")]
    path = Path(rec["outputs"]["overlay"])
    assert path.name == "one.png.gradcam.truth.0-a.png" and path.is_file()
    drawn = np.asarray(Image.open(path).convert("RGB"))
    assert drawn.shape == (32, 32, 3)
    assert (drawn[23, 8:16] == 255).all()  # the box's bottom edge, white (its top is under the ring at the maximum)
    assert "outputs" not in recs[("one.png", "gaussian")]  # baselines get no picture
    assert "outputs" not in recs[("two.png", "gradcam")]  # nor inputs without annotation


def test_class_mapping_and_unmatched_classes(pictures: Path, tmp_path: Path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("one.png,red thing,8,16,16,24\ntwo.png,blue thing,8,16,16,24\n")
    mapping = tmp_path / "classes.json"
    mapping.write_text(json.dumps({"red thing": ["a"]}))
    recs = _run(pictures, tmp_path / "out", csv, metrics=["relevance-mass"], annotation_classes=str(mapping))
    assert recs[("one.png", "gradcam")]["scores"]["relevance_mass"] == pytest.approx(1.0)
    assert recs[("two.png", "gradcam")]["scores"]["relevance_mass"] is None  # blue thing is no class of the model


def test_annotated_size_that_is_not_the_pictures_fails_that_input(pictures: Path, tmp_path: Path):
    coco = {
        "images": [{"id": 1, "file_name": "one.png", "width": 640, "height": 480}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 16, 8, 8]}],
        "categories": [{"id": 1, "name": "a"}],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    o = EvalOptions(out=tmp_path / "out", layers=["feat"], annotations=str(path), metrics=["pointing"])
    results = {Path(r.input).name: r for r in evaluate_files([str(pictures)], o, model=_model())}
    assert results["two.png"].ok and not results["one.png"].ok
    assert "640×480" in results["one.png"].error and "\n" not in results["one.png"].error


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--metric", "pointing"], "--annotations"),
        (["--annotation-classes", "x.json"], "--annotations"),
        (["--annotations", "sample_images/annotations.json", "--sanity"], "--sanity"),
        (["--annotations", "sample_images/annotations.json", "--iou-threshold", "2"], "--iou-threshold"),
        (["--annotations", "no/such/file.json"], "no/such/file.json"),
    ],
)
def test_option_errors_are_one_line(args: list[str], said: str, tmp_path: Path):
    res = CliRunner().invoke(app, ["evaluate", str(SAMPLES / "chelsea.png"), *args, "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and said in lines[0] and "Traceback" not in res.output


def test_sample_images_with_the_shipped_coco_file(tmp_path: Path):
    """The README's example, on two methods and the localisation metrics only (the faithfulness ones are
    tests/test_evaluate.py's): the cat and the cup are scored, the astronaut has no ImageNet class to match."""
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        app,
        [
            "evaluate", str(SAMPLES), "--annotations", str(SAMPLES / "annotations.json"),
            "--annotation-classes", str(SAMPLES / "annotation_classes.json"),
            "--method", "gradcam", "--method", "layercam", "--metric", "pointing", "--metric", "energy-pointing",
            "--metric", "relevance-mass", "--out", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scored = {Path(r["input"]).name for r in recs if r["scores"].get("pointing") is not None}
    assert {"chelsea.png", "coffee.png"} <= scored
    assert re.search(r"no annotated object of the explained class \(e\.g\. .*astronaut", res.stderr)
    assert "energy pointing ↑" in res.stderr and "(baseline)" in res.stderr
    assert (out / "scores.png").is_file()
    cat = next(r for r in recs if r["method"] == "gradcam" and r["input"].endswith("chelsea.png"))
    assert Path(cat["outputs"]["overlay"]).is_file()


def test_random_logit_without_annotations(tmp_path: Path):
    """A map that does not depend on the class scores 1 (the baselines); Grad-CAM of another class differs."""
    out = tmp_path / "rl"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(SAMPLES / "chelsea.png"),
            "--method",
            "gradcam",
            "--metric",
            "random-logit",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    recs = {r["method"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert recs["gaussian"]["scores"]["random_logit"] == pytest.approx(1.0, abs=1e-5)
    assert recs["gradcam"]["scores"]["random_logit"] < 0.99
    assert "random logit ↓" in res.stderr
