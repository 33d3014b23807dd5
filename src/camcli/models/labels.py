"""Class names: ImageNet's (offline), a user's ``--labels`` file, and ``class_N`` for unnamed classes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..checks import json_value, regular_file
from ..errors import UsageError

INDEX = re.compile(r"[0-9]{1,12}")  # a class index as a JSON key: ASCII digits only ("²".isdigit() is true)
MAX_CLASSES = 1_000_000  # a --labels file's indices: the names list is as long as the largest index


def placeholder(index: int) -> str:
    """The name of a class nobody named: ``class_7``."""
    return f"class_{index}"


def placeholder_names(count: int) -> list[str]:
    return [placeholder(i) for i in range(count)]


def class_name(categories: Sequence[str], index: int) -> str:
    """``categories[index]``, or the placeholder when the index is outside the list."""
    return categories[index] if 0 <= index < len(categories) else placeholder(index)


@lru_cache(maxsize=1)
def _imagenet() -> tuple[str, ...]:
    text = (resources.files("camcli.models") / "imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def imagenet_categories() -> list[str]:
    """ImageNet-1k class names in the standard order, shipped with camcli (``imagenet_classes.txt``: the list in
    torchvision's weight metadata, copied so that the bundled model's path needs no torchvision import)."""
    return list(_imagenet())


def read_labels(path: str, num_classes: int | None) -> list[str]:
    """Class names from a text file (one per line) or JSON (list, {index: name} or {name: index}). A model with
    one output (a binary head) may have two: what its low and its high values mean (see :func:`split_binary`)."""
    p = Path(path)
    regular_file("--labels", path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read --labels file '{path}' ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--labels file '{path}' is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    names: list[str]
    if p.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json_value(text)
        except ValueError as e:
            raise UsageError(f"--labels file '{path}' is not valid JSON ({e})") from None
        if isinstance(data, list):
            names = [str(x) for x in data]
        elif isinstance(data, dict):
            pairs = {}
            for k, v in data.items():
                if INDEX.fullmatch(k):
                    index, name = int(k), v
                elif isinstance(v, int) and not isinstance(v, bool):
                    index, name = v, k
                else:
                    raise UsageError(f"--labels JSON must map indices to names; got {k[:40]!r}: {str(v)[:40]!r}")
                if not 0 <= index < MAX_CLASSES:
                    raise UsageError(
                        f"--labels JSON: class index {str(index)[:40]} is not from 0 to {MAX_CLASSES - 1:,}; fix it"
                    )
                pairs[index] = str(name)
            names = [pairs.get(i, placeholder(i)) for i in range(max(pairs) + 1)] if pairs else []
        else:
            raise UsageError(f"--labels file '{path}' must hold a JSON list or object")
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
    if num_classes == 1 and len(names) == 2:  # a binary head: the negative's name, then the positive's
        if names[0].strip().lower() == names[1].strip().lower():
            raise UsageError(f"--labels gives the binary head's two sides one name ({names[0]!r}); name them apart")
        return names
    if num_classes == 1 and len(names) != 1:
        raise UsageError(
            f"--labels has {len(names)} names but the model has one output (a binary head): give 1 name, or 2 (the "
            "negative's, then the positive's)"
        )
    if num_classes is not None and len(names) != num_classes:
        raise UsageError(f"--labels has {len(names)} names but the model has {num_classes} classes; fix the file")
    return names


def split_binary(names: list[str], outputs: int | None) -> tuple[list[str], str | None]:
    """A binary head's two names (negative, positive) → ([positive], negative); other names stay as they are."""
    if outputs == 1 and len(names) == 2:
        return [names[1]], names[0]
    return names, None
