"""After `camcli evaluate`: the summary per method (mean ± 95 % interval) and the plots, made from the records in
``OUT/metrics.jsonl``, so that a resumed or interrupted run reports every image it has measured."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.manifest import read_records
from ..io.outputs import atomic_write_bytes
from ..metric_names import KEYS

# the scores in a record (ROAD's per percentage too: road_morf@20), for people: name, which way is better, meaning
SCORES: dict[str, tuple[str, str, str]] = {
    "deletion_auc": ("deletion AUC", "lower", "the class's probability as the map's top pixels are removed (area)"),
    "insertion_auc": ("insertion AUC", "higher", "the class's probability as the map's top pixels are revealed (area)"),
    "avg_drop": ("avg drop", "lower", "how much the probability falls when the input is multiplied by the map"),
    "increase": ("increase", "higher", "how often the probability rises when the input is multiplied by the map"),
    "road_combined": ("ROAD", "higher", "(LeRF − MoRF) / 2: removing the least relevant pixels should hurt less"),
    "road_morf": ("ROAD MoRF", "lower", "change of probability with the most relevant pixels removed and imputed"),
    "road_lerf": ("ROAD LeRF", "higher", "change of probability with the least relevant pixels removed and imputed"),
    "pointing": ("pointing", "higher", "how often the map's maximum falls on the object (within the tolerance)"),
    "energy_pointing": ("energy pointing", "higher", "the share of the map's sum inside the object's bounding box"),
    "relevance_mass": ("relevance mass", "higher", "the share of the map's sum inside the object's mask"),
    "relevance_rank": ("relevance rank", "higher", "the share of the map's K top pixels on the object (K: its size)"),
    "iou": ("IoU", "higher", "overlap of the map's pixels above the threshold with the object (intersection / union)"),
    "sparseness": ("sparseness", "higher", "the Gini index of the map: a few pixels hold most of it"),
    "complexity": ("complexity", "lower", "the entropy of the map as a distribution: how spread out it is"),
    "random_logit": ("random logit", "lower", "SSIM of the map with the map of a random other class: should differ"),
}
ARROWS = {"lower": "↓", "higher": "↑"}
# the columns of the summary: record key, heading (with which way is better)
SUMMARY_METRICS = [
    (k, f"{SCORES[k][0]} {ARROWS[SCORES[k][1]]}")
    for k in (
        *("deletion_auc", "insertion_auc", "avg_drop", "increase", "road_combined"),
        *KEYS.values(),  # localisation, complexity, random-logit (camcli.metric_names)
    )
]
FORWARDS = "map_forwards"  # MethodSummary.values' key of the forward passes a map cost per image
SANITY_FAIL = 0.5  # a method whose mean rank correlation stays above this after full randomisation fails


@dataclass
class MethodSummary:
    name: str
    baseline: bool
    values: dict[str, list[float]] = field(default_factory=dict)
    deletion: list[list[float]] = field(default_factory=list)
    insertion: list[list[float]] = field(default_factory=list)
    sanity: dict[int, tuple[str, list[float], list[float]]] = field(default_factory=dict)  # step → layer, ρ, ssim

    def mean_ci(self, key: str) -> tuple[float, float, int] | None:
        """Mean and the half-width of its 95 % interval (normal approximation, 1.96 standard errors)."""
        v = [x for x in self.values.get(key, []) if math.isfinite(x)]
        if not v:
            return None
        mean = sum(v) / len(v)
        if len(v) < 2:
            return mean, float("nan"), len(v)
        sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
        return mean, 1.96 * sd / math.sqrt(len(v)), len(v)


def matching_records(path: Path, base: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ok records in ``path`` (if it exists) whose fields in ``base`` (kind, model, layer, settings) equal it."""
    if not path.is_file():
        return
    want = json.dumps(base, sort_keys=True)
    for rec in read_records(path)[0]:
        if rec.get("status") == "ok" and json.dumps({k: rec.get(k) for k in base}, sort_keys=True) == want:
            yield rec


