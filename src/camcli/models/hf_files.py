"""What a Hugging Face folder's own files say, read and checked before transformers sees them: ``config.json``
(its class count, class names, head, the Python it names in ``auto_map``) and ``preprocessor_config.json``
(input size, mean, std, resampling).

A malformed file is one line naming the file, the field and the fix, never a parser's exception; a file that would
make transformers build something huge (``"num_labels": 100000000`` builds a dict of 10⁸ names before any weight is
read) is refused from its text. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .base import IMAGENET_MEAN, IMAGENET_STD

MAX_JSON_BYTES = 16 * 2**20  # config.json with 100,000 class names is about 3 MB
#: classes a config.json may declare without weights that back them (a classifier with that many rows)
MAX_LABELS = 100_000
MAX_SIDE = 8192  # input height/width; a 8192×8192 input is already 800 MB per picture in float32
MAX_HEADER_BYTES = 100 * 2**20  # a safetensors header (the safetensors library's own limit)
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
RESAVE = "save the model again with save_pretrained"


def read_json(path: Path, fix: str = RESAVE) -> dict[str, Any]:
    """A JSON object from ``path`` (at most :data:`MAX_JSON_BYTES`), or a :class:`ModelError` naming the file."""
    try:
        with path.open("rb") as f:  # at most the limit is read, whatever the file is (/dev/zero …)
            data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise ModelError(f"{path}: too large for a settings file (at most {MAX_JSON_BYTES // 2**20} MB); {fix}")
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not UTF-8 text, so not JSON; {fix}") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, RecursionError) as e:
        where = f" ({e.msg}, line {e.lineno} column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise ModelError(f"{path}: not valid JSON{where}; {fix}") from None
    except ValueError as e:  # NaN / Infinity, which JSON does not have
        raise ModelError(f"{path}: {e}; {fix}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: holds a JSON {type(data).__name__}, not an object of settings; {fix}")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# -------------------------------------------------------------------------------------------------- config.json
def code_files(raw: dict[str, Any]) -> list[str]:
    """The Python files ``auto_map`` names (``modeling_evil.EvilModel`` → ``modeling_evil.py``; another repository's
    ``org/repo--modeling_x.Cls`` → ``org/repo: modeling_x.py``)."""
    entries = raw.get("auto_map")
    values: list[Any] = list(entries.values()) if isinstance(entries, dict) else [entries]
    names: list[str] = []
    for value in values:
        for ref in value if isinstance(value, list) else [value]:
            if not isinstance(ref, str) or not ref:
                continue
            repo, _, dotted = ref.rpartition("--")
            module = dotted.rsplit(".", 1)[0] + ".py"
            name = f"{repo}: {module}" if repo else module
            if name not in names:
                names.append(name)
    return names


def check_config(path: Path, raw: dict[str, Any], weights: list[Path]) -> None:
    """The fields of ``config.json`` that camcli and transformers read before any weight, checked: ``model_type``,
    ``architectures``, ``num_labels``, ``id2label``, ``label2id``, ``problem_type``, ``transformers_weights`` (a file
    beside it, never a path elsewhere). A class count over :data:`MAX_LABELS` stands
    only when a tensor in the ``weights`` (safetensors headers) has that many rows."""
    kind = raw.get("model_type")
    if not isinstance(kind, str) or not kind.strip():
        raise ModelError(f'{path}: no "model_type" (the architecture\'s name, e.g. "vit"); {RESAVE}')
    arches = raw.get("architectures")
    if arches is not None and not (isinstance(arches, list) and all(isinstance(a, str) for a in arches)):
        raise ModelError(f'{path}: "architectures" must be a list of class names, not {_shown(arches)}; {RESAVE}')
    problem = raw.get("problem_type")
    if problem is not None and problem not in PROBLEM_TYPES:
        raise ModelError(f'{path}: "problem_type" {_shown(problem)}: use one of {", ".join(PROBLEM_TYPES)} or drop it')
    count = raw.get("num_labels")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ModelError(
            f'{path}: "num_labels" {_shown(count)} is not a number of classes; give a whole number from 1 (the rows '
            "of the classifier in the weights)"
        )
    names = raw.get("id2label")
    if names is not None and not isinstance(names, dict):
        raise ModelError(f'{path}: "id2label" must map class indices to names ({{"0": "cat"}}), not {_shown(names)}')
    listed = len(names or {})
    for field, n in (("num_labels", count or 0), ("id2label", listed)):
        if n > MAX_LABELS and n not in weight_rows(weights):
            backed = "no tensor in the weights has that many rows" if weights else "no safetensors weights back it"
            raise ModelError(
                f'{path}: "{field}" declares {n:,} classes, more than {MAX_LABELS:,}, and {backed}; set it to '
                "the classifier's rows in the weights"
            )
    bound = count or listed
    for key, value in (names or {}).items():
        index = _index(key)
        if index is None or not 0 <= index < bound:
            raise ModelError(
                f'{path}: "id2label" key {key!r} is not a class index from 0 to {bound - 1}; fix or drop that entry'
            )
        if not isinstance(value, str):
            raise ModelError(f'{path}: "id2label" {key!r} is {_shown(value)}, not a class name (a string); fix it')
    named = raw.get("transformers_weights")  # transformers reads this file instead of model.safetensors
    if named is not None and not (
        isinstance(named, str) and named not in ("", ".", "..") and Path(named).name == named
    ):
        raise ModelError(
            f'{path}: "transformers_weights" {_shown(named)} must name a weights file beside config.json; fix it '
            "or drop it"
        )
    inverse = raw.get("label2id")
    if inverse is not None and not isinstance(inverse, dict):
        raise ModelError(f'{path}: "label2id" must map class names to indices, not {_shown(inverse)}; fix or drop it')


def _index(key: Any) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    text = str(key).strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None  # "²".isdigit() is true


def _shown(value: Any) -> str:
    """A JSON value as the file writes it, cut short."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "…"


