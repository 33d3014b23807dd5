"""The manifest is the run's ledger: every file camcli writes has its record and every record's files exist,
after a normal end, a closed stdout, a full disk, two runs at once, and SIGKILL followed by a resume."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from camcli.cli import app
from camcli.io import manifest as manifest_mod

from .conftest import SAMPLES

runner = CliRunner()
OUTPUT_SUFFIXES = (".png", ".npy")


def _folder(root: Path, n: int, name: str = "img") -> Path:
    src = Image.open(SAMPLES / "coffee.png").convert("RGB")
    for i in range(n):
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        src.resize((40 + i % 5, 32 + i % 3)).save(root / f"d{i % 2}" / f"{name}{i:03d}.png")
    return root


def _camcli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "CAMCLI_OFFLINE": "1", "CAMCLI_WIDTH": "100"}
    return subprocess.Popen(
        [sys.executable, "-m", "camcli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kw
    )


def check_ledger(out: Path) -> list[dict]:
    """The invariant: the manifest is whole JSON lines; every output file has an ok record (the last one for its
    key) naming it; every file an ok record names exists; no temporary files are left."""
    data = (out / "manifest.jsonl").read_bytes()
    assert not data or data.endswith(b"\n"), "torn last line"
    records = [json.loads(line) for line in data.splitlines()]
    named: set[str] = set()
    for r in records:
        if r["status"] == "ok":
            files = [r["outputs"]["overlay"], *r["outputs"].get("per_layer", {}).values()]
            files += [r["outputs"][k] for k in ("raw", "guided_backprop", "guided_cam") if k in r["outputs"]]
            for f in files:
                assert Path(f).is_file(), f"recorded but missing: {f}"
            named.update(str(Path(f).resolve()) for f in files)
    on_disk = {str(p.resolve()) for p in out.rglob("*") if p.suffix in OUTPUT_SUFFIXES}
    assert on_disk <= named, f"files without a record: {sorted(on_disk - named)[:3]}"
    assert not [p for p in out.rglob("*.tmp")], "temporary files left"
    return records


def test_closed_stdout_records_everything_written_and_exits_quietly(tmp_path):
    root = _folder(tmp_path / "in", 40)
    out = tmp_path / "out"
    proc = _camcli("gradcam", str(root), "--out", str(out), "--json", "-b", "4")
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert json.loads(first)["status"] == "ok"
    assert proc.returncode == 141, err
    assert b"unexpected" not in err and b"Traceback" not in err
    records = check_ledger(out)
    assert 0 < len(records) < 40  # it stopped early, and what it wrote is recorded


def test_two_runs_into_one_folder_keep_every_record(tmp_path):
    a, b = _folder(tmp_path / "A", 16, "a"), _folder(tmp_path / "B", 16, "b")
    out = tmp_path / "out"
    procs = [_camcli("gradcam", str(src), "--out", str(out), "-q", "-b", "2") for src in (a, b)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    records = check_ledger(out)
    assert len(records) == 32 and len({r["input"] for r in records}) == 32


def test_full_disk_removes_what_it_cannot_record_and_resume_completes(tmp_path, monkeypatch):
    root = _folder(tmp_path / "in", 10)
    out = tmp_path / "out"
    real_write = manifest_mod.Manifest.write
    calls = {"n": 0}

    def write(self, records):
        calls["n"] += 1
        if calls["n"] >= 4:  # the disk fills up at the 4th record: half a line reaches the file
            os.write(self._fd, b'{"input": "half a li')
            self._cut_torn_line()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, records)

    monkeypatch.setattr(manifest_mod.Manifest, "write", write)
    res = runner.invoke(app, ["gradcam", str(root), "--out", str(out), "-q", "-b", "2"])
    assert res.exit_code == 1, res.output
    assert "No space left on device" in res.stderr and "--skip-existing" in res.stderr
    assert len(check_ledger(out)) == 3
    monkeypatch.setattr(manifest_mod.Manifest, "write", real_write)
    res = runner.invoke(app, ["gradcam", str(root), "--out", str(out), "-q", "--skip-existing"])
    assert res.exit_code == 0, res.output
    assert len({r["input"] for r in check_ledger(out)}) == 10


def test_torn_last_line_is_cut_and_reported(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_bytes(b'{"input": "a.png", "status": "ok"}\n{"input": "b.png", "sta')
    res = runner.invoke(app, ["gradcam", str(SAMPLES / "coffee.png"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "dropped a torn last line (23 bytes)" in res.stderr
    lines = (out / "manifest.jsonl").read_bytes().splitlines()
    assert [json.loads(x)["input"] for x in lines][:1] == ["a.png"] and len(lines) == 2


def test_a_rerun_appends_and_merge_compacts(tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        assert runner.invoke(app, ["gradcam", str(SAMPLES / "coffee.png"), "--out", str(out), "-q"]).exit_code == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2  # the first record is superseded, not lost
    with open(out / "manifest.jsonl", "a") as f:
        f.write("not json\n")
    res = runner.invoke(app, ["merge-manifests", str(out)])
    assert res.exit_code == 1, res.output  # merged, but a line was left out: the status says so
    assert "manifest.jsonl:3: not a JSON record" in res.stderr
    assert len(check_ledger(out)) == 1


def test_sigterm_during_setup_exits_130(tmp_path):
    proc = _camcli("gradcam", str(SAMPLES / "coffee.png"), "--out", str(tmp_path / "o"))
    time.sleep(1.5)  # inside the command: importing torch and loading the model
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGTERM), err  # -15 only if the signal beat Python's start-up
    if proc.returncode == 130:
        assert b"interrupted" in err


def test_a_sigterm_whose_interrupt_python_dropped_still_stops_the_run(monkeypatch, tmp_path):
    """Python drops an exception raised inside an import lock's callback ("Exception ignored in …"): the stop is
    kept (camcli.steps.request_stop) and the run ends as interrupted, exit 130, at its next check."""
    import camcli.jobs.runner as runner_module
    from camcli.steps import request_stop

    real = runner_module.process_inputs

    def stopped_then_dropped(*a, **k):
        request_stop()  # what the SIGTERM handler does before its KeyboardInterrupt, here "dropped"
        return real(*a, **k)

    monkeypatch.setattr(runner_module, "process_inputs", stopped_then_dropped)
    res = runner.invoke(app, ["gradcam", str(SAMPLES / "coffee.png"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 130, res.output
    assert "interrupted" in res.stderr
    monkeypatch.undo()
    ok = runner.invoke(app, ["gradcam", str(SAMPLES / "coffee.png"), "--out", str(tmp_path / "o"), "-q"])
    assert ok.exit_code == 0, ok.output  # the next run starts with no stop pending


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(delay=st.floats(min_value=1.0, max_value=9.0))
def test_sigkill_at_any_point_then_resume_keeps_the_ledger(tmp_path_factory, delay):
    root = _folder(tmp_path_factory.mktemp("in"), 24)
    out = tmp_path_factory.mktemp("out")
    proc = _camcli("gradcam", str(root), "--out", str(out), "-q", "-b", "2", "--workers", "2")
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=60)
    res = _camcli("gradcam", str(root), "--out", str(out), "-q", "--skip-existing")
    _, err = res.communicate(timeout=300)
    assert res.returncode == 0, err
    records = check_ledger(out)
    assert {Path(r["input"]).name for r in records if r["status"] == "ok"} == {p.name for p in root.rglob("*.png")}


def test_an_images_records_are_kept_whole_or_not_at_all(tmp_path, monkeypatch):
    ledger = manifest_mod.Manifest(tmp_path)
    ledger.write([{"input": "a", "status": "ok"}])
    before = (tmp_path / "manifest.jsonl").read_bytes()
    real = os.write

    def half_then_full(fd, data):
        real(fd, bytes(data)[: len(data) // 2 + 5])  # the first record (and a bit) reaches the file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifest_mod.os, "write", half_then_full)
    with pytest.raises(OSError):
        ledger.write(
            [{"input": "b", "status": "ok", "class_index": 1}, {"input": "b", "status": "ok", "class_index": 2}]
        )
    monkeypatch.setattr(manifest_mod.os, "write", real)
    ledger.close()
    assert (tmp_path / "manifest.jsonl").read_bytes() == before


def test_an_image_whose_outputs_cannot_all_be_written_leaves_none_and_a_full_disk_stops(tmp_path, monkeypatch):
    from camcli.jobs import cam as cam_mod

    root = _folder(tmp_path / "in", 12)
    out = tmp_path / "out"
    real = cam_mod.atomic_save_npy
    calls = {"n": 0}

    def npy(path, array):
        calls["n"] += 1
        if calls["n"] >= 3:  # the 3rd image: its overlay is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, array)

    monkeypatch.setattr(cam_mod, "atomic_save_npy", npy)
    res = runner.invoke(app, ["gradcam", str(root), "--out", str(out), "-q", "--save-raw", "-b", "1", "--workers", "1"])
    assert res.exit_code == 1, res.output
    assert "cannot write outputs (No space left on device)" in res.stderr and "the run stopped" in res.stderr
    records = check_ledger(out)  # no overlay without its record, no record without its files
    assert sum(r["status"] == "ok" for r in records) == 2
    assert len(records) < 12  # it stopped instead of failing every remaining image


def test_runs_over_different_folders_with_the_same_names_never_overwrite_each_other(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    for folder, photo in ((a, "coffee.png"), (b, "chelsea.png")):
        folder.mkdir()
        Image.open(SAMPLES / photo).convert("RGB").resize((48, 40)).save(folder / "img.png")
    out = tmp_path / "out"
    args = ["--out", str(out), "-q", "--target", "0"]
    assert runner.invoke(app, ["gradcam", str(a), *args]).exit_code == 0
    (overlay,) = out.glob("*.png")
    made_from_a = overlay.read_bytes()
    res = runner.invoke(app, ["gradcam", str(b), *args])
    assert res.exit_code == 1 and "holds the output of another input" in res.stderr, res.output
    assert overlay.read_bytes() == made_from_a
    res = runner.invoke(app, ["gradcam", str(a), "--out", str(out), "--target", "0", "--skip-existing"])
    assert res.exit_code == 0 and "1 skipped" in res.stderr, res.output  # A's own outputs: done
    res = runner.invoke(app, ["gradcam", str(b), *args, "--skip-existing"])
    assert res.exit_code == 1 and "holds the output of another input" in res.stderr  # not A's: not skipped
    check_ledger(out)


def test_a_long_legal_name_is_written(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    Image.open(SAMPLES / "coffee.png").convert("RGB").resize((40, 32)).save(d / ("x" * 210 + ".png"))
    res = runner.invoke(app, ["gradcam", str(d), "--out", str(tmp_path / "o"), "-q", "--target", "0"])
    assert res.exit_code == 0, res.output
    check_ledger(tmp_path / "o")


def test_resume_recognises_an_input_spelled_another_way(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.open(SAMPLES / "coffee.png").convert("RGB").resize((40, 32)).save(tmp_path / "a.png")
    assert runner.invoke(app, ["gradcam", "a.png", "--out", "o", "-q"]).exit_code == 0
    res = runner.invoke(app, ["gradcam", str(tmp_path / "a.png"), "--out", "o", "--skip-existing"])
    assert res.exit_code == 0 and "1 skipped" in res.stderr, res.output
