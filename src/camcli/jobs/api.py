"""The Python API's entry points for CAM runs (:func:`explain_files`, over :class:`~camcli.jobs.cam.CamJob`) and
evaluate runs (:func:`evaluate_files`, over :class:`~camcli.jobs.evaluate.EvaluateJob`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..models import LoadedModel
from ..options import CamOptions, EvalOptions
from .cam import CamJob
from .evaluate import EvaluateJob
from .results import ImageResult
from .runner import ResultCallback, run_job


def explain_files(
    inputs: Sequence[str],
    options: CamOptions | None = None,
    *,
    on_result: ResultCallback | None = None,
    on_error: ResultCallback | None = None,
    model: LoadedModel | None = None,
) -> Iterator[ImageResult]:
    """Python API: explain files/folders/globs/list files; yields results as their outputs are written.

    Example::

        from pathlib import Path
        from camcli import CamOptions, explain_files

        for r in explain_files(["photos/"], CamOptions(out=Path("cams"), methods=["gradcam", "layercam"])):
            print(r.input, r.predictions[0].name if r.ok else r.error)
    """
    job = CamJob(options or CamOptions(), model)
    yield from run_job(job, inputs, on_result=on_result, on_error=on_error)


def evaluate_files(
    inputs: Sequence[str],
    options: EvalOptions | None = None,
    *,
    on_result: ResultCallback | None = None,
    on_error: ResultCallback | None = None,
    model: LoadedModel | None = None,
) -> Iterator[ImageResult]:
    """Python API: measure the maps of ``options.methods`` on files/folders; yields a result per input, whose
    ``written`` holds one :class:`EvalOutput` per method (and baseline) and class."""
    job = EvaluateJob(options or EvalOptions(), model)
    yield from run_job(job, inputs, on_result=on_result, on_error=on_error)
