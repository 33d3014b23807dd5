"""End-to-end CLI runs through typer's CliRunner on sample_images/ with the bundled offline model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from camcli.cli import app

from .conftest import SAMPLES

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    res = invoke("gradcam", str(SAMPLES), "--out", str(out), "--save-raw")
    return res, out


def test_sample_images_end_to_end(sample_run):
    res, out = sample_run
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert "chelsea.png.gradcam.285-Egyptian_cat.png" in names
    assert "coffee.png.gradcam.967-espresso.png" in names
    assert len([n for n in names if n.endswith(".png")]) == 3 and len([n for n in names if n.endswith(".npy")]) == 3
    recs = _manifest(out)
    assert len(recs) == 3 and {r["status"] for r in recs} == {"ok"}
    cat = next(r for r in recs if r["input"].endswith("chelsea.png"))
    assert cat["class_index"] == 285 and cat["class_name"] == "Egyptian cat" and cat["probability"] > 0.5
    assert cat["model"] == "efficientnet_lite0" and cat["layer"] == "_head_act" and cat["method"] == "gradcam"
    assert cat["top_k"][0]["index"] == 285 and len(cat["top_k"]) == 5
    # overlay has the original picture's size
    assert Image.open(cat["outputs"]["overlay"]).size == Image.open(SAMPLES / "chelsea.png").size


def test_cat_map_peaks_on_the_cat(sample_run):
    _, out = sample_run
    cam = np.load(out / "chelsea.png.gradcam.285-Egyptian_cat.npy")
    h, w = cam.shape
    assert (h, w) == (300, 451) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    # chelsea's face fills the middle of the frame; the left and right strips are background
    y, x = np.unravel_index(np.argmax(cam), cam.shape)
    assert w * 0.2 < x < w * 0.8 and h * 0.2 < y < h * 0.9
    assert cam[:, int(w * 0.3) : int(w * 0.7)].mean() > 2 * cam[:, : int(w * 0.1)].mean()


def test_top_k_target_and_json(tmp_path):
    out = tmp_path / "o"
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), "--top-k", "2", "--json", "-q")
    assert res.exit_code == 0
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["class_index"] for r in recs] == [285, recs[1]["class_index"]] and len(recs) == 2
    assert all(Path(r["outputs"]["overlay"]).is_file() for r in recs)
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), "--target", "tabby cat", "-q")
    assert res.exit_code == 0
    assert (out / "chelsea.png.gradcam.281-tabby.png").is_file()


def test_folder_with_bad_files_exit_1_and_good_outputs(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(SAMPLES / "coffee.png", src / "sub" / "a.png")
    Image.open(SAMPLES / "coffee.png").convert("RGB").save(src / "a.jpg")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (src / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    res = invoke("gradcam", str(src), "--out", str(out), "--colormap", "viridis", "--alpha", "0.3")
    assert res.exit_code == 1
    assert "broken.jpg" in res.stderr and "empty.png" in res.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    tag = "gradcam,colormap=viridis,alpha=0.3"  # settings that differ from the defaults are in the names
    assert written == [f"a.jpg.{tag}.967-espresso.png", f"sub/a.png.{tag}.967-espresso.png"]
    recs = _manifest(out)
    assert sorted(r["status"] for r in recs) == ["error", "error", "ok", "ok"]
    assert sorted(p.name for p in src.rglob("*")) == ["a.jpg", "a.png", "broken.jpg", "empty.png", "sub"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "_head_actt"], "closest: _head_act"),
        (["--layer", "_fc"], "no spatial output"),
        (["--model", "resnet5O"], "unknown model"),
        (["--model", "resnet18"], "CAMCLI_OFFLINE"),
        (["--target", "not a class"], "no class named"),
        (["--colormap", "jett"], "unknown colormap"),
        (["--device", "cuda:7"], "cuda"),
        (["--alpha", "1.5"], "alpha"),
    ],
)
def test_usage_errors_are_one_line_exit_2(tmp_path, args, message):
    out = tmp_path / "o"
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output
    assert not list(out.rglob("*.png")) if out.exists() else True


def test_missing_input_is_usage_error(tmp_path):
    res = invoke("gradcam", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_torchvision_model_random_weights(tmp_path):
    out = tmp_path / "o"
    res = invoke(
        "gradcam",
        str(SAMPLES / "coffee.png"),
        "--model",
        "resnet18",
        "--weights",
        "none",
        "--layer",
        "layer3",
        "--out",
        str(out),
        "-q",
    )
    assert res.exit_code == 0, res.output
    rec = _manifest(out)[0]
    assert rec["layer"] == "layer3" and rec["model"] == "resnet18" and rec["class_name"].startswith("")


def test_layers_command(tmp_path):
    res = invoke("layers", "--model", "resnet18", "--json")
    assert res.exit_code == 0
    recs = {r["name"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert recs["layer4"]["default"] and recs["layer4"]["shape"] == [1, 512, 7, 7]
    assert recs["fc"]["shape"] == [1, 1000] and not recs["fc"]["spatial"]
    res = invoke("layers")
    assert res.exit_code == 0 and "_head_act" in res.stdout and "1×1280×7×7" in res.stdout


def test_help_and_version_do_not_import_torch():
    code = "import sys; from camcli.cli import app; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
    r = subprocess.run([sys.executable, "-m", "camcli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("camcli ")


def test_cam_several_methods_layers_guided(tmp_path):
    out = tmp_path / "o"
    res = invoke(
        "cam",
        str(SAMPLES / "coffee.png"),
        "--model",
        "resnet18",
        "--weights",
        "none",
        "--method",
        "gradcam",
        "--method",
        "layercam",
        "--layer",
        "layer3",
        "--layer",
        "layer4",
        "--per-layer",
        "--guided",
        "--target",
        "7",
        "--out",
        str(out),
        "--save-raw",
        "--json",
        "-q",
    )
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["method"], r["layer"]) for r in recs] == [("gradcam", "layer3+layer4"), ("layercam", "layer3+layer4")]
    o = recs[0]["outputs"]
    assert set(o) == {"overlay", "raw", "per_layer", "guided_backprop", "guided_cam"}
    assert set(o["per_layer"]) == {"layer3", "layer4"}
    names = sorted(p.name for p in out.glob("*.png"))
    settings = ",model=resnet18,weights=none,layer=layer3+layer4"
    tags = ["gradcam", "layercam", "gradcam@layer3", "gradcam@layer4", "layercam@layer3", "layercam@layer4"]
    tags += ["guided-backprop", "guided-gradcam", "guided-layercam"]
    assert names == sorted(f"coffee.png.{t}{settings}.7-{rec_name(recs)}.png" for t in tags)
    fused = np.load(o["raw"])
    # random weights (unseeded): the map is normalised to [0, 1], or all zero when no channel is positive
    assert fused.shape == (400, 600) and (fused.max() == pytest.approx(1.0) or fused.max() == 0)


def rec_name(recs: list[dict]) -> str:
    from camcli.io.outputs import slug

    return slug(recs[0]["class_name"])


def test_methods_command_lists_every_method():
    res = invoke("methods", "--json")
    names = [json.loads(line)["name"] for line in res.stdout.splitlines()]
    from camcli.methods import REGISTRY

    assert names == list(REGISTRY)
    assert names[:8] == ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "scorecam", "eigencam", "cam"]
    res = invoke("methods")
    assert res.exit_code == 0 and "Selvaraju" in res.stdout


def test_smoothing_from_the_cli_changes_the_map(tmp_path):
    base = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path / "a"), "--save-raw", "-q")
    smooth = invoke(
        "gradcam",
        str(SAMPLES / "chelsea.png"),
        "--out",
        str(tmp_path / "b"),
        "--save-raw",
        "-q",
        "--smooth",
        "2",
        "--aug-smooth",
    )
    assert base.exit_code == smooth.exit_code == 0
    a = np.load(tmp_path / "a" / "chelsea.png.gradcam.285-Egyptian_cat.npy")
    b = np.load(tmp_path / "b" / "chelsea.png.gradcam,smooth=2,aug-smooth.285-Egyptian_cat.npy")
    assert a.shape == b.shape and not np.allclose(a, b)


def test_unexpected_errors_are_one_line_and_debug_shows_them(tmp_path, monkeypatch):
    from camcli.jobs import cam as camjob

    def boom(self, x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied\nsecond line")

    monkeypatch.setattr(camjob.CamJob, "compute", boom)
    res = invoke("gradcam", str(SAMPLES / "coffee.png"), "--out", str(tmp_path), "-q")
    assert res.exit_code == 2
    assert "unexpected RuntimeError: mat1 and mat2 shapes cannot be multiplied (rerun with --debug" in res.stderr
    assert "Traceback" not in res.output and "second line" not in res.stderr
    res = runner.invoke(app, ["gradcam", str(SAMPLES / "coffee.png"), "--out", str(tmp_path), "-q", "--debug"])
    assert isinstance(res.exception, RuntimeError)


def _commands(group):
    for info in group.registered_commands:
        yield info.callback
    for sub in group.registered_groups:
        yield from _commands(sub.typer_instance)


def test_options_whose_metavar_is_their_name_declare_their_flag():
    """typer 0.27 names an option after its metavar when the two match (``--DEVICE`` for ``device`` with metavar
    DEVICE), so such an option must spell its flag out: a GPU machine with typer 0.27 refused ``--device``."""
    import inspect

    from typer.models import OptionInfo

    checked = 0
    for callback in _commands(app):
        for name, p in inspect.signature(callback).parameters.items():
            infos = [a for a in getattr(p.annotation, "__metadata__", ()) if isinstance(a, OptionInfo)]
            if isinstance(p.default, OptionInfo):
                infos.append(p.default)
            for info in infos:
                checked += 1
                # with Annotated, typer keeps the first flag where a default would go
                flags = [*(info.param_decls or ()), *([info.default] if str(info.default).startswith("-") else [])]
                if info.metavar and info.metavar.lower() == name.replace("_", "-"):
                    assert flags, f"{callback.__name__}: option {name} needs an explicit flag"
    assert checked > 40
    # and what the installed typer made of them: every flag is spelled in lower case
    import typer.main

    for sub in typer.main.get_command(app).commands.values():  # type: ignore[attr-defined]
        for p in sub.params:
            assert all(o == o.lower() for o in p.opts), (sub.name, p.opts)