def collect(path: Path, base: dict[str, Any], names: list[str]) -> dict[str, MethodSummary]:
    """The last ok record of each (input, map, class) of the maps ``names`` whose kind, model, layer and settings
    are ``base``'s, grouped by map, in the order of ``names``."""
    latest: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for rec in matching_records(path, base):
        if rec.get("method") in names:  # the target tells 3 from not:3
            key = (
                str(rec.get("input")),
                str(rec.get("method")),
                int(rec.get("class_index", -1)),
                str(rec.get("target")),
            )
            latest[key] = rec
    return summarize(list(latest.values()), names)


def summarize(records: list[dict[str, Any]], names: list[str]) -> dict[str, MethodSummary]:
    """The records (one per input, map and class) of the maps ``names`` grouped by map, in the order of ``names``
    (also the report's: :mod:`camcli.report.summary`)."""
    out: dict[str, MethodSummary] = {}
    for rec in records:
        method = str(rec.get("method"))
        s = out.setdefault(method, MethodSummary(method, bool(rec.get("baseline"))))
        for key, value in (rec.get("scores") or {}).items():
            if isinstance(value, (int, float)) or value is None:  # None: not a number for this image
                s.values.setdefault(key, []).append(float("nan") if value is None else float(value))
        if isinstance(rec.get("forwards"), (int, float)):  # what the map cost (records of methods)
            s.values.setdefault(FORWARDS, []).append(float(rec["forwards"]))
        curves = rec.get("curves") or {}
        if "deletion" in curves:
            s.deletion.append(curves["deletion"])
        if "insertion" in curves:
            s.insertion.append(curves["insertion"])
        for step in rec.get("sanity") or []:
            _, rho, sim = s.sanity.setdefault(int(step["step"]), (str(step["layer"]), [], []))
            rho.append(float("nan") if step["spearman"] is None else float(step["spearman"]))
            sim.append(float("nan") if step["ssim"] is None else float(step["ssim"]))
    return {name: out[name] for name in names if name in out}


def ranks(summaries: dict[str, MethodSummary]) -> dict[str, dict[str, float]]:
    """Each map's rank on each summary score it was measured on, among every map measured on it (baselines too, so
    a method below the random map shows it): 1 is the best mean; equal means share their mean rank."""
    out: dict[str, dict[str, float]] = {name: {} for name in summaries}
    for key, _ in SUMMARY_METRICS:
        means = {name: m[0] for name, s in summaries.items() if (m := s.mean_ci(key)) is not None}
        better = SCORES[key][1]
        order = sorted(means, key=lambda n: means[n], reverse=better == "higher")
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and means[order[j + 1]] == means[order[i]]:
                j += 1
            for name in order[i : j + 1]:
                out[name][key] = (i + j) / 2 + 1
            i = j + 1
    return out


def mean_rank(rank: dict[str, float]) -> float:
    return sum(rank.values()) / len(rank) if rank else float("nan")


def leaders(summaries: dict[str, MethodSummary]) -> dict[str, list[str]]:
    """For each summary score: the method(s) (not baselines) with the best mean."""
    table = ranks({name: s for name, s in summaries.items() if not s.baseline})
    out: dict[str, list[str]] = {}
    for key, _ in SUMMARY_METRICS:
        best = [
            name
            for name, r in table.items()
            if r.get(key) is not None and r[key] == min((v[key] for v in table.values() if key in v), default=math.inf)
        ]
        if best:
            out[key] = best
    return out


def leaderboard(summaries: dict[str, MethodSummary]) -> list[str]:
    """The maps ordered by mean rank over the scores (the leaderboard; a map without scores last)."""
    table = ranks(summaries)
    return sorted(summaries, key=lambda n: (not table[n], mean_rank(table[n]) if table[n] else 0.0))


