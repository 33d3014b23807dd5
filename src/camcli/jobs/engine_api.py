"""camcli inside a data engine: :class:`Explainer`, what Ray Data's ``map_batches`` (and Spark's ``mapInPandas``,
Dask's ``map_partitions``) call on each batch of rows.

An explainer is its configuration (the options of ``camcli gradcam``/``cam`` and the folder the engine read): it
pickles without its model, and each worker process loads the model once, on ``options.device``, at its first
batch. A batch's rows are staged as files (:mod:`camcli.jobs.engine_rows`) and run through the CLI's own runner
(:func:`~camcli.jobs.runner.run_items`): the same decoder, the same output names (``OUT/<rel>.<method>.<class>.png``),
the same atomic writes, and records appended to ``OUT/manifest.jsonl`` under the ledger's lock, so that workers
in several processes share one OUT. Resume is on by default: a row whose outputs are recorded comes back
``skipped``, with its files; a row the engine runs twice writes the same files, and ``camcli merge-manifests``
keeps one record of each.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..io.inputs import input_key
from ..io.manifest import DONE, read_records, record_key
from ..models import LoadedModel
from ..options import CamOptions
from .engine_rows import StagedRow, columns_of, is_frame, stage_rows
from .job import Job
from .ledger import Ledger
from .objects import cam_job
from .results import ImageResult, Record
from .runner import run_items

#: the columns of what an explainer returns: one row per map written (or found), one per failed input
COLUMNS = (
    *("key", "path", "model", "method", "layer", "class_index", "class_name", "score", "overlay"),
    *("status", "error"),
)

#: one map of an input as its row says it: method, layer, class index, class name, score, overlay
Output = tuple[str | None, str | None, int | None, str | None, float | None, str | None]
_NONE: Output = (None, None, None, None, None, None)


def output_of(rec: Record) -> Output:
    """What a row says of one record: a CAM record's class and probability, or an object's label and score."""
    said, written = rec.get("target"), rec.get("outputs")
    target: dict[str, Any] = said if isinstance(said, dict) else {}
    files: dict[str, Any] = written if isinstance(written, dict) else {}
    return (
        rec.get("method"),
        rec.get("layer"),
        rec.get("class_index", target.get("label")),
        rec.get("class_name", target.get("label_name")),
        rec.get("probability", target.get("score")),
        files.get("overlay"),
    )


def map_png(cam: np.ndarray) -> bytes:
    """A map in [0, 1] as an 8-bit grayscale PNG (255: the map's maximum), at the picture's size."""
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(cam * 255.0), 0, 255).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


class _RowLedger(Ledger):
    """A worker's ledger, kept open across its batches. A picture staged from an array is camcli's PNG of it, not
    the original file: its records carry no file digest (the report copies only inputs whose digest matches)."""

    def __init__(self, job: Job[Any]) -> None:
        super().__init__(job)
        self.encoded: set[str] = set()

    def record(self, result: ImageResult) -> None:
        if result.input in self.encoded:
            result.input_sha256 = None
        super().record(result)


def _release(ledger: Ledger, folder: Path) -> None:
    ledger.close()
    shutil.rmtree(folder, ignore_errors=True)


class _Worker:
    """What one process holds: the job (its model loaded, on its device), the ledger, a private staging folder,
    and the recorded maps of the inputs found done (read from the manifest once, at the first skipped row)."""

    def __init__(self, options: CamOptions, model: LoadedModel | None) -> None:
        self.pid = os.getpid()
        self.job = cam_job(options, model)
        self.ledger = _RowLedger(self.job)
        self.folder = Path(tempfile.mkdtemp(prefix="camcli-rows-"))
        self.release = weakref.finalize(self, _release, self.ledger, self.folder)
        self.recorded: dict[int, list[Output]] | None = None
        self.lock = threading.Lock()

    @property
    def usable(self) -> bool:
        """Set up in this process (not inherited by a fork) and not closed."""
        return self.pid == os.getpid() and self.release.alive

    def done_outputs(self, source: str) -> list[Output]:
        """The maps recorded for an input found done with this run's model, layers and settings."""
        if self.recorded is None:
            self.recorded = self._read_recorded()
        return self.recorded.get(input_key(Path(source)), [])

    def remember(self, result: ImageResult) -> list[Output]:
        """The maps of a result just recorded (kept for a later skip of the same input in this worker)."""
        outputs = [output_of(r) for r in result.records]
        if self.recorded is not None:
            self.recorded[input_key(Path(result.input))] = outputs
        return outputs

    def _read_recorded(self) -> dict[int, list[Output]]:
        job = self.job
        layer, settings = "+".join(job.layers), job.record_settings
        by_input: dict[int, dict[tuple[str, ...], Output]] = {}
        path = self.ledger.manifest.path
        for rec in read_records(path)[0] if path.is_file() else []:
            if rec.get("model") != job.model.name or rec.get("layer") != layer or rec.get("settings") != settings:
                continue
            key = input_key(Path(rec["input"]))
            if rec.get("status") in DONE:
                by_input.setdefault(key, {})[record_key(rec)] = output_of(rec)
            else:  # the last record counts: an input that failed since was not done
                by_input.pop(key, None)
        return {k: list(v.values()) for k, v in by_input.items()}


#: this process's workers by configuration (the options' repr), shared by the copies of one explainer
_SHARED: dict[str, _Worker] = {}
_SHARED_LOCK = threading.Lock()


class Explainer:
    """Explains the rows of a batch: ``explainer(batch)`` gives a dict of columns (Arrow arrays of fixed types:
    :data:`ARROW_TYPES`), or a pandas DataFrame for a DataFrame.

    ``options``: those of ``camcli gradcam``/``cam`` (``out``, ``methods``, ``top_k``, ``device`` …). ``root``: the
    folder the engine read (what the CLI would have been given); outputs are named by the path relative to it,
    as the CLI names them; without it by the file name alone (the engine's paths say nothing of where the
    folder it read begins), and a path outside it fails for its row. ``skip_existing`` (on: resume) replaces the
    options'. ``map_png``: a ``map_png`` column with each map as an 8-bit grayscale PNG (None for skipped rows).
    ``model``: a model already loaded, used in this process (a copy in another process loads its own).

    The batch's columns: ``image`` (H×W×C uint8 arrays) or ``bytes`` (encoded files), ``path``, optionally
    ``key`` (a row's key: ``key``, else ``path``, else ``sha256:`` of its bytes or pixels). The result's
    columns: :data:`COLUMNS` (``status``: ok, skipped or failed; ``error``: one line), one row per map.
    """

    def __init__(
        self,
        options: CamOptions | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        skip_existing: bool = True,
        map_png: bool = False,
        model: LoadedModel | None = None,
    ) -> None:
        given = options or CamOptions()
        self.options = dataclasses.replace(given, skip_existing=skip_existing, keep_maps=given.keep_maps or map_png)
        self.options.check()
        if self.options.shard is not None:
            raise UsageError("shard: the engine splits the rows between its workers; drop the option")
        if self.options.report:
            raise UsageError("report: the report's pictures are made from files; run `camcli report OUT` afterwards")
        self.root = None if root is None else os.fspath(root)
        self.map_png = map_png
        self._model = model
        self._worker: _Worker | None = None

    def __getstate__(self) -> dict[str, Any]:
        """The configuration only: never the model, the ledger or the staging folder of this process."""
        state = self.__dict__.copy()
        state["_model"] = None
        state["_worker"] = None
        return state

    def columns(self) -> tuple[str, ...]:
        return (*COLUMNS, "map_png") if self.map_png else COLUMNS

    def worker(self) -> _Worker:
        """This process's worker, set up at its first batch. Copies of an explainer in one process (Spark and Dask
        unpickle one per task) share it: the model loads once per process; a forked copy sets up its own."""
        if self._worker is None or not self._worker.usable:
            key = repr(self.options) if self._model is None else None
            with _SHARED_LOCK:
                found = _SHARED.get(key) if key is not None else None
                if found is None or not found.usable:
                    found = _Worker(self.options, self._model)
                    if key is not None:
                        _SHARED[key] = found
            self._worker = found
        return self._worker

    def close(self) -> None:
        """Close the ledger and remove the staging folder (also done when the process ends); a copy's next batch
        sets up a new worker."""
        if self._worker is not None and self._worker.usable:
            with _SHARED_LOCK:
                for key in [k for k, w in _SHARED.items() if w is self._worker]:
                    del _SHARED[key]
            self._worker.release()
        self._worker = None

    def __call__(self, batch: Any) -> Any:
        frame = is_frame(batch)
        cols = columns_of(batch)
        out: dict[str, list[Any]] = {c: [] for c in self.columns()}
        if not len(next(iter(cols.values()))):  # no rows (Dask's meta): the columns, and no model loaded
            return _frame(out) if frame else _arrays(out)
        worker = self.worker()
        with worker.lock:  # one batch at a time per process (a thread pool's tasks share the worker)
            folder = Path(tempfile.mkdtemp(dir=worker.folder))
            try:
                rows = stage_rows(cols, self.root, folder, worker.job.media)
                worker.ledger.encoded = {r.item.display for r in rows if r.encoded}
                results = list(run_items(worker.job, [r.item for r in rows], ledger=worker.ledger))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            for row, result in zip(rows, results, strict=True):
                self._add(out, worker, row, result)
        return _frame(out) if frame else _arrays(out)

    def _add(self, out: dict[str, list[Any]], worker: _Worker, row: StagedRow, result: ImageResult) -> None:
        """The rows of one input: one per map written or found, or one that says why it failed."""
        maps: list[bytes | None] = []
        if result.skipped:
            status, error, outputs = "skipped", None, worker.done_outputs(row.item.display) or [_NONE]
        elif not result.ok:
            status, error, outputs = "failed", _one_line(result.error, row), [_NONE]
        else:
            status, error, outputs = "ok", None, worker.remember(result) or [_NONE]
            found = result.maps or {}
            maps = [map_png(found[o[5]]) if o[5] in found else None for o in outputs]
        model = worker.job.model.name
        for k, (method, layer, index, name, score, overlay) in enumerate(outputs):
            values = (row.key, row.path, model, method, layer, index, name, score, overlay, status, error)
            for column, value in zip(COLUMNS, values, strict=True):
                out[column].append(value)
            if self.map_png:
                out["map_png"].append(maps[k] if k < len(maps) else None)


def _one_line(error: str | None, row: StagedRow) -> str:
    """The error of a failed row on one line, about the original (never the staged file's name)."""
    text = (error or "failed").replace(str(row.item.path), row.item.display)
    return " ".join(text.split())


#: the Arrow type of each column (the others: string); every batch's columns have these types, also a column
#: that is all null in a batch (``error`` when nothing failed), so that the Parquet files of one run agree
ARROW_TYPES = {"class_index": "int64", "score": "float64", "map_png": "binary"}


def _arrays(out: dict[str, list[Any]]) -> dict[str, Any]:
    """The rows as a dict of Arrow arrays of fixed types (``.to_pylist()`` gives lists)."""
    try:
        import pyarrow as pa
    except ImportError:
        raise UsageError("the explainer returns Arrow columns: pip install pyarrow (or camcli[ray])") from None
    return {c: pa.array(v, type=getattr(pa, ARROW_TYPES.get(c, "string"))()) for c, v in out.items()}


def _frame(out: dict[str, list[Any]]) -> Any:
    """The rows as a pandas DataFrame of nullable columns (string, Int64, Float64; ``map_png``: bytes objects), whose
    Arrow types are the same in every batch."""
    import pandas as pd

    kinds = {"class_index": "Int64", "score": "Float64", "map_png": object}
    return pd.DataFrame({c: pd.array(v, dtype=kinds.get(c, "string")) for c, v in out.items()})
