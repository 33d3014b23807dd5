"""Discovering inputs: files, folders (recursive, lazy, sorted), globs, list files and stdin; shards.

Nothing here reads pixels (see :mod:`camcli.io.decode`) or writes files (see :mod:`camcli.io.outputs`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..options import Shard

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InputFile:
    """One input image: its path and the path relative to the folder its outputs are mirrored from."""

    path: Path
    rel: Path

    @property
    def display(self) -> str:
        return str(self.path)


# ------------------------------------------------------------------------------------------ discovery
LIST_SUFFIXES = (".txt", ".lst")


def _is_list(spec: str) -> bool:
    return spec == "-" or (spec.lower().endswith(LIST_SUFFIXES) and Path(spec).is_file())


def _glob_base(spec: str) -> Path:
    base_parts = []
    for part in Path(spec).parts:
        if _GLOB_CHARS.search(part):
            break
        base_parts.append(part)
    return Path(*base_parts) if base_parts else Path(".")


def _root_of(spec: str) -> Path | None:
    """The folder a command-line input's outputs are mirrored from (None for list files / stdin)."""
    if _is_list(spec):
        return None
    p = Path(spec)
    if _GLOB_CHARS.search(spec) and not p.exists():
        return _glob_base(spec)
    if p.is_dir():
        return p
    if p.is_file() or p.is_symlink():
        return p.parent
    raise UsageError(f"input '{spec}' does not exist; pass an image file, a folder, a glob or a list file")


def _walk(folder: Path, skip: Path | None) -> Iterator[Path]:
    """Image files under ``folder`` in sorted order, not descending into ``skip`` (the output folder)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if skip is not None and path.resolve() == skip:
                continue
            yield from _walk(path, skip)
        elif entry.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            yield path


def _list_entries(spec: str) -> Iterator[Path]:
    """Paths from a list file (one per line; blank lines and '#' comments skipped) or from stdin ('-')."""
    import sys

    stream = sys.stdin if spec == "-" else open(spec, encoding="utf-8")  # noqa: SIM115
    try:
        for line in stream:
            text = line.strip()
            if text and not text.startswith("#"):
                yield Path(text)
    finally:
        if stream is not sys.stdin:
            stream.close()


def _list_rel(path: Path) -> Path:
    """Mirrored path of a list entry: relative paths as written (no '..'), absolute ones without the anchor."""
    norm = Path(os.path.normpath(path))
    parts = [p for p in (norm.parts[1:] if norm.is_absolute() else norm.parts) if p not in ("..", ".")]
    return Path(*parts) if parts else Path(path.name)


def shard_of(rel: Path, count: int) -> int:
    """Stable shard number (1…count) of a relative path: the same on every machine and Python run."""
    digest = hashlib.sha1(rel.as_posix().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def iter_inputs(specs: Sequence[str], out_dir: Path | None = None, shard: Shard | None = None) -> Iterator[InputFile]:
    """Input images, lazily, in sorted order per input, each once, with the path its outputs mirror.

    Files given by name are taken whatever their extension; folders are walked recursively (sorted, lazily)
    for files with an image extension (case-insensitive); globs are expanded; ``.txt``/``.lst`` files and
    ``-`` (stdin) list one path per line. Outputs mirror paths relative to the common folder of all inputs,
    so two inputs never map to the same output. The output folder is never scanned. ``shard=(k, n)`` keeps
    the inputs whose stable hash of the relative path falls in slice k of n.
    """
    if not specs:
        raise UsageError("no inputs given; pass image files, folders, globs or a list file")
    skip = out_dir.resolve() if out_dir is not None else None
    roots = {spec: _root_of(spec) for spec in specs}
    resolved = {r.resolve() for r in roots.values() if r is not None}
    base = Path(os.path.commonpath([str(r) for r in resolved])) if len(resolved) > 1 else next(iter(resolved), None)
    seen: set[Path] | None = set() if len(specs) > 1 else None
    for spec, root in roots.items():
        walked = root is not None and Path(spec).is_dir()
        if root is None:
            paths: Iterable[Path] = _list_entries(spec)
        elif walked:
            paths = _walk(root, skip)
        elif _GLOB_CHARS.search(spec) and not Path(spec).exists():
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not matches:
                raise UsageError(f"no files match '{spec}'; check the pattern (quote it so the shell keeps it)")
            paths = matches
        else:
            paths = [Path(spec)]
        for path in paths:
            key = path.resolve()
            if walked and skip is not None and key.is_relative_to(skip):
                continue
            if seen is not None:
                if key in seen:
                    continue
                seen.add(key)
            if root is None:
                rel = _list_rel(path)
            elif base is not None and key.is_relative_to(base):
                rel = Path(os.path.relpath(key, base))
            else:
                rel = Path(path.name)
            if shard is not None and shard_of(rel, shard[1]) != shard[0]:
                continue
            yield InputFile(path, rel)


def count_inputs(specs: Sequence[str], out_dir: Path | None = None, shard: Shard | None = None) -> int | None:
    """How many inputs :func:`iter_inputs` will give (names only, nothing decoded); None when reading stdin."""
    if "-" in specs:
        return None
    return sum(1 for _ in iter_inputs(specs, out_dir, shard))
