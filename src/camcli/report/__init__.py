"""``camcli report OUT``: a static, offline HTML report of an output folder, built from its records.

``OUT/index.html`` (rendered by jinja2 with autoescaping) loads ``OUT/report/app.js``, ``style.css`` and the data
as ``OUT/report/data-<digest>.js`` (a script, not a JSON file: browsers refuse to fetch files from ``file://``).
Thumbnails (long side 240) and viewing copies of the inputs (the overlays' size) are JPEGs in
``OUT/report/img/`` (:mod:`camcli.io.thumbs`): a run with ``--report`` makes them while each picture is decoded
anyway; the build makes those that are missing, and reuses the rest.
Every path in the data is relative to ``OUT``: the folder can be moved or served as it is. ``index.html`` is
written last, atomically; the data file it names is new for each build, so a build that stops half-way leaves
the previous report whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from PIL import Image

from .. import __version__
from ..errors import UsageError
from ..io.manifest import RECORD_KEY, read_records, record_key
from ..io.outputs import atomic_write_bytes
from ..io.thumbs import THUMB, VIEW, picture_name, save_jpeg

LEDGERS = ("manifest", "metrics")


@dataclass
class ReportInfo:
    path: Path
    inputs: int
    failed: int
    records: int
    problems: list[str]
    seconds: float


def _records(out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The last record of each output (:data:`RECORD_KEY`) in the folder's ledgers and their shard parts."""
    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    problems: list[str] = []
    for stem in LEDGERS:
        for path in [out / f"{stem}.jsonl", *sorted(out.glob(f"{stem}.shard-*.jsonl"))]:
            if path.is_file():
                recs, bad = read_records(path)
                problems += bad
                for rec in recs:
                    if isinstance(rec.get("input"), str):
                        latest[record_key(rec)] = rec
    assert RECORD_KEY  # records are keyed as merge-manifests keys them
    return list(latest.values()), problems


def _rel(out: Path, path: Any) -> str | None:
    """``path`` (as a record holds it) relative to ``out``, URL-quoted; None if it is not a file in ``out``.

    A record holds the path as the run spelled it: relative to the folder the run started in. When the report
    is built from another folder, the path is looked up in ``out`` by its trailing parts (``o3/sub/x.png`` →
    ``OUT/sub/x.png``), which is where camcli wrote it."""
    if not isinstance(path, str):
        return None
    p = Path(path)
    root = out.resolve()
    candidates = [p if p.is_absolute() else Path.cwd() / p]
    if not p.is_absolute():
        candidates += [root.joinpath(*p.parts[k:]) for k in range(len(p.parts))]
    for full in candidates:
        with contextlib.suppress(OSError, ValueError):
            rel = full.resolve().relative_to(root)
            if (root / rel).is_file():
                # for the browser: '#', '%', '?', spaces and the like escaped; camcli's own name characters kept
                return quote(rel.as_posix(), safe="/,=+@!$'()*;:", errors="surrogateescape")
    return None


def _picture(src: Path, target: Path, long_side: int, size: tuple[int, int] | None = None) -> bool:
    """A JPEG copy of ``src`` (upright RGB) at ``size`` or with its long side at most ``long_side``; reused when
    it exists. False when the input cannot be read."""
    if target.is_file():
        return True
    try:
        from ..io.decode import decode

        im = decode(src, max_side=long_side if size is None else max(size))
    except Exception:
        return False
    save_jpeg(im, target, long_side=long_side, size=size)
    return True


def _map_picture(raw: Path, target: Path, colormap: str) -> bool:
    """A saved map (.npy, values in [0, 1]) as colours whose opacity is the map's value (an RGBA PNG); reused
    when it exists. False when the file is not such a map."""
    if target.is_file():
        return True
    import io

    import numpy as np

    from .. import render

    try:
        cam = np.load(raw, allow_pickle=False)
        if cam.ndim != 2 or not np.isfinite(cam).all():
            return False
        cam = np.clip(cam.astype(np.float32), 0.0, 1.0)
        rgba = np.dstack([render.colorize(cam, colormap), np.rint(cam * 255).astype(np.uint8)])
    except (OSError, ValueError):
        return False
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", compress_level=3)
    atomic_write_bytes(target, buf.getvalue())
    return True


