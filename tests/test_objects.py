"""Detectors and segmenters: every torchvision family built with random weights (nothing downloads), toy models
whose answer is known (the map lands in the box / region after the model's resize and padding), targets
(--box, --target, --region, --mask) and their statuses, the records and the pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from typer.testing import CliRunner

from camcli.cli import app
from camcli.engine.heads import head_inputs
from camcli.jobs.objects import cam_job
from camcli.jobs.runner import run_job
from camcli.methods import get_methods
from camcli.methods.objects import ObjectQuery, explain_detections, explain_segmentation
from camcli.models import LoadedModel, load_model
from camcli.options import CamOptions

from .conftest import SAMPLES

FAST_DETECTORS = ["fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "ssdlite320_mobilenet_v3_large"]
ALL_DETECTORS = [
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn",
]
SEGMENTERS = ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]


def random_detector(name: str) -> LoadedModel:
    """A detector with random weights that detects something: no score threshold, small inputs."""
    torch.manual_seed(0)
    loaded = load_model(name, "none")
    m = loaded.module
    if hasattr(m, "roi_heads"):
        m.roi_heads.score_thresh = 0.0
    else:
        m.score_thresh = 0.0
    if not name.startswith("ssd"):
        m.transform.min_size, m.transform.max_size = (160,), 256
    return loaded


@pytest.fixture()
def odd_picture(tmp_path) -> Path:
    """A non-square picture of odd size."""
    path = tmp_path / "odd.png"
    Image.open(SAMPLES / "astronaut.png").convert("RGB").resize((233, 151)).save(path)
    return path


def run(model: LoadedModel, picture: Path, out: Path, **options):
    job = cam_job(CamOptions(out=out, methods=["gradcam", "hirescam"], **options), model)
    (result,) = list(run_job(job, [str(picture)]))
    assert result.ok, result.error
    return job, result


def check_detector(name: str, picture: Path, out: Path) -> None:
    loaded = random_detector(name)
    job, result = run(loaded, picture, out, min_score=0.0, max_objects=2, save_raw=True)
    records = job.records(result)
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 4, records  # 2 objects × 2 methods
    for r in ok:
        assert r["kind"] == "detection" and set(r["target"]) >= {"label", "label_name", "score", "box"}
        raw = np.load(r["outputs"]["raw"])
        assert raw.shape == (151, 233) and np.isfinite(raw).all() and raw.min() >= 0 and raw.max() <= 1
        assert raw.max() > 0  # a gradient reached the levels: not a blank map
        assert Image.open(r["outputs"]["overlay"]).size == (233, 151)
        assert Path(r["outputs"]["combined"]).is_file()
    # --box fed a detected box matches that detection (IoU 1 but for the record's rounding to 0.01 px, which
    # counts on the sub-pixel boxes random weights make); a box far from everything matches nothing
    box = ",".join(f"{v:g}" for v in ok[0]["target"]["box"])
    _, again = run(loaded, picture, out / "box", min_score=0.0, box=box)
    matched = [o for o in again.written if o.status == "ok"]
    assert matched and matched[0].target["score"] == ok[0]["target"]["score"]
    assert matched[0].target["label"] == ok[0]["target"]["label"] and matched[0].target["iou"] >= 0.95
    _, far = run(loaded, picture, out / "far", min_score=0.99999, box="0,0,1,1")
    assert {o.status for o in far.written} == {"no_match"}


@pytest.mark.parametrize("name", FAST_DETECTORS)
def test_detectors_explain_each_object(name, odd_picture, tmp_path):
    check_detector(name, odd_picture, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL_DETECTORS if n not in FAST_DETECTORS])
def test_every_detector(name, odd_picture, tmp_path):
    check_detector(name, odd_picture, tmp_path)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenters_explain_each_class_and_say_when_a_class_is_absent(name, odd_picture, tmp_path):
    torch.manual_seed(0)
    loaded = load_model(name, "none")
    loaded.input_size = (96, 128)  # small, for the test's speed
    job, result = run(loaded, odd_picture, tmp_path, max_objects=21, save_raw=True)  # every class it predicts
    ok = [r for r in job.records(result) if r["status"] == "ok"]
    assert ok and all(r["target"]["mask_pixels"] > 0 for r in ok)
    raw = np.load(ok[0]["outputs"]["raw"])
    assert raw.shape == (151, 233) and np.isfinite(raw).all() and raw.min() >= 0 and raw.max() <= 1
    present = {r["target"]["label"] for r in ok}
    absent = next(c for c in range(1, 21) if c not in present)
    job, result = run(loaded, odd_picture, tmp_path / "absent", targets=[str(absent)])
    assert [r["status"] for r in job.records(result)] == ["empty_mask", "empty_mask"]  # per method, no picture
    assert not list((tmp_path / "absent").glob("*.png"))


# --------------------------------------------------------------------------------------------- toy models
class BoxDetector(nn.Module):
    """A detector whose one detection's score is the mean of a feature map inside a fixed box (in the resized
    picture's pixels), behind torchvision's own transform (resize keeping the aspect, pad to a multiple of 32)."""

    def __init__(self, box: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.transform = GeneralizedRCNNTransform(64, 96, [0.0] * 3, [1.0] * 3)
        self.backbone = nn.Module()
        self.backbone.body = nn.Conv2d(3, 2, 1)  # type: ignore[assignment]
        with torch.no_grad():
            self.backbone.body.weight.fill_(1.0)
            self.backbone.body.bias.zero_()
        self.box = box

    def forward(self, images):
        batch, _ = self.transform(images)
        feats = self.backbone.body(batch.tensors)  # stride 1: the feature map is the padded picture
        x1, y1, x2, y2 = self.box
        score = torch.sigmoid(feats[0, :, y1:y2, x1:x2].mean())
        boxes = torch.tensor([self.box], dtype=torch.float32)
        out = [{"boxes": boxes, "labels": torch.tensor([1]), "scores": score[None]}]
        return self.transform.postprocess(out, batch.image_sizes, [tuple(i.shape[-2:]) for i in images])


def test_toy_detector_map_lands_in_its_box_after_resize_and_padding():
    torch.manual_seed(0)
    model = BoxDetector((40, 10, 60, 30)).eval()  # in the resized picture (64 × 96 for a 100 × 150 one)
    picture = torch.rand(3, 100, 150)
    found = explain_detections(model, picture, ["backbone.body"], get_methods(["hirescam"]), ObjectQuery(min_score=0))
    (obj,) = found.objects
    cam = obj.maps["hirescam"]
    assert cam.shape == (100, 150)
    x1, y1, x2, y2 = (round(v) for v in obj.box)  # the box in the original picture: (62.5, 15.6, 93.8, 46.9)
    assert (x1, y1, x2, y2) == (62, 16, 94, 47)
    inside = cam[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2]
    outside = cam.clone()
    outside[max(0, y1 - 3) : y2 + 3, max(0, x1 - 3) : x2 + 3] = 0
    assert float(inside.min()) > 0.05 and float(outside.max()) == 0.0


class ChannelSegmenter(nn.Module):
    """A segmenter whose class c logit is input channel c (three classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.body = nn.Conv2d(3, 3, 1, bias=False)  # type: ignore[assignment]
        with torch.no_grad():
            self.backbone.body.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x):
        f = self.backbone.body(x)
        return {"out": F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def test_toy_segmenter_map_is_the_class_channel_inside_the_region():
    x = torch.rand(1, 3, 40, 60) + 0.1
    region = (30.0, 20.0, 60.0, 40.0)  # x1, y1, x2, y2 in the original (80 × 120) picture's pixels
    _, objects = explain_segmentation(
        ChannelSegmenter().eval(),
        x,
        ["backbone.body"],
        get_methods(["hirescam"]),
        ObjectQuery(labels={2}, region=region),
        (80, 120),
    )
    (obj,) = objects
    cam = obj.maps["hirescam"]
    # 10 × 15 of the model's 40 × 60 output; counted in the 80 × 120 picture's pixels: the region's 30 × 20
    assert obj.status == "ok" and obj.mask_pixels == 30 * 20
    outside = cam.clone()
    outside[18:42, 28:62] = 0  # the region, and the one pixel the 2× resize blurs on each side
    assert float(outside.max()) == 0.0  # nothing outside the region
    assert float(cam[22:38, 32:58].min()) > 0.0  # the class's channel inside it


def test_head_inputs_are_found_not_named():
    loaded = random_detector("retinanet_resnet50_fpn")
    levels = head_inputs(loaded.module, lambda: loaded.module([torch.zeros(3, 64, 64)]))
    assert levels[-2:] == ["backbone.fpn.extra_blocks.p6", "backbone.fpn.extra_blocks.p7"]
    assert all(n.startswith("backbone.fpn.layer_blocks.") for n in levels[:-2])


# --------------------------------------------------------------------------------------------- the CLI
def test_cli_detector_offline_and_options_that_do_not_apply(tmp_path, monkeypatch):
    import socket

    def no_network(*_a, **_k):
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    img = str(SAMPLES / "coffee.png")
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "gradcam",
            img,
            "--model",
            "ssdlite320_mobilenet_v3_large",
            "--weights",
            "none",
            "--min-score",
            "0",
            "--max-objects",
            "1",  # one object is enough to run offline (the default, 10, took 10× as long)
            "--json",
            "-o",
            str(tmp_path),
        ],
    )
    assert ok.exit_code == 0, ok.output
    rec = json.loads(ok.stdout.splitlines()[0])
    assert rec["kind"] == "detection" and rec["status"] in ("ok", "no_detection")
    for args, says in [
        (["--model", "resnet18", "--weights", "none", "--box", "1,2,3,4"], "detectors and segmenters"),
        (["--model", "fcn_resnet50", "--weights", "none", "--box", "1,2,3,4"], "for detectors"),
        (["--model", "ssdlite320_mobilenet_v3_large", "--weights", "none", "--method", "cam"], "eigencam"),
        (["--model", "ssdlite320_mobilenet_v3_large", "--weights", "none", "--box", "5,5,1,1"], "x1 < x2"),
    ]:
        res = runner.invoke(app, ["gradcam", img, *args, "-o", str(tmp_path / "x")])
        assert res.exit_code == 2 and says in res.output, res.output


