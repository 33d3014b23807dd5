"""Which family a state_dict's keys look like (timm, Hugging Face, torchvision), and the command that would
load it: what camcli says when no architecture it knows matches, instead of an unrelated "closest" model."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

# first components of Hugging Face image-classification models' keys (``vit.encoder.layer.0…``)
HF_ROOTS = frozenset(
    {
        "vit",
        "deit",
        "swin",
        "swinv2",
        "convnext",
        "convnextv2",
        "resnet",
        "regnet",
        "beit",
        "dinov2",
        "levit",
        "mobilevit",
        "efficientnet",
        "poolformer",
        "pvt",
        "cvt",
        "data2vec_vision",
        "dinat",
        "focalnet",
        "bit",
        "van",
        "segformer",
        "mobilenet_v2",
        "mobilenet_v1",
        "imagegpt",
        "vit_msn",
        "hiera",
    }
)
# keys that timm's models have and torchvision's do not (any one of them is enough)
TIMM_MARKS = (
    "patch_embed.",
    "stages.",
    "conv_stem.",
    "head.fc.",
    "cls_token",
    "pos_embed",
    "stem.conv",
    "blocks.0.0.",
    "layers.0.blocks.",
    "s1.b1.",
)


def key_family(keys: Iterable[str]) -> str:
    """``hf``, ``timm`` or ``unknown`` for a state_dict's keys (torchvision's are matched exactly elsewhere)."""
    keys = list(keys)
    if not keys:
        return "unknown"
    roots = {k.split(".", 1)[0] for k in keys}
    if (roots & HF_ROOTS and any(k.startswith("classifier.") for k in keys)) or roots <= HF_ROOTS:
        return "hf"
    if any(k.startswith(TIMM_MARKS) for k in keys):
        return "timm"
    return "unknown"


def has_extra(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def family_hint(keys: Iterable[str]) -> str:
    """One sentence: what the keys look like and the command that would load them."""
    family = key_family(keys)
    own = "or your own class: --arch path/to/file.py:ClassName (see: camcli inspect)"
    if family == "timm":
        install = "" if has_extra("timm") else "install timm (pip install 'camcli[timm]') and "
        return f"the keys look like a timm model: {install}pass --arch timm:NAME, {own}"
    if family == "hf":
        return (
            "the keys look like a Hugging Face transformers model: pass the folder save_pretrained wrote (with its "
            f"config.json) as --model{'' if has_extra('transformers') else ', after pip install camcli[hf]'}, {own}"
        )
    return f"the keys match no torchvision architecture; pass --arch timm:NAME for a timm model, {own}"