def _prob(value: Any) -> float:
    """A probability for the page (a number, whatever an older or edited record holds)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def _scores(value: Any) -> dict[str, float | None]:
    """A record's scores with every value a finite number or None (JSON has no NaN)."""
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None for k, v in value.items()}


def _entries(out: Path, records: list[dict[str, Any]], missing: list[str]) -> list[dict[str, Any]]:
    """The page's data per input; the overlays named in records but not found in ``out`` go to ``missing``."""
    by_input: dict[str, dict[str, Any]] = {}
    for rec in records:
        e = by_input.setdefault(
            rec["input"],
            {"input": rec["input"], "status": "ok", "error": None, "top": [], "maps": [], "grids": [], "metrics": []},
        )
        # a detector's or a threshold's answer (nothing to draw), not a failure
        if rec.get("status") in ("no_detection", "no_match", "empty_mask", "no_label"):
            continue
        if rec.get("status") != "ok":
            e["status"], e["error"] = "error", str(rec.get("error") or "failed")
            continue
        given = rec.get("outputs")
        outputs: dict[str, Any] = given if isinstance(given, dict) else {}
        kind = rec.get("kind")
        if kind == "evaluate":
            e["metrics"].append(
                {
                    "method": str(rec.get("method") or ""),
                    "class_name": str(rec.get("class_name") or ""),
                    "scores": _scores(rec.get("scores")),
                }
            )
            continue
        if kind == "features":
            grid = _rel(out, outputs.get("grid"))
            if grid:
                e["grids"].append({"layer": rec.get("layer"), "grid": grid})
            continue
        if not e["top"] and isinstance(rec.get("top_k"), list):
            # raw values and similarities (an identity head) are numbers, not shares of a bar
            e["values"] = (rec.get("settings") or {}).get("head") == "identity"
            e["top"] = [
                {"index": t.get("index"), "name": str(t.get("name") or ""), "probability": _prob(t.get("probability"))}
                for t in rec["top_k"]
                if isinstance(t, dict)
            ]
        given_target = rec.get("target")
        target: dict[str, Any] = given_target if isinstance(given_target, dict) else {}
        base = {  # an object of a detector or segmenter: its label, and its score as the detector gave it
            "method": str(rec.get("method") or ""),
            "class_index": rec.get("class_index", target.get("label")),
            "class_name": str(rec.get("class_name") or target.get("label_name") or ""),
            "probability": _prob(rec.get("probability", target.get("score") if kind == "detection" else 0.0)),
        }
        overlay = _rel(out, outputs.get("overlay"))
        if overlay is None and isinstance(outputs.get("overlay"), str):
            missing.append(outputs["overlay"])
        if overlay:
            colormap = (rec.get("settings") or {}).get("colormap") or "jet"
            raw = _rel(out, outputs.get("raw"))
            e["maps"].append({**base, "overlay": overlay, "layer": None, "raw": raw, "colormap": colormap})
        per_layer = outputs.get("per_layer")
        for layer, path in per_layer.items() if isinstance(per_layer, dict) else []:
            rel = _rel(out, path)
            if rel:
                e["maps"].append({**base, "overlay": rel, "layer": layer, "raw": None, "colormap": None})
    # an input that failed in one run and worked in a later one shows its outputs
    for e in by_input.values():
        if e["status"] == "error" and (e["maps"] or e["grids"] or e["metrics"]):
            e["status"], e["error"] = "ok", None
    return sorted(by_input.values(), key=lambda e: e["input"])


