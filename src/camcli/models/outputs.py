"""How many outputs a model has when nobody wrote it down (the user's own class, a pickled model): counted on one
blank picture, and said in a note, since camcli cannot tell classes from labels, values or an embedding."""

from __future__ import annotations

import torch

from ..engine.hooks import eval_mode
from ..engine.scoring import model_logits
from ..errors import ModelError
from .base import LoadedModel, set_labels
from .custom import said, user_code
from .labels import placeholder_names


def with_outputs(model: LoadedModel, labels: str | None) -> LoadedModel:
    """The class names of a model whose class count nobody wrote down (the user's own class, a pickled model):
    its outputs are counted on one blank input, and a note says how they are read."""
    if model.categories or model.embedding:
        return model
    count = count_outputs(model)
    if labels:
        set_labels(model, labels, count)
    else:
        model.categories = placeholder_names(count)
    if count > 1 and not labels:
        model.notes.append(
            f"its {count} outputs are read as class scores (softmax); if they are independent labels pass --head "
            "sigmoid, raw values --head identity, an embedding --reference IMG"
        )
    return model


def count_outputs(model: LoadedModel) -> int:
    """How many values the model returns for one input (a blank picture, clip or volume at its size, on the
    CPU)."""

    module = model.module
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    shape = model.sample_shape()
    x = torch.zeros(1, *shape, device=device)
    what = {"video": "clip", "volume": "volume"}.get(model.kind, "picture")
    blank = f"running it on a blank {'×'.join(map(str, shape[1:]))} {what}"
    try:
        with torch.inference_mode(), eval_mode(module), user_code(model.name, f"{model.name}: {blank}"):
            output = module(x)
            out = model_logits(output, embedding=True)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"{model.name}: {blank} raised {said(e)}; check --arch and --arch-args") from None
    if out.dim() != 2 or out.shape[1] < 1 or not out.is_floating_point():
        raise ModelError(
            f"{model.name}: its output has shape {tuple(out.shape)} ({out.dtype}); camcli explains (batch, N) float "
            "scores: return the logits (or an embedding, explained with --reference IMG)"
        )
    if isinstance(output, (tuple, list)) and len(output) > 1:
        model.notes.append(
            f"it returns {len(output)} values; the first, of shape {tuple(out.shape)}, is read as its outputs"
        )
    return int(out.shape[1])
