"""Layers: dotted-name resolution with suggestions, output shapes and layouts, the default layer."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..caches import read_json, write_json
from ..errors import LayerError
from ..options import Layout
from .hooks import eval_mode
from .layouts import grid_shape, infer_layout, resolved
from .volumes import infer_volume_layout


@dataclass
class LayerInfo:
    """One module as seen during a forward pass (first call)."""

    name: str
    type: str
    shape: tuple[int, ...] | None  # output shape with batch 1; None when not a tensor / never called
    calls: int
    order: int  # completion order in the forward pass (-1: never ran)
    layout: Layout | None = None  # where the output's grid is (camcli.engine.layouts); None: no grid, or unknown
    problem: str = ""  # why the layout cannot be told, when the output looks spatial
    taller: tuple[int, ...] | None = None  # output shape for a taller input (see trace); None: not known

    @property
    def spatial(self) -> bool:
        """True when the output has a spatial grid whose layout is known."""
        return self.layout is not None


def classify(
    infos: list[LayerInfo], input_size: tuple[int, int], prefix: int | None = None, lead: tuple[int, ...] = (3,)
) -> list[LayerInfo]:
    """Fill in each layer's layout (see :func:`camcli.engine.layouts.infer_layout`); ``prefix``: the prefix
    tokens the model declares; ``lead``: the input's dimensions before (H, W) — (C, T) for a clip or (C, D) for a
    volume, whose 5-D layers are read by :func:`camcli.engine.volumes.infer_volume_layout`."""
    # token counts of the model's sequences: a 4-D output whose last two sides are one of them is an attention map
    # (B, heads, T, T), not a grid of the picture
    tokens = {i.shape[1] for i in infos if i.shape is not None and len(i.shape) == 3}
    for i in infos:
        i.layout, i.problem = None, ""
        if not i.shape or i.shape[0] != 1:  # a scalar, or windows/heads folded into the batch: not one grid
            continue
        if len(i.shape) == 4 and i.shape[2] == i.shape[3] in tokens and i.shape[2] > 4:
            continue
        if len(lead) == 2:  # a clip or a volume: its grids are 5-D
            if len(i.shape) == 5:
                kind, i.problem = infer_volume_layout(i.shape, (lead[1], *input_size), i.type)
                i.layout = Layout(kind) if kind else None
            continue
        i.layout, i.problem = infer_layout(i.shape, input_size, prefix, i.type, i.taller)
    return infos


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
    prefix: int | None = None,
    taller: bool = True,
    lead: tuple[int, ...] = (3,),
) -> list[LayerInfo]:
    """Every module's output shape and layout for one (1, 3, H, W) input (``prefix``: the prefix tokens the
    model declares, see :func:`classify`). ``lead``: the input's dimensions before (H, W), without the batch:
    (3,) for a picture, (3, T) for a clip of T frames, (C, D) for a volume of D slices.

    The model is also traced with a taller input (H + 64, W) when it takes one: an output whose grid does not
    grow with the input is not a grid of the picture (a table of relative-position biases), and which dimension
    grew tells channels first from channels last. Models built for one input size (ViT), and detectors
    (``taller=False``: their own transform resizes every input), are read from their shapes alone.

    With a ``cache_key`` (what ``builder`` builds: architecture, classes, library version) the table is kept on
    disk (:mod:`camcli.caches`, per key, input size, torch and camcli version) and read back next time, so a
    one-image run pays no trace. Otherwise, with a ``builder`` the architecture is rebuilt on the ``meta``
    device and run there: no memory, no real compute. Without one (or when an op has no meta kernel) one real
    no-grad forward on a zero image runs.
    """
    entry = _cache_entry(cache_key, input_size, lead) if cache_key and builder is not None else None
    if entry is not None:
        cached = read_json(entry)
        if isinstance(cached, list):
            try:
                infos = [
                    LayerInfo(n, t, None if s is None else tuple(s), c, o, taller=None if g is None else tuple(g))
                    for n, t, s, c, o, g in cached
                ]
                return classify(infos, input_size, prefix, lead)
            except (TypeError, ValueError):
                pass  # an entry of another shape: trace again and replace it
    infos = _trace_model(model, input_size, builder, lead)
    grown: dict[str, tuple[int, ...] | None] = {}
    try:
        if taller:
            high = (input_size[0] + 64, input_size[1])
            grown = {i.name: i.shape for i in _trace_model(model, high, builder, lead)}
    except Exception:  # a model built for one input size: its layers are read from their shapes alone
        grown = {}
    for i in infos:
        i.taller = grown.get(i.name)
    if entry is not None:
        write_json(
            entry,
            [
                [
                    i.name,
                    i.type,
                    None if i.shape is None else list(i.shape),
                    i.calls,
                    i.order,
                    None if i.taller is None else list(i.taller),
                ]
                for i in infos
            ],
        )
    return classify(infos, input_size, prefix, lead)


def _cache_entry(cache_key: str, input_size: tuple[int, int], lead: tuple[int, ...] = (3,)) -> str:
    from .. import __version__

    size = "x".join(map(str, (*(lead if lead != (3,) else ()), *input_size)))  # pictures: HxW, as before
    ident = f"v2|{cache_key}|{size}|torch{torch.__version__}|camcli{__version__}"
    return f"layers-{hashlib.sha1(ident.encode()).hexdigest()[:16]}.json"


def _trace_model(
    model: nn.Module, input_size: tuple[int, int], builder: Callable[[], nn.Module] | None, lead: tuple[int, ...]
) -> list[LayerInfo]:
    if builder is not None:
        try:
            with torch.device("meta"):
                meta_model = builder()
            return _trace(meta_model.eval(), torch.zeros(1, *lead, *input_size, device="meta"))
        except (RuntimeError, NotImplementedError, TypeError):
            pass
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with eval_mode(model):
        return _trace(model, torch.zeros(1, *lead, *input_size, device=device))


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

    Adaptive pools, dropout and identities are skipped; 4-D outputs win over token outputs, except a last token
    layer without prefix tokens (a Swin's final norm, pooled over every token: with a class token the last
    layers are read at that token only); ``preferred`` (a per-architecture choice) wins when present.
    """
    by_name = {i.name: i for i in infos}
    if preferred and preferred in by_name:
        return preferred
    ran = [i for i in hookable(infos) if i.type not in _PASS_THROUGH]
    if not ran:
        raise LayerError("no layer of this model has a spatial output; pick one with --layer")
    last = max(ran, key=lambda i: i.order)
    conv = [i for i in ran if i.shape is not None and len(i.shape) in (4, 5)]
    if last.layout is not None and last.layout.kind == "tokens" and last.layout.prefix == 0:
        return last.name
    return max(conv or ran, key=lambda i: i.order).name


