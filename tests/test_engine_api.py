"""camcli.Explainer (issue 29): the rows of a data engine explained as the CLI explains the files they came from.

Every check compares with a plain ``camcli gradcam FOLDER --out X`` run over the same pictures: the same output
names (relative to OUT), the same pixels, the same classes and probabilities in the records. The Ray checks run
Ray Data for real (``read_binary_files`` / ``read_images`` → ``map_batches(Explainer)`` → ``write_parquet``) and
kill a worker mid-batch; they are skipped without Ray.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from camcli import CamOptions, Explainer
from camcli.cli import app
from camcli.io.manifest import RECORD_KEY, record_key
from camcli.jobs.engine_api import COLUMNS

from .conftest import ROOT, SAMPLES

runner = CliRunner()
NAMES = ("astronaut.png", "chelsea.png", "coffee.png")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample pictures alone in a folder (an engine reading it finds nothing else)."""
    folder = tmp_path_factory.mktemp("pictures")
    for name in NAMES:
        shutil.copy(SAMPLES / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def cli_out(pictures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: ``camcli gradcam PICTURES --out X``."""
    out = tmp_path_factory.mktemp("cli") / "out"
    res = runner.invoke(app, ["gradcam", str(pictures), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return out


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _by_name(records: list[dict[str, Any]]) -> dict[str, tuple[int, str, float]]:
    return {Path(r["input"]).name: (r["class_index"], r["class_name"], r["probability"]) for r in records}


def _pictures(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.rglob("*.png"))}


def _same_pictures(out: Path, reference: Path) -> None:
    mine, theirs = _pictures(out), _pictures(reference)
    assert sorted(mine) == sorted(theirs)
    for name, pixels in theirs.items():
        assert np.array_equal(mine[name], pixels), name


def _bytes_batch(folder: Path) -> dict[str, Any]:
    paths = [folder / n for n in NAMES]
    return {"bytes": np.array([p.read_bytes() for p in paths], dtype=object), "path": np.array([str(p) for p in paths])}


def _lists(out: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: v.to_pylist() for k, v in out.items()}


def test_bytes_rows_make_the_cli_files(pictures: Path, cli_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rows = _lists(Explainer(CamOptions(out=out), root=pictures)(_bytes_batch(pictures)))
    assert rows["status"] == ["ok"] * 3 and rows["error"] == [None] * 3
    assert rows["path"] == rows["key"] == [str(pictures / n) for n in NAMES]
    _same_pictures(out, cli_out)
    reference = _by_name(_records(cli_out))
    for path, index, name, score, overlay in zip(
        rows["path"], rows["class_index"], rows["class_name"], rows["score"], rows["overlay"], strict=True
    ):
        assert (index, name, score) == reference[Path(path).name]
        assert Path(overlay).parent == out and Path(overlay).name.startswith(Path(path).name + ".gradcam.")
    # the records and the pictures' owner tags are about the original files, as the CLI's are
    records = _records(out)
    assert _by_name(records) == reference
    assert {r["input"] for r in records} == {str(pictures / n) for n in NAMES}
    for r in records:
        assert r["input_sha256"] == hashlib.sha256(Path(r["input"]).read_bytes()).hexdigest()
    for name in _pictures(cli_out):
        assert Image.open(out / name).text == Image.open(cli_out / name).text


def test_image_arrays_make_the_cli_files(pictures: Path, cli_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    arrays = [np.asarray(Image.open(pictures / n).convert("RGB")) for n in NAMES]
    batch = {"image": arrays, "path": [str(pictures / n) for n in NAMES]}
    rows = _lists(Explainer(CamOptions(out=out), root=pictures)(batch))
    assert rows["status"] == ["ok"] * 3
    _same_pictures(out, cli_out)  # lossless staging: the same pixels, so the same maps
    assert _by_name(_records(out)) == _by_name(_records(cli_out))
    assert all("input_sha256" not in r for r in _records(out))  # the file read was camcli's PNG, not the input


def test_pickled_without_its_model(pictures: Path, tmp_path: Path, bundled) -> None:
    explainer = Explainer(CamOptions(out=tmp_path / "out"), root=pictures, model=bundled)
    first = _lists(explainer(_bytes_batch(pictures)))
    data = pickle.dumps(explainer)
    assert len(data) < 20_000 and b"torch" not in data
    copy = pickle.loads(data)
    assert copy._model is None and copy._worker is None and copy.root == str(pictures)
    again = _lists(copy(_bytes_batch(pictures)))  # loads its own model; finds the outputs recorded
    assert again["status"] == ["skipped"] * 3
    assert [again[c] for c in ("overlay", "class_index", "score")] == [
        first[c] for c in ("overlay", "class_index", "score")
    ]
    explainer.close()
    copy.close()


def test_a_corrupt_row_fails_alone_and_a_rerun_skips(pictures: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    batch = _bytes_batch(pictures)
    batch = {"bytes": [batch["bytes"][0], b"\x89PNG not really", batch["bytes"][1]],
             "path": [batch["path"][0], str(pictures / "broken.png"), batch["path"][1]]}  # fmt: skip
    explainer = Explainer(CamOptions(out=out), root=pictures)
    rows = _lists(explainer(batch))
    assert rows["status"] == ["ok", "failed", "ok"]
    error = rows["error"][1]
    assert error.startswith(str(pictures / "broken.png") + ": ") and "\n" not in error and "camcli-rows" not in error
    assert rows["overlay"][1] is None and rows["class_index"][1] is None
    records = _records(out)
    assert [r["status"] for r in records if r["input"].endswith("broken.png")] == ["error"]
    made = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    again = _lists(Explainer(CamOptions(out=out), root=pictures)(batch))  # another worker, later
    assert again["status"] == ["skipped", "failed", "skipped"]
    assert again["overlay"] == rows["overlay"] and again["score"] == rows["score"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.png")} == made  # nothing redone
    assert len(_records(out)) == len(records) + 1  # only the failed row is tried (and recorded) again


def test_dataframes_in_and_out(pictures: Path, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"bytes": [(pictures / n).read_bytes() for n in NAMES], "path": [str(pictures / n) for n in NAMES]}
    )
    result = Explainer(CamOptions(out=tmp_path / "out"), root=pictures)(frame)
    assert isinstance(result, pd.DataFrame) and list(result.columns) == list(Explainer().columns())
    assert list(result["status"]) == ["ok"] * 3 and str(result["class_index"].dtype) == "Int64"


def test_keys_roots_and_map_pngs(pictures: Path, tmp_path: Path) -> None:
    data = (pictures / "coffee.png").read_bytes()
    batch = {"bytes": [data, data, data], "path": [None, None, "/elsewhere/coffee.png"], "key": [None, "k-1", None]}
    out = tmp_path / "out"
    rows = _lists(Explainer(CamOptions(out=out), root=pictures, map_png=True)(batch))
    assert rows["key"] == ["sha256:" + hashlib.sha256(data).hexdigest(), "k-1", "/elsewhere/coffee.png"]
    assert rows["status"] == ["ok", "ok", "failed"] and "not under root" in rows["error"][2]
    assert Path(rows["overlay"][1]).name.startswith("k-1.gradcam.967-")
    cam = np.asarray(Image.open(io_bytes(rows["map_png"][0])))
    assert cam.shape == np.asarray(Image.open(pictures / "coffee.png")).shape[:2] and cam.max() == 255
    assert {r["input"] for r in _records(out)} == {rows["key"][0], "k-1", "/elsewhere/coffee.png"}


def test_copies_in_one_process_share_a_worker_and_file_uris_are_paths(pictures: Path, tmp_path: Path) -> None:
    explainer = Explainer(CamOptions(out=tmp_path / "out"), root=f"file://{pictures}")
    empty = explainer({"bytes": [], "path": []})  # Dask's meta: the columns, no model loaded
    assert list(empty) == list(COLUMNS) and explainer._worker is None
    one, two = pickle.loads(pickle.dumps(explainer)), pickle.loads(pickle.dumps(explainer))  # Spark: a copy a task
    paths = [f"file:{pictures / n}" for n in NAMES]  # Spark's binaryFile spelling
    rows = _lists(one({"bytes": [(pictures / n).read_bytes() for n in NAMES], "path": paths}))
    assert two.worker() is one.worker()  # the model loaded once in this process
    assert rows["status"] == ["ok"] * 3 and rows["path"] == rows["key"] == paths
    assert [Path(o).name.split(".gradcam.")[0] for o in rows["overlay"]] == list(NAMES)
    assert {r["input"] for r in _records(tmp_path / "out")} == {str(pictures / n) for n in NAMES}
    shared = one.worker()
    one.close()
    assert two.worker() is not shared and two.worker().usable and not shared.usable
    two.close()


def io_bytes(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def test_a_batch_run_twice_dedupes_on_merge(pictures: Path, cli_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for _ in range(2):  # the engine ran the task again (no resume): the same files, the records twice
        rows = _lists(Explainer(CamOptions(out=out), root=pictures, skip_existing=False)(_bytes_batch(pictures)))
        assert rows["status"] == ["ok"] * 3
    _same_pictures(out, cli_out)
    assert len(_records(out)) == 6
    assert runner.invoke(app, ["merge-manifests", str(out)]).exit_code == 0
    merged = _records(out)
    assert len(merged) == 3 and len({record_key(r) for r in merged}) == 3 and len(RECORD_KEY) > 1


# ------------------------------------------------------------------------------------------------------ Ray
class DiesOnce(Explainer):
    """A worker killed mid-batch, once: at the first batch holding ``victim`` it explains that batch's first row
    only (its files written and recorded) and exits its process without returning anything."""

    def __init__(self, *args: Any, victim: str, marker: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.victim, self.marker = victim, marker

    def __call__(self, batch: Any) -> Any:
        if not os.path.exists(self.marker) and any(str(p).endswith(self.victim) for p in batch["path"]):
            Path(self.marker).touch()
            super().__call__({k: v[:1] for k, v in batch.items()})
            os._exit(1)
        return super().__call__(batch)


@pytest.fixture(scope="module")
def ray_data():
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # DiesOnce travels by value
    # the workers import this checkout's camcli
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src")}})
    yield ray.data
    ray.shutdown()


def _parquet_rows(folder: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return sorted(pq.read_table(folder).to_pylist(), key=lambda r: str(r["path"]))


def _explained(ds: Any, out: Path, root: Path, cls: type[Explainer] = Explainer, **kwargs: Any) -> Any:
    return ds.map_batches(
        cls,
        fn_constructor_kwargs={"options": CamOptions(out=out), "root": str(root), **kwargs},
        concurrency=2,
        num_cpus=0.5,  # two workers beside the readers on two CPUs
        batch_size=2,
    )


@pytest.mark.slow
def test_ray_pipelines_match_the_cli(ray_data: Any, pictures: Path, cli_out: Path, tmp_path: Path) -> None:
    reference = _by_name(_records(cli_out))
    for read in ("read_binary_files", "read_images"):
        out, table = tmp_path / read / "out", tmp_path / read / "parquet"
        ds = getattr(ray_data, read)(str(pictures), include_paths=True)
        _explained(ds, out, pictures).write_parquet(str(table))
        rows = _parquet_rows(table)
        assert [Path(r["path"]).name for r in rows] == list(NAMES)
        for r in rows:
            assert r["status"] == "ok" and r["error"] is None
            assert (r["class_index"], r["class_name"], r["score"]) == reference[Path(r["path"]).name]
            assert Path(r["overlay"]).is_file() and Path(r["overlay"]).parent == out
        _same_pictures(out, cli_out)
        assert _by_name(_records(out)) == reference


@pytest.mark.slow
def test_ray_a_killed_worker_loses_nothing(ray_data: Any, pictures: Path, cli_out: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "many", tmp_path / "out"
    folder.mkdir()
    for k in range(3):
        for name in NAMES:
            shutil.copy(pictures / name, folder / f"{k}-{name}")
    victim = "1-astronaut.png"
    try:
        dying = _explained(ray_data.read_binary_files(str(folder), include_paths=True), out, folder, DiesOnce,
                           victim=victim, marker=str(tmp_path / "died"))  # fmt: skip
        dying.write_parquet(str(tmp_path / "first"))
    except Exception:
        pass  # the engine may give up on the task, or retry it on a new worker: either way, run again
    assert (tmp_path / "died").exists()
    if (tmp_path / "first").exists():  # Ray retried the task on a worker: a new one skips the row the killed one
        first = _parquet_rows(tmp_path / "first")  # made, the other one (its resume set read before) makes it again
        assert len(first) == 9 and {r["status"] for r in first} <= {"ok", "skipped"}
    _explained(ray_data.read_binary_files(str(folder), include_paths=True), out, folder).write_parquet(
        str(tmp_path / "again")
    )
    rows = _parquet_rows(tmp_path / "again")
    assert len(rows) == 9 and {r["status"] for r in rows} <= {"ok", "skipped"}
    assert any(r["status"] == "skipped" for r in rows)  # what the killed worker had recorded
    assert runner.invoke(app, ["merge-manifests", str(out)]).exit_code == 0
    merged = _records(out)
    assert len({record_key(r) for r in merged}) == len(merged) == 9 and {r["status"] for r in merged} == {"ok"}
    reference = _by_name(_records(cli_out))
    for r in merged:
        name = Path(r["input"]).name.split("-", 1)[1]
        assert (r["class_index"], r["class_name"], r["probability"]) == reference[name]
        ref = np.asarray(Image.open(cli_out / Path(r["outputs"]["overlay"]).name.split("-", 1)[1]).convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(r["outputs"]["overlay"]).convert("RGB")), ref)
    assert not list(out.glob(".camcli-*.tmp"))
