"""How a run ends on the terminal: a table of the first images, what an object run found, and the closing line
(counts, time, rate, where the outputs are)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..jobs.job import Job
    from ..jobs.results import ImageResult

SUMMARY_ROWS = 20  # a per-image table in the summary for runs of up to this many images
FILES_LISTED = 12  # a run of one image lists the files it wrote, up to this many


class Summary:
    """Counts of a run and its first results, for the closing table and lines."""

    def __init__(self, job: Job[Any]) -> None:
        self.job = job
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.first: list[ImageResult] = []
        self.value = job.value_label()  # what the number beside a class is (a similarity, a raw value)
        #: object runs: images per outcome (ok, no_detection, no_match, empty_mask) and the objects explained
        self.found: Counter[str] = Counter()
        self.objects = 0

    def add(self, result: ImageResult) -> None:
        from ..jobs.found import found_in

        if result.skipped:
            self.skipped += 1
        elif result.ok:
            self.done += 1
            if len(self.first) <= SUMMARY_ROWS:
                self.first.append(result)
            found = found_in(result)
            if found is not None:
                self.found[found[0]] += 1
                self.objects += found[1]
        else:
            self.failed += 1

    def show(self, seconds: float, setup: float, out: Path, manifest: str) -> None:
        from ..jobs.found import found_in, found_text, summary_lines
        from . import console

        table = self.first
        if 0 < len(table) <= SUMMARY_ROWS and self.done <= SUMMARY_ROWS:
            if self.found:  # an object run: what each image had, then its files
                task = self.job.model.task
                rows = [(r.input, found_text(*(found_in(r) or ("-", 0)), task), len(r.files())) for r in table]
                console.table("found per image", ["image", "found", "files"], rows)
            elif any(r.explained for r in table) and not any(r.files() for r in table):  # evaluate: no files
                pairs = [(r.input, "; ".join(r.explained)) for r in table]
                console.table("explained per image", ["image", f"class ({self.value})"], pairs)
            elif any(r.explained for r in table):
                rows = [(r.input, "; ".join(r.explained), len(r.files())) for r in table]
                console.table("explained per image", ["image", f"class ({self.value})", "files"], rows)
            else:
                shown = [(_shown(r), len(r.files())) for r in table]
                console.table("outputs per image", ["image", "files"], shown)
        if self.done == 1 and len(table) == 1 and table[0].files():
            files = table[0].files()
            more = f" … and {len(files) - FILES_LISTED} more" if len(files) > FILES_LISTED else ""
            console.info("wrote " + ", ".join(files[:FILES_LISTED]) + more)
        for line in summary_lines(self.job, self.found, self.objects):
            console.info(line)
        work = max(seconds - setup, 0.0)
        rate = f", then {console.rate_text(self.done / work).strip()}" if self.done and work > 0 else ""
        skipped = f", {self.skipped} skipped (outputs exist)" if self.skipped else ""
        console.info(
            f"{self.done} done, {self.failed} failed{skipped} in {seconds:.1f}s (set-up {setup:.1f}s{rate}); "
            f"outputs and {manifest} in {out}"
        )


def _shown(result: ImageResult) -> str:
    """The input, and for a video's or volume's feature grids which frame or slice they show (``clip.mp4 (frame
    12)``; a video classifier's layers each show their own time step of it, in the file names and records)."""
    from ..jobs.results import FeatureOutput

    where = next((o.index for o in result.written if isinstance(o, FeatureOutput) and o.index), None)
    if where is None:
        return result.input
    return f"{result.input} ({'frame' if 'frame' in where else 'slice'} {where.get('frame', where.get('slice'))})"
