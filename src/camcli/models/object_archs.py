"""Which torchvision detector or segmenter a state_dict holds, and with how many classes.

Each candidate is built on the ``meta`` device twice, with its default class count and with 3, and the keys
whose first dimension changed are its heads, each with its rows per class (a box regressor 4, RetinaNet's
classifier 9 anchors, SSD's per-level anchors): nothing about any model's head is written here. A state_dict
fits when its keys are the candidate's (a segmenter's ``aux_classifier`` aside) and every head's rows are the
same class count times its rows per class. Signatures are cached per torchvision version.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from ..caches import package_version, read_json, write_json
from ..errors import CheckpointError
from .archs import MetaParams
from .base import LoadedModel
from .zoo import object_model, object_names

SMALL = 3  # the second build's class count
AUX = "aux_classifier."  # a segmenter's training-time head: not needed to explain, dropped when present
Signature = dict[str, tuple[int, ...]]


def build_object(name: str, num_classes: int | None = None, meta: bool = False) -> nn.Module:
    """A torchvision detector or segmenter without any weights (no backbone weights either)."""
    import torchvision

    kwargs: dict[str, object] = {"weights": None, "weights_backbone": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if object_names()[name] == "segmentation":
        kwargs["aux_loss"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if meta:
            with MetaParams():
                return torchvision.models.get_model(name, **kwargs)
        return torchvision.models.get_model(name, **kwargs)


def _signatures() -> dict[str, tuple[Signature, dict[str, int]]]:
    entry = f"object-signatures-v1-tv{package_version('torchvision')}.json"
    raw = read_json(entry)
    if isinstance(raw, dict):
        return {n: ({k: tuple(s) for k, s in v["sig"].items()}, dict(v["head"])) for n, v in raw.items()}
    out: dict[str, tuple[Signature, dict[str, int]]] = {}
    for name in object_names():
        try:
            small = {k: tuple(v.shape) for k, v in build_object(name, SMALL, meta=True).state_dict().items()}
            usual = {k: tuple(v.shape) for k, v in build_object(name, None, meta=True).state_dict().items()}
        except Exception:  # a model that cannot be built here is not a candidate
            continue
        head = {k: small[k][0] // SMALL for k in small if usual.get(k) != small[k] and small[k][0] % SMALL == 0}
        out[name] = (small, head)
    write_json(entry, {n: {"sig": {k: list(s) for k, s in sig.items()}, "head": h} for n, (sig, h) in out.items()})
    return out


def without_aux(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(AUX)}


def identify_objects(state: Mapping[str, torch.Tensor], only: str | None = None) -> list[tuple[str, int]]:
    """[(name, class count)] of the detectors and segmenters ``state`` fits (``only``: that one)."""
    plain = without_aux(state)
    hits = []
    for name, (sig, head) in _signatures().items():
        if (only is not None and name != only) or set(sig) != set(plain):
            continue
        count: int | None = None
        for key, shape in sig.items():
            got = tuple(plain[key].shape)
            if key in head:
                if got[1:] != shape[1:] or got[0] % head[key] or (count is not None and got[0] // head[key] != count):
                    break
                count = got[0] // head[key]
            elif got != shape:
                break
        else:
            hits.append((name, count or SMALL))
    return hits


def load_object(path: str, state: Mapping[str, torch.Tensor], name: str, num_classes: int | None) -> LoadedModel:
    """A torchvision detector or segmenter from its state_dict (strict; a segmenter's ``aux_classifier`` is
    left out)."""
    from torchvision.models import get_model_weights

    module = build_object(name, num_classes)
    missing, unexpected = module.load_state_dict(without_aux(state), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit {name}: {len(missing)} missing ({', '.join(missing[:3])}) and {len(unexpected)} "
            f"unexpected keys ({', '.join(unexpected[:3])})"
        )
    try:
        meta = get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        meta = None
    loaded = object_model(name, module.eval(), meta, "checkpoint")
    loaded.name = path
    return loaded