def test_layers_of_a_detector_are_listed():
    res = CliRunner().invoke(app, ["layers", "--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--spatial", "--json"])
    assert res.exit_code == 0, res.output
    names = [json.loads(line)["name"] for line in res.stdout.splitlines()]
    assert "backbone.fpn.layer_blocks.0" in names


def test_detector_and_segmenter_checkpoints_are_identified_with_their_class_count(tmp_path):
    import torchvision

    from camcli.errors import CheckpointError

    torch.manual_seed(0)
    seg = torchvision.models.get_model(
        "deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=6, aux_loss=True
    )
    torch.save({"model": seg.state_dict(), "epoch": 3}, tmp_path / "seg.pth")  # a training loop's checkpoint
    loaded = load_model(str(tmp_path / "seg.pth"))
    assert (loaded.task, loaded.num_classes, loaded.input_size) == ("segmentation", 6, (520, 520))
    det = torchvision.models.get_model(
        "fasterrcnn_mobilenet_v3_large_320_fpn", weights=None, weights_backbone=None, num_classes=4
    )
    torch.save(det.state_dict(), tmp_path / "det.pt")
    # the 320 and full-size variants have the same weights (only their input size differs): both are named
    with pytest.raises(CheckpointError, match="fasterrcnn_mobilenet_v3_large_fpn") as err:
        load_model(str(tmp_path / "det.pt"))
    assert "--arch fasterrcnn_mobilenet_v3_large_320_fpn" in str(err.value)
    loaded = load_model(str(tmp_path / "det.pt"), arch="fasterrcnn_mobilenet_v3_large_320_fpn")
    assert (loaded.task, loaded.num_classes) == ("detection", 4)
    x = [torch.rand(3, 120, 160)]
    det.eval()
    with torch.no_grad():
        assert torch.equal(det(x)[0]["scores"], loaded.module(x)[0]["scores"])


