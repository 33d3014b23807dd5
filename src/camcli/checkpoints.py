"""User checkpoints: safe loading, unwrapping, prefix stripping, architecture identification, labels.

Safety: ``torch.load(..., weights_only=True, map_location="cpu")`` always; there is no automatic fallback to
full unpickling. A file that needs arbitrary classes is refused with the classes it would import, unless the
user passes ``--trust-checkpoint``. This module is the only place that deserializes user files.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import CheckpointError, UsageError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "network", "weights", "params")
EMA_KEYS = ("model_ema", "state_dict_ema", "ema_state_dict", "ema", "ema_model", "ema_state")
PREFIXES = ("module.", "_orig_mod.", "model.", "net.")


@dataclass
class CheckpointInfo:
    """What :func:`inspect_checkpoint` found in a file."""

    path: str
    format: str
    container: str | None = None  # key the state_dict was found under
    stripped: list[str] = field(default_factory=list)  # prefixes removed from every key
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    module: nn.Module | None = None  # a pickled full model (only with trust)
    extra_keys: list[str] = field(default_factory=list)
    arch: str | None = None
    num_classes: int | None = None
    candidates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ meta builds
class _MetaParams(TorchFunctionMode):
    """Create parameters and buffers on the meta device, leave other tensor math alone (regnet computes
    its widths with tensors at build time, which a plain ``torch.device('meta')`` context breaks)."""

    _factories = frozenset({torch.empty, torch.zeros, torch.ones, torch.full})

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in self._factories and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


@contextmanager
def meta_params() -> Any:
    with _MetaParams():
        yield


def build_arch(name: str, num_classes: int | None = None, meta: bool = False) -> nn.Module:
    """An architecture without weights: the bundled model or a torchvision classification model."""
    import warnings

    from .models import BUNDLED, _build_lite0, torchvision_names

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if name == BUNDLED:
        builder: Callable[[], nn.Module] = _build_lite0
        if num_classes not in (None, 1000):

            def builder() -> nn.Module:
                m = _build_lite0()
                m._fc = nn.Linear(m._fc.in_features, int(num_classes))  # type: ignore[arg-type,union-attr]
                return m
    elif name in torchvision_names():
        import torchvision

        if name in ("googlenet", "inception_v3"):
            kwargs.update(aux_logits=False, init_weights=False)

        def builder() -> nn.Module:
            return torchvision.models.get_model(name, weights=None, **kwargs)
    else:
        raise UsageError(f"unknown architecture '{name}' for --arch (see: camcli models)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if meta:
            with meta_params():
                return builder()
        return builder()


def signature(name: str) -> dict[str, tuple[int, ...]]:
    """{key: shape} of an architecture's state_dict (1000 classes), built on the meta device."""
    return {k: tuple(v.shape) for k, v in build_arch(name, meta=True).state_dict().items()}


def _signature_cache() -> dict[str, dict[str, tuple[int, ...]]]:
    """Signatures of every candidate architecture, cached on disk per torchvision version (built once)."""
    import os

    import torchvision

    from .models import available_models

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "camcli"
    path = root / f"arch-signatures-v2-tv{torchvision.__version__}.json"
    try:
        raw = json.loads(path.read_text())
        return {n: {k: tuple(s) for k, s in sig.items()} for n, sig in raw.items()}
    except (OSError, ValueError):
        pass
    sigs = {}
    for name in available_models():
        try:
            sigs[name] = signature(name)
        except Exception:  # an architecture that cannot be built here is just not a candidate
            continue
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: {k: list(s) for k, s in sig.items()} for n, sig in sigs.items()}))
        tmp.replace(path)
    except OSError:
        pass
    return sigs


