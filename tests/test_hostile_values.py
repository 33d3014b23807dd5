"""Hostile values (issue 30): every number an option takes, at its extremes, is accepted meaningfully or refused
in one line before the model loads; class names with control characters or of any length are drawn on one line
in bounded time; --mask is read as an input is read; merge-manifests skips what is not a record."""

from __future__ import annotations

import inspect
import json
import os
import struct
import subprocess
import sys
import threading
import typing
import zlib
from pathlib import Path

import pytest
import typer.models
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from camcli.cli import app
from camcli.errors import UsageError

from .conftest import SAMPLES

runner = CliRunner()
HUGE = str(10**30)
VALUES = ["nan", "inf", "-inf", "-1", "0", "1e999", HUGE]


def _photo(path: Path, size: tuple[int, int] = (40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(SAMPLES / "chelsea.png").convert("RGB").resize(size).save(path)
    return path


def _no_unexpected(res) -> None:
    assert "Traceback" not in res.output and "unexpected" not in res.output, res.output


# ------------------------------------------------------------------------------------------ the number sweep
def _numeric_options() -> list[tuple[str, str, bool]]:
    """(command, option, is an int) for every option of every command that takes a number, read from the
    commands' signatures (a new option is swept without being listed here); ``cam`` is ``gradcam`` under another
    name and is swept once."""
    seen, out = set(), []
    for info in app.registered_commands:
        if info.callback in seen:
            continue
        seen.add(info.callback)
        for p in inspect.signature(info.callback).parameters.values():
            if typing.get_origin(p.annotation) is not typing.Annotated:
                continue
            kind, *extras = typing.get_args(p.annotation)
            base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # X | None → X
            option = next((e for e in extras if isinstance(e, typer.models.OptionInfo)), None)
            if base not in (int, float) or option is None:
                continue
            # with Annotated, typer takes the first name as the option's ``default``
            names = (option.default, *(option.param_decls or ()))
            longs = [d for d in names if isinstance(d, str) and d.startswith("--")]
            out.append((str(info.name), longs[0] if longs else "--" + p.name.replace("_", "-"), base is int))
    return out


OPTIONS = _numeric_options()

# the values that pass the checks, and what they mean (each is also run for real below, or is a plain 0)
ACCEPTED = {
    ("--workers", "0"),  # the default count
    ("--max-pixels", HUGE),  # no limit of camcli's own
    ("--max-size", HUGE),  # no picture is that large: none is scaled
    ("--top-k", HUGE),  # the model's class count decides: refused in one line once it is known (below)
    ("--smooth", "0"),
    ("--score-batch", HUGE),  # every masked picture in one pass
    ("--max-objects", HUGE),  # every object
    ("--sanity-steps", HUGE),  # one step per layer (the cascade has no more)
    ("--alpha", "0"),
    ("--noise", "0"),
    ("--road-noise", "0"),
    ("--min-score", "0"),
    ("--iou", "0"),
    ("--threshold", "0"),
    ("--seed", "0"),
    ("--finer-alpha", "0"),  # Finer-CAM without its rivals: the base method's own map
    ("--frame", "0"),  # features: a video's first frame
    ("--slice", "0"),  # features: a volume's first slice
    ("--tolerance", "0"),  # evaluate: the pointing game without tolerance (Quantus's)
    ("--iou-threshold", "0"),  # evaluate: the whole map is its region
}


class _Accepted(UsageError):
    """Raised where the model would load: the options passed every check."""


def test_the_sweep_covers_every_command_that_takes_numbers():
    commands = {c for c, _, _ in OPTIONS}
    assert commands == {"evaluate", "features", "gradcam"}  # report, merge-manifests, inspect, layers: none
    names = {o for _, o, _ in OPTIONS}
    assert {"--iou", "--min-score", "--batch-size", "--road-noise", "--sanity-steps", "--tile", "--top"} <= names


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize(("command", "option", "integer"), OPTIONS, ids=[f"{c}{o}" for c, o, _ in OPTIONS])
def test_every_number_is_accepted_or_refused_in_one_line_before_the_model_loads(
    tmp_path, monkeypatch, command, option, integer, value
):
    import camcli.jobs.job as job_mod
    import camcli.jobs.objects as objects_mod

    def accepted(*_a, **_k):
        raise _Accepted("ACCEPTED: the model would load now")

    monkeypatch.setattr(job_mod, "load_spec", accepted)
    monkeypatch.setattr(objects_mod, "load_spec", accepted)
    res = runner.invoke(app, [command, str(SAMPLES / "chelsea.png"), "-o", str(tmp_path / "o"), option, value])
    _no_unexpected(res)
    assert res.exit_code == 2, res.output
    if (option, value) in ACCEPTED:
        assert "ACCEPTED" in res.output, res.output
        return
    assert "ACCEPTED" not in res.output, f"{option} {value} passed the checks"
    if integer and value in ("nan", "inf", "-inf", "1e999"):
        assert f"Invalid value for '{option}'" in res.output  # the parser's own refusal, in its box
    else:
        (line,) = [x for x in res.stderr.splitlines() if x.strip()]  # one line, naming the option
        assert line.startswith(f"error: {option} "), line
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_nan_iou_and_min_score_are_refused_not_failed_later(tmp_path):
    for option in ("--iou", "--min-score"):
        res = runner.invoke(app, ["gradcam", str(SAMPLES / "coffee.png"), "-o", str(tmp_path / "o"), option, "nan"])
        _no_unexpected(res)
        assert res.exit_code == 2 and f"{option} nan is not a number" in res.stderr, res.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # no pictures without records


def test_the_accepted_extremes_run(tmp_path):
    cat = _photo(tmp_path / "cat.png")
    extremes = ["--max-pixels", HUGE, "--max-size", HUGE, "--workers", "0"]
    res = runner.invoke(app, ["gradcam", str(cat), "-o", str(tmp_path / "o"), "-q", *extremes])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["gradcam", str(cat), "-o", str(tmp_path / "k"), "-q", "--top-k", HUGE])
    _no_unexpected(res)
    assert res.exit_code == 2 and "there are 1000 classes" in res.stderr
    from camcli.metrics.sanity import cascade_steps

    assert len(cascade_steps(["a", "b", "c"], 10**30)) == 3


# ------------------------------------------------------------------------------------------------- captions
class _Counting:
    """An ImageDraw that counts its measurements."""

    def __init__(self, draw: ImageDraw.ImageDraw) -> None:
        self.draw, self.calls = draw, 0

    def textlength(self, text: str, font=None) -> float:
        self.calls += 1
        return self.draw.textlength(text, font=font)


def test_fit_text_is_bounded_and_one_line():
    from camcli.render import _font, fit_text

    draw = _Counting(ImageDraw.Draw(Image.new("RGB", (10, 10))))
    font = _font(13)
    text = fit_text(draw, "E" * 300_000, font, 400)
    assert text.endswith("…") and 10 < len(text) < 400 and draw.draw.textlength(text, font=font) <= 400
    assert draw.calls <= 12  # a bisection over at most 400 characters, not a measurement per character cut
    assert fit_text(draw, "tabby\ncat\tx\x1b[31m\u2028", font, 1000) == "tabby cat x [31m "
    assert fit_text(draw, "short", font, 1000) == "short" and fit_text(draw, "", font, -5) == ""
    assert fit_text(draw, "wide", font, 0) == "…"


def _labels(tmp_path: Path, name: str) -> Path:
    names = [f"class {i}" for i in range(1000)]
    names[285] = name
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(names))
    return path