def metric_rows(summaries: dict[str, MethodSummary], cost: dict[str, int]) -> tuple[list[str], list[list[str]]]:
    """The summary table, a leaderboard: a row per method and baseline, ordered by mean rank, ``mean ± interval``
    per score measured, the mean rank, and the forward passes the map costs (counted, from the records) and its
    measuring costs (``cost``) per image."""
    keys = [(k, head) for k, head in SUMMARY_METRICS if any(k in s.values for s in summaries.values())]
    table = ranks(summaries)
    method_cost = {name: m[0] for name, s in summaries.items() if (m := s.mean_ci(FORWARDS)) is not None}
    columns = ["method", "n", *[head for _, head in keys], "rank ↓"]
    if method_cost:
        columns.append("map forwards/img")
    columns.append("metric forwards/img")
    rows = []
    for name in leaderboard(summaries):
        s = summaries[name]
        cells = []
        measured = [s.mean_ci(key) for key, _ in keys]
        n = max((m[2] for m in measured if m), default=0)
        for m in measured:  # a score measured on fewer pairs (localisation: the annotated ones) says on how many
            few = f" (n={m[2]})" if m and m[2] < n else ""
            cells.append(
                "—" if m is None else f"{m[0]:.3f} ± {m[1]:.3f}{few}" if math.isfinite(m[1]) else f"{m[0]:.3f}{few}"
            )
        label = f"{name} (baseline)" if s.baseline else name
        rank = f"{mean_rank(table[name]):.1f}" if table[name] else "—"
        extra = [_count(method_cost.get(name))] if method_cost else []
        rows.append([label, str(n), *cells, rank, *extra, str(cost.get(name, ""))])
    return columns, rows