def spatial_neighbours(infos: list[LayerInfo], name: str, n: int = 3) -> list[str]:
    """The spatial layers closest to ``name`` in forward order (for 'no spatial output' errors)."""
    order = {i.name: i.order for i in infos}
    target = order.get(name, 0)
    spatial = [i for i in infos if i.spatial and i.calls >= 1]
    spatial.sort(key=lambda i: abs(i.order - target))
    return [i.name for i in spatial[:n]]


def once_neighbours(infos: list[LayerInfo], name: str, n: int = 3) -> list[str]:
    """The layers ``--layer`` takes nearest to ``name`` (a module that runs several times per forward pass): the
    closest block that contains it, the layers inside it, then the closest by position in the forward pass."""
    usable = hookable(infos)
    by_name = {i.name: i for i in usable}
    parts = name.split(".")
    parent = next((p for k in range(len(parts) - 1, 0, -1) if (p := ".".join(parts[:k])) in by_name), None)
    children = [i.name for i in usable if i.name.startswith(name + ".")]
    target = next((i.order for i in infos if i.name == name), 0)
    near = [i.name for i in sorted(usable, key=lambda i: abs(i.order - target))]
    chosen = list(dict.fromkeys([*([parent] if parent else []), *children, *near]))[:n]
    return [f"{c} (contains it)" if c == parent else c for c in chosen]


def choose_layers(
    model: nn.Module,
    infos: list[LayerInfo],
    wanted: list[str],
    preferred: str | None = None,
    label: str = "the model",
    layout: Layout | None = None,
    input_size: tuple[int, int] = (224, 224),
) -> tuple[list[str], bool]:
    """Checked names of the ``wanted`` layers (or the default layer when none) and whether camcli chose it.

    A wanted layer must exist, have a spatial output whose layout is known (``infos``, from :func:`trace`) and
    run once per forward. ``layout`` (``--layout``) overrides the layout of every chosen layer, after a check
    that the output's shape fits it; the chosen layers' ``infos`` carry the layout used.
    """
    by_name = {i.name: i for i in infos}
    if not wanted:
        out, chosen = [default_layer(infos, preferred)], True
    else:
        out, chosen = [], False
        for name in wanted:
            name = name.strip()
            resolve(model, name, label)
            info = by_name.get(name)
            if info is not None and info.calls > 1:
                near = ", ".join(once_neighbours(infos, name))
                raise LayerError(
                    f"layer '{name}' runs {info.calls} times per forward pass (one module used at several places), "
                    f"so its maps would mix those places; nearest layers that run once: {near or 'none'} "
                    f"(see: camcli layers --model {label})"
                )
            if info is not None and info.shape and info.shape[0] != 1:
                raise LayerError(
                    f"layer '{name}' gives {info.shape[0]} rows for one picture (windows or heads folded into the "
                    "batch); pick the block that contains it (see: camcli layers)"
                )
            if info is not None and info.calls and not info.spatial and layout is None:
                if info.problem:
                    raise LayerError(
                        f"cannot tell the layout of layer '{name}': {info.problem}; pass --layout nchw|nhwc|tokens[:N]"
                    )
                near = ", ".join(spatial_neighbours(infos, name))
                raise LayerError(
                    f"layer '{name}' has no spatial output (shape {info.shape}); nearest layers with one: {near}"
                )
            out.append(name)
    if layout is not None:
        for name in out:
            info = by_name.get(name)
            if info is not None and info.shape is not None:
                try:
                    grid_shape(info.shape, layout, input_size)
                except LayerError as e:
                    raise LayerError(f"layer '{name}': {e}") from None
                info.layout, info.problem = resolved(layout, info.shape, input_size), ""
    return out, chosen