def test_scorecam_rescores_each_masked_picture_by_iou_not_by_index():
    """Score-CAM on a detector: every masked run is matched to the object by IoU and label. The toy's masked
    runs list a decoy first (another label, the same box) and the object second: an index match would score
    the decoy."""

    class TwoDetections(BoxDetector):
        def forward(self, images):
            (out,) = super().forward(images)
            decoy = {k: torch.cat([v, v]) for k, v in out.items()}
            decoy["labels"] = torch.tensor([2, 1])
            decoy["scores"] = torch.cat([torch.zeros(1), out["scores"]])
            return [decoy]

    torch.manual_seed(0)
    model = TwoDetections((40, 10, 60, 30)).eval()
    picture = torch.rand(3, 100, 150)
    query = ObjectQuery(labels={1}, min_score=0.0)
    found = explain_detections(model, picture, ["backbone.body"], get_methods(["scorecam"]), query)
    (obj,) = found.objects
    assert obj.status == "ok" and obj.label == 1
    cam = obj.maps["scorecam"]
    assert cam.shape == (100, 150) and bool(torch.isfinite(cam).all()) and float(cam.max()) == 1.0
    # the scorer itself: the object's score, not the decoy's (listed first, with the same box)
    from camcli.methods.objects import DetectionScores

    laid = torch.rand(1, 3, 64, 96)  # a picture as the transform lays it out (100 × 150 → 64 × 96)
    scorer = DetectionScores(
        model, laid, "backbone.body", torch.tensor([1]), box=(40.0, 10.0, 60.0, 30.0), valid=(64, 96), labels=3
    )
    got = scorer.scores(laid)
    with torch.no_grad():
        expected = torch.stack([model([p])[0]["scores"][1] for p in laid])
    assert torch.allclose(got[:, 1], expected) and bool((got[:, 1] > 0).all()) and float(got[:, 2].abs().max()) == 0