def _head_keys(sig: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The classifier's weight and bias: the last keys whose first dim is the class count (1000)."""
    keys = [k for k in sig if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    head = [k for k in keys[-2:] if sig[k] and sig[k][0] == 1000]
    return head


def match_arch(state: Mapping[str, torch.Tensor], sig: Mapping[str, tuple[int, ...]]) -> tuple[bool, int | None, str]:
    """Does ``state`` fit the architecture ``sig`` (any head size)? → (ok, num_classes, why not)."""
    if set(state) != set(sig):
        missing = len(set(sig) - set(state))
        extra = len(set(state) - set(sig))
        return False, None, f"{missing} missing and {extra} unexpected keys"
    head = _head_keys(sig)
    num = None
    for k, shape in sig.items():
        got = tuple(state[k].shape)
        if got == shape:
            continue
        if k in head and got[1:] == shape[1:]:
            num = got[0]
            continue
        return False, None, f"'{k}' has shape {list(got)}, expected {list(shape)}"
    if num is None and head:
        num = sig[head[0]][0]
    return True, num, ""


def identify(state: Mapping[str, torch.Tensor]) -> tuple[list[tuple[str, int | None]], str]:
    """Candidate architectures for a state_dict: [(name, num_classes)], and the closest miss when none."""
    sigs = _signature_cache()
    hits = []
    closest: tuple[float, str, str] = (-1.0, "", "")
    for name, sig in sigs.items():
        ok, num, why = match_arch(state, sig)
        if ok:
            hits.append((name, num))
        else:
            overlap = len(set(state) & set(sig)) / max(len(set(state) | set(sig)), 1)
            if overlap > closest[0]:
                closest = (overlap, name, why)
    miss = f"closest: {closest[1]} ({closest[2]})" if closest[1] else "no candidate"
    return hits, miss


# ------------------------------------------------------------------------------------------- reading
def _detect_format(path: Path, head: bytes) -> str:
    if path.suffix.lower() == ".safetensors":
        return "safetensors"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            raise CheckpointError(f"{path}: truncated or corrupt archive; re-save or re-download it") from None
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "torch-zip"
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "torch-legacy"
    raise CheckpointError(
        f"{path}: not a checkpoint camcli can read (expected torch.save .pt/.pth/.ckpt or .safetensors)"
    )


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:
        return []


def read_file(path: Path, trust: bool) -> tuple[str, Any]:
    """(format, deserialized object) without ever running code from the file unless ``trust``."""
    if not path.exists():
        raise UsageError(f"checkpoint '{path}' does not exist; check the path or pass a model name")
    if path.is_dir():
        raise UsageError(f"'{path}' is a folder; pass a checkpoint file (.pt, .pth, .ckpt, .safetensors)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); re-save or re-download it")
    with path.open("rb") as f:
        head = f.read(16)
    fmt = _detect_format(path, head)
    if fmt == "torchscript":
        raise CheckpointError(
            f"{path}: a TorchScript archive; hooks cannot be attached to scripted modules. Save the eager "
            "model's state_dict instead: torch.save(model.state_dict(), 'model.pt')"
        )
    if fmt == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(
                "reading .safetensors needs the safetensors package: pip install safetensors"
            ) from None
        try:
            return fmt, load_file(str(path), device="cpu")
        except Exception as e:
            raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    try:
        return fmt, torch.load(str(path), map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if trust:
            raise CheckpointError(f"{path}: cannot unpickle ({e})") from None
        # the file's own classes first (they are what the user recognises), torch internals last
        names = sorted(_unsafe_globals(path), key=lambda n: (n.startswith("torch."), n))
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            what = f"it would import {len(names)} class(es)/function(s): {shown}"
        else:
            what = "it needs objects beyond plain tensors"
        raise CheckpointError(
            f"{path}: refused to load: {what}, which can run arbitrary code. Re-save it as a state_dict "
            "(torch.save(model.state_dict(), 'model.pt')) or safetensors, or pass --trust-checkpoint if you "
            "trust the file"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({str(e).splitlines()[0][:160]})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap(obj: Any, info: CheckpointInfo) -> None:
    """Find the state_dict inside what the file held; strip prefixes shared by every key."""
    if isinstance(obj, nn.Module):
        info.module = obj
        obj = obj.state_dict()
    if not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{info.path}: holds a {type(obj).__name__}, not a state_dict")
        info.extra_keys = [str(k) for k in obj]
        found = None
        for key in (*WRAPPER_KEYS, *EMA_KEYS):
            value = obj.get(key)
            if isinstance(value, nn.Module):
                info.module = info.module or value
                value = value.state_dict()
            if _is_state_dict(value):
                found = key
                obj = value
                break
        if found is None:
            raise CheckpointError(
                f"{info.path}: no state_dict found (top-level keys: {', '.join(info.extra_keys[:8])}); "
                f"expected tensors at the top level or under one of {', '.join(WRAPPER_KEYS + EMA_KEYS)}"
            )
        info.container = found
        emas = [k for k in EMA_KEYS if k in info.extra_keys and k != found]
        if emas:
            info.notes.append(f"also holds EMA weights under '{emas[0]}' (not used)")
    state = {str(k): v for k, v in obj.items()}
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                info.stripped.append(prefix)
                changed = True
    info.state_dict = state


def inspect_checkpoint(path: str, arch: str | None = None, trust: bool = False) -> CheckpointInfo:
    """Read, unwrap and identify a checkpoint (no model is built with real memory)."""
    p = Path(path)
    fmt, obj = read_file(p, trust)
    info = CheckpointInfo(path=str(p), format=fmt)
    unwrap(obj, info)
    if arch is not None:
        key = arch.strip().lower().replace("-", "_")
        sig = signature(key)
        ok, num, why = match_arch(info.state_dict, sig)
        info.arch, info.num_classes = key, num
        info.candidates = [key]
        if not ok:
            info.notes.append(f"does not match {key}: {why}")
        return info
    if info.module is not None:
        info.arch = type(info.module).__name__
        return info
    hits, miss = identify(info.state_dict)
    info.candidates = [h[0] for h in hits]
    if len(hits) == 1:
        info.arch, info.num_classes = hits[0]
    elif not hits:
        info.notes.append(f"no known architecture matches; {miss}")
    return info


def _mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {list(state[k].shape)}≠{list(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            parts.append(f"{len(items)} {label} ({', '.join(items[:3])}{' …' if len(items) > 3 else ''})")
    return "; ".join(parts) or "unknown mismatch"


def read_labels(path: str, num_classes: int | None) -> list[str]:
    """Class names from a text file (one per line) or JSON (list, {index: name} or {name: index})."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read --labels file '{path}' ({e.strerror or e})") from None
    names: list[str]
    if p.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UsageError(f"--labels file '{path}' is not valid JSON ({e})") from None
        if isinstance(data, list):
            names = [str(x) for x in data]
        elif isinstance(data, dict):
            pairs = {}
            for k, v in data.items():
                if str(k).lstrip("-").isdigit():
                    pairs[int(k)] = str(v)
                elif isinstance(v, int):
                    pairs[v] = str(k)
                else:
                    raise UsageError(f"--labels JSON must map indices to names; got '{k}': {v!r}")
            names = [pairs.get(i, f"class_{i}") for i in range(max(pairs) + 1)] if pairs else []
        else:
            raise UsageError(f"--labels file '{path}' must hold a JSON list or object")
    else:
        names = [line.strip() for line in text.splitlines()]
        while names and not names[-1]:
            names.pop()
    if num_classes is not None and len(names) != num_classes:
        raise UsageError(f"--labels has {len(names)} names but the model has {num_classes} classes; fix the file")
    return names


def load_checkpoint_model(path: str, *, arch: str | None = None, labels: str | None = None, trust: bool = False) -> Any:
    """A :class:`~camcli.models.LoadedModel` from a checkpoint file (strict loading)."""
    from .models import LoadedModel, arch_preprocessing, imagenet_categories, preferred_layer

    info = inspect_checkpoint(path, arch=arch, trust=trust)
    if info.module is not None and arch is None:
        module = info.module.eval()
        head = [m for m in module.modules() if isinstance(m, nn.Linear)]
        num = head[-1].out_features if head else None
        names = read_labels(labels, num) if labels else [f"class_{i}" for i in range(num or 0)]
        return LoadedModel(path, module, categories=names, notes=["full pickled model (--trust-checkpoint)"])
    if info.arch is None:
        if len(info.candidates) > 1:
            raise CheckpointError(
                f"{path}: several architectures fit: {', '.join(info.candidates[:8])}; pick one with --arch"
            )
        raise CheckpointError(
            f"{path}: {info.notes[-1] if info.notes else 'unknown architecture'}; "
            "pass --arch NAME (see: camcli inspect)"
        )
    num = info.num_classes
    module = build_arch(info.arch, num)
    try:
        module.load_state_dict(info.state_dict, strict=True)
    except RuntimeError:
        raise CheckpointError(
            f"{path}: does not fit {info.arch}: {_mismatch_report(module, info.state_dict)}"
        ) from None
    module.eval()
    size, mean, std = arch_preprocessing(info.arch)
    if labels:
        names = read_labels(labels, num)
    elif num == 1000:
        names = imagenet_categories()
    else:
        names = [f"class_{i}" for i in range(num or 0)]
    arch_name, n = info.arch, num

    def builder() -> nn.Module:
        return build_arch(arch_name, n)

    return LoadedModel(
        path, module, size, mean, std, names, builder, preferred_layer(info.arch, module), notes=describe(info)
    )


def describe(info: CheckpointInfo) -> list[str]:
    notes = [f"format {info.format}"]
    if info.container:
        notes.append(f"weights under '{info.container}'")
    if info.stripped:
        notes.append("stripped key prefix " + " ".join(repr(p) for p in info.stripped))
    if info.arch:
        notes.append(f"architecture {info.arch} with {info.num_classes} classes")
    return notes + info.notes
