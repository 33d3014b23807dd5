"""Where outputs go and how they are written: output names, atomic writes (never a partial file), PNG and NPY.

Names: ``OUT/<input's path relative to the inputs' common folder>.<tag><settings>.<class index>-<class slug>.png``
for maps (``tag`` = method, ``method@layer``, ``guided-backprop``, ``guided-<method>``; ``top<R>-`` before the
class with ``--top-k`` above 1) and ``OUT/<relative path>.features.<layer><settings>.png`` for feature grids.
``<settings>`` (:func:`settings_name`) is empty for the default settings and names each setting that differs
(``,layer=layer3,smooth=8``), so runs that differ only in options never share a file. The input's full file
name is kept, so two inputs never share an output.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..checks import json_value
from ..errors import InputError, UsageError
from .formats import encode_picture, read_tags
from .inputs import InputFile, identity

_UMASK = os.umask(0o022)  # read the process umask once, at import (os.umask can only read by setting)
os.umask(_UMASK)


def slug(text: str) -> str:
    """A file-name-safe version of a class name: ``"tabby, tabby cat"`` → ``tabby_tabby_cat``."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")
    return s[:60] or "class"


Setting = tuple[str, "str | None"]  # (option, value) in an output name; value None: a flag
MAX_SETTINGS_NAME = 96  # characters of settings in a name; longer: cut, with a digest of the whole


def settings_name(settings: list[tuple[str, str | None]]) -> str:
    """The part of output names that says how a run differs from the defaults: ``,layer=layer3,smooth=8``.

    ``settings`` are the (option, value) pairs that differ from the defaults (a value of None: a flag such as
    ``aug-smooth``); none: ``""``, so a run with the default settings keeps the short names. Characters other
    than letters, digits and ``._+-`` become ``_``; beyond :data:`MAX_SETTINGS_NAME` characters the text is cut
    and ends with a digest of the whole, so that names stay short and still differ.
    """
    parts = [k if v is None else f"{k}={re.sub(r'[^0-9A-Za-z._+-]+', '_', v)}" for k, v in settings]
    text = "".join("," + p for p in parts)
    if len(text) > MAX_SETTINGS_NAME:
        digest = hashlib.blake2b(text.encode(), digest_size=5).hexdigest()
        text = f"{text[: MAX_SETTINGS_NAME - 12]},{digest}"
    return text


def cam_output_path(
    out: Path, item: InputFile, tag: str, index: int, class_name: str, suffix: str = ".png", rank: str | None = None
) -> Path:
    """The file of one map (``tag``: method and settings) of one class of one input; with ``rank`` (``--top-k``
    above 1) the class part starts ``topR-`` so that a folder listing shows the classes best first."""
    stem = out / item.rel
    ranked = f"top{rank}-" if rank is not None else ""
    return stem.with_name(f"{stem.name}.{tag}.{ranked}{index}-{slug(class_name)}{suffix}")


def object_output_path(
    out: Path, item: InputFile, tag: str, number: int, label: int, name: str, suffix: str = ".png"
) -> Path:
    """The map of one object (detection, segmented class) of one input: ``a.jpg.gradcam.obj02-17-cat.png``."""
    stem = out / item.rel
    return stem.with_name(f"{stem.name}.{tag}.obj{number:02d}-{label}-{slug(name)}{suffix}")


def rank_text(rank: int, of: int) -> str:
    """``rank`` zero-padded to the width of ``of`` (top 12 of 100: ``012``), so that names sort by rank."""
    return f"{rank:0{len(str(of))}d}"


def find_cam_outputs(out: Path, item: InputFile, tag: str, suffix: str, ranked: bool = False) -> list[Path]:
    """Files of map ``tag`` of ``item`` for any class (exactly the names :func:`cam_output_path` makes, with a
    rank when ``ranked``, without one otherwise)."""
    stem = out / item.rel
    pattern = f"{glob.escape(stem.name)}.{glob.escape(tag)}.*{suffix}"
    rank = r"top\d+-" if ranked else ""
    rx = re.compile(re.escape(f"{stem.name}.{tag}.") + rank + r"\d+-[^.]*" + re.escape(suffix) + "$")
    return [p for p in stem.parent.glob(pattern) if rx.match(p.name)]


def panel_output_path(out: Path, item: InputFile, tag: str, suffix: str = ".png") -> Path:
    """The comparison panel of one input (``tag``: ``panel-`` + the methods, and the settings)."""
    stem = out / item.rel
    return stem.with_name(f"{stem.name}.{tag}{suffix}")


def feature_output_path(out: Path, item: InputFile, layer: str, suffix: str = ".png") -> Path:
    """The feature grid (or its ``.npy``) of one layer of one input."""
    stem = out / item.rel
    return stem.with_name(f"{stem.name}.features.{layer}{suffix}")


_TEMP = re.compile(r"^\.camcli-[0-9a-f]+\.(\d+)\.[^.]+\.tmp$")
_written = threading.local()  # the files written by this thread inside all_or_nothing()


@contextlib.contextmanager
def all_or_nothing(inside: Path | None = None) -> Iterator[None]:
    """The files this thread writes with :func:`atomic_write_bytes` inside the block are removed again if the
    block raises: an image's outputs are all there, or none of them (a full disk half-way through an image).

    ``inside`` (the output folder): a file under it is never written through a folder in it that is a symbolic
    link (an :class:`~camcli.errors.InputError` names the link instead), so no file lands outside it."""
    _written.paths = []
    _written.inside = inside
    try:
        yield
    except BaseException:
        for p in _written.paths:
            with contextlib.suppress(OSError):
                os.unlink(p)
        raise
    finally:
        _written.paths = None
        _written.inside = None