def _count(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def leaders_line(summaries: dict[str, MethodSummary]) -> str:
    """``leads: deletion AUC ↓ gradcam · insertion AUC ↑ scorecam · …`` (empty with fewer than two methods)."""
    if sum(not s.baseline for s in summaries.values()) < 2:
        return ""
    heads = dict(SUMMARY_METRICS)
    parts = [f"{heads[key]} {', '.join(names)}" for key, names in leaders(summaries).items()]
    return "leads: " + " · ".join(parts) if parts else ""


def sanity_rows(summaries: dict[str, MethodSummary]) -> tuple[list[str], list[list[str]]]:
    """A row per method: mean rank correlation and SSIM with the original map after each step; pass/fail."""
    steps = sorted({k for s in summaries.values() for k in s.sanity})
    columns = ["method", *[f"step {k}" for k in steps], "SSIM at the end", "check"]
    rows = []
    for name, s in summaries.items():
        if not s.sanity:
            continue
        rhos = [_mean(s.sanity[k][1]) if k in s.sanity else float("nan") for k in steps]
        last = s.sanity[steps[-1]]
        if not math.isfinite(rhos[-1]):
            verdict = "undefined (constant maps)"
        else:
            verdict = "fails (map ignores the weights)" if rhos[-1] > SANITY_FAIL else "passes"
        cells = [f"{r:.2f}" if math.isfinite(r) else "n/a" for r in rhos]
        rows.append([name, *cells, f"{_mean(last[2]):.2f}", verdict])
    return columns, rows


def _mean(values: list[float]) -> float:
    """The mean of the finite values (NaN if there are none: e.g. the correlation of a constant map)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(summaries: dict[str, MethodSummary], path: Path, title: str) -> bool:
    """Mean deletion and insertion curves per method (dashed: baselines) → ``path``; False if there are none."""
    if not any(s.deletion or s.insertion for s in summaries.values()):
        return False
    fig = _figure(10, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, which, better in ((axes[0], "deletion", "lower is better"), (axes[1], "insertion", "higher is better")):
        for name, s in summaries.items():
            curves = getattr(s, which)
            if not curves:
                continue
            n = len(curves[0])
            mean = [sum(c[i] for c in curves) / len(curves) for i in range(n)]
            xs = [i / (n - 1) for i in range(n)]
            auc = s.mean_ci(f"{which}_auc")
            label = f"{name} ({auc[0]:.3f})" if auc else name
            ax.plot(xs, mean, linestyle="--" if s.baseline else "-", linewidth=1.2 if s.baseline else 2, label=label)
        ax.set_title(f"{which} ({better}; area in brackets)")
        ax.set_xlabel("fraction of pixels " + ("removed" if which == "deletion" else "revealed"))
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    axes[0].set_ylabel("probability of the explained class")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return True


def plot_sanity(summaries: dict[str, MethodSummary], path: Path, title: str) -> bool:
    """Mean rank correlation with the original map vs. how much of the model is randomised → ``path``."""
    with_steps = {name: s for name, s in summaries.items() if s.sanity}
    if not with_steps:
        return False
    fig = _figure(8, 4.2)
    ax = fig.subplots()
    labels: list[str] = []
    for name, s in with_steps.items():
        steps = sorted(s.sanity)
        labels = [s.sanity[k][0] for k in steps]
        ax.plot(range(1, len(steps) + 1), [_mean(s.sanity[k][1]) for k in steps], marker="o", label=name)
    ax.set_xticks(
        range(1, len(labels) + 1),
        [f"…{lab}" if len(lab) < 18 else f"…{lab[-17:]}" for lab in labels],
        rotation=30,
        ha="right",
        fontsize=7,
    )
    ax.axhline(SANITY_FAIL, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(-0.2, 1.05)
    ax.set_xlabel("randomised from the output down to (cumulative)")
    ax.set_ylabel("Spearman ρ with the trained model's map")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return True


def plot_leaderboard(summaries: dict[str, MethodSummary], path: Path, title: str) -> bool:
    """The ranks as a table of colours: a row per map (ordered by mean rank), a column per score and the mean rank,
    each cell its rank (1 = best) → ``path``; False with fewer than two methods."""
    if sum(not s.baseline for s in summaries.values()) < 2:
        return False
    table = ranks(summaries)
    keys = [(k, head) for k, head in SUMMARY_METRICS if any(k in r for r in table.values())]
    if not keys:
        return False
    order = leaderboard(summaries)
    grid = [[table[n].get(k, math.nan) for k, _ in keys] + [mean_rank(table[n])] for n in order]
    fig = _figure(1.6 + 1.1 * (len(keys) + 1), 1.0 + 0.32 * len(order))
    ax = fig.subplots()
    ax.imshow(grid, cmap="RdYlGn_r", aspect="auto", vmin=1, vmax=max(len(order), 2))
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if math.isfinite(value):
                ax.text(j, i, f"{value:g}" if j < len(keys) else f"{value:.1f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(keys) + 1), [head for _, head in keys] + ["mean rank ↓"], rotation=20, ha="right")
    labels = [f"{n} (baseline)" if summaries[n].baseline else n for n in order]
    ax.set_yticks(range(len(order)), labels, fontsize=8)
    ax.tick_params(length=0)
    fig.suptitle(f"{title}: rank per score (1 = best)", fontsize=10)
    _save(fig, path)
    return True


def plot_scores(summaries: dict[str, MethodSummary], path: Path, title: str) -> bool:
    """Each summary score as bars, a bar per map in the leaderboard's order (grey and hatched: the baselines), with
    its 95 % interval → ``path``; False when nothing was measured."""
    keys = [(k, head) for k, head in SUMMARY_METRICS if any(s.mean_ci(k) for s in summaries.values())]
    if not keys:
        return False
    order = leaderboard(summaries)
    columns = min(4, len(keys))
    rows = -(-len(keys) // columns)
    fig = _figure(3.2 * columns, 0.8 + (0.5 + 0.22 * len(order)) * rows)
    axes = fig.subplots(rows, columns, squeeze=False)
    for n, ax in enumerate(axes.flat):
        if n >= len(keys):
            ax.set_axis_off()
            continue
        key, head = keys[n]
        cells = [summaries[name].mean_ci(key) for name in order]
        means = [c[0] if c else math.nan for c in cells]
        errors = [c[1] if c and math.isfinite(c[1]) else 0.0 for c in cells]
        ys = range(len(order))
        baseline = [summaries[name].baseline for name in order]
        bars = ax.barh(ys, means, xerr=errors, color=["#bbbbbb" if b else "#3b78b0" for b in baseline], capsize=2)
        for bar, b in zip(bars, baseline, strict=True):
            if b:
                bar.set_hatch("//")
        ax.set_yticks(ys, order if n % columns == 0 else [""] * len(order), fontsize=7)
        ax.invert_yaxis()
        ax.set_title(head, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{title}: each score beside the baselines (hatched), mean ± 95 % interval", fontsize=10)
    _save(fig, path)
    return True
