"""The CLI as people meet it: honest progress, outputs that never clobber, help, completion, summaries, tables,
closed pipes, annotated pictures, listings (issue 16)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.cli.console import RateMeter

from .conftest import SAMPLES

runner = CliRunner()
CAMCLI = [str(Path(sys.executable).with_name("camcli"))]  # the installed entry point, as users run it


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ progress
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_ignores_the_first_batch_and_needs_a_second_of_data():
    clock = FakeClock()
    meter = RateMeter(warmup=8, window=10.0, min_span=1.0, clock=clock)
    clock.now += 5.0  # model loading: not part of any rate
    for _ in range(8):  # the first batch arrives at once
        meter.add()
    assert meter.rate() is None  # was "13810.0 img/s": 8 images over a few milliseconds
    clock.now += 0.5
    for _ in range(8):
        meter.add()
    assert meter.rate() is None  # under a second of data
    clock.now += 0.5
    for _ in range(8):
        meter.add()
    assert meter.rate() == pytest.approx(16 / 1.0)  # 16 images in the second after the first batch


def test_rate_follows_a_moving_window():
    clock = FakeClock()
    meter = RateMeter(warmup=1, window=10.0, min_span=1.0, clock=clock)
    meter.add()
    for _ in range(30):  # 30 s at 10 img/s
        clock.now += 1.0
        for _ in range(10):
            meter.add()
    assert meter.rate() == pytest.approx(10.0)
    for _ in range(30):  # then 30 s at 2 img/s: the window forgets the fast part
        clock.now += 1.0
        meter.add(2)
    assert meter.rate() == pytest.approx(2.0)
    clock.now += 20.0  # stalled: the rate falls with the time that passes
    assert meter.rate() < 2.0


def _tiny_model():
    from camcli.models import LoadedModel

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    return LoadedModel("tiny", net.eval(), (32, 32), categories=["a", "b", "c"])


def _photos(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


def test_progress_lines_never_claim_more_than_the_run_can_do(tmp_path, monkeypatch, capsys):
    """stderr is not a terminal here: plain log lines. Every batch sleeps 0.25 s, so no true rate is above
    batch / 0.25 s = 8 img/s: the summary's rate must respect that, every rate printed that plus the one batch a
    window can catch late."""
    from camcli.cli.params import BatchArgs
    from camcli.cli.runs import run_with_report
    from camcli.jobs.cam import CamJob
    from camcli.options import CamOptions

    monkeypatch.setenv("CAMCLI_LOG_INTERVAL", "0.1")
    src = _photos(tmp_path / "in", 16)
    options = CamOptions(out=tmp_path / "out", batch_size=2, device="cpu", layers=["0"])
    job = CamJob(options, model=_tiny_model())
    compute = job.compute

    def slow(x):
        time.sleep(0.25)
        return compute(x)

    job.compute = slow  # type: ignore[method-assign]
    run = BatchArgs(
        tmp_path / "out", 2, "cpu", None, 10**8, False, None, False, "png", 90, None, None, False, False, False
    )
    started = time.perf_counter()
    assert run_with_report(job, [str(src)], 16, run, started=started) == 0
    wall = time.perf_counter() - started
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("explaining: [")]
    assert len(lines) >= 5, err  # a line every 0.1 s during a ≥ 2 s run, and the last one
    rates = [float(m) for m in re.findall(r"([\d.]+) img/s", "\n".join(lines))]
    assert rates, err  # once a second of data is in, a rate is shown
    # a result can be handed on up to one batch after it was computed, so a window of at least 1 s may hold one
    # batch more than was computed in it: rate ≤ 2 / 0.25 + 2 / 1 s (and never the thousands a burst would give)
    assert max(rates) <= (2 / 0.25 + 2 / 1.0) * 1.05, rates
    assert lines[-1].split("] ")[1].startswith("16/16 images")
    summary = [line for line in err.splitlines() if " done, " in line][-1]
    seconds = float(re.search(r"in ([\d.]+)s", summary).group(1))
    assert 16 * 0.25 / 2 <= seconds <= wall + 0.05  # the summary's time is the run's wall time
    assert float(re.search(r"then ([\d.]+) img/s", summary).group(1)) <= 8.4


def test_log_mode_header_is_not_wrapped(tmp_path):
    out = tmp_path / ("a-rather-long-output-folder-name-" * 3)
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), env={"CAMCLI_WIDTH": "80"})
    assert res.exit_code == 0, res.output
    header = next(line for line in res.stderr.splitlines() if line.startswith("model "))
    assert header.endswith(f"→ {out}") and len(header) > 80


def _pty_run(args: list[str], columns: int = 80, timeout: float = 300) -> tuple[int, str]:
    """Run camcli with stdout and stderr on a pseudo-terminal of ``columns`` columns; (exit code, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CAMCLI_WIDTH", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([*CAMCLI, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=30)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_real_terminal_bar_and_rates(tmp_path):
    src = _photos(tmp_path / "in", 24)
    code, text = _pty_run(
        ["gradcam", str(src), "--out", str(tmp_path / "o"), "--model", "resnet18", "--weights", "none", "-b", "4"]
    )
    assert code == 0, text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"explaining .*24/24", plain), plain[-2000:]
    bar = "\n".join(line for line in re.split(r"[\r\n]", plain) if "explaining" in line)
    rates = [float(r) for r in re.findall(r"([\d.]+) img/s", bar)]  # the bar's rates (not the summary's)
    summary = re.search(r"24 done, 0 failed in ([\d.]+)s \(set-up ([\d.]+)s, then ([\d.]+) img/s\)", plain)
    assert summary, plain[-2000:]
    work = float(summary.group(1)) - float(summary.group(2))
    # no rate above what the run did: 20 images after the first batch of 4, in (at most) the time after set-up
    assert all(r <= 20 / 1.0 for r in rates), rates  # the bar shows a rate only once a second of data is in
    # the summary prints both times rounded to 0.1 s, so the work time it used is within 0.1 s of ``work``
    rate = float(summary.group(3))
    assert work > 0.1 and 24 / (work + 0.1) * 0.99 <= rate <= 24 / (work - 0.1) * 1.01, (rate, work)
    assert "random weights" in plain


