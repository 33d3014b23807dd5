"""The names of `camcli evaluate`'s metrics (``--metric``), which need what, and which they are without ``--metric``.

Torch-free, like :mod:`camcli.options`: the CLI checks the names before anything heavy is imported. The scores'
record keys, headings and directions are :data:`camcli.jobs.eval_summary.SCORES`'.

* faithfulness: ``deletion``, ``insertion``, ``drop``, ``road`` (perturb the input, camcli.metrics.faithfulness);
* localisation against ground truth (``--annotations``): ``pointing``, ``energy-pointing``, ``relevance-mass``,
  ``relevance-rank``, ``iou`` (camcli.metrics.localisation);
* complexity of the map itself: ``sparseness``, ``complexity``;
* randomisation: ``random-logit`` (the map of another class should differ), which makes every method's maps a
  second time: measured only when named, as it doubles what the maps cost.
"""

from __future__ import annotations

from .checks import at_least, at_most, finite
from .errors import UsageError

FAITHFULNESS = ("deletion", "insertion", "drop", "road")
LOCALISATION = ("pointing", "energy-pointing", "relevance-mass", "relevance-rank", "iou")
COMPLEXITY = ("sparseness", "complexity")
RANDOMISATION = ("random-logit",)
METRICS = FAITHFULNESS + LOCALISATION + COMPLEXITY + RANDOMISATION
#: the record key of each metric that has one score (faithfulness's are named by camcli.jobs.evaluate)
KEYS = {name: name.replace("-", "_") for name in LOCALISATION + COMPLEXITY + RANDOMISATION}
ANNOTATION_FORMATS = "a COCO instances .json, a Pascal VOC folder of .xml, a folder of masks or a .csv of boxes"


def chosen_metrics(named: list[str], annotated: bool) -> list[str]:
    """The metrics a run measures: those ``named`` (in the order of :data:`METRICS`, once each); without any,
    faithfulness, and with annotations localisation and complexity too (a sparse map means something beside
    whether it is on the object; alone it does not, and the records of runs without annotations keep their
    settings). random-logit only when named."""
    if named:
        return [m for m in METRICS if m in named]
    return [*FAITHFULNESS, *((*LOCALISATION, *COMPLEXITY) if annotated else ())]


def check_metrics(
    named: list[str], annotations: str | None, classes: str | None, tolerance: float, iou_threshold: float
) -> None:
    """The rules of evaluate's metric options (a :class:`UsageError` naming the option and the fix)."""
    if isinstance(named, str):  # the Python API: a string would be read letter by letter
        raise UsageError(f"--metric: give a list of names, not one string ({named!r})")
    unknown = [m for m in named if m not in METRICS]
    if unknown:
        raise UsageError(f"--metric {unknown[0]!r}: use {', '.join(METRICS)}")
    local = [m for m in named if m in LOCALISATION]
    if local and annotations is None:
        raise UsageError(
            f"--metric {local[0]} compares the maps with ground truth: give --annotations PATH ({ANNOTATION_FORMATS})"
        )
    if classes is not None and annotations is None:
        raise UsageError("--annotation-classes maps the classes of --annotations: give --annotations PATH too")
    for option, value, high in (("--tolerance", tolerance, 10_000.0), ("--iou-threshold", iou_threshold, 1.0)):
        finite(option, value)
        at_least(option, value, 0)
        at_most(option, value, high)
