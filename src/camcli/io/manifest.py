"""The run's ledger: ``manifest.jsonl`` (or a shard's part) in the output folder, one JSON record per line.

Guarantees (see "What is kept when a run stops" in the README):

* a record is appended right after its image's files were renamed into place, in one ``write`` call, and
  flushed to the operating system (with ``fsync=True`` also synced to the disk);
* the file is only ever appended to: a rerun adds records, and the last record of a key (:data:`RECORD_KEY`)
  is the one that counts; ``camcli merge-manifests`` compacts;
* every append and every rewrite holds an exclusive lock on ``OUT/.camcli.lock``, so concurrent runs into one
  folder interleave whole lines and a merge never drops a line another run is appending;
* a torn last line (a run killed mid-write, a full disk) is cut off, and reported, before the next append;
* records are JSON (no NaN), UTF-8; names that are not UTF-8 appear as ``\\udcXX`` escapes, which
  ``os.fsencode`` turns back into the original bytes.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..checks import json_value
from ..errors import UsageError
from ..options import Shard
from .inputs import input_key
from .outputs import atomic_write_bytes

#: the fields that identify a record (each job's records set the ones that apply to it): a record with the same
#: values later in the ledger (or in a later part) replaces an earlier one
# what one record is about: runs with other settings into one folder write other files, so their records differ
RECORD_KEY = ("input", "kind", "model", "method", "layer", "class_index", "target", "settings")  # target: an object
LOCK_NAME = ".camcli.lock"
# the statuses of an input that was done: ok, or a detector's or segmenter's answer that there was nothing to draw
# (no_label: no label reached --threshold)
DONE = ("ok", "no_detection", "no_match", "empty_mask", "no_label")

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs into one folder are then not supported
    fcntl = None  # type: ignore[assignment]


@contextmanager
def ledger_lock(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's ledger lock (exclusive, blocking) for the block."""
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def encode_record(record: dict[str, Any]) -> bytes:
    """One JSON line, UTF-8; a record holding undecodable names (surrogates) is written with ``\\u`` escapes."""
    try:
        return (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


class Manifest:
    """The ledger file of one run (append-only; see the module's guarantees)."""

    def __init__(self, out_dir: Path, name: str = "manifest.jsonl", *, fsync: bool = False) -> None:
        self.out_dir = out_dir
        self.path = out_dir / name
        self.fsync = fsync
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            _check_regular(self.path)
            self._fd = self._open()
            with ledger_lock(out_dir):
                self.repaired = self._cut_torn_line()
        except OSError as e:
            raise UsageError(
                f"cannot use the manifest {self.path} ({e.strerror or e}); move it away or pick another --out"
            ) from None

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)

    def _cut_torn_line(self) -> int:
        """Drop a last line without its newline (left by a killed run or a full disk); its length in bytes."""
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return 0
        pos = size
        while pos > 0:
            start = max(0, pos - 65536)
            chunk = os.pread(self._fd, pos - start, start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        os.ftruncate(self._fd, keep)
        return size - keep

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Append ``records`` (one write, under the lock; synced with ``fsync``): all of them or none. Raises
        ``OSError`` (a full disk) after cutting off whatever part of them reached the file."""
        data = b"".join(encode_record(r) for r in records)
        if not data:
            return
        with ledger_lock(self.out_dir):
            if _inode(self.path) != os.fstat(self._fd).st_ino:  # merge-manifests replaced the file: follow it
                os.close(self._fd)
                self._fd = self._open()
            before = os.fstat(self._fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.fsync:
                    os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, before)  # all of this image's records, or none of them
                raise

    def close(self) -> None:
        os.close(self._fd)


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


def manifest_name(shard: Shard | None, stem: str = "manifest") -> str:
    """``manifest.jsonl``, or a shard's part ``manifest.shard-03-of-12.jsonl`` (``stem``: ``metrics`` for
    `camcli evaluate`)."""
    return f"{stem}.jsonl" if shard is None else f"{stem}.shard-{shard[0]:0{len(str(shard[1]))}d}-of-{shard[1]}.jsonl"


def _check_regular(path: Path) -> None:
    """A manifest that exists must be a regular file (not a folder, and not a device that never ends)."""
    if os.path.lexists(path) and not stat.S_ISREG(os.stat(path).st_mode):  # a broken link: stat raises
        raise OSError(errno.EINVAL, "not a regular file")


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of a ledger file, and one line per line that is not a JSON record (``file:line: …``)."""
    records: list[dict[str, Any]] = []
    bad: list[str] = []
    try:
        _check_regular(path)
    except OSError as e:
        return records, [f"{path}: {e.strerror}; skipped"]
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json_value(raw)
            except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
                bad.append(f"{path}:{number}: not a JSON record ({str(e)[:80]}); skipped")
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                bad.append(f"{path}:{number}: not a JSON object; skipped")
    return records, bad


def recorded_inputs(out_dir: Path, name: str, stem: str = "manifest") -> set[int]:
    """Inputs whose last record in ``name`` (and in a merged ``manifest.jsonl``) says ``ok``, as digests of their
    resolved paths (:func:`~camcli.io.inputs.input_key`), so that ``photos/a.jpg`` and its absolute spelling
    are the same input."""
    state: dict[int, bool] = {}
    for path in dict.fromkeys([out_dir / f"{stem}.jsonl", out_dir / name]):
        if path.is_file():
            for rec in read_records(path)[0]:
                if isinstance(rec.get("input"), str):
                    state[input_key(Path(rec["input"]))] = rec.get("status") in DONE
    return {k for k, ok in state.items() if ok}


def record_key(rec: dict[str, Any]) -> tuple[str, ...]:
    """The :data:`RECORD_KEY` fields of a record, comparable (the settings are a dict)."""
    return tuple(json.dumps(rec.get(f), sort_keys=True) for f in RECORD_KEY)


def merge_manifests(out_dir: Path, stem: str = "manifest") -> tuple[Path, int, int, list[str]]:
    """Join ``manifest.shard-*.jsonl`` parts (and an existing manifest.jsonl) into ``manifest.jsonl`` (``stem``
    ``metrics``: `camcli evaluate`'s ``metrics.shard-*.jsonl`` into ``metrics.jsonl``).

    Records are keyed by :data:`RECORD_KEY`; a later record (later in a file, or in a later part) replaces an
    earlier one; the result is sorted by input. Lines that are not records are skipped and reported. Returns
    (path, parts read, records written, problems).
    """
    if not out_dir.is_dir():
        raise UsageError(f"'{out_dir}' is not a folder; pass the --out folder of the runs")
    parts = sorted(out_dir.glob(f"{stem}.shard-*.jsonl"))
    target = out_dir / f"{stem}.jsonl"
    with ledger_lock(out_dir):
        sources = ([target] if target.exists() else []) + parts
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        problems: list[str] = []
        for src in sources:
            records, bad = read_records(src)
            problems += bad
            for rec in records:
                merged[record_key(rec)] = rec
        body = b"".join(encode_record(r) for r in sorted(merged.values(), key=lambda r: str(r.get("input"))))
        atomic_write_bytes(target, body)
    return target, len(parts), len(merged), problems
