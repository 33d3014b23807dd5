"""What an object run found, in words for its summary: how many images had objects, and why the others had none
(``no_detection``, ``no_match``, ``empty_mask``), said with the options that decided it (``--min-score``,
``--box`` and ``--iou``, ``--region`` and ``--mask``); and why a detector with random weights finds nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..options import CamOptions
from .job import Job
from .results import ImageResult, ObjectOutput


def found_in(result: ImageResult) -> tuple[str, int] | None:
    """An object run's outcome for one input: ("ok", objects explained) or (its records' status, 0); None for an
    input of another kind of run (or one that failed)."""
    outputs = [o for o in result.written if isinstance(o, ObjectOutput)]
    if not outputs:
        return None
    ok = [o for o in outputs if o.status == "ok"]
    if ok:  # a record per object and method
        return "ok", len(ok) // max(1, len({o.method for o in outputs}))
    return outputs[0].status, 0


def found_text(status: str, count: int, task: str) -> str:
    """The table's cell: ``3 objects``, ``2 classes``, ``no detection``."""
    if status == "ok":
        nouns = ("class", "classes") if task == "segmentation" else ("object", "objects")
        return f"{count} {nouns[count != 1]}"
    return status.replace("_", " ")


def status_words(job: Job[Any], status: str) -> str:
    """Why an image has nothing to draw, with the options that decided it: ``no detection at score ≥ 0.5``."""
    o = job.options if isinstance(job.options, CamOptions) else CamOptions()
    if status == "no_detection":
        return f"no detection at score ≥ {o.min_score:g}"
    if status == "no_match":
        return f"no detection matching --box (IoU ≥ {o.iou:g}, score ≥ {o.min_score:g})"
    if status == "empty_mask":
        where = " in --region" if o.region else " in --mask" if o.mask else ""
        return f"an empty mask (no pixel of the class{'es' if not o.targets else ''} asked for{where})"
    return status.replace("_", " ")


def summary_lines(job: Job[Any], statuses: Counter[str], objects: int) -> list[str]:
    """The summary's lines about what was found: ``3 images: 1 with objects (2), 2 with no detection at score ≥
    0.5``, and a note when a detector with random weights found nothing."""
    if not statuses:
        return []
    images = sum(statuses.values())
    noun = "classes" if job.model.task == "segmentation" else "objects"
    parts = [f"{statuses['ok']} with {noun} ({objects} in all)" if statuses["ok"] else f"0 with {noun}"]
    parts += [f"{n} with {status_words(job, s)}" for s, n in sorted(statuses.items()) if s != "ok"]
    lines = [f"{images} image{'s' if images != 1 else ''}: " + ", ".join(parts)]
    note = _random_detector_note(job, statuses)
    return lines + ([note] if note else [])


def _random_detector_note(job: Job[Any], statuses: Counter[str]) -> str | None:
    """A detector with random weights scores every box near its initial value (softmax over its classes, or
    RetinaNet's prior of 0.01): below the cut-off it applies itself (``score_thresh``) or below ``--min-score``."""
    m = job.model
    if m.task != "detection" or not m.random_weights or not statuses.get("no_detection"):
        return None
    o = job.options if isinstance(job.options, CamOptions) else CamOptions()
    own = getattr(getattr(m.module, "roi_heads", None), "score_thresh", None)
    own = own if own is not None else getattr(m.module, "score_thresh", None)
    if isinstance(own, int | float) and float(own) >= o.min_score:
        below = f"its own cut-off (score_thresh {float(own):g}, applied before --min-score)"
    else:
        below = f"--min-score {o.min_score:g}"
    return (
        f"note: {m.name} has random weights (--weights none): its box scores stay near their initial value, below "
        f"{below}, so detections are unlikely or none; trained weights (drop --weights none, or a checkpoint) find "
        "objects"
    )
