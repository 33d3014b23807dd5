"""Turning ``--target`` values (indices, class names, ``not:`` either) into :class:`Target` objects.

A target is what one map explains: one entry of the model's score vector (a class's logit, a label's, a
regression output, the similarity to a reference picture or to a prompt: :mod:`camcli.engine.scoring` makes
the vector), or its negative (``not:``: what speaks *against* the class, what lowers the output).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TargetError

NEGATE = "not:"
# words that turn a name into its opposite: "no_cat" must never match the class "cat" (use not:cat)
NEGATIONS = frozenset({"no", "not", "non", "without", "never"})


@dataclass(frozen=True)
class Target:
    """Entry ``index`` of the score vector, or its negative (``negate``): the scalar a map explains."""

    index: int
    negate: bool = False

    @property
    def sign(self) -> float:
        return -1.0 if self.negate else 1.0

    def __call__(self, scores: Any) -> Any:
        """The scalar of ``scores`` (N,) (or (B, N): one per row), negated for ``not:``."""
        value = scores[..., self.index]
        return -value if self.negate else value

    def __str__(self) -> str:
        return f"{NEGATE}{self.index}" if self.negate else str(self.index)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[0-9a-z]+", text.lower()))


def check_index(index: int, num_classes: int) -> None:
    """A :class:`TargetError` unless ``0 <= index < num_classes``."""
    if 0 <= index < num_classes:
        return
    if num_classes == 1:
        raise TargetError(
            f"class {index} is out of range: the model has one output, 0 (a binary head: what speaks against the "
            "positive class is --target not:0)"
        )
    if num_classes < 1:
        raise TargetError(f"class {index}: the model's classes are unknown; pass --labels FILE")
    raise TargetError(f"class {index} is out of range: the model has classes 0…{num_classes - 1}")


def resolve_target(value: str | int, categories: Sequence[str], exact: bool = False) -> int:
    """A class index from ``281``, ``"tabby"`` or ``"tabby cat"``.

    Matching, first rule that finds anything wins: the index; the exact name (case-insensitive); names that
    contain the text; names whose words all appear in the text (never when the text has a word of its own that
    negates, such as ``no_cat``). ``exact``: the index or the exact name only (a targets file's labels). Several
    matches or none: a :class:`TargetError` listing the candidates with their indices.
    """
    n = len(categories)
    text = str(value).strip()
    if not text:
        raise TargetError('an empty --target; pass a class index (281) or a name ("tabby cat")')
    if re.fullmatch(r"-?\d+", text):
        idx = int(text)
        check_index(idx, n)
        return idx
    low = text.lower()
    rules = [lambda c: c.lower() == low]
    if not exact:
        rules += [
            lambda c: low in c.lower(),
            lambda c: bool(_words(c)) and _words(c) <= _words(text) and not (_words(text) - _words(c)) & NEGATIONS,
        ]
    for rule in rules:
        hits = [i for i, c in enumerate(categories) if rule(c)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            listed = ", ".join(f"{i} {categories[i]!r}" for i in hits[:8])
            more = f" and {len(hits) - 8} more" if len(hits) > 8 else ""
            raise TargetError(f"target '{text}' is ambiguous: {listed}{more}; pass the index (--target {hits[0]})")
    close = difflib.get_close_matches(text, list(categories), n=4, cutoff=0.5)
    hint = (
        "; closest: " + ", ".join(f"{categories.index(c)} {c!r}" for c in close)
        if close
        else "; pass a class index instead"
    )
    raise TargetError(f"no class named '{text}' in this model{hint}")


def resolve_targets(values: Sequence[str | int], categories: Sequence[str]) -> list[int]:
    """Class indices, each once, in the order given (``--target 281 --target tabby`` is one class); ``not:`` is
    refused (detectors and segmenters explain objects, which have no negative). A model of the user's own whose
    classes nobody named (no ``categories``) takes any class index: its objects are reported by the numbers it
    gives them (``class_3``), so those numbers are what a user asks for; one it never predicts is said absent."""
    if not categories:
        return list(dict.fromkeys(_unnamed_class(v) for v in values))
    out = [parse_target(v, categories) for v in values]
    if any(t.negate for t in out):
        raise TargetError(
            "--target not:… negates a classifier's score; a detector's or segmenter's objects have no negative"
        )
    return list(dict.fromkeys(t.index for t in out))


def _unnamed_class(value: str | int) -> int:
    """A class index for a model whose class names and count are unknown."""
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    if text.lower().startswith(NEGATE):
        raise TargetError(
            "--target not:… negates a classifier's score; a detector's or segmenter's objects have no negative"
        )
    raise TargetError(
        f"--target {text!r}: this model's classes are unknown (no names, no count), so pass a class index (the "
        "number it gives the objects, 0 or more), or --labels FILE to use names"
    )


def parse_target(
    value: str | int | Target, categories: Sequence[str], negative: str | None = None, exact: bool = False
) -> Target:
    """``281``, ``"tabby"``, ``"not:0"``, ``"not:cat"`` → a :class:`Target` (see :func:`resolve_target`);
    ``negative``: a binary head's name for its negative (``--target no_cat`` is ``not:0``)."""
    if isinstance(value, Target):
        check_index(value.index, len(categories))
        return value
    text = str(value).strip()
    if negative is not None and len(categories) == 1 and text.lower() == negative.strip().lower():
        return Target(0, True)
    if any(text.lower() == c.strip().lower() for c in categories):  # a class whose name starts with not:
        return Target(resolve_target(text, categories, exact))
    if text.lower().startswith(NEGATE):
        rest = text[len(NEGATE) :].strip()
        if not rest:
            raise TargetError(f"--target {text!r}: name what to negate, e.g. not:0 or not:cat")
        if rest.lower().startswith(NEGATE):
            raise TargetError(f"--target {text!r}: not: cannot be nested; not:not:X is X")
        return Target(resolve_target(rest, categories, exact), True)
    return Target(resolve_target(text, categories, exact))


def parse_targets(
    values: Sequence[str | int | Target], categories: Sequence[str], negative: str | None = None
) -> list[Target]:
    """:class:`Target` objects, each once, in the order given."""
    return list(dict.fromkeys(parse_target(v, categories, negative) for v in values))
