"""The report's data from an output folder's records: one entry per input, for the page.

Records may have been edited, or come from another version or another machine: every value that reaches the
page is checked here (a number is finite and fits a double, an index is an integer, a text is a text). A record
with a value of the wrong kind is skipped and counted, never the end of the report. Every path in the data is
relative to ``OUT`` and never leads out of it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import render
from ..errors import CamcliError
from ..io.manifest import RECORD_KEY, read_records, record_key
from .media import input_kind, media_map

LEDGERS = ("manifest", "metrics")
# what a bad value in a record raises while its entry is built: the record is skipped
BAD_RECORD = (ValueError, TypeError, OverflowError, AttributeError, KeyError, IndexError, RecursionError, CamcliError)
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_INDEX = 2**53  # integers beyond this are not exact in the page's JavaScript
# what the page filters by: a record's kind ("objects": a detector's or a segmenter's; a CAM of a video or a volume:
# "video", "volume"), and the statuses of an input that was done with nothing to draw (a detector's or a threshold's
# answer, not a failure)
KINDS = {
    "cam": "cam",
    "features": "features",
    "evaluate": "evaluate",
    "detection": "objects",
    "segmentation": "objects",
}
NOTHING = ("no_detection", "no_match", "empty_mask", "no_label")
_OBJECT = re.compile(r"\.obj(\d+)-[^/]*$")  # an object's number in its overlay's name (…gradcam.obj02-17-cat.png)


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
                        skipped.append(skip_line(rec, e))
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


def shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def skip_line(rec: dict[str, Any], e: BaseException) -> str:
    """The line that says which record was skipped, and why."""
    return f"{shown(rec['input'])}: {_why(e)}"


def _why(e: BaseException) -> str:
    return str(e)[:120] if isinstance(e, (ValueError, CamcliError)) else f"{type(e).__name__}: {str(e)[:100]}"


def _number(value: Any, what: str) -> float:
    """A finite number (None, an older record's missing value: 0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is not a number ({shown(value)})")
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
        raise ValueError(f"{what} is not a class index ({shown(value)})")
    return value


def _maybe(value: Any, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _box(value: Any) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError("target.box is not 4 numbers")
    return [_number(v, "target.box") for v in value]


def _note(rec: dict[str, Any], status: str) -> str:
    """Why an input done with ``status`` has nothing to draw, as its record says it."""
    settings, target = _dict(rec.get("settings"), "settings"), _dict(rec.get("target"), "target")
    score, name = _maybe(settings.get("min_score"), "settings.min_score"), _text(target.get("label_name"), "label")
    at = f" at score ≥ {score:g}" if score is not None else ""
    if status == "no_label":
        return f"no label at or above {_number(rec.get('threshold'), 'threshold'):g}"
    if status == "no_match":
        iou, need = _maybe(target.get("iou"), "target.iou"), _maybe(settings.get("iou"), "settings.iou")
        best = f" (best IoU {iou:g} < {need:g})" if iou is not None and need is not None else at
        return f"no detection{' of ' + name if name else ''} matched --box {_text(settings.get('box'), 'box')}{best}"
    if status == "empty_mask":
        where = "--region" if settings.get("region") else "--mask" if settings.get("mask") else "the picture"
        return f"class {name} has no pixels in {where}" if name else "no class found in the picture (background only)"
    return f"no detection{' of ' + name if name else ''}{at}"


MAX_TEXT = 4000  # characters of one text from a record that the page shows


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} is not a text")
    text = str(value)  # a page shows a text, not a book: an edited record's 300 MB error is not copied whole
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


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
    status = rec.get("status")
    kind = KINDS.get(str(rec.get("kind")), "cam")  # (records of older versions: a CAM run's)
    if kind == "cam":  # a video's or a volume's (also when it failed: by the input's name)
        kind = input_kind(Path(rec["input"])) or "cam"
    part: dict[str, Any] = {"maps": [], "grids": [], "metrics": [], "sha256": _sha256(rec.get("input_sha256"))}
    part |= {"kind": kind, "status": status if status in NOTHING else "ok", "note": None, "cover": None}
    if status in NOTHING:  # a detector's or a threshold's answer (nothing to draw), not a failure
        part["note"] = _note(rec, status)
        if status != "no_label":
            return part
    elif status != "ok":
        part["error"] = _text(rec.get("error"), "error") or "failed"
        return part
    outputs = _dict(rec.get("outputs"), "outputs")
    settings = _dict(rec.get("settings"), "settings")
    if kind == "evaluate":
        part["metrics"].append(
            {
                "method": _text(rec.get("method"), "method"),
                "baseline": rec.get("baseline") is True,  # random, gaussian, edges: maps that explain nothing
                "class_index": _index(rec.get("class_index"), "class_index"),
                "class_name": _text(rec.get("class_name"), "class_name"),
                "probability": _number(rec.get("probability"), "probability"),
                "scores": _scores(rec.get("scores")),
                # --annotations: the map with the ground truth's outline (a file named but not there: missing)
                "overlay": rel_path(out, outputs.get("overlay")),
            }
        )
        if outputs.get("overlay") and part["metrics"][-1]["overlay"] is None:
            missing.append(str(outputs["overlay"]))
        part["cover"] = part["metrics"][-1]["overlay"]  # the card's picture: the first map with the ground truth
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
    if status == "no_label":
        return part
    given = rec.get("target")  # a class ("281", "not:0"), or an object of a detector or segmenter
    target: dict[str, Any] = given if isinstance(given, dict) else {}
    base: dict[str, Any] = {  # an object of a detector or segmenter: its label, and its score as the detector gave it
        "method": _text(rec.get("method"), "method"),
        "class_index": _index(rec.get("class_index", target.get("label")), "class_index"),
        "class_name": _text(rec.get("class_name") or target.get("label_name"), "class_name"),
        "probability": _number(
            rec.get("probability", target.get("score") if rec.get("kind") == "detection" else 0.0), "probability"
        ),
        "object": None,
    }
    if kind == "objects":  # two objects of one class: told apart by their number and box
        number = _OBJECT.search(outputs["overlay"]) if isinstance(outputs.get("overlay"), str) else None
        base["object"] = {
            "number": int(number.group(1)) if number else None,
            "box": _box(target.get("box")),
            "pixels": _index(target.get("mask_pixels"), "mask_pixels"),
        }
        part["cover"] = rel_path(out, outputs.get("combined"))  # the map of every object: the card's picture
    overlay = rel_path(out, outputs.get("overlay"))
    if overlay is None and isinstance(outputs.get("overlay"), str):
        missing.append(outputs["overlay"])
    # a video's overlay video with its contact sheet (the card's picture), a volume's montage with its map
    media = media_map(rec, outputs, lambda path: rel_path(out, path))
    if overlay:
        raw = None if media else rel_path(out, outputs.get("raw"))  # (a video's or volume's maps are not drawn)
        colormap = _colormap(settings)
        part["maps"].append(
            {**base, "overlay": overlay, "layer": None, "raw": raw, "colormap": colormap, "media": media}
        )
        part["cover"] = part["cover"] or (media or {}).get("sheet")
    for layer, path in _dict(outputs.get("per_layer"), "outputs.per_layer").items():
        rel = rel_path(out, path)
        if rel:
            part["maps"].append({**base, "overlay": rel, "layer": layer, "raw": None, "colormap": None, "media": None})
    return part


def build_entries(
    out: Path, records: list[dict[str, Any]], missing: list[str], skipped: list[str], kept: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The page's data per input; the overlays named in records but not found in ``out`` go to ``missing``, the
    records with a bad value to ``skipped``, the others to ``kept``. An entry's ``sha256`` is the input's digest as
    its run recorded it; its ``status`` is ``ok`` when it has something to show, else why not (a failure,
    ``error``, or a status of :data:`NOTHING`); ``statuses`` and ``kinds`` are what the page filters by."""
    by_input: dict[str, dict[str, Any]] = {}
    for rec in records:
        found: list[str] = []
        try:
            part = _part(out, rec, found)
        except BAD_RECORD as why:
            skipped.append(skip_line(rec, why))
            continue
        missing += found
        kept.append(rec)
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
                "statuses": [],
                "kinds": [],
                "notes": [],
                "cover": None,
            },
        )
        e["sha256"] = part["sha256"] or e["sha256"]
        if "error" in part:
            e["status"], e["error"] = "error", part["error"]
        if part.get("top") and not e["top"]:
            e["top"], e["values"] = part["top"], part["values"]
        for k in ("maps", "grids", "metrics"):
            e[k] += part[k]
        e["cover"] = e["cover"] or part["cover"]
        for k, value in (("statuses", part["status"]), ("kinds", part["kind"]), ("notes", part["note"])):
            if value and value not in e[k]:
                e[k].append(value)
    for e in by_input.values():
        shown = bool(e["maps"] or e["grids"] or e["metrics"])
        nothing = [s for s in e["statuses"] if s in NOTHING]
        if shown:  # an input that failed in one run and worked in a later one shows its outputs
            e["status"], e["error"] = "ok", None
        elif nothing:  # done, with nothing to draw: a detector's or a threshold's answer
            e["status"], e["error"] = nothing[0], None
        e["statuses"] = sorted({e["status"], *nothing, *(["ok"] if shown else [])})
    entries = sorted(by_input.values(), key=lambda e: e["input"])
    for e, ident in zip(entries, _ids([e["input"] for e in entries]), strict=True):
        e["id"] = ident
    return entries


def _ids(inputs: list[str]) -> list[str]:
    """A short name per input for the page's addresses (``#/image/coffee.png``): the last part of its path, or as
    many last parts as tell it from the others (``a/x.png``, ``b/x.png``), URL-quoted."""
    parts = [[p for p in s.split("/") if p not in ("", ".")] or [s] for s in inputs]
    depth = [1] * len(inputs)
    while True:
        ids = ["/".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        seen = Counter(ids)
        longer = [i for i, x in enumerate(ids) if seen[x] > 1 and depth[i] < len(parts[i])]
        if not longer:
            break
        for i in longer:
            depth[i] += 1
    taken: Counter[str] = Counter()
    out = []
    for x in ids:  # still the same (a//b and a/b): numbered
        taken[x] += 1
        out.append(url(x if taken[x] == 1 else f"{x}~{taken[x]}"))
    return out