def test_real_terminal_layers_keep_full_names_at_80_columns():
    code, text = _pty_run(["layers"], columns=80)
    assert code == 0
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    for name in ["_blocks.15._depthwise_conv.static_padding", "_blocks.10._project_conv", "_head_act"]:
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", plain, re.M), name
    assert "…" not in plain


def test_one_slow_image_shows_its_steps(tmp_path, monkeypatch):
    """Score-CAM on one image reports its masked batches (what the bar's second row and the log lines show)."""
    from camcli.methods import explain, get_method
    from camcli.steps import listening

    seen = []
    net = _tiny_model().module
    with listening(lambda what, done, total: seen.append((what, done, total))):
        explain(net, torch.randn(1, 3, 32, 32), "0", get_method("scorecam"), score_batch=1)
    assert seen and seen[-1][1] == seen[-1][2] and [s[1] for s in seen] == list(range(1, len(seen) + 1))
    assert "scorecam" in seen[0][0]


# ------------------------------------------------------------------------------------------ no clobbering
def test_runs_with_other_settings_write_other_files_and_each_resumes(tmp_path):
    out = tmp_path / "o"
    img = str(SAMPLES / "chelsea.png")
    runs = [[], ["--layer", "_blocks.10"], ["--smooth", "2"], ["--colormap", "viridis"], ["--blend", "uniform"]]
    for extra in runs:
        res = invoke("gradcam", img, "--out", str(out), "-q", *extra)
        assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted(
        [
            "chelsea.png.gradcam.285-Egyptian_cat.png",
            "chelsea.png.gradcam,layer=_blocks.10.285-Egyptian_cat.png",
            "chelsea.png.gradcam,smooth=2.285-Egyptian_cat.png",
            "chelsea.png.gradcam,colormap=viridis.285-Egyptian_cat.png",
            "chelsea.png.gradcam,blend=uniform.285-Egyptian_cat.png",
        ]
    )
    pixels = {n: np.asarray(Image.open(out / n)).tobytes() for n in names}
    assert len(set(pixels.values())) == len(names)  # five different pictures, none overwritten
    for extra in runs:  # each run resumes on its own files
        res = invoke("gradcam", img, "--out", str(out), "--skip-existing", *extra)
        assert res.exit_code == 0 and "1 skipped" in res.stderr, (extra, res.stderr)
    recs = _records(out)
    assert {r["kind"] for r in recs} == {"cam"}
    assert {(r["layer"], r["settings"]["smooth"], r["settings"]["colormap"]) for r in recs} == {
        ("_head_act", 0, "jet"),
        ("_blocks.10", 0, "jet"),
        ("_head_act", 2, "jet"),
        ("_head_act", 0, "viridis"),
    }


