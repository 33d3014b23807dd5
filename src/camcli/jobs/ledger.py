"""The run's ledger: records each result in the manifest once its files are in place, and knows what is done
(``--skip-existing``). One per run (:func:`~camcli.jobs.runner.run_items`), or one per engine worker kept open
across its batches (camcli.jobs.engine_api)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..io.inputs import InputFile, input_key
from ..io.manifest import Manifest, manifest_name, recorded_inputs
from .job import C, Job
from .results import ImageResult


class Ledger:
    """A run's side of the manifest: records each result once its files are in place, knows what is done.

    When a record cannot be written (a full disk), the image's files are removed, so that every file in the
    output folder keeps a record; the run's remaining images are treated the same way, and
    :meth:`raise_if_broken` reports it at the end.
    """

    def __init__(self, job: Job[C]) -> None:
        o = job.options
        self.job: Job[Any] = job
        name = manifest_name(o.resolved_shard(), job.manifest_stem)
        self.manifest = Manifest(o.out, name, fsync=o.fsync)
        self.done = recorded_inputs(o.out, name, job.manifest_stem) if o.skip_existing else set()
        self.error: str | None = None
        self.lost = 0

    def already_done(self, item: InputFile) -> bool:
        """Resume: skip only an input whose outputs all exist *and* whose last record says ok (outputs left by a
        killed run without a record are made again, and recorded)."""
        done = self.job.media_done(item) if item.media else self.job.outputs_exist(item)
        return input_key(item.origin) in self.done and done

    def record(self, result: ImageResult) -> None:
        if result.skipped:
            return
        result.records = self.job.records(result)
        if result.input_sha256 is not None:
            for r in result.records:
                r["input_sha256"] = result.input_sha256
        if self.error is None:
            try:
                self.manifest.write(result.records)
                if self.job.options.skip_existing:  # the last record counts: a ledger kept open stays current
                    key = input_key(Path(result.input))
                    if result.ok:
                        self.done.add(key)
                    else:
                        self.done.discard(key)
                if result.stop_run is not None:  # recorded as failed, but nothing more can be written
                    self.error = result.stop_run
                return
            except OSError as e:
                self.error = f"cannot write the manifest {self.manifest.path} ({e.strerror or e})"
        for path in result.files():
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.lost += 1
        result.ok, result.error = False, f"{result.input}: {self.error}; its outputs were removed"
        result.written, result.records = [], []

    def close(self) -> None:
        self.manifest.close()

    def raise_if_broken(self) -> None:
        if self.error is not None:
            lost = f"; {self.lost} image(s) could not be recorded and their outputs were removed" if self.lost else ""
            raise OutputError(
                f"{self.error}{lost}; the run stopped. Free space (or fix the folder) and rerun with "
                "--skip-existing: what is recorded is complete"
            )
