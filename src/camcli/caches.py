"""camcli's small on-disk caches (architecture signatures, layer tables): where they live, how they are kept.

Everything here is derived data, rebuilt when missing or unreadable: ``$XDG_CACHE_HOME/camcli`` (by default
``~/.cache/camcli``), one JSON file per entry, written through a temporary file and a rename so that two runs
at once never see half a file. A cache that cannot be written is simply not kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "camcli"


def package_version(name: str) -> str:
    """An installed distribution's version, read from its metadata (nothing is imported); "0" when absent."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "0"


def read_json(name: str) -> object | None:
    """The cached entry ``name``, or None when it is missing or unreadable."""
    try:
        return json.loads((cache_dir() / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(name: str, data: object) -> None:
    """Keep ``data`` as entry ``name`` (atomically); silently skipped when the folder is not writable."""
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, root / name)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def layer_names_entry(model: str) -> str:
    """The entry that keeps the layer names of ``model`` (as typed after ``--model``: a name, or a checkpoint
    path, taken by its resolved path), for shell completion of ``--layer``: written when a run or ``camcli
    layers`` has traced the model, read by the completion without loading anything."""
    text = model.strip()
    path = Path(text).expanduser()
    key = str(path.resolve()) if path.is_file() else text.lower().replace("-", "_")
    return f"layer-names-{hashlib.blake2b(key.encode('utf-8', 'surrogateescape'), digest_size=8).hexdigest()}.json"


def remember_layer_names(model: str, names: list[str]) -> None:
    entry = layer_names_entry(model)
    if read_json(entry) != names:
        write_json(entry, names)