def test_same_name_other_settings_is_refused_not_overwritten(tmp_path):
    import torchvision

    out = tmp_path / "o"
    for i, folder in enumerate(["a", "b"]):
        (tmp_path / folder).mkdir()
        torch.manual_seed(i)
        torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / folder / "best.pt")
    img = str(SAMPLES / "coffee.png")
    first = invoke("gradcam", img, "--model", str(tmp_path / "a" / "best.pt"), "--out", str(out), "-q")
    assert first.exit_code == 0, first.output
    (written,) = out.glob("*.png")
    before = written.read_bytes()
    second = invoke("gradcam", img, "--model", str(tmp_path / "b" / "best.pt"), "--out", str(out), "-q")
    # both checkpoints are called best: the names match, the settings in the picture do not
    if written.name in {p.name for p in out.glob("*.png")} and second.exit_code == 1:
        assert "other settings" in second.stderr and "Use another --out" in second.stderr
        assert written.read_bytes() == before
    else:  # the second model explained another class: another name, nothing to protect
        assert second.exit_code == 0 and written.read_bytes() == before
    again = invoke("gradcam", img, "--model", str(tmp_path / "a" / "best.pt"), "--out", str(out), "-q")
    assert again.exit_code == 0  # the same settings again: a rerun may replace its own pictures


# ------------------------------------------------------------------------------------------------- help
def test_help_is_grouped_with_plain_metavars_and_choices():
    res = invoke("gradcam", "--help", env={"COLUMNS": "100"})
    text = res.stdout
    for panel in ["Model", "What to explain", "Output", "Smoothing", "Run"]:
        assert re.search(rf"╭─ {panel} ─", text), panel
    assert "<bool>" not in text and "<list" not in text and "<int>" not in text and "<str>" not in text
    for name in ["gradcam++", "layercam", "scorecam", "eigencam"]:
        assert name in text
    flat = re.sub(r"\s*(│\s*)+", " ", text)  # a default may wrap onto the box's next line
    for default in ["[default: gradcam]", "[default: weighted]", "[default: 8]", "[default: camcli-out]"]:
        assert default in flat, default
    assert "FOLDER" in text and "LAYER" in text and "METHOD" in text


def test_method_names_in_help_match_the_registry():
    from camcli.methods import REGISTRY
    from camcli.options import METHOD_NAMES

    assert tuple(REGISTRY) == METHOD_NAMES


def _complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "_CAMCLI_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    res = subprocess.run(CAMCLI, env=env, capture_output=True, text=True, timeout=120)
    return res.stdout.split()


def test_shell_completion_scripts_and_values():
    # the script is for the shell camcli is started from (typer asks the parent process): start it from bash
    line = f"{CAMCLI[0]} --show-completion; exit $?"  # two commands: bash does not exec, it stays the parent
    res = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "_CAMCLI_COMPLETE=complete_bash" in res.stdout, res.stderr
    assert _complete("camcli gradcam --method grad") == ["gradcam", "gradcam++", "gradcamelementwise", "gradrollout"]
    assert "viridis" in _complete("camcli gradcam --colormap vir")
    invoke("layers")  # a listing (or a run) remembers the layer names: completion then needs no model
    assert "_blocks.10._project_conv" in _complete("camcli gradcam --layer _blocks.10._p")
    invoke("models", "--json")
    assert _complete("camcli gradcam --model resnet1") == ["resnet18", "resnet101", "resnet152"]