def test_scorecam_on_a_segmenter_scores_the_class_over_its_mask():
    x = torch.rand(1, 3, 40, 60) + 0.1
    _, objects = explain_segmentation(
        ChannelSegmenter().eval(),
        x,
        ["backbone.body"],
        get_methods(["scorecam", "hirescam"]),
        ObjectQuery(labels={2}, region=(30.0, 20.0, 60.0, 40.0)),
        (80, 120),
    )
    (obj,) = objects
    cam = obj.maps["scorecam"]
    assert cam.shape == (80, 120) and bool(torch.isfinite(cam).all()) and float(cam.max()) == 1.0


def test_box_and_region_are_in_the_pixels_of_the_picture_drawn(odd_picture, tmp_path):
    """With --max-size the picture drawn on is smaller than the decode the model saw: --box, --region and the
    records' boxes are all in the drawn picture's pixels (a box from a record matches itself)."""
    loaded = random_detector("fasterrcnn_mobilenet_v3_large_320_fpn")
    job, result = run(loaded, odd_picture, tmp_path, min_score=0.0, max_objects=1, max_size=100)
    first = next(o for o in result.written if o.status == "ok")
    box = ",".join(f"{v:g}" for v in first.target["box"])
    _, again = run(loaded, odd_picture, tmp_path / "again", min_score=0.0, max_size=100, box=box)
    matched = next(o.target for o in again.written if o.status == "ok")
    assert matched["score"] == first.target["score"] and matched["iou"] >= 0.95  # boxes are recorded to 0.01 px
    torch.manual_seed(0)
    seg = load_model("lraspp_mobilenet_v3_large", "none")
    seg.input_size = (96, 128)
    job, result = run(seg, odd_picture, tmp_path / "seg", targets=["1"], region="116,0,233,151")
    (rec, _) = job.records(result)
    # the right half of the 233 × 151 picture, counted in the picture's pixels (not the model's 96 × 128 output)
    assert rec["target"]["mask_pixels"] == pytest.approx(233 * 151 / 2, rel=0.02)
    _, nothing = run(seg, odd_picture, tmp_path / "none", region="0,0,1,1", mask=None, targets=[])
    assert {o.status for o in nothing.written} <= {"ok", "empty_mask"} and nothing.written


