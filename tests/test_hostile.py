"""Hostile and careless inputs: no entry aborts a run, every problem is one line with an exit code, no file is
overwritten by another input's outputs, and options are refused before the model loads."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from camcli.cli import app
from camcli.errors import InputError
from camcli.io import outputs as outputs_mod
from camcli.io.decode import decode
from camcli.io.inputs import iter_inputs

from .conftest import SAMPLES

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def _photo(path: Path, size: tuple[int, int] = (40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(SAMPLES / "chelsea.png").convert("RGB").resize(size).save(path)
    return path


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_bytes().splitlines() if line.strip()]


def _one_line_error(res, code: int, text: str) -> None:
    assert res.exit_code == code, res.output
    assert text in res.stderr, res.stderr
    assert "Traceback" not in res.output and "unexpected" not in res.stderr


# --------------------------------------------------------------------------------------------- discovery
def test_symlink_loops_are_reported_and_the_rest_is_done(tmp_path):
    d = tmp_path / "d"
    _photo(d / "cat.png")
    os.symlink("b", d / "a")  # a loop without an image name: not an input at all
    os.symlink("a", d / "b")
    os.symlink("loop2.png", d / "loop1.png")  # a loop with image names: reported, per entry
    os.symlink("loop1.png", d / "loop2.png")
    res = invoke("gradcam", str(d), "--out", str(tmp_path / "o"), "-q")
    _one_line_error(res, 1, "symbolic link loop")
    recs = _records(tmp_path / "o")
    assert [r["status"] for r in recs if r["input"].endswith("cat.png")] == ["ok"]
    assert sum(r["status"] == "error" for r in recs) == 2
    # given directly, or in a list file: the same per-entry report
    res = invoke("gradcam", str(d / "loop1.png"), str(d / "cat.png"), "--out", str(tmp_path / "o2"), "-q")
    _one_line_error(res, 1, "loop1.png: a symbolic link loop")


def test_non_utf8_names_round_trip_through_the_manifest(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    raw = os.fsencode(str(d)) + b"/caf\xe9.png"
    _photo(Path(os.fsdecode(raw)))
    out = tmp_path / "o"
    res = invoke("gradcam", str(d), "--out", str(out), "-q", "--json")
    assert res.exit_code == 0, res.output
    (rec,) = _records(out)
    assert os.fsencode(rec["input"]) == raw  # surrogate escapes give back the original bytes
    assert os.path.exists(os.fsencode(rec["outputs"]["overlay"]))
    assert "\\udce9" in (out / "manifest.jsonl").read_text(encoding="ascii")  # valid JSON, plain UTF-8 file


def test_recursive_glob_never_reads_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _photo(tmp_path / "a" / "x.png")
    _photo(tmp_path / "y.png")
    for _ in range(2):
        res = invoke("gradcam", "**/*.png", "-q")  # default --out camcli-out, inside the glob's reach
        assert res.exit_code == 0, res.output
    assert {r["input"] for r in _records(tmp_path / "camcli-out")} == {"a/x.png", "y.png"}
    assert not list((tmp_path / "camcli-out").rglob("*.gradcam.*.gradcam.*"))


def test_out_equal_to_the_input_folder_is_refused_and_a_parent_works(tmp_path, monkeypatch):
    _photo(tmp_path / "photos" / "x.png")
    res = invoke("gradcam", str(tmp_path / "photos"), "--out", str(tmp_path / "photos"))
    _one_line_error(res, 2, "is the input folder")
    monkeypatch.chdir(tmp_path)
    res = invoke("gradcam", "photos", "--out", ".", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.png.gradcam.285-Egyptian_cat.png").is_file() or list(tmp_path.glob("x.png.gradcam.*"))


def test_list_entries_with_dotdot_keep_their_outputs_apart(tmp_path, monkeypatch):
    work = tmp_path / "work"
    _photo(tmp_path / "A" / "x.png", (40, 32))
    _photo(work / "A" / "x.png", (32, 40))
    (work / "list.txt").write_text("../A/x.png\nA/x.png\n")
    monkeypatch.chdir(work)
    res = invoke("gradcam", "list.txt", "--out", "o", "-q")
    assert res.exit_code == 0, res.output
    outs = sorted(str(p.relative_to(work / "o")) for p in (work / "o").rglob("*.png"))
    assert len(outs) == 2 and any(o.startswith("__up__/A/") for o in outs) and any(o.startswith("A/") for o in outs)


def test_hidden_and_macos_resource_files_are_skipped(tmp_path):
    d = tmp_path / "d"
    _photo(d / "x.png")
    (d / "._x.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    _photo(d / ".hidden.png")
    assert [f.path.name for f in iter_inputs([str(d)])] == ["x.png"]


def test_fifo_in_a_folder_or_given_does_not_hang(tmp_path):
    d = tmp_path / "d"
    _photo(d / "x.png")
    os.mkfifo(d / "pipe.png")
    res = invoke("gradcam", str(d), "--out", str(tmp_path / "o"), "-q")
    _one_line_error(res, 1, "a FIFO, not a regular file")
    with pytest.raises(InputError, match="not a regular file"):
        decode(d / "pipe.png")


def test_unreadable_folder_is_reported(tmp_path, monkeypatch):
    d = tmp_path / "d"
    _photo(d / "ok" / "x.png")
    (d / "secret").mkdir()
    real = os.scandir

    def scandir(path):
        if str(path).endswith("secret"):  # root ignores permissions; simulate what a user would get
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = list(iter_inputs([str(d)]))
    assert [f.problem is None for f in found] == [True, False]
    assert "cannot list the folder (Permission denied)" in found[1].problem


def test_binary_list_file_is_reported_per_entry(tmp_path):
    lst = tmp_path / "junk.txt"
    lst.write_bytes(b"\x00\x01\xff\xfe binary\n" + str(_photo(tmp_path / "x.png")).encode() + b"\n")
    res = invoke("gradcam", str(lst), "--out", str(tmp_path / "o"), "-q")
    _one_line_error(res, 1, "not a path")
    assert [r["status"] for r in _records(tmp_path / "o")] == ["error", "ok"]


def test_empty_stdin_is_a_usage_error(tmp_path):
    res = invoke("gradcam", "-", "--out", str(tmp_path / "o"), "-q", input="")
    _one_line_error(res, 2, "no image paths came on standard input")


# ---------------------------------------------------------------------------------------------- decoding
def test_huge_non_image_is_refused_from_its_header(tmp_path):
    big = tmp_path / "b.jpg"
    with open(big, "wb") as f:
        f.truncate(3 * 1024**3)  # sparse: 3 GB of zeros, nothing on disk
    with pytest.raises(InputError, match="not an image"):
        decode(big)
    zero = tmp_path / "z.png"
    os.symlink("/dev/zero", zero)
    with pytest.raises(InputError, match="not a regular file"):
        decode(zero)


def test_file_far_larger_than_its_image_is_refused(tmp_path):
    p = _photo(tmp_path / "x.png", (8, 8))
    with open(p, "ab") as f:
        f.truncate(p.stat().st_size + 80 * 1024**2)  # 80 MB of trailing junk behind an 8x8 PNG
    with pytest.raises(InputError, match="far more than a 8x8 image needs"):
        decode(p)


def _png_header_only(path: Path, w: int, h: int) -> Path:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_bomb_message_quotes_the_limit_in_force(tmp_path):
    p = _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # 400 Mpx: Pillow's own guard fires first
    with pytest.raises(InputError, match=r"over the limit of 89,478,485 pixels") as e:
        decode(p)
    assert "178" not in str(e.value).replace(str(p), "")  # not Pillow's "twice the limit" (pytest-178 is a path)
    with pytest.raises(InputError, match=r"over the limit of 1,000"):
        decode(_photo(tmp_path / "x.png", (40, 32)), max_pixels=1000)


# ----------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smooth", "2", "--noise", "nan"], "--noise nan is not a number"),
        (["--noise", "inf"], "--noise inf is not a number"),
        (["--workers", "-1"], "--workers -1 is too small"),
        (["--workers", "1000"], "--workers 1000 is too large"),
        (["--max-pixels", "0"], "--max-pixels 0 is too small"),
        (["--target", "281", "--top-k", "3"], "--target and --top-k 3 together"),
    ],
)
def test_bad_options_fail_before_the_model_loads(tmp_path, monkeypatch, args, message):
    import camcli.jobs.job as job_mod

    monkeypatch.setattr(job_mod, "load_spec", lambda *_a, **_k: pytest.fail("the model was loaded"))
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path / "o"), *args)
    _one_line_error(res, 2, message)


def test_empty_target_and_tile_and_unwritable_out(tmp_path):
    _one_line_error(invoke("gradcam", str(SAMPLES / "chelsea.png"), "--target", "", "-o", str(tmp_path)), 2, "empty")
    res = invoke("features", str(SAMPLES / "chelsea.png"), "--tile", "100000", "-o", str(tmp_path / "f"))
    _one_line_error(res, 2, "--tile 100000 is too large")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _one_line_error(invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(a_file)), 2, "is a file")


def test_repeated_target_is_explained_once(tmp_path):
    out = tmp_path / "o"
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "-t", "281", "-t", "tabby", "--out", str(out), "-q")
    assert res.exit_code == 0, res.output
    assert [r["class_index"] for r in _records(out)] == [281]


def test_camcli_width_garbage_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMCLI_WIDTH", "abc")
    import camcli.cli.console as console

    monkeypatch.setattr(console, "_err", None)
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------------------ models and outputs
def test_nan_model_output_is_a_per_image_error_and_the_manifest_stays_json(tmp_path):
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=3)
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    ckpt = tmp_path / "nan.pt"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "o"
    res = invoke("gradcam", str(SAMPLES / "chelsea.png"), "--model", str(ckpt), "--out", str(out), "-q")
    _one_line_error(res, 1, "not finite (NaN or Inf)")
    (rec,) = _records(out)  # json.loads would accept NaN; the file must not contain it
    assert rec["status"] == "error" and "NaN" not in (out / "manifest.jsonl").read_text().replace("(NaN or Inf)", "")


def test_safetensors_saved_as_pt_is_read(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    from camcli.models.checkpoints import inspect_checkpoint

    path = tmp_path / "weights.pt"
    save_file(torchvision.models.resnet18(weights=None, num_classes=4).state_dict(), str(path))
    info = inspect_checkpoint(str(path))
    assert info.format == "safetensors" and info.arch == "resnet18" and info.num_classes == 4


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    folder = tmp_path / "o"
    folder.mkdir()
    stale = folder / f".camcli-0a1b2c.{pid}.abc123.tmp"
    live = folder / f".camcli-3d4e5f.{os.getppid()}.def456.tmp"
    stale.write_bytes(b"partial")
    live.write_bytes(b"someone is writing")
    outputs_mod.atomic_write_bytes(folder / "z.bin", b"data")
    assert not stale.exists() and live.exists() and (folder / "z.bin").read_bytes() == b"data"


def test_feature_grid_size_is_capped(tmp_path):
    res = invoke("features", str(SAMPLES / "chelsea.png"), "--top", "100000", "--tile", "2048", "-o", str(tmp_path))
    _one_line_error(res, 2, "over 100 megapixels")