# ---------------------------------------------------------------------------------------------- summary
def test_summary_names_the_class_explained_the_files_and_the_single_file(tmp_path):
    out = tmp_path / "o"
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), "--target", "tabby cat", "--guided")
    assert res.exit_code == 0, res.output
    err = res.stderr
    assert "281 tabby" in err and "285 Egyptian cat" not in err
    row = next(line for line in err.splitlines() if "chelsea.png" in line and "281" in line)
    assert row.rstrip("│ ").endswith("3")  # overlay, guided backprop, guided Grad-CAM
    wrote = next(line for line in err.splitlines() if line.startswith("wrote "))
    assert str(out / "chelsea.png.gradcam.281-tabby.png") in wrote and "guided-backprop" in wrote


def test_random_weights_are_said_in_the_header_and_the_manifest(tmp_path):
    out = tmp_path / "o"
    res = invoke("gradcam", str(SAMPLES / "coffee.png"), "--model", "resnet18", "--weights", "none", "--out", str(out))
    assert res.exit_code == 0
    assert "resnet18 (random weights)" in res.stderr and "note: resnet18 has random weights" in res.stderr
    (rec,) = _records(out)
    assert rec["settings"]["weights"] == "random" and rec["kind"] == "cam"
    assert set(rec["settings"]) >= {"smooth", "noise", "aug_smooth", "colormap", "alpha", "blend", "weights"}


def test_top_k_files_sort_by_rank(tmp_path):
    out = tmp_path / "o"
    assert invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), "--top-k", "3", "-q").exit_code == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert [n.split(".gradcam.")[1].split("-")[0] for n in names] == ["top1", "top2", "top3"]
    probs = [
        r["probability"] for r in sorted(_records(out), key=lambda r: names.index(Path(r["outputs"]["overlay"]).name))
    ]
    assert probs == sorted(probs, reverse=True)
    again = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), "--top-k", "3", "--skip-existing")
    assert "1 skipped" in again.stderr