TOY_FILE = """
import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class BoxDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.transform = GeneralizedRCNNTransform(64, 96, [0.0] * 3, [1.0] * 3)
        self.backbone = nn.Module()
        self.backbone.body = nn.Conv2d(3, 2, 1)

    def forward(self, images):
        batch, _ = self.transform(images)
        feats = self.backbone.body(batch.tensors)
        score = torch.sigmoid(feats[0, :, 10:30, 40:60].mean())
        out = [{"boxes": torch.tensor([[40.0, 10.0, 60.0, 30.0]]), "labels": torch.tensor([1]), "scores": score[None]}]
        return self.transform.postprocess(out, batch.image_sizes, [tuple(i.shape[-2:]) for i in images])
"""


def test_task_makes_a_detector_class_of_your_own_explainable(tmp_path):
    (tmp_path / "toy.py").write_text(TOY_FILE)
    import importlib.util

    spec = importlib.util.spec_from_file_location("toy_for_test", tmp_path / "toy.py")
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    torch.save(toy.BoxDetector().state_dict(), tmp_path / "toy.pt")
    args = [
        "gradcam",
        str(SAMPLES / "coffee.png"),
        "--model",
        str(tmp_path / "toy.pt"),
        "--arch",
        f"{tmp_path}/toy.py:BoxDetector",
        "--task",
        "detection",
        "--method",
        "hirescam",
        "--layer",
        "backbone.body",
        "--min-score",
        "0",
        "--json",
        "-o",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout.splitlines()[0])
    assert rec["kind"] == "detection" and rec["status"] == "ok" and Path(rec["outputs"]["overlay"]).is_file()
    bad = CliRunner().invoke(app, [*args[:-2], "--task", "detektion", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--task" in bad.output


def test_every_gradient_method_and_eigencam_on_a_detector(odd_picture, tmp_path):
    loaded = random_detector("fasterrcnn_mobilenet_v3_large_320_fpn")
    methods = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam"]
    options = CamOptions(out=tmp_path, methods=methods, min_score=0.0, max_objects=1, save_raw=True, panel=True)
    (result,) = list(run_job(cam_job(options, loaded), [str(odd_picture)]))
    assert result.ok, result.error
    assert sorted(o.method for o in result.written) == sorted(methods)
    (panel,) = {o.panel for o in result.written}
    assert panel and Image.open(panel).size[0] > 233 * 2  # the input and a tile per method
    for o in result.written:
        raw = np.load(o.raw)
        assert o.status == "ok" and raw.shape == (151, 233) and np.isfinite(raw).all() and raw.max() == 1.0


def test_an_image_with_nothing_to_draw_is_done_for_skip_existing(odd_picture, tmp_path):
    """No detection: no picture, an answer file (named with the settings) and a record; a rerun with
    --skip-existing skips it, a rerun with other settings does not."""
    loaded = random_detector("fasterrcnn_mobilenet_v3_large_320_fpn")
    job, result = run(loaded, odd_picture, tmp_path / "out", min_score=1.0)
    (rec, _) = job.records(result)
    assert rec["status"] == "no_detection" and Path(rec["outputs"]["answer"]).is_file()
    assert not list((tmp_path / "out").glob("*.png"))
    _, again = run(loaded, odd_picture, tmp_path / "out", min_score=1.0, skip_existing=True)
    assert again.skipped
    _, other = run(loaded, odd_picture, tmp_path / "out", min_score=0.0, max_objects=1, skip_existing=True)
    assert not other.skipped and any(o.status == "ok" for o in other.written)
