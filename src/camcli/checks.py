"""Range rules shared by the options (torch-free), the rules of what a run explains (:class:`TargetFields`:
``--head --threshold --reference --prompt --targets-file``, shared by ``gradcam`` and ``evaluate``), and how a text
from outside (a class name, a path) is shown on one line (:func:`one_line`)."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from typing import Any, Protocol

from .errors import UsageError

HEADS = ("softmax", "sigmoid", "identity")  # --head: how a model's scores read as probabilities (engine.scoring)


def _a_number(option: str, value: float | None) -> None:
    if value is not None and value != value:  # NaN: every comparison with it is false, so no range check fires
        raise UsageError(f"{option} {value} is not a number; pass a finite value")


def at_least(option: str, value: float | None, low: float) -> None:
    _a_number(option, value)
    if value is not None and value < low:
        raise UsageError(f"{option} {value} is too small; use {low} or more")


def at_most(option: str, value: float | None, high: float) -> None:
    _a_number(option, value)
    if value is not None and value > high:
        raise UsageError(f"{option} {value} is too large; use at most {high}")


def finite(option: str, value: float) -> None:
    if not math.isfinite(value):
        raise UsageError(f"{option} {value} is not a number; pass a finite value")


def regular_file(option: str, path: str) -> None:
    """Refuse an option's file that exists but is not a regular file: reading a FIFO would wait forever, a device
    never end (a missing file is left to the reader, which says so)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISDIR(mode):
        raise UsageError(f"{option} {path} is a folder; pass a file")
    if not stat.S_ISREG(mode):
        raise UsageError(f"{option} {path}: not a regular file (a FIFO, socket or device); pass a file")


# control characters (newline, tab, escape, C1) and the Unicode line and paragraph separators
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with each control character (newline, tab, escape …) and line separator replaced by a space: a
    class name or a path from outside, made fit for a caption or a table cell (the records keep the text as it
    is)."""
    return _BREAKS.sub(" ", text)


def first_words(error: BaseException | str, limit: int = 200) -> str:
    """A library's error as one line for a message of camcli's: its first line, cut at a word (with "…") when it
    is longer than ``limit`` characters, never in the middle of one; an exception without text: its type."""
    text = str(error).strip()
    line = one_line(text.splitlines()[0]) if text else ""
    if not line:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return (cut or line[:limit]) + " …"


def json_value(text: str | bytes) -> Any:
    """``json.loads`` for text a user gave (an option, a file, a picture's tags): nesting too deep for Python's
    parser (``[[[[…``) is the ValueError any other malformed text gives, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class TargetFields(Protocol):
    """What a run explains besides its classes: the head, references, prompts, a targets file, a threshold."""

    targets: list[str]
    top_k: int
    head: str | None
    threshold: float | None
    references: list[str]
    prompts: list[str]
    targets_file: str | None
    max_pixels: int | None  # the decompression-bomb guard, for the --reference pictures as for the inputs


def check_target_fields(o: TargetFields) -> None:
    """The rules of :class:`TargetFields` (a :class:`UsageError` naming the option and the fix)."""
    for option, values in (("--reference", o.references), ("--prompt", o.prompts), ("--target", o.targets)):
        if isinstance(values, str):  # the Python API: a string would be read letter by letter
            raise UsageError(f"{option}: give a list of values, not one string ({values!r})")
    if o.threshold is not None and not isinstance(o.threshold, (int, float)):
        raise UsageError(f"--threshold {o.threshold!r}: give a number from 0 to 1")
    if o.head is not None and o.head not in HEADS:
        raise UsageError(f"--head {o.head!r}: use {', '.join(HEADS)}")
    if o.threshold is not None:
        finite("--threshold", o.threshold)
        at_least("--threshold", o.threshold, 0.0)
        at_most("--threshold", o.threshold, 1.0)
        if o.top_k > 1:
            raise UsageError(
                f"--threshold and --top-k {o.top_k} together: --threshold explains every label at least that "
                "probable, --top-k each image's N best; drop one of them"
            )
        if o.head not in (None, "sigmoid"):
            raise UsageError(
                f"--threshold reads probabilities of independent labels; it needs --head sigmoid, not {o.head}"
            )
    chosen = [
        name
        for name, given in (
            ("--target", bool(o.targets)),
            ("--threshold", o.threshold is not None),
            ("--targets-file", o.targets_file is not None),
        )
        if given
    ]
    if len(chosen) > 1:
        raise UsageError(f"{chosen[0]} and {chosen[1]} both say what to explain; give one of them")
    if o.references and o.prompts:
        raise UsageError("--reference and --prompt both say what to explain; give one of them")
    for option, values in (("--reference", o.references), ("--prompt", o.prompts)):
        if any(not str(v).strip() for v in values):
            raise UsageError(f"{option} is empty; give a picture path (--reference) or a text (--prompt)")
        if len(set(values)) != len(values):
            raise UsageError(f"{option} lists the same value twice; list each once")
    if (o.references or o.prompts) and o.threshold is not None:
        raise UsageError("--threshold reads label probabilities; similarities to --reference/--prompt have none")
