"""Discovering inputs: files, folders (recursive, lazy, sorted), globs, list files and stdin; shards.

Nothing here reads pixels (see :mod:`camcli.io.decode`) or writes files (see :mod:`camcli.io.outputs`).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..options import Shard

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)
_GLOB_CHARS = re.compile(r"[*?\[]")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")  # camcli.io.video reads them
NIFTI_SUFFIXES = (".nii", ".nii.gz")
VOLUME_SUFFIXES = (*NIFTI_SUFFIXES, ".npy")  # camcli.io.volume reads them (a .npy only when named: see below)


def media_name(path: Path, walked: bool = False) -> bool:
    """``path`` names a video or a volume; ``walked`` (found in a folder): a ``.npy`` is not taken for a volume
    there (camcli's own maps are .npy files), only when it is named."""
    name = path.name.lower()
    return name.endswith(VIDEO_EXTENSIONS + (NIFTI_SUFFIXES if walked else VOLUME_SUFFIXES))


@dataclass(frozen=True)
class InputFile:
    """One input: its path, the path relative to the folder its outputs are mirrored from, and, when discovery
    found the entry unusable (a symlink loop, a FIFO, an unreadable folder, an output-name clash), why: such an
    input is reported as failed and the run goes on."""

    path: Path
    rel: Path
    problem: str | None = None
    media: bool = False  # a video or volume, explained whole (camcli.jobs.media)
    #: what the input is when ``path`` is a staged copy of it (camcli.jobs.engine_api: a row an engine handed
    #: over, written to a private temporary file): the original's path or key, which the records, the pictures'
    #: owner tag and resume are about; None: ``path`` itself
    source: str | None = None

    @property
    def display(self) -> str:
        """The path (or the source) as text; bytes that are not UTF-8 appear as surrogate escapes (``os.fsdecode``)."""
        return self.source if self.source is not None else str(self.path)

    @property
    def origin(self) -> Path:
        """The input the outputs belong to: the source's path when the file read is a staged copy, else ``path``."""
        return Path(self.source) if self.source is not None else self.path


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
    if os.path.lexists(p):  # a file, a link (even a broken one or a loop), a FIFO: decoding says what is wrong
        return p.parent
    raise UsageError(f"input '{spec}' does not exist; pass an image file, a folder, a glob or a list file")


def identity(path: Path) -> Path:
    """The absolute, symlink-free path where that can be found (a symlink loop keeps its own name)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


Found = tuple[Path, str | None]  # a path found by discovery, and why it cannot be used (None: usable)


class OutputFolder:
    """The ``--out`` folder, recognised by identity (device and inode) as well as by path, so that discovery
    never reads camcli's own outputs as inputs."""

    def __init__(self, out: Path | None) -> None:
        self.path = identity(out) if out is not None else None
        self._id: tuple[int, int] | None = None
        if out is not None:
            try:
                st = os.stat(out)
                self._id = (st.st_dev, st.st_ino)
            except OSError:
                pass

    def is_(self, folder: Path) -> bool:
        if self.path is None:
            return False
        if self._id is not None:
            try:
                st = os.stat(folder)
                return (st.st_dev, st.st_ino) == self._id
            except OSError:
                return False
        return identity(folder) == self.path

    def contains(self, path: Path) -> bool:
        return self.path is not None and identity(path).is_relative_to(self.path)


def _describe_unusable(path: Path) -> str:
    """Why a name with an image extension is not a readable regular file."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{path}: a symbolic link loop; skipped"
        if e.errno == errno.ENOENT:
            return f"{path}: a broken symbolic link; skipped"
        return f"{path}: cannot read ({e.strerror or e}); skipped"
    kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
    return f"{path}: {kind}, not a regular file; skipped"


def _walk(folder: Path, out: OutputFolder, media: bool = False) -> Iterator[Found]:
    """Image files under ``folder`` in sorted order, each with the problem that makes it unusable (or None).

    Hidden entries (names starting with '.', which includes macOS ``._*`` files) are skipped; the output folder
    is never entered; symbolic links to folders are not followed.
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        yield folder, f"{folder}: cannot list the folder ({e.strerror or e}); its images are skipped"
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                if not out.is_(path):
                    yield from _walk(path, out, media)
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS and not (media and media_name(path, walked=True)):
                continue
            usable = entry.is_file()
        except OSError:
            usable = False
        yield path, None if usable else _describe_unusable(path)


_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def _list_entries(spec: str) -> Iterator[tuple[Path, str | None, Path]]:
    """Paths from a list file (one per line; blank lines and '#' comments skipped) or from stdin ('-'), each with
    the problem that makes it unusable (or None) and the path as written (what its outputs mirror).

    A list file's relative paths are read from the list file's folder (a list beside its images works from
    anywhere); stdin's from the working folder. A relative path found only in the working folder is reported in
    one line, not guessed at. Lines are bytes: names that are not UTF-8 are kept as surrogate escapes
    (``os.fsdecode``), like any path.
    """
    import sys

    folder = Path(".") if spec == "-" else Path(spec).parent
    stream = sys.stdin.buffer if spec == "-" else open(spec, "rb")  # noqa: SIM115
    try:
        head = stream.peek(16)[:16] if hasattr(stream, "peek") else b""
        if head.startswith(_IMAGE_MAGIC):  # `cat x.png | camcli gradcam -`: one line, not one per "line" of it
            where = "standard input" if spec == "-" else spec
            raise UsageError(
                f"{where} holds image data, not a list of paths; pass image files as arguments "
                "('-' reads one path per line)"
            )
        for number, raw in enumerate(stream, 1):
            text = os.fsdecode(raw.strip())
            if not text or text.startswith("#"):
                continue
            if "\0" in text:
                line = Path(f"{spec}:{number}")
                yield line, f"{spec}:{number}: not a path (it holds a NUL byte); a list of paths?", line
                continue
            path = folder / text
            problem = None
            if folder != Path(".") and not os.path.lexists(path) and os.path.lexists(text):
                problem = (
                    f"{spec}:{number}: {text} is not in the list file's folder ({path} does not exist) but is in the "
                    f"working folder; a list's relative paths are read from its own folder: write it as "
                    f"{identity(Path(text))} or relative to {folder}"
                )
            yield path, problem, Path(text)
    finally:
        if spec != "-":
            stream.close()


def _list_rel(path: Path) -> Path:
    """Mirrored path of a list entry: relative paths as written, each '..' as a folder named '__up__' (so
    ``../A/x.png`` and ``A/x.png`` stay apart), absolute ones without the anchor."""
    norm = Path(os.path.normpath(path))
    parts = [("__up__" if p == ".." else p) for p in (norm.parts[1:] if norm.is_absolute() else norm.parts)]
    parts = [p for p in parts if p != "."]
    return Path(*parts) if parts else Path(path.name)


def shard_of(rel: Path, count: int) -> int:
    """Stable shard number (1…count) of a relative path: the same on every machine and Python run."""
    digest = hashlib.sha1(os.fsencode(rel.as_posix())).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def _digest(path: Path) -> int:
    return int.from_bytes(hashlib.blake2b(os.fsencode(str(path)), digest_size=8).digest(), "big")


def content_digest(path: Path) -> str | None:
    """The SHA-256 of a regular file's bytes (hex), as a run records it (``input_sha256``) so that the report
    copies only pictures that are the input the run read; None when it cannot be read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except (OSError, ValueError):
        return None


def input_key(path: Path) -> int:
    """A small key for an input: a 64-bit digest of its resolved path."""
    return _digest(identity(path))


def check_output_folder(specs: Sequence[str], out_dir: Path) -> None:
    """Refuse an ``--out`` that is an input folder: outputs written there would be read as inputs next time."""
    out = OutputFolder(out_dir)
    for spec in specs:
        if not _is_list(spec) and not _GLOB_CHARS.search(spec) and Path(spec).is_dir() and out.is_(Path(spec)):
            raise UsageError(
                f"--out {out_dir} is the input folder {spec}; outputs would be read as inputs on the next run. "
                "Pick another --out (a folder inside the input folder is fine: it is skipped)"
            )


def iter_inputs(
    specs: Sequence[str], out_dir: Path | None = None, shard: Shard | None = None, media: bool = False
) -> Iterator[InputFile]:
    """Input images, lazily, in sorted order per input, each once, with the path its outputs mirror.

    Files given by name are taken whatever their extension; folders are walked recursively (sorted, lazily)
    for files with an image extension (case-insensitive), skipping hidden entries; globs are expanded; ``.txt``/
    ``.lst`` files and ``-`` (stdin) list one path per line (relative ones from the list file's folder; stdin's
    from the working folder). Outputs mirror paths relative to the common folder of all inputs; two inputs that
    would still share output names are reported, not overwritten. The output folder is never scanned (walks and
    globs). An entry that cannot be used (symlink loop, FIFO, unreadable folder) comes as an :class:`InputFile`
    with its ``problem``. ``shard=(k, n)`` keeps the inputs whose stable hash of the relative path falls in slice
    k of n. ``media``: videos and volumes are inputs too (folders are walked for them; ``InputFile.media``).
    """
    if not specs:
        raise UsageError("no inputs given; pass image files, folders, globs or a list file")
    if out_dir is not None:
        check_output_folder(specs, out_dir)
    out = OutputFolder(out_dir)
    roots = {spec: _root_of(spec) for spec in specs}
    resolved = {identity(r) for r in roots.values() if r is not None}
    base = Path(os.path.commonpath([str(r) for r in resolved])) if len(resolved) > 1 else next(iter(resolved), None)
    # what has been seen, as 64-bit digests so that memory stays small for millions of inputs
    seen: set[int] = set()  # inputs (resolved paths): each once
    taken: set[int] = set()  # output stems: never two inputs with one
    for spec, root in roots.items():
        walked = root is not None and Path(spec).is_dir()
        if root is None:
            found: Iterable[tuple[Path, str | None, Path | None]] = _list_entries(spec)
        elif walked:
            found = ((path, problem, None) for path, problem in _walk(root, out, media))
        elif _GLOB_CHARS.search(spec) and not Path(spec).exists():
            matches = sorted(
                Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file() and not out.contains(Path(p))
            )
            if not matches:
                raise UsageError(f"no files match '{spec}'; check the pattern (quote it so the shell keeps it)")
            found = [(m, None, None) for m in matches]
        else:
            found = [(Path(spec), None, None)]
        for path, problem, written in found:
            key = identity(path)
            key_digest = _digest(key)
            if key_digest in seen:
                continue
            seen.add(key_digest)
            if written is not None:  # a list's entry: mirrored as written
                rel = _list_rel(written)
            elif base is not None and key.is_relative_to(base):
                rel = Path(os.path.relpath(key, base))
            else:
                rel = Path(path.name)
            if shard is not None and shard_of(rel, shard[1]) != shard[0]:
                continue
            rel_digest = _digest(rel)
            if problem is None and rel_digest in taken:
                problem = (
                    f"{path}: its outputs would have the same names ({rel}) as those of an earlier input; skipped. "
                    "Give the files different names or folders, or explain them in separate runs"
                )
            taken.add(rel_digest)
            yield InputFile(path, rel, problem, media and media_name(path))


def count_inputs(
    specs: Sequence[str], out_dir: Path | None = None, shard: Shard | None = None, media: bool = False
) -> int | None:
    """How many inputs :func:`iter_inputs` will give (names only, nothing decoded); None when reading stdin."""
    if "-" in specs:
        return None
    return sum(1 for _ in iter_inputs(specs, out_dir, shard, media))
