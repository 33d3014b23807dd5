"""The architectures camcli can build, and identifying which one a state_dict belongs to.

Candidates are the bundled model and every torchvision classification model (video classifiers included). Each
is built on the ``meta`` device (no memory) to get its state_dict *signature* ({key: shape}); the signatures are
cached on disk per torchvision version. A state_dict matches an architecture when its keys are the same and every
shape equals the signature's, except the classifier's first dimension (any number of classes).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..caches import package_version, read_json, write_json
from ..errors import UsageError
from ..options import BUNDLED
from .base import Preprocessing
from .bundled import LITE_MEAN, LITE_STD, build_lite0
from .zoo import torchvision_names, video_names, weights_preprocessing


def available_models() -> list[str]:
    """Every classifier name ``--model`` and ``--arch`` accept (the bundled model first, then torchvision's
    picture and video classifiers)."""
    return [BUNDLED, *torchvision_names(), *video_names()]


class MetaParams(TorchFunctionMode):
    """Create parameters and buffers on the meta device, leave other tensor math alone (regnet computes
    its widths with tensors at build time, which a plain ``torch.device('meta')`` context breaks)."""

    _factories = frozenset({torch.empty, torch.zeros, torch.ones, torch.full})

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in self._factories and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def build_arch(name: str, num_classes: int | None = None, meta: bool = False) -> nn.Module:
    """An architecture without weights: the bundled model or a torchvision classification model."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    builder: Callable[[], nn.Module]
    if name == BUNDLED:

        def builder() -> nn.Module:
            return build_lite0(num_classes or 1000)

    elif name in torchvision_names() or name in video_names():
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
            with MetaParams():
                return builder()
        return builder()


def strip_head(module: nn.Module, state: Mapping[str, object]) -> str:
    """Replace the classifier head that ``state`` lacks (:func:`missing_head`) by ``nn.Identity``; its name."""
    sig = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    name = missing_head(state, sig)
    if name is None:
        raise UsageError("the checkpoint is not this architecture without its head")
    module.set_submodule(name, nn.Identity())
    return name


def signature(name: str) -> dict[str, tuple[int, ...]]:
    """{key: shape} of an architecture's state_dict with 1000 classes (a video classifier's default is Kinetics'
    400: built with 1000 too, so that its head is found as the others'), built on the meta device."""
    return {k: tuple(v.shape) for k, v in build_arch(name, 1000, meta=True).state_dict().items()}


def _signature_cache() -> dict[str, dict[str, tuple[int, ...]]]:
    """Signatures of every candidate architecture, cached on disk per torchvision version (built once)."""
    name = f"arch-signatures-v3-tv{package_version('torchvision')}.json"
    raw = read_json(name)
    if isinstance(raw, dict):
        return {n: {k: tuple(s) for k, s in sig.items()} for n, sig in raw.items()}
    sigs = {}
    for arch in available_models():
        try:
            sigs[arch] = signature(arch)
        except Exception:  # an architecture that cannot be built here is just not a candidate
            continue
    write_json(name, {n: {k: list(s) for k, s in sig.items()} for n, sig in sigs.items()})
    return sigs


def _head_keys(sig: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The classifier's weight and bias: the last keys whose first dim is the class count (1000)."""
    keys = [k for k in sig if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    head = [k for k in keys[-2:] if sig[k] and sig[k][0] == 1000]
    return head


def missing_head(state: Mapping[str, object], sig: Mapping[str, tuple[int, ...]]) -> str | None:
    """The module (``fc``, ``classifier.1``, ``heads.head``) whose weights ``state`` lacks when it is the
    architecture ``sig`` without its classifier head (saved after ``model.fc = nn.Identity()``, timm's
    ``num_classes=0``): every key missing is under that module, it holds the last weights of the network, and
    nothing else differs. None otherwise."""
    missing = [k for k in sig if k not in state]
    if not missing or any(k not in sig for k in state):
        return None
    parts = [k.split(".")[:-1] for k in missing]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if not common or any(len(p) < len(common) for p in parts):
        return None
    prefix = ".".join(common) + "."
    if any(k not in missing for k in sig if k.startswith(prefix)):
        return None
    weights = [k for k in sig if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    first = weights.index(missing[0]) if missing[0] in weights else len(weights)
    if any(k in state for k in weights[first:]):  # the head is the end of the network, not a block inside it
        return None
    return prefix[:-1]


def match_arch(
    state: Mapping[str, torch.Tensor],
    sig: Mapping[str, tuple[int, ...]],
    head: list[str] | None = None,
    headless: bool = True,
) -> tuple[bool, int | None, str]:
    """Does ``state`` fit the architecture ``sig`` (any head size)? → (ok, num_classes, why not). ``head``: the
    classifier's keys when known (else the last keys whose first dimension is 1000). The architecture without
    its classifier head (:func:`missing_head`) fits with 0 classes (an embedding model) unless not ``headless``."""
    if headless and missing_head(state, sig) is not None:
        for k, tensor in state.items():
            if tuple(tensor.shape) != sig[k]:
                return False, None, f"'{k}' has shape {list(tensor.shape)}, expected {list(sig[k])}"
        return True, 0, ""
    if set(state) != set(sig):
        missing = len(set(sig) - set(state))
        extra = len(set(state) - set(sig))
        return False, None, f"{missing} missing and {extra} unexpected keys"
    head = _head_keys(sig) if head is None else head
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
    """Candidate architectures for a state_dict: [(name, num_classes)], and when none the closest miss (only a
    model that shares at least 80% of the keys; "" when there is none)."""
    sigs = _signature_cache()
    hits = []
    closest: tuple[float, str, str] = (0.8, "", "")  # a hint only when it shares most of the keys
    # keys compared without the wrapper prefixes some of them may carry ("module." on half the keys)
    keys = {re.sub(r"^(module\.|_orig_mod\.|model\.|net\.)+", "", k) for k in state}
    for name, sig in sigs.items():
        ok, num, why = match_arch(state, sig)
        if ok:
            hits.append((name, num))
        else:
            overlap = len(keys & set(sig)) / max(len(keys | set(sig)), 1)
            if overlap > closest[0]:
                closest = (overlap, name, why)
    miss = f"closest: {closest[1]} ({closest[2]})" if closest[1] else ""
    return hits, miss


def arch_preprocessing(arch: str) -> Preprocessing:
    """(input size, mean, std) an architecture's pretrained weights expect (used for user checkpoints)."""
    if arch == BUNDLED:
        return (224, 224), LITE_MEAN, LITE_STD
    from torchvision.models import get_model_weights

    try:
        default = get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        default = None
    return weights_preprocessing(default)


def mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """Which keys of ``state`` are missing, unexpected or of the wrong shape for ``model``, in one line."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {list(state[k].shape)}≠{list(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    return keys_report(missing, unexpected, wrong)


def keys_report(missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    """Missing, unexpected and wrong-shape keys in one line: the count of each and its first three."""
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            parts.append(f"{len(items)} {label} ({', '.join(items[:3])}{' …' if len(items) > 3 else ''})")
    return "; ".join(parts) or "unknown mismatch"
