"""The report's data from an output folder's records: one entry per input, for the page.

Records may have been edited, or come from another version or another machine: every value that reaches the
page is checked here (a number is finite and fits a double, an index is an integer, a text is a text). A record
with a value of the wrong kind is skipped and counted, never the end of the report. Every path in the data is
relative to ``OUT`` and never leads out of it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import render
from ..errors import CamcliError
from ..io.manifest import RECORD_KEY, read_records, record_key

LEDGERS = ("manifest", "metrics")
# what a bad value in a record raises while its entry is built: the record is skipped
BAD_RECORD = (ValueError, TypeError, OverflowError, AttributeError, KeyError, IndexError, RecursionError, CamcliError)
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_INDEX = 2**53  # integers beyond this are not exact in the page's JavaScript


def read_all(out: Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The last record of each output (:data:`RECORD_KEY`) in the folder's ledgers and their shard parts; the
    problems of the files; the records skipped (``what: why``)."""
    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    problems: list[str] = []
    skipped: list[str] = []
    for stem in LEDGERS:
        for path in [out / f"{stem}.jsonl", *sorted(out.glob(f"{stem}.shard-*.jsonl"))]:
            if path.is_file():
                recs, bad = read_records(path)
                problems += bad
                for rec in recs:
                    if not isinstance(rec.get("input"), str):
                        skipped.append(f"{path}: a record without an input")
                        continue
                    try:
                        latest[record_key(rec)] = rec
                    except BAD_RECORD as e:
                        skipped.append(f"{_shown(rec['input'])}: {_why(e)}")
    assert RECORD_KEY  # records are keyed as merge-manifests keys them
    return list(latest.values()), problems, skipped


def rel_path(out: Path, path: Any) -> str | None:
    """``path`` (as a record holds it) relative to ``out``, URL-quoted; None if it is not a file in ``out``.

    A record holds the path as the run spelled it: relative to the folder the run started in, or absolute. When
    the report is built from another folder, or the output folder was moved, the path is looked up in ``out``
    by its trailing parts, the longest first (``o3/sub/x.png`` or ``/old/o3/sub/x.png`` → ``OUT/sub/x.png``),
    which is where camcli wrote it. A path that resolves outside ``out`` (``..``, a link) is never used."""
    if not isinstance(path, str):
        return None
    p = Path(path)
    root = out.resolve()
    candidates = [p if p.is_absolute() else Path.cwd() / p]
    first = 1 if p.is_absolute() else 0  # a tail never starts with the root ("/")
    candidates += [root.joinpath(*p.parts[k:]) for k in range(first, len(p.parts))]
    for full in candidates:
        try:
            rel = full.resolve().relative_to(root)
            if (root / rel).is_file():
                return url(rel.as_posix())
        except (OSError, ValueError, RuntimeError):
            continue
    return None


def url(rel: str) -> str:
    """A path relative to ``OUT`` as a relative URL for the page: ``#``, ``%``, ``?``, spaces and the like
    escaped, and ``:`` too (``shot-12:30.png`` would be read as a URL scheme); camcli's own name characters
    kept."""
    return quote(rel, safe="/,=+@!$'()*;", errors="surrogateescape")


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _why(e: BaseException) -> str:
    return str(e)[:120] if isinstance(e, (ValueError, CamcliError)) else f"{type(e).__name__}: {str(e)[:100]}"


def _number(value: Any, what: str) -> float:
    """A finite number (None, an older record's missing value: 0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is not a number ({_shown(value)})")
    try:
        number = float(value)  # a 400-digit integer: OverflowError
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{what} is not a finite number")
    return number


def _index(value: Any, what: str) -> int | None:
    """A class index: an integer the page can show exactly, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INDEX:
        raise ValueError(f"{what} is not a class index ({_shown(value)})")
    return value


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} is not a text")
    return str(value)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value


def _scores(value: Any) -> list[list[Any]]:
    """A record's scores as [name, value] pairs (a name such as ``__proto__`` stays a name in the page), each
    value a finite number or None."""
    return [[k, None if v is None else _number(v, f"scores[{k}]")] for k, v in _dict(value, "scores").items()]


def _colormap(settings: dict[str, Any]) -> str:
    name = settings.get("colormap") or "jet"
    if not isinstance(name, str):
        raise ValueError("settings.colormap is not a name")
    render.check_colormap(name)
    return name


