"""Which of a model's classes an annotation's class stands for: ``cup`` is ImageNet's ``cup``, COCO's ``cat`` is
none of ImageNet's names unless a mapping file says it is ``tabby``, ``tiger cat`` … (``--annotation-classes``).

Names are compared ignoring case and treating ``_``, ``-`` and spaces alike (``coffee_mug`` is ``coffee mug``).
A name that several of the model's classes bear (ImageNet has two ``crane`` and two ``maillot``) stands for all
of them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..checks import first_words, json_value, one_line, regular_file
from ..errors import UsageError

_SEPARATORS = re.compile(r"[\s_\-]+")
_SHOWN = 8  # the note names this many labels of each kind, then says how many more
MAPPING_FORM = '{"cat": ["tabby", "tiger cat"], "cup": "cup"}'


def normal(name: str) -> str:
    """A class name as it is compared: case folded, ``_`` ``-`` and runs of spaces as one space, trimmed."""
    return _SEPARATORS.sub(" ", name.casefold()).strip()


def read_class_mapping(path: Path) -> dict[str, list[str]]:
    """A JSON file mapping annotation class names to model class names (one name or a list of them);
    UsageError (one line) for a file that is not one."""
    shown = one_line(str(path))
    regular_file("--annotation-classes", str(path))
    try:
        data = json_value(Path(path).read_bytes().decode("utf-8-sig"))
    except OSError as e:
        raise UsageError(f"--annotation-classes {shown} cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--annotation-classes {shown} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except ValueError as e:
        raise UsageError(f"--annotation-classes {shown} is not valid JSON ({first_words(e)}); fix it") from None
    if not isinstance(data, dict):
        raise UsageError(f"--annotation-classes {shown} must hold a JSON object, like {MAPPING_FORM}")
    mapping: dict[str, list[str]] = {}
    for label, names in data.items():
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise UsageError(
                f"--annotation-classes {shown}: {one_line(label)[:60]!r} maps to {one_line(str(names))[:60]}; give a "
                f"model class name or a list of them (leave out a class the model has not), like {MAPPING_FORM}"
            )
        mapping[label] = list(names)
    return mapping


def _closest(name: str, class_names: Sequence[str]) -> str:
    normals = {normal(c): c for c in reversed(class_names)}
    best = difflib.get_close_matches(normal(name), list(normals), n=1, cutoff=0.0)
    return normals[best[0]] if best else ""


def match_classes(
    labels: Iterable[str], class_names: Sequence[str], mapping: dict[str, list[str]] | None = None
) -> dict[str, list[int]]:
    """Each annotation label → the indices of the model's classes it stands for: the mapping's names when it maps
    the label (UsageError for a name the model has not, naming the closest one), else the class of the same name,
    else none."""
    index: dict[str, list[int]] = {}
    for i, name in enumerate(class_names):
        index.setdefault(normal(name), []).append(i)
    mapped = {normal(k): v for k, v in reversed(list((mapping or {}).items()))}
    matched: dict[str, list[int]] = {}
    for label in labels:
        names = (mapping or {}).get(label, mapped.get(normal(label)))
        if names is None:
            matched[label] = list(index.get(normal(label), []))
            continue
        found: list[int] = []
        for name in names:
            hits = index.get(normal(name))
            if not hits:
                closest = _closest(name, class_names)
                hint = f"; the closest is {closest!r}" if closest else ""
                raise UsageError(
                    f"--annotation-classes maps {one_line(label)!r} to {one_line(name)!r}, which is no class of the "
                    f"model{hint}; use the model's class names"
                )
            found.extend(h for h in hits if h not in found)
        matched[label] = found
    return matched


def _names(items: list[str], limit: int = _SHOWN) -> str:
    shown = ", ".join(one_line(i) for i in items[:limit])
    return shown if len(items) <= limit else f"{shown}, … ({len(items)} in all)"


def class_match_note(
    matched: dict[str, list[int]], class_names: Sequence[str], mapping: dict[str, list[str]] | None = None
) -> str:
    """One line saying which model classes each annotation class stands for, which stand for none, and which
    classes of a ``mapping`` no annotation uses (a typo there would otherwise go unseen)."""
    if not matched:
        return "annotation classes: none (the regions have no class: each is about the class explained)"
    parts = []
    found = [(label, idx) for label, idx in matched.items() if idx]
    for label, idx in found[:_SHOWN]:
        names = [class_names[i] if 0 <= i < len(class_names) else f"class_{i}" for i in idx]
        parts.append(f"{one_line(label)} → {_names(list(dict.fromkeys(names)), 4)}")
    if len(found) > _SHOWN:
        parts.append(f"… ({len(found)} classes matched)")
    missing = [label for label, idx in matched.items() if not idx]
    if missing:
        them = "it" if len(missing) == 1 else "them"
        fix = (
            f"add {them} to the --annotation-classes file" if mapping else f"map {them} with --annotation-classes FILE"
        )
        parts.append(f"{_names(missing)}: no class of the model by that name ({fix})")
    unused = [label for label in mapping or {} if normal(label) not in {normal(m) for m in matched}]
    if unused:
        parts.append(f"{_names(unused)}: in the --annotation-classes file, in no annotation")
    return "annotation classes: " + "; ".join(parts)
