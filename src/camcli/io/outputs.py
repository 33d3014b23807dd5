"""Where outputs go and how they are written: output names, atomic writes (never a partial file), PNG and NPY.

Names: ``OUT/<input's path relative to the inputs' common folder>.<tag>.<class index>-<class slug>.png`` for
maps (``tag`` = method, ``method@layer``, ``guided-backprop``, ``guided-<method>``) and
``OUT/<relative path>.features.<layer>.png`` for feature grids. The input's full file name is kept, so two
inputs never share an output.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError, UsageError
from .inputs import InputFile, identity
from .png import encode_png, read_text

_UMASK = os.umask(0o022)  # read the process umask once, at import (os.umask can only read by setting)
os.umask(_UMASK)


def slug(text: str) -> str:
    """A file-name-safe version of a class name: ``"tabby, tabby cat"`` → ``tabby_tabby_cat``."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")
    return s[:60] or "class"


def cam_output_path(out: Path, item: InputFile, tag: str, index: int, class_name: str, suffix: str = ".png") -> Path:
    """The file of one map (``tag``) of one class of one input."""
    stem = out / item.rel
    return stem.with_name(f"{stem.name}.{tag}.{index}-{slug(class_name)}{suffix}")


def find_cam_outputs(out: Path, item: InputFile, tag: str, suffix: str) -> list[Path]:
    """Files of map ``tag`` of ``item`` for any class (exactly the names :func:`cam_output_path` makes)."""
    stem = out / item.rel
    pattern = f"{glob.escape(stem.name)}.{glob.escape(tag)}.*{suffix}"
    rx = re.compile(re.escape(f"{stem.name}.{tag}.") + r"\d+-[^.]*" + re.escape(suffix) + "$")
    return [p for p in stem.parent.glob(pattern) if rx.match(p.name)]


def feature_output_path(out: Path, item: InputFile, layer: str, suffix: str = ".png") -> Path:
    """The feature grid (or its ``.npy``) of one layer of one input."""
    stem = out / item.rel
    return stem.with_name(f"{stem.name}.features.{layer}{suffix}")


_TEMP = re.compile(r"^\.camcli-[0-9a-f]+\.(\d+)\.[^.]+\.tmp$")
_written = threading.local()  # the files written by this thread inside all_or_nothing()


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """The files this thread writes with :func:`atomic_write_bytes` inside the block are removed again if the
    block raises: an image's outputs are all there, or none of them (a full disk half-way through an image)."""
    _written.paths = []
    try:
        yield
    except BaseException:
        for p in _written.paths:
            with contextlib.suppress(OSError):
                os.unlink(p)
        raise
    finally:
        _written.paths = None


_cleaned: set[Path] = set()
_cleaned_lock = threading.Lock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _clean_stale_temps(folder: Path) -> None:
    with _cleaned_lock:
        if folder in _cleaned:
            return
        _cleaned.add(folder)
    try:
        names = [e.name for e in os.scandir(folder) if e.name.endswith(".tmp") and e.name.startswith(".")]
    except OSError:
        return
    for name in names:
        m = _TEMP.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)


def ensure_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be made in it, before any work (a
    :class:`~camcli.errors.UsageError` naming the problem otherwise)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".camcli-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        what = "is a file" if folder.exists() and not folder.is_dir() else f"cannot be written ({e.strerror or e})"
        raise UsageError(f"--out {folder} {what}; pick a folder you can write to") from None


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder and a rename.

    The temporary file is ``.camcli-HASH.PID.RANDOM.tmp``; the first write into a folder removes the temporary files
    that processes no longer running left there (a run killed with SIGKILL).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(target.parent)
    # short enough for any name that fits: the file system's limit (255 bytes) applies to the final name
    stem = hashlib.blake2b(os.fsencode(target.name), digest_size=6).hexdigest()
    fd, tmp = tempfile.mkstemp(prefix=f".camcli-{stem}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, target)
        if getattr(_written, "paths", None) is not None:
            _written.paths.append(target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


OWNER_KEY = "camcli-input"  # tEXt chunk: a digest of the absolute path of the input a picture was made from


def owner_tag(item: InputFile) -> str:
    """Who a picture belongs to: 16 hex digits of a digest of the input's absolute, resolved path."""
    return hashlib.blake2b(os.fsencode(str(identity(item.path))), digest_size=8).hexdigest()


def owned_by(target: Path, owner: str) -> bool:
    """True unless ``target`` is a picture camcli made from another input (files without the tag: True)."""
    return read_text(target).get(OWNER_KEY, owner) == owner


def atomic_save_png(target: Path, image: Image.Image, owner: str | None = None) -> None:
    """Write a PNG atomically. With ``owner`` (:func:`owner_tag`), the picture carries it, and an existing file
    made from *another* input is never replaced: two runs into one ``--out`` over different folders with the
    same file names would otherwise overwrite each other's outputs without a word."""
    if owner is not None and not owned_by(target, owner):
        raise InputError(
            f"{target} holds the output of another input with the same relative name (an earlier run into this "
            "--out); it is not overwritten. Use another --out, or explain both folders in one run"
        )
    text = {OWNER_KEY: owner} if owner is not None else None
    atomic_write_bytes(target, encode_png(np.asarray(image.convert("RGB")), text))


def atomic_save_npy(target: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(target, buf.getvalue())
