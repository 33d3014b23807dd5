"""Image–text models (CLIP, SigLIP): their image tower as the model camcli hooks, their text tower for ``--prompt``.

* Hugging Face ``CLIPModel``/``SiglipModel`` (and the other ``*Model`` classes with ``get_image_features`` and
  ``get_text_features``): a ``save_pretrained`` folder with its tokenizer, or ``hf:ORG/NAME``;
* open_clip (the optional ``camcli[clip]`` extra): ``--model open_clip:ARCH`` with ``--weights none`` (random, offline),
  a pretrained tag (``openai``; open_clip downloads it once into its cache) or a weights file. open_clip's
  tokenizer ships inside the package.

:class:`ImageTower` is an ``nn.Module`` whose children are the image tower's own modules, so layer names are
the tower's (``vision_model.encoder.layers.11.layer_norm1``, ``visual.transformer.resblocks.11.ln_1``) and the
text tower stays out of ``camcli layers``; its output is the image embedding. The scores are cosine similarities
to the prompts' embeddings (:class:`camcli.engine.scoring.Scorer`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checks import first_words
from ..engine.hooks import eval_mode
from ..errors import ModelError, UsageError
from .base import LoadedModel
from .hub import hub_checked

PREFIX = "open_clip:"
HF_TYPES = ("clip", "siglip", "siglip2", "chinese_clip", "altclip", "metaclip_2")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageTower(nn.Module):
    """The image half of an image–text model: ``forward(pixels)`` → (B, D) image embeddings.

    ``parts`` are registered as children under their own names; ``embed`` runs the whole model's image path
    (which uses exactly those modules). The whole model is kept outside the module tree so that ``modules()``,
    ``state_dict()`` and the training flags are the image tower's.
    """

    def __init__(self, model: nn.Module, parts: list[str], embed: Callable[[nn.Module, torch.Tensor], Any]) -> None:
        super().__init__()
        for name in parts:
            self.add_module(name, getattr(model, name))
        object.__setattr__(self, "_whole", model)
        object.__setattr__(self, "_embed", embed)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self._embed(self._whole, pixels)  # type: ignore[operator]
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def is_hf_image_text(config: Any) -> bool:
    kind = str(getattr(config, "model_type", ""))
    return kind in HF_TYPES


def hf_tower(
    module: Any, source: str | Path, transformers: Any, trust: bool = False
) -> tuple[nn.Module, Callable[[list[str]], torch.Tensor]]:
    """A Hugging Face image–text model's :class:`ImageTower` and its text encoder (the tokenizer saved beside it;
    a tokenizer of its own code, named in ``tokenizer_config.json``, runs only with ``trust``)."""
    parts = [n for n in ("vision_model", "visual_projection") if isinstance(getattr(module, n, None), nn.Module)]
    if "vision_model" not in parts or not hasattr(module, "get_text_features"):
        raise ModelError(f"{source}: an image–text model without vision_model/get_text_features; not supported")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(source), local_files_only=True, trust_remote_code=trust
        )
    except Exception as e:
        raise ModelError(
            f"{source}: its tokenizer cannot be loaded ({type(e).__name__}: {first_words(e, 120)}); "
            "save it beside the model (processor.save_pretrained(folder))"
        ) from None
    kind = str(getattr(module.config, "model_type", ""))
    padding = "max_length" if kind.startswith("siglip") else True  # SigLIP was trained on padded texts
    length = int(getattr(getattr(module.config, "text_config", None), "max_position_embeddings", 77) or 77)

    def encode_text(texts: list[str]) -> torch.Tensor:
        tokens = tokenizer(texts, padding=padding, truncation=True, max_length=length, return_tensors="pt")
        device = next(module.parameters()).device
        with torch.inference_mode(), eval_mode(module):
            out = module.get_text_features(**{k: v.to(device) for k, v in tokens.items()})
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def embed(whole: Any, pixels: torch.Tensor) -> Any:
        return whole.get_image_features(pixel_values=pixels)

    return ImageTower(module, parts, embed), encode_text


def hf_prefix_tokens(config: Any) -> int:
    """Class tokens before the grid in the image tower's token layers: CLIP's one; SigLIP pools without any."""
    return 0 if str(getattr(config, "model_type", "")).startswith("siglip") else 1


# -------------------------------------------------------------------------------------------------- open_clip
def _require() -> Any:
    try:
        import open_clip
    except ImportError:
        raise ModelError("open_clip models need open_clip_torch: pip install 'camcli[clip]'") from None
    return open_clip


def load_open_clip(arch: str, weights: str | None) -> LoadedModel:
    """``--model open_clip:ARCH``: random weights (``--weights none``), a pretrained tag, or a weights file."""
    open_clip = _require()
    name = arch.strip()
    if name not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UsageError(f"open_clip has no architecture '{name}'{hint} (open_clip.list_models())")
    spec = (weights or "").strip()
    if not spec:
        tags = open_clip.list_pretrained_tags_by_model(name)
        shown = ", ".join(tags[:4]) if tags else "none published"
        raise UsageError(
            f"--model open_clip:{name} needs --weights: none (random, offline), a pretrained tag ({shown}) or a file"
        )
    config = open_clip.get_model_config(name) or {}
    if (config.get("text_cfg") or {}).get("hf_tokenizer_name"):
        raise UsageError(
            f"open_clip:{name} takes its tokenizer from the Hugging Face hub; use its Hugging Face folder as --model"
        )
    pretrained = None if spec.lower() == "none" else spec
    if pretrained and Path(pretrained).suffix and not Path(pretrained).is_file():
        raise UsageError(f"--weights {pretrained}: no such file")
    local = not pretrained or Path(pretrained).is_file()
    # a tag is downloaded from the hub: asked only when it answers (camcli.models.hub), else its cache is read
    with hub_checked() if not local else nullcontext() as offline:
        try:
            logging.disable(logging.ERROR)  # open_clip logs to the root logger; camcli says what failed in one line
            model = open_clip.create_model(name, pretrained=pretrained)
        except Exception as e:  # a tag open_clip does not know, a download that failed, a file that does not fit
            why = f"{type(e).__name__}: {first_words(e)}"
            if offline:
                why = f"not in the cache and cannot be downloaded ({offline}); --weights none works"
            raise ModelError(f"open_clip:{name} with weights {spec}: {why}") from None
        finally:
            logging.disable(logging.NOTSET)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    whole: Any = model

    def encode_text(texts: list[str]) -> torch.Tensor:
        device = next(model.parameters()).device
        with torch.inference_mode(), eval_mode(model):
            return whole.encode_text(tokenizer(texts).to(device))

    def embed(whole: Any, pixels: torch.Tensor) -> Any:
        return whole.encode_image(pixels)

    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    size: Any = cfg.get("size") or getattr(visual, "image_size", 224)
    size = (int(size[0]), int(size[-1])) if isinstance(size, (tuple, list)) else (int(size), int(size))
    mean = tuple(float(v) for v in (cfg.get("mean") or OPENAI_MEAN))
    std = tuple(float(v) for v in (cfg.get("std") or OPENAI_STD))
    tower = ImageTower(model, ["visual"], embed)
    blocks = [n for n, _ in tower.named_modules() if n.endswith(".ln_1") and ".resblocks." in n]
    is_vit = hasattr(visual, "class_embedding")
    return LoadedModel(
        PREFIX + name,
        tower.eval(),
        size,
        mean,
        std,
        [],
        None,
        blocks[-1] if blocks and is_vit else None,
        notes=[f"open_clip {name} (image tower; --prompt texts through its text tower)"],
        weights="random" if pretrained is None else f"open_clip {spec}",
        prefix_tokens=1 if is_vit else None,
        interpolation=str(cfg.get("interpolation") or "bicubic"),
        embedding=True,
        encode_text=encode_text,
    )
