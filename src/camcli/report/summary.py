"""The report's page of ``camcli evaluate``: per run (model, layer and settings), the table evaluate prints (mean ±
95 % interval per map and metric, computed by :mod:`camcli.jobs.eval_summary` as the run computes it), the
sanity check's table, the plots in ``OUT``, and what each score means and which way is better.

Only the records the entries kept (:func:`~camcli.report.entries.build_entries`) are read, and each one is tried
on its own first: one with a bad curve or sanity step is skipped and counted, never the end of the report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..jobs.eval_summary import ARROWS, SCORES, SUMMARY_METRICS, leaderboard, mean_rank, ranks, sanity_rows, summarize
from .entries import BAD_RECORD, rel_path, shown, skip_line

# what evaluate draws in OUT (a shard's own: curves.shard-1-of-2.png)
PLOTS = ("curves*.png", "scores*.png", "leaderboard*.png", "sanity*.png")


def evaluate_page(out: Path, records: list[dict[str, Any]], skipped: list[str]) -> dict[str, Any] | None:
    """The evaluate page's data, or None when the folder has no evaluate record."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("kind") != "evaluate" or rec.get("status") != "ok":
            continue
        try:
            summarize([rec], [str(rec.get("method"))])  # its curves and sanity steps are read as numbers
            key = json.dumps({k: rec.get(k) for k in ("model", "layer", "settings")}, sort_keys=True)
        except BAD_RECORD as why:
            skipped.append(skip_line(rec, why))
            continue
        runs.setdefault(key, []).append(rec)
    if not runs:
        return None
    plots = []
    for pattern in PLOTS:
        for path in sorted(out.glob(pattern)):
            rel = rel_path(out, str(path))
            if rel is not None:
                plots.append({"name": path.name, "src": rel})
    scores = {
        k: {"label": label, "better": better, "arrow": ARROWS[better], "help": help}
        for k, (label, better, help) in SCORES.items()
    }
    return {"runs": [_run(recs) for recs in runs.values()], "plots": plots, "scores": scores}


def _run(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's tables: a row per map in the leaderboard's order (mean rank over the scores, baselines ranked with
    the methods), a cell per metric measured, and the mean rank."""
    first = records[0]
    settings: dict[str, Any] = first["settings"] if isinstance(first.get("settings"), dict) else {}
    methods = [str(r.get("method")) for r in records if r.get("baseline") is not True]
    baselines = [str(r.get("method")) for r in records if r.get("baseline") is True]
    summaries = summarize(records, list(dict.fromkeys(methods + baselines)))
    keys = [k for k, _ in SUMMARY_METRICS if any(k in s.values for s in summaries.values())]
    table = ranks(summaries)
    rows = []
    for name in leaderboard(summaries):
        s = summaries[name]
        cells = [s.mean_ci(k) for k in keys]
        rank = mean_rank(table[name])
        rows.append(
            {
                "method": name,
                "baseline": s.baseline,
                "n": max((c[2] for c in cells if c), default=0),
                "cells": [_cell(c) for c in cells],
                "rank": rank if math.isfinite(rank) else None,
            }
        )
    sanity = sanity_rows(summaries) if any(s.sanity for s in summaries.values()) else None
    said = [f"model {shown(first.get('model'))}", f"layer {shown(first.get('layer'))}"]
    for key in ("metrics", "steps", "baseline", "targets", "head"):
        value = settings.get(key)
        if value not in (None, [], ""):
            said.append(f"{key} {shown(', '.join(map(str, value)) if isinstance(value, list) else str(value))}")
    return {
        "title": " · ".join(said),
        "images": len({str(r.get("input")) for r in records}),
        "keys": keys,
        "rows": rows,
        "sanity": None if sanity is None else {"columns": sanity[0], "rows": sanity[1]},
    }


def _cell(mean_ci: tuple[float, float, int] | None) -> list[float | None] | None:
    """[mean, half-width of the 95 % interval (None for one value), pairs measured]; None when nothing finite was
    measured."""
    if mean_ci is None or not math.isfinite(mean_ci[0]):  # (the mean of huge values can overflow)
        return None
    return [mean_ci[0], mean_ci[1] if math.isfinite(mean_ci[1]) else None, mean_ci[2]]
