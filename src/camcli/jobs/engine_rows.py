"""The rows an engine hands over (Ray Data's ``map_batches``, Spark's ``mapInPandas``, Dask's ``map_partitions``),
staged as files for the runner: each row's picture written to a private temporary folder, and an
:class:`~camcli.io.inputs.InputFile` whose ``source`` is the original path (or key), so that the decoder, the output
names, the ledger and the records are the CLI's (see :mod:`camcli.jobs.engine_api`).

A row is ``image`` (an H×W×C uint8 array, as Ray's ``read_images`` gives) or ``bytes`` (an encoded file, as
``read_binary_files`` gives), with ``path`` and optionally ``key``.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..io.inputs import InputFile, identity, media_name

Columns = dict[str, Sequence[Any]]
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # s3://, gs://, hdfs://, file://: not a local path
_NOT_IN_NAMES = re.compile(r"[^0-9A-Za-z._-]+")


@dataclass
class StagedRow:
    """One row: its key, its original path (None: none given), and the input the runner reads."""

    key: str
    path: str | None
    item: InputFile
    encoded: bool = False  # the staged file is camcli's PNG of an array, not the original file's bytes


def is_frame(batch: Any) -> bool:
    """``batch`` is a pandas DataFrame (Spark's ``mapInPandas``, Dask, Ray's ``batch_format="pandas"``)."""
    return type(batch).__name__ == "DataFrame" and hasattr(batch, "columns") and hasattr(batch, "iloc")


def columns_of(batch: Any) -> Columns:
    """The batch as a dict of columns (a DataFrame's columns as lists), checked: ``image`` or ``bytes`` is there,
    every column has as many rows."""
    if is_frame(batch):
        cols: Columns = {str(c): list(batch[c]) for c in batch.columns}
    elif isinstance(batch, Mapping):
        cols = {str(k): v for k, v in batch.items()}
    else:
        raise UsageError(
            f"a batch is a dict of columns or a pandas DataFrame, not {type(batch).__name__}; use map_batches with "
            'batch_format="default", "numpy" or "pandas"'
        )
    if "image" not in cols and "bytes" not in cols:
        raise UsageError(
            f"the batch has the columns {sorted(cols)}; it needs 'image' (read_images) or 'bytes' "
            "(read_binary_files), and 'path' (include_paths=True)"
        )
    sizes = {len(v) for v in cols.values()}
    if len(sizes) > 1:
        raise UsageError(f"the batch's columns have different lengths ({sorted(sizes)}); pass whole rows")
    return cols


def _text(value: Any) -> str | None:
    """A path or key cell as text (None: missing, as pandas' NaN or None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return str(value)


def local_path(path: str) -> str:
    """A ``file:`` URI (Spark's ``binaryFile`` paths: ``file:/data/a.jpg``) as the local path it names."""
    if path.startswith("file://"):
        return path[7:]
    return path[5:] if path.startswith("file:/") else path


def relative_name(path: str, root: str | None) -> Path:
    """What the outputs of ``path`` are named after: the path relative to ``root`` (the folder the engine read,
    what the CLI would have been given), else the file name alone. Raises ValueError for a path outside root."""
    if root is None:
        return Path(PurePosixPath(path.replace(os.sep, "/")).name or "input")
    root = local_path(root)
    if _SCHEME.match(path) or _SCHEME.match(root):  # remote: compared as text
        base = root.rstrip("/") + "/"
        if not path.startswith(base):
            raise ValueError(path)
        rel = posixpath.normpath(path[len(base) :])
        if rel.startswith("..") or rel in (".", ""):
            raise ValueError(path)
        return Path(rel)
    here, base_path = identity(Path(path)), identity(Path(root))
    if here == base_path or not here.is_relative_to(base_path):
        raise ValueError(path)
    return Path(os.path.relpath(here, base_path))


def _suffix(name: str) -> str:
    """The suffix the staged file keeps (the decoder and the media test read it): ``.jpg``, ``.nii.gz``."""
    low = name.lower()
    if low.endswith(".nii.gz"):
        return name[-7:]
    suffix = PurePosixPath(name).suffix
    return suffix if len(suffix) <= 16 else ""


def png_of(array: np.ndarray) -> bytes:
    """An H×W×C (C: 1, 3 or 4) or H×W uint8 array as PNG (lossless: the decoder reads back the same pixels)."""
    if array.dtype != np.uint8:
        raise ValueError(f"the image array is {array.dtype}; pass uint8 pixels (0–255), as read_images gives")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise ValueError(f"the image array has the shape {array.shape}; pass H×W×C pixels (C: 1, 3 or 4)")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _content(cols: Columns, i: int) -> tuple[bytes | np.ndarray | None, bool]:
    """Row ``i``'s picture (encoded bytes, or an array) and whether it is an array."""
    if "bytes" in cols and (data := cols["bytes"][i]) is not None and not isinstance(data, float):
        if isinstance(data, (bytes, bytearray, memoryview, np.bytes_)):
            return bytes(data), False
        raise ValueError(f"the bytes cell is {type(data).__name__}; pass the file's bytes")
    if "image" in cols and (pixels := cols["image"][i]) is not None and not isinstance(pixels, float):
        return np.asarray(pixels), True
    return None, False


def _digest(content: bytes | np.ndarray | None) -> str:
    """The key of a row with neither key nor path: the SHA-256 of its bytes or of its array's pixels."""
    if isinstance(content, np.ndarray):
        data = b"" if content.dtype.hasobject else np.ascontiguousarray(content).tobytes()
    else:
        data = content or b""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def stage_rows(cols: Columns, root: str | None, folder: Path, media: bool) -> list[StagedRow]:
    """Each row of ``cols`` as a :class:`StagedRow`: its picture written to ``folder`` (bytes as they are, with the
    path's suffix; arrays as PNG); a row that cannot be staged (no picture, a path outside ``root``, an array
    that is not uint8 pixels) comes with its ``problem``, so that the runner reports and records it as failed.
    ``media``: a video's or volume's bytes are explained whole (camcli.jobs.media), as the CLI does."""
    n = len(next(iter(cols.values())))
    rows = []
    for i in range(n):
        given_path = _text(cols["path"][i]) if "path" in cols else None
        path = local_path(given_path) if given_path is not None else None
        given = _text(cols["key"][i]) if "key" in cols else None
        problem: str | None = None
        try:
            content, is_array = _content(cols, i)
        except ValueError as e:
            content, is_array, problem = None, False, str(e)
        key = given or given_path or _digest(content)
        source = path or key
        if path is not None:
            try:
                rel = relative_name(path, root)
            except ValueError:
                rel = Path(PurePosixPath(path).name or "input")
                problem = problem or (
                    f"not under root {root}; pass the folder the engine read as root (or none: outputs are named "
                    "by the file name alone)"
                )
        else:
            rel = Path((_NOT_IN_NAMES.sub("_", key).strip("_") or "input")[:120])
        staged = folder / f"{i:06d}{'.png' if is_array else _suffix(rel.name)}"
        if problem is None and content is None:
            problem = "no picture in the row (its 'image' or 'bytes' cell is empty)"
        if problem is None:
            try:
                staged.write_bytes(png_of(content) if isinstance(content, np.ndarray) else content or b"")
            except ValueError as e:
                problem = str(e)
        item = InputFile(
            staged,
            rel,
            problem=f"{source}: {problem}" if problem is not None else None,
            media=media and not is_array and media_name(Path(rel.name), walked=True),
            source=source,
        )
        rows.append(StagedRow(key, given_path, item, encoded=is_array))
    return rows
