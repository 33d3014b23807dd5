"""The terminal tells the whole story (issue 25): what object runs found, progress inside evaluate's images, a hub
that cannot be reached fails in seconds, -q silences third-party loaders, the resume command after an interrupt,
inspect on models as --model names them, layers that run twice, readable panel names, mask pixels in the picture,
list files read from their own folder, and the task of each listed model."""

from __future__ import annotations

import json
import re
import shlex
import socket
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.models import LoadedModel

from .conftest import SAMPLES

runner = CliRunner()


def invoke(*args: object, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def _photo(path: Path, size: tuple[int, int] = (48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(SAMPLES / "chelsea.png").convert("RGB").resize(size).save(path)
    return path


def _tiny_model(sleep: float = 0.0) -> LoadedModel:
    """A three-class conv net on 32 × 32 inputs; ``sleep`` seconds in every forward pass (a slow model)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            time.sleep(sleep)
            return self.head(self.conv(x))

    torch.manual_seed(0)
    return LoadedModel("tiny", Net().eval(), (32, 32), categories=["a", "b", "c"])


# ----------------------------------------------------------------------------------- 1. what objects were found
def test_summary_counts_images_by_what_was_found():
    """3 images: one with two objects (a record per object and method), two with none: counted per image, the
    status in the words of the option that decided it, never "3 done … 1 file"."""
    from camcli.cli.summary import Summary
    from camcli.jobs.found import found_in, summary_lines
    from camcli.jobs.results import ImageResult, ObjectOutput
    from camcli.options import CamOptions

    def result(name: str, statuses: list[str]) -> ImageResult:
        written = [ObjectOutput("detection", m, s, {}) for s in statuses for m in ("gradcam", "layercam")]
        return ImageResult(name, True, written=list(written))

    model = SimpleNamespace(task="detection", random_weights=False, name="det")
    job = SimpleNamespace(options=CamOptions(min_score=0.7), model=model, value_label=lambda: "probability")
    summary = Summary(job)  # type: ignore[arg-type]
    for r in [result("a.png", ["ok", "ok"]), result("b.png", ["no_detection"]), result("c.png", ["no_detection"])]:
        summary.add(r)
    assert found_in(summary.first[0]) == ("ok", 2)  # two objects, each with two methods' records
    assert summary_lines(job, summary.found, summary.objects) == [  # type: ignore[arg-type]
        "3 images: 1 with objects (2 in all), 2 with no detection at score ≥ 0.7"
    ]
    boxed = SimpleNamespace(options=CamOptions(box="1,2,3,4", iou=0.4), model=model)
    assert summary_lines(boxed, Counter({"no_match": 1}), 0) == [  # type: ignore[arg-type]
        "1 image: 0 with objects, 1 with no detection matching --box (IoU ≥ 0.4, score ≥ 0.5)"
    ]


def test_a_random_detector_says_why_it_finds_nothing(tmp_path):
    pictures = [_photo(tmp_path / "in" / f"p{i}.png", (64, 48)) for i in range(2)]
    res = invoke(
        "gradcam", tmp_path / "in", "--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--weights", "none",
        "--min-score", "0", "-o", tmp_path / "out",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2 images: 0 with objects, 2 with no detection at score ≥ 0" in res.stderr, res.stderr
    # its scores (about 1/91 each) are under the cut-off it applies itself before --min-score does
    assert "random weights" in res.stderr and "score_thresh 0.05" in res.stderr
    table = res.stderr[res.stderr.index("found per image") :]
    assert all(p.name in table for p in pictures) and table.count("no detection") >= 2
    assert "outputs per image" not in res.stderr


# -------------------------------------------------------------------------------- 2. evaluate's progress inside
def test_evaluate_shows_its_perturbed_inputs_as_log_lines(tmp_path, monkeypatch, capsys):
    """Not a terminal: the log lines say how far the perturbed inputs of the image in progress are."""
    from camcli.cli.params import BatchArgs
    from camcli.cli.runs import run_with_report
    from camcli.jobs.evaluate import EvaluateJob
    from camcli.options import EvalOptions

    monkeypatch.setenv("CAMCLI_LOG_INTERVAL", "0.01")
    _photo(tmp_path / "in" / "a.png")
    options = EvalOptions(
        out=tmp_path / "out", batch_size=2, device="cpu", layers=["conv"], metrics=["deletion", "insertion"],
        steps=4, baselines=False,
    )  # fmt: skip
    job = EvaluateJob(options, model=_tiny_model(sleep=0.05))
    total = sum(job.forwards_per_image().values())  # one image, one class: (4 + 1) points per curve
    assert total == 10
    run = BatchArgs(
        tmp_path / "out", 2, "cpu", None, 10**8, False, None, False, "png", 90, None, None, False, False, False
    )
    assert run_with_report(job, [str(tmp_path / "in")], 1, run, started=time.perf_counter()) == 0
    err = capsys.readouterr().err
    seen = [int(d) for d in re.findall(rf"^evaluating: \[.*perturbed inputs (\d+)/{total}$", err, re.M)]
    assert seen and seen == sorted(seen) and max(seen) < total, err  # counted up, never "done" while running
    assert any(d > 0 for d in seen), err


def test_counting_reports_each_unit_and_ends_the_step():
    from camcli.steps import advance, counting, listening

    heard: list[tuple[str, int, int]] = []
    with listening(lambda what, done, total: heard.append((what, done, total))):
        advance(5)  # nothing counted: nothing said
        with counting("perturbed inputs", 6):
            advance(2)
            advance(4)  # the last units: still "running" until the block ends
    assert heard == [("perturbed inputs", done, 6) for done in (0, 2, 5, 6)]


# ------------------------------------------------------------------------------------- 3. an unreachable hub
@pytest.fixture()
def unreachable_hub(monkeypatch, tmp_path):
    """HF_ENDPOINT at a local port nobody listens on, an empty hub cache, and the hub client's offline switch
    restored after the test (an unreachable hub keeps it on for the rest of the process)."""
    from huggingface_hub import constants

    from camcli.models import hub

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused at once
    monkeypatch.delenv("CAMCLI_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(hub, "_reached", {})
    return port


@pytest.mark.parametrize("model", ["timm:resnet18", "hf:someone/not-cached"])
def test_an_unreachable_hub_fails_in_seconds_with_one_line(unreachable_hub, model, tmp_path):
    pytest.importorskip("timm" if model.startswith("timm") else "transformers")
    started = time.monotonic()
    res = invoke("gradcam", _photo(tmp_path / "a.png"), "--model", model, "-o", tmp_path / "out")
    took = time.monotonic() - started
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert f"127.0.0.1:{unreachable_hub} did not answer" in lines[0] and "Retrying" not in res.output
    assert took < 20, took  # was about 50 s of retries (timm's import is most of what is left)


def test_the_hub_is_asked_once_and_a_listening_one_is_reachable(monkeypatch):
    from camcli.models import hub

    monkeypatch.delenv("CAMCLI_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_reached", {})
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        assert hub.offline_reason(url) is None
    calls = []
    monkeypatch.setattr(hub, "_answers", lambda *a: calls.append(a) or False)
    assert hub.offline_reason(url) is None and not calls  # the answer is kept for the process
    assert hub.offline_reason("http://127.0.0.1:9/") == "127.0.0.1:9 did not answer within 3 s"
    assert hub.offline_reason("http://127.0.0.1:9/") and len(calls) == 1
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub._address("https://huggingface.co") == ("proxy.invalid", 3128)  # through the proxy when one is set


# ------------------------------------------------------------------------------------ 4. -q and chatty loaders
def test_quiet_silences_a_chatty_hub_download(monkeypatch, tmp_path):
    """A loader that draws the hub client's download bar (as timm's download does): shown normally, not with -q."""
    timm = pytest.importorskip("timm")
    from huggingface_hub.utils import tqdm as hub_tqdm

    real = timm.create_model

    def chatty(name, pretrained=False, **kwargs):
        if pretrained:
            for _ in hub_tqdm(range(3), desc="Downloading model.safetensors", mininterval=0):
                pass
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", chatty)
    picture = _photo(tmp_path / "a.png")
    loud = invoke("gradcam", picture, "--model", "timm:resnet18", "-o", tmp_path / "loud")
    assert loud.exit_code == 0, loud.output
    assert "Downloading model.safetensors" in loud.stderr  # the bar reaches stderr when not asked to be quiet
    quiet = invoke("gradcam", picture, "--model", "timm:resnet18", "-o", tmp_path / "quiet", "-q")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "", quiet.stderr
    assert list((tmp_path / "quiet").glob("a.png.gradcam*.png"))


# ---------------------------------------------------------------------------------------- 5. the resume hint
def test_the_interrupt_line_names_the_resume_command(monkeypatch, tmp_path):
    from camcli.jobs.cam import CamJob

    picture = _photo(tmp_path / "in dir" / "a.png")
    out = tmp_path / "out dir"

    def interrupted(self, x):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(CamJob, "compute", interrupted)
        res = invoke("gradcam", picture, "--weights", "default", "-o", out, "--overwrite")
    assert res.exit_code == 130, res.output
    (line,) = [line for line in res.stderr.splitlines() if line.startswith("error: interrupted")]
    command = line.split("resume with: ", 1)[1]
    assert command == shlex.join(["camcli", "gradcam", str(picture), "--weights", "default", "-o", str(out)]) + (
        " --skip-existing"
    )
    again = runner.invoke(app, shlex.split(command)[1:])  # the line as it is: a runnable command
    assert again.exit_code == 0, again.output
    assert list(out.glob("a.png.gradcam*.png"))


# ---------------------------------------------------------------------------------------------- 6. inspect
@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> Path:
    transformers = pytest.importorskip("transformers")
    labels = {0: "cat", 1: "dog", 2: "cup"}
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=64,
        patch_size=16, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("hf") / "vit"
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


def test_inspect_takes_a_hugging_face_folder_and_its_weights_file(vit_folder):
    res = invoke("inspect", vit_folder, "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["source"].startswith("Hugging Face folder") and rec["task"] == "classifier"
    assert rec["classes"] == 3 and rec["first_classes"] == ["cat", "dog", "cup"] and rec["input_size"] == [64, 64]
    assert rec["default_layers"] and "layernorm_before" in rec["default_layers"][0]
    assert "model.safetensors" in rec["weights"] and rec["parameters"] > 0
    weights = invoke("inspect", vit_folder / "model.safetensors", "--json")
    assert weights.exit_code == 0, weights.output
    assert f"belongs to the Hugging Face folder {vit_folder}" in weights.stderr
    assert json.loads(weights.stdout)["model"] == str(vit_folder)


def test_inspect_takes_a_timm_name_without_downloading(monkeypatch):
    timm = pytest.importorskip("timm")

    def no_download(*_a, **k):
        assert not k.get("pretrained"), "inspect must not download weights"
        return real(*_a, **k)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", no_download)
    res = invoke("inspect", "timm:resnet18", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["source"] == "timm" and rec["classes"] == 1000 and rec["default_layers"] == ["layer4"]
    assert "timm/resnet18" in rec["weights"] and "Hugging Face hub" in rec["weights"]
    table = invoke("inspect", "timm:resnet18")
    assert "use it: camcli gradcam IMAGE --model timm:resnet18" in table.stderr


# ------------------------------------------------------------------------------------ 7. a layer run twice
def test_a_layer_that_runs_twice_is_refused_with_layers_that_work():
    from camcli.engine.layers import choose_layers, trace
    from camcli.errors import LayerError
    from camcli.models import load_model

    loaded = load_model("resnet18", "none")
    infos = trace(loaded.module, loaded.input_size)
    with pytest.raises(LayerError) as err:
        choose_layers(loaded.module, infos, ["layer4.0.relu"], label="resnet18")
    message = str(err.value)
    assert "runs 2 times per forward pass" in message and "layer4.0 (contains it)" in message
    named = message.split("nearest layers that run once: ", 1)[1].split(" (see:")[0]
    suggested = [n.removesuffix(" (contains it)") for n in named.split(", ")]
    assert len(suggested) == 3
    for name in suggested:  # each of them is taken
        assert choose_layers(loaded.module, infos, [name], label="resnet18")[0] == [name]
    res = invoke(
        "gradcam", SAMPLES / "coffee.png", "--model", "resnet18", "--weights", "none", "--layer", "layer4.0.relu"
    )
    assert res.exit_code == 2 and "layer4.0 (contains it)" in res.stderr and "Traceback" not in res.output


# --------------------------------------------------------------------------------------------- 8. the smaller
def test_panel_names_join_the_methods_readably_and_old_names_still_count(tmp_path):
    from camcli.jobs.cam import CamJob
    from camcli.jobs.runner import run_job
    from camcli.options import CamOptions

    picture = _photo(tmp_path / "in" / "a.png")
    model = _tiny_model()

    def run(**kw):
        job = CamJob(CamOptions(out=tmp_path / "out", methods=["gradcam", "gradcam++", "layercam"], panel=True,
                                layers=["conv"], **kw), model)  # fmt: skip
        (result,) = list(run_job(job, [str(picture)]))
        return result

    first = run()
    assert first.ok, first.error
    (panel,) = {o["outputs"]["panel"] for o in first.outputs}
    assert Path(panel).name == "a.png.panel-gradcam_gradcam++_layercam,model=tiny,layer=conv.png"
    assert run(skip_existing=True).skipped
    old = Path(panel).with_name("a.png.panel-gradcam+gradcam+++layercam,model=tiny,layer=conv.png")  # as runs did
    Path(panel).rename(old)
    assert run(skip_existing=True).skipped  # an old run's panel is its panel: not made again
    old.unlink()
    assert not run(skip_existing=True).skipped and Path(panel).is_file()  # no panel at all: made again


def test_mask_pixels_count_the_pictures_pixels():
    from camcli.methods import get_methods
    from camcli.methods.objects import ObjectQuery, explain_segmentation

    class Segmenter(nn.Module):  # the logit of class c is input channel c
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 3, 1, bias=False)
            with torch.no_grad():
                self.body.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

        def forward(self, x):
            return {"out": self.body(x)}

    x = torch.zeros(1, 3, 40, 60)
    x[0, 0] = 0.5  # background everywhere …
    x[0, 1, :10, :15] = 1.0  # … but class 1 in a 10 × 15 block of the model's 40 × 60 input
    _, (obj,) = explain_segmentation(
        Segmenter().eval(), x, ["body"], get_methods(["gradcam"]), ObjectQuery(), (80, 120)
    )
    assert obj.label == 1 and obj.status == "ok"
    assert obj.mask_pixels == 20 * 30  # the block in the 80 × 120 picture (it was 150: the model's pixels)
    assert obj.mask is not None and int(obj.mask.sum()) == obj.mask_pixels


def test_a_list_files_relative_paths_are_read_from_its_folder(tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    _photo(lists / "a.png")
    _photo(lists / "sub" / "b.png")
    _photo(tmp_path / "work" / "c.png")  # in the working folder only
    (lists / "list.txt").write_text("a.png\nsub/b.png\nc.png\n")
    monkeypatch.chdir(tmp_path / "work")
    res = invoke("gradcam", lists / "list.txt", "-o", tmp_path / "out", "--json")
    assert res.exit_code == 1, res.output
    done = sorted(json.loads(line)["input"] for line in res.stdout.splitlines() if '"ok"' in line)
    assert done == [str(lists / "a.png"), str(lists / "sub" / "b.png")]
    assert (tmp_path / "out" / "sub").is_dir()  # mirrored as written in the list
    (said,) = [line for line in res.stderr.splitlines() if "c.png" in line and line.startswith("error:")]
    assert "not in the list file's folder" in said and str(tmp_path / "work" / "c.png") in said


def test_models_lists_each_models_task():
    res = invoke("models", "--json")
    assert res.exit_code == 0, res.output
    tasks = {r["name"]: r["task"] for r in map(json.loads, res.stdout.splitlines())}
    assert tasks["resnet18"] == "classifier" and tasks["efficientnet_lite0"] == "classifier"
    assert tasks["fasterrcnn_resnet50_fpn"] == "detector" and tasks["deeplabv3_resnet50"] == "segmenter"
    table = invoke("models", "ssdlite")
    assert re.search(r"ssdlite320_mobilenet_v3_large\s+│ detector", table.stdout), table.stdout


def test_first_words_never_cut_a_word():
    from camcli.checks import first_words

    text = "An error happened while trying to locate the file on the Hub and we cannot find the requested files"
    cut = first_words(text + "\nsecond line", limit=60)
    assert cut.endswith(" …") and text.startswith(cut[:-2]) and text[len(cut) - 2] == " "
    assert first_words(ValueError()) == "ValueError" and first_words("short") == "short"
    assert np.isfinite(len(cut))
