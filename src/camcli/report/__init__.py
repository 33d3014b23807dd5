"""``camcli report OUT``: a static, offline HTML report of an output folder, built from its records.

The page is a small app (``assets/app.js``, no build step) whose every view has an address in the URL's hash
(``#/``, ``#/image/<id>``, ``#/evaluate``, the filters as a query), so that it works from ``file://``.

``OUT/index.html`` (rendered by jinja2 with autoescaping) loads ``OUT/report/app.js`` (``media.js``: the tiles of
videos and volumes, :mod:`camcli.report.media`), ``style.css`` and the data
as ``OUT/report/data-<digest>.js`` (a script, not a JSON file: browsers refuse to fetch files from ``file://``).
Thumbnails (long side 240) and viewing copies of the inputs (the overlays' size, long side at most 4096) are JPEGs
in ``OUT/report/img/`` (:mod:`camcli.io.thumbs`): a run with ``--report`` makes them while each picture is decoded
anyway; the build makes those that are missing, of the inputs that are still the files their runs read, and
reuses the rest (:mod:`camcli.report.pictures`).
Every path in the data is relative to ``OUT`` and inside it: the folder can be moved or served as it is
(:mod:`camcli.report.entries`). Nothing is written or removed through a symbolic link. ``index.html`` is written
last, atomically; the data file it names is new for each build, so a build that stops half-way leaves the previous
report whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UsageError
from ..io.outputs import atomic_write_bytes
from .entries import build_entries, read_all
from .pictures import add_pictures
from .summary import evaluate_page

ASSETS = ("app.js", "media.js", "style.css")  # copied into OUT/report/


@dataclass
class ReportInfo:
    path: Path
    inputs: int
    failed: int
    records: int
    problems: list[str]
    seconds: float


def _check_no_links(out: Path) -> None:
    """Nothing is written or removed through a symbolic link: ``OUT/report`` and ``OUT/report/img`` must be
    folders of ``OUT`` itself (or not there yet)."""
    for folder in (out / "report", out / "report" / "img"):
        if os.path.islink(folder):
            raise UsageError(
                f"{folder} is a symbolic link; the report writes only into OUT itself: remove the link "
                f"(rm {folder}) and build again"
            )
        if os.path.lexists(folder) and not folder.is_dir():
            raise UsageError(f"{folder} is not a folder; move it away and build again")


def _summary(what: str, lines: list[str], tail: str) -> list[str]:
    return [f"{len(lines)} {what} (e.g. {lines[0]}){tail}"] if lines else []


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
    _check_no_links(out)
    records, problems, skipped = read_all(out)
    if not records:
        raise UsageError(f"no records in '{out}' (manifest.jsonl or metrics.jsonl); run camcli there first")
    missing: list[str] = []
    unread = len(skipped)  # not among the records
    kept: list[dict[str, Any]] = []
    entries = build_entries(out, records, missing, skipped, kept)
    evaluate = evaluate_page(out, kept, skipped)
    problems += _summary("record(s) with a bad value skipped", skipped, "; the report shows the others")
    problems += _summary(
        f"overlay(s) named in the records are not in {out}", missing, ": removed; the report shows the others"
    )
    problems += _summary("picture(s) left out", add_pictures(out, entries), "; the report shows the rest")
    # evaluate's baselines (maps that explain nothing) are shown as such, not among the methods
    baselines = sorted({m["method"] for e in entries for m in e["metrics"] if m["baseline"]})
    methods = sorted({m["method"] for e in entries for m in e["maps"] + e["metrics"] if m["method"]} - set(baselines))
    data = {
        "entries": entries,
        "methods": methods,
        "baselines": baselines,
        "evaluate": evaluate,
        "version": __version__,
    }
    body = _script_json(data)
    data_file = f"data-{hashlib.sha256(body).hexdigest()[:16]}.js"
    folder = out / "report"
    atomic_write_bytes(folder / data_file, body)
    assets = resources.files("camcli.report") / "assets"
    for name in ASSETS:
        atomic_write_bytes(folder / name, (assets / name).read_bytes())
    from jinja2 import Environment, select_autoescape

    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string((assets / "index.html.j2").read_text(encoding="utf-8"))
    failed = sum(e["status"] == "error" for e in entries)
    ok = sum(e["status"] == "ok" for e in entries)
    html = template.render(
        title=str(out),
        counts={"inputs": len(entries), "ok": ok, "failed": failed, "nothing": len(entries) - ok - failed},
        data_file=data_file,
        version=hashlib.sha256(b"".join((assets / name).read_bytes() for name in ASSETS)).hexdigest()[:8],
        built=time.strftime("%Y-%m-%d %H:%M"),
    )
    atomic_write_bytes(out / "index.html", html.encode("utf-8", "replace"))
    for old in folder.glob("data-*.js"):  # the data of earlier builds (the page now names the new one)
        if old.name != data_file:
            with contextlib.suppress(OSError):
                os.unlink(old)  # a link is removed itself, never what it points to
    used = len(records) - (len(skipped) - unread)
    return ReportInfo(out / "index.html", len(entries), failed, used, problems, time.perf_counter() - started)