def test_a_300k_character_class_name_is_drawn_in_seconds(tmp_path):
    """Issue 30: 20,000 characters took 215 s, 300,000 ran past 10 minutes (and SIGTERM could not stop it)."""
    labels = _labels(tmp_path, "E" * 300_000)
    out = tmp_path / "o"
    args = ["gradcam", str(_photo(tmp_path / "cat.png", (451, 300))), "--labels", str(labels), "--target", "285"]
    proc = subprocess.run(
        [sys.executable, "-m", "camcli", *args, "--annotate", "--panel", "-q", "-o", str(out)],
        capture_output=True,
        timeout=60,  # a hang guard only: the run takes a few seconds
        env={**os.environ, "CAMCLI_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    (rec,) = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert rec["class_name"] == "E" * 300_000  # the record keeps the name as it is
    assert Image.open(rec["outputs"]["overlay"]).size == (451, 300 + 21)  # the caption strip under it
    assert Path(rec["outputs"]["panel"]).is_file()


def test_a_newline_in_a_class_name_is_a_space_in_captions_and_tables(tmp_path):
    labels = _labels(tmp_path, "Egyptian\ncat\t[red]x[/red]")
    out = tmp_path / "o"
    cat = _photo(tmp_path / "cat.png")
    res = runner.invoke(
        app, ["gradcam", str(cat), "--labels", str(labels), "--target", "285", "--annotate", "--panel", "-o", str(out)]
    )
    _no_unexpected(res)
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert rec["class_name"] == "Egyptian\ncat\t[red]x[/red]"  # JSON holds it as it is
    assert "Egyptian_cat_red_x_red" in rec["outputs"]["overlay"]  # the file name: letters and digits only
    assert Path(rec["outputs"]["overlay"]).is_file() and Path(rec["outputs"]["panel"]).is_file()
    assert "285 Egyptian cat [red]x[/red]" in res.stderr  # one table row, the markup shown as text


# ---------------------------------------------------------------------------------------------------- --mask
TOY = """
import torch.nn.functional as F
from torch import nn


class ChannelSegmenter(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.body = nn.Conv2d(3, 3, 1, bias=False)

    def forward(self, x):
        f = self.backbone.body(x)
        return {"out": F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)}
"""


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> list[str]:
    """``--model … --arch … --task segmentation``: a toy segmenter (a 1×1 conv) from a file."""
    import importlib.util

    import torch

    d = tmp_path_factory.mktemp("toy")
    (d / "toyseg.py").write_text(TOY)
    spec = importlib.util.spec_from_file_location("toyseg_for_test", d / "toyseg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.ChannelSegmenter().state_dict(), d / "toyseg.pt")
    arch = f"{d / 'toyseg.py'}:ChannelSegmenter"
    return ["--model", str(d / "toyseg.pt"), "--arch", arch, "--task", "segmentation", "--layer", "backbone.body"]


def _mask(path: Path, size: tuple[int, int]) -> Path:
    Image.new("L", size, 255).save(path)
    return path


def _png_header_only(path: Path, w: int, h: int) -> Path:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _fed_fifo(path: Path) -> threading.Thread:
    """A FIFO with a writer waiting on it, so that code that (wrongly) reads it gets junk and an end instead of
    blocking the tests for ever."""
    os.mkfifo(path)

    def feed() -> None:
        with open(path, "wb") as f:
            f.write(b"junk")

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


def _release(path: Path, thread: threading.Thread) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets a writer that nobody read from finish
    thread.join(5)
    os.close(fd)


def test_mask_goes_through_the_input_guards(tmp_path, segmenter):
    cat = str(_photo(tmp_path / "cat.png"))
    fifo = tmp_path / "fifo.png"
    thread = _fed_fifo(fifo)
    try:
        res = runner.invoke(app, ["gradcam", cat, *segmenter, "--mask", str(fifo), "-o", str(tmp_path / "f")])
    finally:
        _release(fifo, thread)
    _no_unexpected(res)
    assert res.exit_code == 2 and "--mask" in res.stderr and "not a regular file" in res.stderr, res.output
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    res = runner.invoke(app, ["gradcam", cat, *segmenter, "--mask", str(bomb), "-o", str(tmp_path / "b")])
    _no_unexpected(res)
    assert res.exit_code == 2 and "decompression-bomb guard" in res.stderr, res.output
    small = _mask(tmp_path / "small.png", (40, 32))
    res = runner.invoke(
        app, ["gradcam", cat, *segmenter, "--mask", str(small), "--max-pixels", "1000", "-o", str(tmp_path)]
    )
    assert res.exit_code == 2 and "over the limit of 1,000" in res.stderr, res.output


def test_a_mask_of_another_size_is_refused_per_picture_not_stretched(tmp_path, segmenter):
    d = tmp_path / "in"
    _photo(d / "a_fits.png", (40, 32))
    _photo(d / "b_wide.png", (80, 20))
    mask = _mask(tmp_path / "mask.png", (40, 32))
    out = tmp_path / "o"
    extremes = ["--max-objects", HUGE, "--method", "scorecam", "--score-batch", HUGE]  # every object, one pass
    res = runner.invoke(app, ["gradcam", str(d), *segmenter, "--mask", str(mask), *extremes, "-o", str(out)])
    _no_unexpected(res)
    assert res.exit_code == 1, res.output
    assert "--mask" in res.stderr and "is 40x32 but the picture is 80x20" in res.stderr
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["input"].endswith("a_fits.png") for r in recs if r["status"] == "ok"} == {True}
    assert [r["status"] for r in recs if r["input"].endswith("b_wide.png")] == ["error"]
    assert not list(out.glob("b_wide*.png"))
    # the picture's own size, scaled by --max-size as the picture is, fits
    big = _photo(tmp_path / "big" / "c.png", (80, 64))
    mask80 = _mask(tmp_path / "mask80.png", (80, 64))
    res = runner.invoke(
        app, ["gradcam", str(big), *segmenter, "--mask", str(mask80), "--max-size", "40", "-o", str(tmp_path / "m")]
    )
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------------------------ other option files
@pytest.mark.parametrize("option", ["--labels", "--targets-file"])
def test_option_files_that_are_fifos_are_refused(tmp_path, option):
    fifo = tmp_path / "names.json"
    thread = _fed_fifo(fifo)
    try:
        res = runner.invoke(app, ["gradcam", str(SAMPLES / "chelsea.png"), option, str(fifo), "-o", str(tmp_path)])
    finally:
        _release(fifo, thread)
    _no_unexpected(res)
    assert res.exit_code == 2 and f"{option} {fifo}: not a regular file" in res.stderr, res.output


def test_reference_pictures_get_the_max_pixels_of_the_run(tmp_path):
    small = _photo(tmp_path / "small.png", (20, 20))
    ref = _photo(tmp_path / "ref.png", (40, 32))
    res = runner.invoke(
        app, ["gradcam", str(small), "--reference", str(ref), "--max-pixels", "1000", "-o", str(tmp_path / "o")]
    )
    _no_unexpected(res)
    assert res.exit_code == 2 and "--reference" in res.stderr and "over the limit of 1,000" in res.stderr


# ---------------------------------------------------------------------------------------------- merge-manifests
def test_merge_skips_nan_and_bad_lines_and_makes_no_empty_manifest(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    good = {"input": "a.png", "kind": "evaluate", "method": "gradcam", "status": "ok", "scores": {"drop": 0.5}}
    lines = [
        json.dumps(good),
        json.dumps({**good, "input": "b.png"}).replace("0.5", "NaN"),
        json.dumps({**good, "input": "c.png"}).replace("0.5", "1e999"),
        json.dumps({**good, "input": 5}),
        "[1, 2]",
    ]
    (out / "metrics.shard-1-of-2.jsonl").write_text("\n".join(lines) + "\n")
    (out / "metrics.shard-2-of-2.jsonl").write_text(json.dumps({**good, "input": "d.png"}) + "\n")
    res = runner.invoke(app, ["merge-manifests", str(out)])
    _no_unexpected(res)
    assert res.exit_code == 1, res.output  # merged; the lines left out are reported, and the status says so
    merged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["input"] for r in merged] == ["a.png", "d.png"]
    for number in (2, 3, 4, 5):
        assert f"metrics.shard-1-of-2.jsonl:{number}:" in res.stderr
    assert not (out / "manifest.jsonl").exists()  # an evaluate-only folder gets no empty manifest
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["merge-manifests", str(empty)])
    _no_unexpected(res)
    assert res.exit_code == 2 and "no manifest.jsonl" in res.stderr and not any(empty.iterdir())
