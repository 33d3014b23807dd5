"""Layers: dotted-name resolution with suggestions, output shapes, the default layer, token grids."""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..caches import read_json, write_json
from ..errors import LayerError
from .hooks import eval_mode


@dataclass
class LayerInfo:
    """One module as seen during a forward pass (first call)."""

    name: str
    type: str
    shape: tuple[int, ...] | None  # output shape with batch 1; None when not a tensor / never called
    calls: int
    order: int  # completion order in the forward pass (-1: never ran)

    @property
    def spatial(self) -> bool:
        """True when the output has a spatial grid: (N, C, H, W) or square tokens (N, T, C)."""
        return grid_size(self.shape) is not None


def grid_size(shape: tuple[int, ...] | None) -> tuple[int, int] | None:
    """(h, w) of a layer output: 4-D conv maps, or 3-D tokens laid back on a square grid."""
    if shape is None:
        return None
    if len(shape) == 4 and shape[2] * shape[3] > 1:
        return shape[2], shape[3]
    if len(shape) == 3:
        side = math.isqrt(shape[1])
        if side > 1 and 0 <= shape[1] - side * side <= 8:  # class token / register tokens in front
            return side, side
    return None


def tokens_to_grid(t: torch.Tensor) -> torch.Tensor:
    """(N, T, C) tokens → (N, C, h, w), dropping the leading prefix tokens (class/register tokens)."""
    if t.dim() == 4:
        return t
    size = grid_size(tuple(t.shape))
    if t.dim() != 3 or size is None:
        raise LayerError(f"layer output of shape {tuple(t.shape)} has no spatial grid")
    h, w = size
    grid = t[:, t.shape[1] - h * w :, :]
    return grid.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


def module_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def resolve(model: nn.Module, name: str, model_label: str = "the model") -> nn.Module:
    """The submodule at dotted path ``name`` (``layer4``, ``layer4.1.conv2``, ``features.7``)."""
    modules = dict(model.named_modules())
    key = name.strip()
    if key in modules and key:
        return modules[key]
    names = module_names(model)
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise LayerError(f"no layer '{name}' in {model_label}{hint} (see: camcli layers --model {model_label})")


def trace(
    model: nn.Module,
    input_size: tuple[int, int],
    builder: Callable[[], nn.Module] | None = None,
    cache_key: str | None = None,
) -> list[LayerInfo]:
    """Every module's output shape for one (1, 3, H, W) input.

    With a ``cache_key`` (what ``builder`` builds: architecture, classes, library version) the table is kept on
    disk (:mod:`camcli.caches`, per key, input size, torch and camcli version) and read back next time, so a
    one-image run pays no trace. Otherwise, with a ``builder`` the architecture is rebuilt on the ``meta``
    device and run there: no memory, no real compute. Without one (or when an op has no meta kernel) one real
    no-grad forward on a zero image runs.
    """
    entry = _cache_entry(cache_key, input_size) if cache_key and builder is not None else None
    if entry is not None:
        cached = read_json(entry)
        if isinstance(cached, list):
            try:
                return [LayerInfo(n, t, None if s is None else tuple(s), c, o) for n, t, s, c, o in cached]
            except (TypeError, ValueError):
                pass  # an entry of another shape: trace again and replace it
    infos = _trace_model(model, input_size, builder)
    if entry is not None:
        write_json(
            entry, [[i.name, i.type, None if i.shape is None else list(i.shape), i.calls, i.order] for i in infos]
        )
    return infos


def _cache_entry(cache_key: str, input_size: tuple[int, int]) -> str:
    from .. import __version__

    ident = f"{cache_key}|{input_size[0]}x{input_size[1]}|torch{torch.__version__}|camcli{__version__}"
    return f"layers-{hashlib.sha1(ident.encode()).hexdigest()[:16]}.json"


def _trace_model(
    model: nn.Module, input_size: tuple[int, int], builder: Callable[[], nn.Module] | None
) -> list[LayerInfo]:
    if builder is not None:
        try:
            with torch.device("meta"):
                meta_model = builder()
            return _trace(meta_model.eval(), torch.zeros(1, 3, *input_size, device="meta"))
        except (RuntimeError, NotImplementedError, TypeError):
            pass
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with eval_mode(model):
        return _trace(model, torch.zeros(1, 3, *input_size, device=device))


def _trace(model: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    infos: dict[str, LayerInfo] = {
        n: LayerInfo(n, type(m).__name__, None, 0, -1) for n, m in model.named_modules() if n
    }
    counter = [0]
    handles = []

    def make(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            info = infos[name]
            info.calls += 1
            counter[0] += 1
            info.order = counter[0]
            if info.shape is None and isinstance(out, torch.Tensor):
                info.shape = tuple(out.shape)

        return hook

    try:
        for n, m in model.named_modules():
            if n:
                handles.append(m.register_forward_hook(make(n)))
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return list(infos.values())


# resizing/regularising modules: never a useful default even when their output is still spatial
_PASS_THROUGH = frozenset({"AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Dropout", "Dropout2d", "Identity"})


def hookable(infos: list[LayerInfo]) -> list[LayerInfo]:
    """The layers ``--layer`` takes: called once per forward, with a spatial output; in forward order (the order
    their outputs are made)."""
    return sorted((i for i in infos if i.calls == 1 and i.spatial), key=lambda i: i.order)


def default_layer(infos: list[LayerInfo], preferred: str | None = None) -> str:
    """The last module (in forward order) called once whose output still has a spatial grid.

    Adaptive pools, dropout and identities are skipped; 4-D outputs win over token outputs;
    ``preferred`` (a per-architecture choice) wins when present.
    """
    by_name = {i.name: i for i in infos}
    if preferred and preferred in by_name:
        return preferred
    ran = [i for i in hookable(infos) if i.type not in _PASS_THROUGH]
    conv = [i for i in ran if i.shape is not None and len(i.shape) == 4]
    pool = conv or ran
    if not pool:
        raise LayerError("no layer of this model has a spatial output; pick one with --layer")
    return max(pool, key=lambda i: i.order).name


def spatial_neighbours(infos: list[LayerInfo], name: str, n: int = 3) -> list[str]:
    """The spatial layers closest to ``name`` in forward order (for 'no spatial output' errors)."""
    order = {i.name: i.order for i in infos}
    target = order.get(name, 0)
    spatial = [i for i in infos if i.spatial and i.calls >= 1]
    spatial.sort(key=lambda i: abs(i.order - target))
    return [i.name for i in spatial[:n]]


def choose_layers(
    model: nn.Module, infos: list[LayerInfo], wanted: list[str], preferred: str | None = None, label: str = "the model"
) -> tuple[list[str], bool]:
    """Checked names of the ``wanted`` layers (or the default layer when none) and whether camcli chose it.

    A wanted layer must exist, have a spatial output (``infos``, from :func:`trace`) and run once per forward.
    """
    if not wanted:
        return [default_layer(infos, preferred)], True
    by_name = {i.name: i for i in infos}
    out = []
    for name in wanted:
        name = name.strip()
        resolve(model, name, label)
        info = by_name.get(name)
        if info is not None and info.calls and not info.spatial:
            near = ", ".join(spatial_neighbours(infos, name))
            raise LayerError(
                f"layer '{name}' has no spatial output (shape {info.shape}); nearest layers with one: {near}"
            )
        if info is not None and info.calls > 1:
            raise LayerError(f"layer '{name}' runs {info.calls} times per forward pass; pick a layer that runs once")
        out.append(name)
    return out, False