# ------------------------------------------------------------------------------------------------ pipes
@pytest.mark.parametrize("args", [["methods"], ["models"], ["layers", "--json"], ["models", "--json"]])
def test_closed_pipe_exits_quietly(args):
    proc = subprocess.Popen([*CAMCLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    code = proc.wait(timeout=120)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert code in (0, 141) and err == "", (code, err)


def test_models_listing(tmp_path):
    res = invoke("models", "resnet", "--json")
    names = [json.loads(line)["name"] for line in res.stdout.splitlines()]
    assert names.index("resnet18") < names.index("resnet50") < names.index("resnet101") < names.index("resnet152")
    first = json.loads(invoke("models", "--json").stdout.splitlines()[0])
    bundled = {"name": "efficientnet_lite0", "task": "classifier", "weights": "ImageNet-1k", "offline": True}
    assert first == {**bundled, "where": "bundled"}
    none = invoke("models", "zzz")
    assert none.exit_code == 1 and "no model name contains 'zzz'" in none.stderr


# ---------------------------------------------------------------------------------------------- pictures
def test_annotated_overlay_has_a_caption_and_a_colour_scale(tmp_path):
    out = tmp_path / "o"
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(out), "--annotate", "-q")
    assert res.exit_code == 0
    (path,) = out.glob("*.png")
    assert ",annotate." in path.name
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    photo = np.asarray(Image.open(SAMPLES / "chelsea.png").convert("RGB"))
    assert picture.shape[1] == photo.shape[1] and picture.shape[0] > photo.shape[0]  # a strip below, photo intact
    strip = picture[photo.shape[0] :]
    width = strip.shape[1]
    text_area = strip[:, : width // 2]
    assert (text_area.min(axis=2) > 200).sum() > 50  # white caption letters on the dark strip
    assert (np.abs(text_area - 24).max(axis=2) <= 2).mean() > 0.5  # mostly the strip's dark background
    scale = strip[:, width // 2 :]
    red = (scale[..., 0] > 150) & (scale[..., 2] < 80)
    blue = (scale[..., 2] > 150) & (scale[..., 0] < 80)
    assert red.sum() > 10 and blue.sum() > 10  # jet's ends: the colour scale


def test_feature_grid_has_a_title_and_an_undistorted_input_tile(tmp_path):
    res = invoke("features", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path), "--top", "3", "-q")
    assert res.exit_code == 0
    (path,) = tmp_path.glob("*.png")
    grid = np.asarray(Image.open(path).convert("RGB")).astype(int)
    title = grid[:20]
    assert (title.max(axis=2) < 100).sum() > 30  # dark title text above the tiles
    tile = grid[23 + 3 : 23 + 3 + 128, 3 : 3 + 128]  # the input tile (7×7 map: square tiles of 128)
    # the 451×300 photo fits the square tile with bands of light grey above and below, not squashed
    assert (np.abs(tile[:10] - 235).max(axis=2) == 0).all() and (np.abs(tile[-10:] - 235).max(axis=2) == 0).all()
    assert not (np.abs(tile[60:70] - 235).max(axis=2) == 0).all()


# ------------------------------------------------------------------------------- from a hostile-user pass
def test_features_grids_of_one_layer_survive_adding_another(tmp_path):
    img = str(SAMPLES / "chelsea.png")
    one = invoke("features", img, "--out", str(tmp_path), "--layer", "_blocks.10", "--top", "2", "-q")
    assert one.exit_code == 0
    two = ["features", img, "--out", str(tmp_path), "--layer", "_blocks.10", "--layer", "_blocks.11", "--top", "2"]
    assert invoke(*two, "-q").exit_code == 0  # a grid's settings are its own layer's, not the run's layer list
    assert len(list(tmp_path.glob("*.png"))) == 2
    assert "2 skipped" not in (res := invoke(*two, "--skip-existing")).stderr and "1 skipped" in res.stderr


def test_huge_channel_lists_and_smoothing_are_refused_at_once(tmp_path):
    started = time.monotonic()
    res = invoke("features", str(SAMPLES / "chelsea.png"), "--channels", "0-99999999999", "-o", str(tmp_path))
    assert res.exit_code == 2 and "over 65536 channels" in res.stderr and time.monotonic() - started < 30
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--smooth", "100000", "-o", str(tmp_path))
    assert res.exit_code == 2 and "--smooth 100000 is too large" in res.stderr
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--layer", "_blocks.10", "--layer", "_blocks.10")
    assert res.exit_code == 2 and "given twice" in res.stderr
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--top-k", "5000", "-o", str(tmp_path))
    assert res.exit_code == 2 and "1000 classes" in res.stderr


def test_ranks_are_zero_padded_and_resume_tells_ranked_from_plain_names(tmp_path):
    out = tmp_path / "o"
    img = str(SAMPLES / "chelsea.png")
    assert invoke("gradcam", img, "--out", str(out), "--top-k", "12", "-q").exit_code == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert [n.split(".gradcam.")[1][:5] for n in names] == [f"top{r:02d}" for r in range(1, 13)]
    res = invoke("gradcam", img, "--out", str(out), "--skip-existing")  # top-1 names are not ranked: not done yet
    assert res.exit_code == 0 and "skipped" not in res.stderr
    assert (out / "chelsea.png.gradcam.285-Egyptian_cat.png").is_file()


def test_image_data_on_stdin_and_a_too_long_out_are_one_line_each(tmp_path):
    data = (SAMPLES / "chelsea.png").read_bytes()
    res = subprocess.run([*CAMCLI, "gradcam", "-", "-o", str(tmp_path)], input=data, capture_output=True, timeout=300)
    errors = [line for line in res.stderr.decode().splitlines() if line.startswith("error:")]
    assert res.returncode == 2 and len(errors) == 1 and "holds image data" in errors[0]
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path / ("d" * 300)))
    assert res.exit_code == 2 and "File name too long" in res.stderr and "unexpected" not in res.stderr


def test_layer_names_stay_whole_when_the_table_cannot_fit():
    res = invoke("layers", "--model", "swin_t", "--weights", "none", env={"CAMCLI_WIDTH": "60"})
    assert res.exit_code == 0
    assert "features.1.0.stochastic_depth" in res.stdout and "…" not in res.stdout
