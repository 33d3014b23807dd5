"""Turning ``--target`` values (indices or class names) into class indices."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from ..errors import TargetError


def _words(text: str) -> set[str]:
    return set(re.findall(r"[0-9a-z]+", text.lower()))


def check_index(index: int, num_classes: int) -> None:
    """A :class:`TargetError` unless ``0 <= index < num_classes``."""
    if not 0 <= index < num_classes:
        raise TargetError(f"class {index} is out of range: the model has classes 0…{num_classes - 1}")


def resolve_target(value: str | int, categories: Sequence[str]) -> int:
    """A class index from ``281``, ``"tabby"`` or ``"tabby cat"``.

    Matching, first rule that finds anything wins: the index; the exact name (case-insensitive); names that
    contain the text; names whose words all appear in the text. Several matches or none: a
    :class:`TargetError` listing the candidates with their indices.
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
    rules = (
        lambda c: c.lower() == low,
        lambda c: low in c.lower(),
        lambda c: bool(_words(c)) and _words(c) <= _words(text),
    )
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
    """Class indices, each once, in the order given (``--target 281 --target tabby`` is one class)."""
    return list(dict.fromkeys(resolve_target(v, categories) for v in values))