def _add_pictures(out: Path, entries: list[dict[str, Any]]) -> None:
    """Thumbnail and viewing copy of each input that can still be read (else a thumbnail of its first map), made
    in threads (decoding and encoding release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    img = out / "report" / "img"
    img.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        list(pool.map(lambda e: _pictures_of(out, img, e), entries))


def _pictures_of(out: Path, img: Path, e: dict[str, Any]) -> None:
    e["thumb"] = e["view"] = None
    src = Path(e["input"])
    if src.is_file():
        name = picture_name(src, "thumb")
        if _picture(src, img / name, THUMB):
            e["thumb"] = f"report/img/{name}"
        size = None
        if e["maps"]:
            first_map = out / unquote(e["maps"][0]["overlay"], errors="surrogateescape")
            with contextlib.suppress(OSError), Image.open(first_map) as overlay:
                size = overlay.size
        view = picture_name(src, f"view{size}")
        if _picture(src, img / view, VIEW, size):
            e["view"] = f"report/img/{view}"
    for m in e["maps"]:  # with --save-raw: the map alone, so that the page blends it over the input itself
        raw, m["map"] = m.pop("raw", None), None
        colormap = m.pop("colormap", None)
        if raw is not None and e["view"] is not None:
            raw_path = out / unquote(raw, errors="surrogateescape")
            key = f"{raw}|{raw_path.stat().st_mtime_ns}|{colormap}"
            name = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
            if _map_picture(raw_path, img / f"{name}.png", colormap or "jet"):
                m["map"] = f"report/img/{name}.png"
    if e["thumb"] is None:
        first = e["maps"][0]["overlay"] if e["maps"] else e["grids"][0]["grid"] if e["grids"] else None
        if first is not None:
            name = hashlib.sha256(f"{first}|thumb".encode("utf-8", "surrogateescape")).hexdigest()[:20] + ".jpg"
            if _picture(out / unquote(first, errors="surrogateescape"), img / name, THUMB):
                e["thumb"] = f"report/img/{name}"


def _script_json(data: Any) -> bytes:
    """``data`` as a JavaScript statement that is safe inside any page: no ``</script>``, no line separators."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"window.CAMCLI_DATA = {text};\n".encode("ascii")


def build_report(out: Path) -> ReportInfo:
    """Build (or rebuild) ``out/index.html`` from the records in ``out``; see the module's notes."""
    started = time.perf_counter()
    if not out.is_dir():
        raise UsageError(f"'{out}' is not a folder; pass the --out folder of a run")
    records, problems = _records(out)
    if not records:
        raise UsageError(f"no records in '{out}' (manifest.jsonl or metrics.jsonl); run camcli there first")
    missing: list[str] = []
    entries = _entries(out, records, missing)
    if missing:
        problems.append(
            f"{len(missing)} overlay(s) named in the records are not in {out} (e.g. {missing[0]}): removed, or the "
            "folder was moved; the report shows the others"
        )
    _add_pictures(out, entries)
    methods = sorted({m["method"] for e in entries for m in e["maps"] + e["metrics"] if m["method"]})
    data = {"entries": entries, "methods": methods, "version": __version__}
    body = _script_json(data)
    data_file = f"data-{hashlib.sha256(body).hexdigest()[:16]}.js"
    folder = out / "report"
    atomic_write_bytes(folder / data_file, body)
    assets = resources.files("camcli.report") / "assets"
    for name in ("app.js", "style.css"):
        atomic_write_bytes(folder / name, (assets / name).read_bytes())
    from jinja2 import Environment, select_autoescape

    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string((assets / "index.html.j2").read_text(encoding="utf-8"))
    failed = sum(e["status"] == "error" for e in entries)
    html = template.render(
        title=str(out),
        counts={"inputs": len(entries), "ok": len(entries) - failed, "failed": failed},
        methods=methods,
        data_file=data_file,
        version=hashlib.sha256((assets / "app.js").read_bytes()).hexdigest()[:8],
        built=time.strftime("%Y-%m-%d %H:%M"),
    )
    atomic_write_bytes(out / "index.html", html.encode("utf-8", "replace"))
    for old in folder.glob("data-*.js"):  # the data of earlier builds (the page now names the new one)
        if old.name != data_file:
            with contextlib.suppress(OSError):
                os.unlink(old)
    return ReportInfo(out / "index.html", len(entries), failed, len(records), problems, time.perf_counter() - started)
