"""Batch runs: resume, shards, list files and stdin, a clean stop, OOM halving, flat memory, the Python API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.io.inputs import iter_inputs, shard_of
from camcli.jobs import prepare as prepare_mod
from camcli.jobs.api import explain_files
from camcli.jobs.runner import compute_with_retry
from camcli.models import LoadedModel
from camcli.options import Options

from .conftest import SAMPLES

runner = CliRunner()


def _folder(root: Path, n: int, size: tuple[int, int] = (48, 40)) -> Path:
    src = Image.open(SAMPLES / "coffee.png").convert("RGB")
    for i in range(n):
        sub = root / f"d{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        w, h = size[0] + (i % 5) * 7, size[1] + (i % 4) * 5  # mixed sizes batch together
        src.resize((w, h)).save(sub / f"img{i:03d}.png")
    return root


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


def _tiny() -> LoadedModel:
    return LoadedModel("tiny", Tiny().eval(), (16, 16), categories=["a", "b", "c"])


def _overlays(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))


def test_shards_are_disjoint_and_complete(tmp_path):
    root = _folder(tmp_path / "in", 30)
    everything = [f.rel for f in iter_inputs([str(root)])]
    parts = [[f.rel for f in iter_inputs([str(root)], shard=(k, 4))] for k in range(1, 5)]
    assert sorted(rel for part in parts for rel in part) == sorted(everything)
    assert sum(map(len, parts)) == len(everything)
    assert all(parts), "every shard got some of 30 files"
    assert shard_of(Path("d0/img000.png"), 4) == shard_of(Path("d0/img000.png"), 4)  # stable


def test_sharded_runs_then_merge(tmp_path):
    root = _folder(tmp_path / "in", 9)
    out = tmp_path / "out"
    for k in (1, 2):
        res = runner.invoke(app, ["gradcam", str(root), "--out", str(out), "--shard", f"{k}/2", "-q"])
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("manifest*")) == [
        "manifest.shard-1-of-2.jsonl",
        "manifest.shard-2-of-2.jsonl",
    ]
    assert len(_overlays(out)) == 9
    res = runner.invoke(app, ["merge-manifests", str(out)])
    assert res.exit_code == 0
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 9 and len({r["input"] for r in recs}) == 9


def _temporary(p: Path) -> bool:
    """A temporary or partial file (the ledger's lock file, .camcli.lock, is meant to stay)."""
    return (p.name.startswith(".") and p.name != ".camcli.lock") or p.suffix == ".tmp"


def test_resume_after_interruption(tmp_path, monkeypatch):
    root = _folder(tmp_path / "in", 12)
    out = tmp_path / "out"
    real_decode = prepare_mod.decode
    calls = {"n": 0}

    def flaky(path, *args):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # Ctrl-C while the 7th image is being read
        return real_decode(path, *args)

    monkeypatch.setattr(prepare_mod, "decode", flaky)
    res = runner.invoke(app, ["gradcam", str(root), "--out", str(out), "-b", "2", "--workers", "1", "-q"])
    assert res.exit_code == 130
    first = _overlays(out)
    assert 0 < len(first) < 12
    assert not [p for p in out.rglob("*") if _temporary(p)], "partial files left"
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(Path(r["outputs"]["overlay"]).name for r in recs) == sorted(Path(p).name for p in first)
    stamps = {p: (out / p).stat().st_mtime_ns for p in first}
    monkeypatch.setattr(prepare_mod, "decode", real_decode)
    res = runner.invoke(app, ["gradcam", str(root), "--out", str(out), "--skip-existing"])
    assert res.exit_code == 0
    assert f"{len(first)} skipped" in res.stderr
    assert len(_overlays(out)) == 12
    assert all((out / p).stat().st_mtime_ns == t for p, t in stamps.items()), "finished outputs were redone"
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 12  # appended, not replaced
    res = runner.invoke(app, ["gradcam", str(root), "--out", str(out), "--overwrite", "-q"])
    assert res.exit_code == 0 and any((out / p).stat().st_mtime_ns != t for p, t in stamps.items())


@pytest.mark.slow
def test_sigterm_stops_cleanly(tmp_path):
    root = _folder(tmp_path / "in", 40, size=(160, 120))
    out = tmp_path / "out"
    env = {**os.environ, "CAMCLI_WIDTH": "100"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "camcli", "gradcam", str(root), "--out", str(out), "-b", "2", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("*.png")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "done" in err  # the summary was printed
    written = _overlays(out)
    assert 0 < len(written) < 40
    assert not [p for p in out.rglob("*") if _temporary(p)], "temporary files left"
    recs = (out / "manifest.jsonl").read_text().splitlines()
    assert len(recs) == len(written)  # the manifest was flushed for every finished image


def test_list_file_and_stdin(tmp_path):
    root = _folder(tmp_path / "in", 3)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    listing = tmp_path / "list.txt"
    listing.write_text("# images to explain\n" + "\n".join(paths[:2]) + "\n\n")
    res = runner.invoke(app, ["gradcam", str(listing), "--out", str(tmp_path / "o1"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(_overlays(tmp_path / "o1")) == 2
    res = runner.invoke(app, ["gradcam", "-", "--out", str(tmp_path / "o2"), "-q"], input="\n".join(paths) + "\n")
    assert res.exit_code == 0, res.output
    written = _overlays(tmp_path / "o2")
    assert len(written) == 3
    assert all(w.startswith(str(root.relative_to(root.anchor))) for w in written)  # absolute paths mirrored


def test_out_of_memory_halves_the_batch():
    seen = []

    class Job:
        batch_size = 8

        def compute(self, x):
            seen.append(x.shape[0])
            if x.shape[0] > 2:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return [int(v) for v in x[:, 0]]

    x = torch.arange(8.0).view(8, 1)
    assert compute_with_retry(Job(), x) == list(range(8))
    assert seen == [8, 4, 2, 2, 4, 2, 2]

    class Always:
        batch_size = 1

        def compute(self, x):
            raise RuntimeError("out of memory")

    from camcli.errors import InputError

    with pytest.raises(InputError, match="batch of 1"):
        compute_with_retry(Always(), torch.zeros(1, 1))


def test_python_api_callbacks_and_maps(tmp_path):
    root = _folder(tmp_path / "in", 4)
    (root / "broken.png").write_bytes(b"nope")
    good, bad = [], []
    opts = Options(out=tmp_path / "o", keep_maps=True, methods=["gradcam", "eigencam"], batch_size=3, device="cpu")
    results = list(explain_files([str(root)], opts, on_result=good.append, on_error=bad.append, model=_tiny()))
    assert len(results) == 5 and len(good) == 4 and len(bad) == 1
    assert "broken.png" in bad[0].error
    r = good[0]
    assert [o["method"] for o in r.outputs] == ["gradcam", "eigencam"]
    path = r.outputs[0]["outputs"]["overlay"]
    assert r.maps is not None and r.maps[path].shape == (r.size[1], r.size[0])


def _peak_python_memory(tmp_path: Path, n: int) -> int:
    root = _folder(tmp_path / f"in{n}", n, size=(24, 20))
    opts = Options(out=tmp_path / f"o{n}", batch_size=8, device="cpu", workers=2)
    tracemalloc.start()
    count = 0
    for _ in explain_files([str(root)], opts, model=_tiny()):
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    return peak


def test_memory_does_not_grow_with_the_number_of_images(tmp_path):
    _peak_python_memory(tmp_path, 10)  # one-time costs (imports, colormap tables) out of the way
    small = _peak_python_memory(tmp_path, 60)
    large = _peak_python_memory(tmp_path, 300)
    # 5x the images: the peak of Python-side memory stays about the same (no lists of images or records)
    assert large < small * 1.5 + 256 * 1024, (small, large)


@pytest.mark.parametrize("targets", [[], ["1"]])
def test_skip_existing_with_raw_maps_and_guided_images(tmp_path, targets):
    """--save-raw writes .npy for maps only; the guided images have none, and resume must still skip."""
    root = _folder(tmp_path / "in", 2)
    opts = Options(out=tmp_path / "o", save_raw=True, guided=True, device="cpu", targets=targets)
    first = list(explain_files([str(root)], opts, model=_tiny()))
    assert all(r.ok for r in first)
    assert len(list((tmp_path / "o").rglob("*.npy"))) == 2 and len(list((tmp_path / "o").rglob("*.png"))) == 6
    opts.skip_existing = True
    again = list(explain_files([str(root)], opts, model=_tiny()))
    assert [r.skipped for r in again] == [True, True]


def test_default_threads_per_device(monkeypatch):
    """Without --workers: at most 4 decode/write threads on the CPU (the model needs the cores), up to 16 when a
    GPU runs the model; never more than the machine's cores."""
    import os

    import torch

    from camcli.jobs.runner import default_workers

    for cores, cpu, gpu in [(1, 1, 1), (2, 2, 2), (8, 4, 8), (16, 4, 16), (64, 4, 16)]:
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert default_workers(torch.device("cpu")) == cpu
        assert default_workers(torch.device("cuda")) == gpu
        assert default_workers(None) == cpu
