"""Help panels and shell completion of the options (nothing here imports torch: completions run on every TAB)."""

from __future__ import annotations

from collections.abc import Callable

import typer

from ..options import (
    BLENDS,
    BUNDLED,
    COMMON_COLORMAPS,
    LAYOUT_KINDS,
    METHOD_NAMES,
    MODEL_NAMES_ENTRY,
    NORMALIZE_MODES,
    OUTPUT_FORMATS,
)

# ------------------------------------------------------------------------------------------- help panels
MODEL = "Model"
EXPLAIN = "What to explain"
OUTPUT = "Output"
SMOOTHING = "Smoothing"
RUN = "Run"


# ------------------------------------------------------------------------------------ shell completion
# Completions run on every TAB press: nothing here imports torch; layer names come from a small cache that a
# run or `camcli layers` fills (camcli.caches.remember_layer_names).
def _starting_with(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """A completion of one of ``choices`` (all lower case) from what was typed."""
    return lambda incomplete: [c for c in choices if c.startswith(incomplete.lower())]


complete_method = _starting_with(METHOD_NAMES)
complete_blend = _starting_with(BLENDS)
complete_normalize = _starting_with(NORMALIZE_MODES)
complete_format = _starting_with(OUTPUT_FORMATS)
complete_colormap = _starting_with(COMMON_COLORMAPS)
complete_layout = _starting_with((*LAYOUT_KINDS, "tokens:0", "tokens:1", "tokens:2"))


def complete_model(incomplete: str) -> list[str]:
    from ..caches import read_json

    names = read_json(MODEL_NAMES_ENTRY)
    known = [BUNDLED, *(names if isinstance(names, list) else [])]
    return [n for n in known if isinstance(n, str) and n.startswith(incomplete.lower())]


def complete_layer(ctx: typer.Context, incomplete: str) -> list[str]:
    from ..caches import layer_names_entry, read_json

    model = (ctx.params.get("model") if ctx is not None else None) or BUNDLED
    names = read_json(layer_names_entry(str(model)))
    return [n for n in names if isinstance(n, str) and n.startswith(incomplete)] if isinstance(names, list) else []