def _sha256(value: Any) -> str | None:
    return value if isinstance(value, str) and _SHA256.fullmatch(value) else None


def _part(out: Path, rec: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    """What one record adds to its input's entry (a bad value raises one of :data:`BAD_RECORD`)."""
    part: dict[str, Any] = {"maps": [], "grids": [], "metrics": [], "sha256": _sha256(rec.get("input_sha256"))}
    status = rec.get("status")
    # a detector's or a threshold's answer (nothing to draw), not a failure
    if status in ("no_detection", "no_match", "empty_mask", "no_label"):
        return part
    if status != "ok":
        part["error"] = _text(rec.get("error"), "error") or "failed"
        return part
    outputs = _dict(rec.get("outputs"), "outputs")
    settings = _dict(rec.get("settings"), "settings")
    kind = rec.get("kind")
    if kind == "evaluate":
        part["metrics"].append(
            {
                "method": _text(rec.get("method"), "method"),
                "class_name": _text(rec.get("class_name"), "class_name"),
                "scores": _scores(rec.get("scores")),
            }
        )
        return part
    if kind == "features":
        grid = rel_path(out, outputs.get("grid"))
        if grid:
            part["grids"].append({"layer": _text(rec.get("layer"), "layer"), "grid": grid})
        return part
    top_k = rec.get("top_k")
    if isinstance(top_k, list):
        # raw values and similarities (an identity head) are numbers, not shares of a bar
        part["values"] = settings.get("head") == "identity"
        part["top"] = [
            {
                "index": _index(t.get("index"), "top_k index"),
                "name": _text(t.get("name"), "top_k name"),
                "probability": _number(t.get("probability"), "top_k probability"),
            }
            for t in top_k
            if isinstance(t, dict)
        ]
    given = rec.get("target")  # a class ("281", "not:0"), or an object of a detector or segmenter
    target: dict[str, Any] = given if isinstance(given, dict) else {}
    base = {  # an object of a detector or segmenter: its label, and its score as the detector gave it
        "method": _text(rec.get("method"), "method"),
        "class_index": _index(rec.get("class_index", target.get("label")), "class_index"),
        "class_name": _text(rec.get("class_name") or target.get("label_name"), "class_name"),
        "probability": _number(
            rec.get("probability", target.get("score") if kind == "detection" else 0.0), "probability"
        ),
    }
    overlay = rel_path(out, outputs.get("overlay"))
    if overlay is None and isinstance(outputs.get("overlay"), str):
        missing.append(outputs["overlay"])
    if overlay:
        raw = rel_path(out, outputs.get("raw"))
        part["maps"].append({**base, "overlay": overlay, "layer": None, "raw": raw, "colormap": _colormap(settings)})
    for layer, path in _dict(outputs.get("per_layer"), "outputs.per_layer").items():
        rel = rel_path(out, path)
        if rel:
            part["maps"].append({**base, "overlay": rel, "layer": layer, "raw": None, "colormap": None})
    return part


def build_entries(
    out: Path, records: list[dict[str, Any]], missing: list[str], skipped: list[str]
) -> list[dict[str, Any]]:
    """The page's data per input; the overlays named in records but not found in ``out`` go to ``missing``, the
    records with a bad value to ``skipped``. An entry's ``sha256`` is the input's digest as its run recorded it."""
    by_input: dict[str, dict[str, Any]] = {}
    for rec in records:
        found: list[str] = []
        try:
            part = _part(out, rec, found)
        except BAD_RECORD as why:
            skipped.append(f"{_shown(rec['input'])}: {_why(why)}")
            continue
        missing += found
        e = by_input.setdefault(
            rec["input"],
            {
                "input": rec["input"],
                "status": "ok",
                "error": None,
                "top": [],
                "maps": [],
                "grids": [],
                "metrics": [],
                "sha256": None,
            },
        )
        e["sha256"] = part["sha256"] or e["sha256"]
        if "error" in part:
            e["status"], e["error"] = "error", part["error"]
        if part.get("top") and not e["top"]:
            e["top"], e["values"] = part["top"], part["values"]
        for k in ("maps", "grids", "metrics"):
            e[k] += part[k]
    # an input that failed in one run and worked in a later one shows its outputs
    for e in by_input.values():
        if e["status"] == "error" and (e["maps"] or e["grids"] or e["metrics"]):
            e["status"], e["error"] = "ok", None
    return sorted(by_input.values(), key=lambda e: e["input"])
