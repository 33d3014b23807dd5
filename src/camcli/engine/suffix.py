"""Running only the part of a model after one layer, on copies of one input whose layer output is changed
(Ablation-CAM's ablated copies).

One traced run of the model on the input records, for every module, when its call began and ended. The outermost
modules that were called once and had finished before the layer began computed nothing that differs between
copies of the input: in a run on N copies each returns its recorded output expanded to N rows (a view, no copy)
instead of running, and the layer returns the rows it is given. Everything else (the code between modules, the
layer's parents, the layers after it) runs on the N rows as usual, so a forward that reads its batch size from the
input, or concatenates an earlier tensor with a later one, still sees N rows everywhere.

What this cannot see (control flow that depends on values, a module with a state of its own) the caller checks by
comparing one run's answer with the model's own: :func:`trace` and :func:`replayed` only say what they did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Prefix:
    """What a traced run computed before a layer: (module, output) of the outermost modules that were called once
    and had finished before the layer began, and the layer's own output."""

    done: list[tuple[nn.Module, torch.Tensor]]
    output: torch.Tensor


def trace(model: nn.Module, layer: nn.Module, run: Callable[[], object]) -> Prefix | None:
    """Call ``run()`` (one forward of ``model``) twice: once with every module watched (which ones finished before
    ``layer`` began), once to keep copies of their outputs and of the layer's, taken as each module returned them
    (later in-place operations do not reach them). None when ``layer`` did not run exactly once or did not return
    a tensor. The hooks are removed on the way out, also on error."""
    clock = [0]
    began: dict[nn.Module, int] = {}
    ended: dict[nn.Module, int] = {}
    calls: dict[nn.Module, int] = {}
    tensors: set[nn.Module] = set()

    def before(m: nn.Module, _inputs: object) -> None:
        calls[m] = calls.get(m, 0) + 1
        began.setdefault(m, clock[0])
        clock[0] += 1

    def after(m: nn.Module, _inputs: object, output: object) -> None:
        ended[m] = clock[0]
        clock[0] += 1
        if isinstance(output, torch.Tensor):
            tensors.add(m)

    names = {m: n for n, m in model.named_modules()}
    _watched(list(names), [before], [after], run)
    if calls.get(layer) != 1 or layer not in tensors:
        return None
    finished = {m for m in tensors if m is not layer and calls[m] == 1 and ended[m] < began[layer]}
    by_name = {n: m for m, n in names.items()}
    outermost = [m for m in finished if by_name.get(names[m].rpartition(".")[0]) not in finished]
    kept: dict[nn.Module, torch.Tensor] = {}

    def keep(m: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            kept[m] = output.clone()

    _watched([*outermost, layer], [], [keep], run)
    if any(m not in kept for m in [*outermost, layer]):
        return None
    return Prefix([(m, kept[m]) for m in outermost], kept[layer])


def _watched(modules: list[nn.Module], pre: list[Callable[..., None]], post: list[Callable[..., None]], run):
    handles = []
    try:
        for m in modules:
            handles += [m.register_forward_pre_hook(f) for f in pre] + [m.register_forward_hook(f) for f in post]
        run()
    finally:
        for h in handles:
            h.remove()


@contextmanager
def replayed(prefix: Prefix, layer: nn.Module, rows: torch.Tensor) -> Iterator[list[int]]:
    """Inside the block, each module of ``prefix.done`` returns its recorded output expanded to ``len(rows)`` rows
    without running, and ``layer`` returns ``rows``. Yields a counter of the layer's calls (a run that never
    called it did not use ``rows``). Every module's own ``forward`` is back on exit, also on error."""
    n = int(rows.shape[0])
    used = [0]

    def recorded(out: torch.Tensor) -> Callable[..., torch.Tensor]:
        return lambda *_a, **_k: out.expand(n, *out.shape[1:])

    def given(*_a: object, **_k: object) -> torch.Tensor:
        used[0] += 1
        return rows

    swaps = [(m, recorded(out)) for m, out in prefix.done] + [(layer, given)]
    missing = object()
    saved: list[tuple[nn.Module, object]] = []
    try:
        for m, forward in swaps:
            saved.append((m, m.__dict__.get("forward", missing)))
            m.__dict__["forward"] = forward  # an instance attribute: found before the class's forward
        yield used
    finally:
        for m, old in reversed(saved):
            if old is missing:
                m.__dict__.pop("forward", None)
            else:
                m.__dict__["forward"] = old
