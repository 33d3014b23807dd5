"""The run's manifest: ``manifest.jsonl`` (or a shard's part) in the output folder, one JSON record per line.

Records are written as results arrive and flushed line by line, so an interrupted run keeps every record of
the outputs it finished. Sharded runs write ``manifest.shard-K-of-N.jsonl``; :func:`merge_manifests` joins them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..options import Shard
from .outputs import atomic_write_bytes

#: the fields that identify a record (each job's records set the ones that apply to it): a record with the same
#: values in a later part replaces an earlier one when parts are merged
RECORD_KEY = ("input", "kind", "method", "layer", "class_index")


class Manifest:
    """``manifest.jsonl`` (or a shard's part) in the output folder, written line by line, nothing kept."""

    def __init__(self, out_dir: Path, append: bool = False, name: str = "manifest.jsonl") -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / name
        self._f = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, recs: Iterable[dict[str, Any]]) -> None:
        for r in recs:
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def manifest_name(shard: Shard | None) -> str:
    return (
        "manifest.jsonl" if shard is None else f"manifest.shard-{shard[0]:0{len(str(shard[1]))}d}-of-{shard[1]}.jsonl"
    )


def merge_manifests(out_dir: Path) -> tuple[Path, int, int]:
    """Join ``manifest.shard-*.jsonl`` parts (and an existing manifest.jsonl) into ``manifest.jsonl``.

    Records are keyed by :data:`RECORD_KEY`; a later part's record replaces an earlier one; the result is
    sorted by input. Returns (path, parts read, records written).
    """
    parts = sorted(out_dir.glob("manifest.shard-*.jsonl"))
    target = out_dir / "manifest.jsonl"
    sources = ([target] if target.exists() else []) + parts
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for src in sources:
        for line in src.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            key = tuple(rec.get(f) for f in RECORD_KEY)
            merged[key] = rec
    body = "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in sorted(merged.values(), key=lambda r: str(r.get("input")))
    )
    atomic_write_bytes(target, body.encode("utf-8"))
    return target, len(parts), len(merged)