def first_link(root: Path, folder: Path) -> Path | None:
    """The first folder from ``root`` (exclusive) down to ``folder`` (inclusive) that is a symbolic link, or
    None (also when ``folder`` is not under ``root`` as written). ``root`` itself is the user's choice."""
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        return None
    at = root
    for part in parts:
        at = at / part
        if os.path.islink(at):
            return at
    return None


def is_regular(path: Path) -> bool:
    """``path`` is a regular file itself (not a symbolic link to one, not a folder); False if it is not there."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


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
        try:
            is_file = folder.exists() and not folder.is_dir()
        except OSError:  # e.g. a name too long to even look up
            is_file = False
        what = "is a file" if is_file else f"cannot be written ({e.strerror or e})"
        raise UsageError(f"--out {folder} {what}; pick a folder you can write to") from None


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder and a rename (:func:`atomic_file`)."""
    with atomic_file(target) as tmp, open(tmp, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A temporary path in ``target``'s folder to write ``target`` at: when the block ends without an exception
    it is renamed to ``target`` (``os.replace``), else removed, so ``target`` is never a partial file. For writers
    that want a file name (a video muxer); :func:`atomic_write_bytes` for bytes in memory.

    The temporary file is ``.camcli-HASH.PID.RANDOM.tmp`` (the name says nothing of its format: pass the format
    to the writer); the first write into a folder removes the temporary files that processes no longer running
    left there (a run killed with SIGKILL).
    """
    inside = getattr(_written, "inside", None)
    if inside is not None and (link := first_link(inside, target.parent)) is not None:
        raise InputError(
            f"{link} is a symbolic link inside --out {inside}; camcli does not write through links there: "
            "remove the link or pick another --out"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(target.parent)
    # short enough for any name that fits: the file system's limit (255 bytes) applies to the final name
    stem = hashlib.blake2b(os.fsencode(target.name), digest_size=6).hexdigest()
    fd, tmp = tempfile.mkstemp(prefix=f".camcli-{stem}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, target)
        if getattr(_written, "paths", None) is not None:
            _written.paths.append(target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


OWNER_KEY = "camcli-input"  # tEXt chunk: a digest of the absolute path of the input a picture was made from
SETTINGS_KEY = "camcli-settings"  # tEXt chunk: the settings that made it (JSON: model, weights, layer, …)


def owner_tag(item: InputFile) -> str:
    """Who a picture belongs to: 16 hex digits of a digest of the input's absolute, resolved path (the original's,
    when the file read is a staged copy: :attr:`InputFile.origin`)."""
    return hashlib.blake2b(os.fsencode(str(identity(item.origin))), digest_size=8).hexdigest()


def conflict(target: Path, owner: str, settings: str | None = None) -> str | None:
    """Why ``target`` must not be replaced by a picture of input ``owner`` made with ``settings``: it is a
    picture camcli made from another input, or with other settings; None when it may (no such file, a file
    without the tags, or the same input and settings: a rerun)."""
    text = read_tags(target)
    if text.get(OWNER_KEY, owner) != owner:
        return "another input with the same relative name"
    if settings is not None and text.get(SETTINGS_KEY, settings) != settings:
        return f"other settings ({text[SETTINGS_KEY]}) that the name does not show"
    return None


def owned_by(target: Path, owner: str, settings: str | None = None) -> bool:
    """True unless ``target`` is a picture camcli made from another input or with other settings."""
    return conflict(target, owner, settings) is None


def atomic_save_picture(
    target: Path,
    image: Image.Image | Any,
    owner: str | None = None,
    settings: str | None = None,
    fmt: str = "png",
    quality: int = 90,
) -> None:
    """Write a picture (``fmt``: png, jpg, webp; ``image``: a Pillow picture or an (H, W, 3) uint8 tensor, see
    :func:`~camcli.io.formats.encode_picture`) atomically. With ``owner`` (:func:`owner_tag`) and ``settings``,
    the picture carries them, and an existing file made from *another* input or with other settings is never
    replaced: two runs into one ``--out`` over different folders with the same file names, or with two
    checkpoints of the same name, would otherwise overwrite each other's outputs without a word."""
    if owner is not None:
        why = conflict(target, owner, settings)
        if why is not None:
            raise InputError(
                f"{target} holds the output of {why}, from an earlier run into this --out; it is not "
                "overwritten. Use another --out"
            )
    text = {OWNER_KEY: owner} if owner is not None else {}
    if settings is not None:
        text[SETTINGS_KEY] = settings
    atomic_write_bytes(target, encode_picture(image, fmt, quality, text or None))


def atomic_save_npy(target: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(target, buf.getvalue())


def write_answer(target: Path, owner: str, settings: str, said: dict[str, Any]) -> None:
    """A small JSON file that says what a run found when there was nothing to draw (no detection, no label at the
    threshold), with its input and settings, so that ``--skip-existing`` knows the input was done."""
    atomic_write_bytes(target, (json.dumps({"input": owner, "settings": settings, **said}) + "\n").encode())


def answered(target: Path, owner: str, settings: str) -> bool:
    """``target`` is an answer file (:func:`write_answer`) written for this input with these settings."""
    try:
        said = json_value(target.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(said, dict) and said.get("input") == owner and said.get("settings") == settings