def weight_rows(files: list[Path]) -> set[int]:
    """The first dimension of every tensor in these safetensors files, from their headers (:func:`check_weights`)."""
    rows: set[int] = set()
    for file in files:
        for shape in _shapes(file):
            if shape:
                rows.add(shape[0])
    return rows


def check_weights(files: list[Path]) -> None:
    """Each safetensors file's header read and checked against its size (a truncated download, a file of
    something else), before transformers reads it."""
    for file in files:
        _shapes(file)


def _shapes(file: Path) -> list[list[int]]:
    """The tensors' shapes from a safetensors header; [] for a file that is not safetensors."""
    if file.suffix != ".safetensors":
        return []
    bad = f"{file}: not a valid safetensors file ({{}}); re-save it (save_pretrained) or download it again"
    try:
        size = file.stat().st_size
        with file.open("rb") as f:
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise ModelError(bad.format(f"truncated, or not safetensors: {size:,} bytes, header length {length:,}"))
            header = json.loads(f.read(length))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelError(bad.format(f"its header does not read: {type(e).__name__}")) from None
    if not isinstance(header, dict):
        raise ModelError(bad.format("its header is not a JSON object"))
    shapes: list[list[int]] = []
    data = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        entry = entry if isinstance(entry, dict) else {}
        shape: Any = entry.get("shape")
        offsets: Any = entry.get("data_offsets")
        if not (_ints(shape) and _ints(offsets) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1] <= data):
            raise ModelError(bad.format(f"tensor {name!r} has no shape, or lies outside the file's {data:,} bytes"))
        shapes.append(shape)
    return shapes


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


# ------------------------------------------------------------------------------------------ preprocessor_config.json
def read_processor(folder: Path) -> tuple[dict[str, Any], Path] | None:
    """The image processor's settings and the file they come from: ``preprocessor_config.json``, or newer
    transformers' ``processor_config.json`` (an image–text model's processor, its image processor inside)."""
    proc = folder / "preprocessor_config.json"
    if proc.is_file():
        return read_json(proc, "fix it, or delete it to use the config's image_size and ImageNet's mean and std"), proc
    joint = folder / "processor_config.json"
    if joint.is_file():
        found = read_json(joint).get("image_processor")
        return (found, joint) if isinstance(found, dict) else None
    return None


def preprocessing(
    vision: Any, processor: tuple[dict[str, Any], Path] | None, config: Path | str
) -> tuple[tuple[int, int], tuple[float, ...], tuple[float, ...], str]:
    """(input size, mean, std, resampling) from the processor's settings (:func:`read_processor`), else the
    ``image_size`` of the ``config`` and ImageNet's mean and std; every value checked (a :class:`ModelError` naming
    the file and the field)."""
    p, where = processor or ({}, config)
    field, size, size_from = "size", p.get("size"), where
    if p.get("do_center_crop") and p.get("crop_size") is not None:
        field, size = "crop_size", p.get("crop_size")
    if size is None:
        size_from, field, size = config, "image_size", getattr(vision, "image_size", None) or 224
    mean = channels(where, "image_mean", p.get("image_mean"), IMAGENET_MEAN, positive=False)
    std = channels(where, "image_std", p.get("image_std"), IMAGENET_STD, positive=True)
    resample = p.get("resample", 2)
    if resample is None:
        resample = 2
    if isinstance(resample, bool) or resample not in PIL_FILTERS:
        raise ModelError(
            f'{where}: "resample" {_shown(resample)} is not a resampling filter; use 0 to 5 (Pillow\'s: 2 bilinear, '
            "3 bicubic) or drop it"
        )
    return input_size(size_from, field, size), mean, std, PIL_FILTERS[resample]


def input_size(where: Path | str, field: str, value: Any) -> tuple[int, int]:
    """(height, width) from a side, ``[h, w]`` or ``{"height": h, "width": w}`` / ``{"shortest_edge": s}``."""
    sides: Any = value
    if isinstance(value, dict):
        side = value.get("shortest_edge") or value.get("height") or 224
        sides = [value.get("height", side), value.get("width", side)]
    elif not isinstance(value, list | tuple):
        sides = [value, value]
    sides = list(sides)  # [h, w]: a list of another length is not an input size (not its first and last items)
    if len(sides) != 2 or not all(_whole(v) and 1 <= v <= MAX_SIDE for v in sides):
        raise ModelError(
            f'{where}: "{field}" {_shown(value)} is not an input size; give a whole number of pixels from 1 to '
            f'{MAX_SIDE} (or {{"height": H, "width": W}})'
        )
    return int(sides[0]), int(sides[1])


def _whole(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and float(v).is_integer()


def channels(
    where: Path | str, field: str, value: Any, default: tuple[float, ...], *, positive: bool
) -> tuple[float, ...]:
    """Three per-channel numbers (one number, or a list of one, stands for all three); ``default`` when None."""
    if value is None:
        return default
    values = value if isinstance(value, list | tuple) else [value]
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if ok and positive:
        ok = all(v > 0 for v in values)
    if not ok or len(values) not in (1, 3):
        what = "numbers above 0" if positive else "finite numbers"
        raise ModelError(
            f'{where}: "{field}" {_shown(value)} is not 3 {what} (one per channel, e.g. [0.5, 0.5, 0.5]); fix it '
            "or drop it"
        )
    return tuple(float(v) for v in (values * 3 if len(values) == 1 else values))
