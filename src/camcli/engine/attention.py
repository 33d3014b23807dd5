"""A vision transformer's attention, block by block: where its attention modules are, and their attention
probabilities (B, heads, T, T) during a forward pass, as tensors of the graph (so that their gradients can be
taken) when asked.

Three kinds of attention module are read, each the way that keeps the module's own arithmetic:

* ``nn.MultiheadAttention`` (torchvision's ViT, called with ``need_weights=False``): for the pass, the module's
  ``forward`` is the explicit computation from its own weights (``in_proj``, the 1/√d scale, softmax,
  ``out_proj``; restored on the way out), so the probabilities kept are the ones the rest of the network uses and
  the attention is computed once. Only self-attention without masks or added key/value biases is computed so;
  any other call is refused.
* timm's attention modules (``Attention``, ``AttentionRope``, ``EvaAttention``: anything with a ``fused_attn``
  flag and an ``attn_drop`` dropout): the flag is switched off for the pass (and restored), so the module runs its
  own explicit path — its q/k norms, rotary embeddings, gates and output norm included — and the probabilities are
  read where that path hands them to ``attn_drop``. Running the module's own code rather than a copy of it keeps
  every option a copy might miss.
* Hugging Face modules that the model names as recording its ``attentions`` (``_can_record_outputs``:
  ``ViTAttention``, ``DeiTAttention`` …, transformers ≥ 5): the config's attention implementation is set to
  ``eager`` for the pass (and restored), which returns the probabilities it multiplied with the values.

A test checks for each family that the output with the probabilities read equals the module's own (fused) output.
Windowed attention (Swin) covers one window at a time, not the picture's tokens: it is refused in one line.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LayerError

_MHA_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)


@dataclass
class Site:
    """One attention module: its dotted name, the module, how it is read (``mha``, ``timm``, ``hf``) and, for
    Hugging Face modules, where the probabilities are in its output tuple."""

    name: str
    module: nn.Module
    kind: str
    index: int = 1

    @property
    def type(self) -> str:
        return type(self.module).__name__


def _hf_attention_classes(model: nn.Module) -> list[tuple[type, int]]:
    """(class, output index) of the modules Hugging Face models inside ``model`` record as their attentions."""
    out = []
    for m in model.modules():
        spec = getattr(type(m), "_can_record_outputs", None)
        if not isinstance(spec, dict) or "attentions" not in spec:
            continue
        for s in spec["attentions"] if isinstance(spec["attentions"], list) else [spec["attentions"]]:
            if isinstance(s, type):
                out.append((s, 1))
            elif isinstance(getattr(s, "target_class", None), type) and getattr(s, "layer_name", None) is None:
                out.append((s.target_class, int(getattr(s, "index", 1))))
    return out


def _windowed(kind: str, name: str) -> bool:
    return "window" in kind.lower() or "swin" in kind.lower() or "window" in name.lower()


def attention_sites(model: nn.Module) -> list[Site]:
    """The model's self-attention modules in definition order; a :class:`LayerError` for windowed (Swin-style)
    attention. Attention pooling heads (timm's ``AttentionPoolLatent``) are not blocks and are left out."""
    hf = _hf_attention_classes(model)
    sites: list[Site] = []
    for name, m in model.named_modules():
        kind = type(m).__name__
        if isinstance(m, nn.MultiheadAttention):
            sites.append(Site(name, m, "mha"))
        elif isinstance(getattr(m, "fused_attn", None), bool) and isinstance(getattr(m, "attn_drop", None), nn.Dropout):
            if "Pool" not in kind:
                sites.append(Site(name, m, "timm"))
        else:
            found = [i for cls, i in hf if isinstance(m, cls)]
            if found:
                sites.append(Site(name, m, "hf", found[0]))
    for s in sites:
        if _windowed(s.type, s.name) or _windowed(type(model).__name__, ""):
            raise LayerError(
                f"{s.type} is windowed (Swin-style) attention: each window attends within itself, so no attention "
                "matrix covers the picture's tokens; rollout, gradrollout and legrad are not supported on it (use "
                "gradcam at a token layer)"
            )
    return sites


@dataclass
class Recorded:
    """What one forward pass recorded: each site's attention probabilities (B, heads, T, T) and, when asked, the
    output tokens (B, T, D) of the block that holds it, by site index; ``order``: the sites in the order they ran."""

    probs: dict[int, torch.Tensor] = field(default_factory=dict)
    blocks: dict[int, torch.Tensor] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)

    def in_order(self) -> list[torch.Tensor]:
        return [self.probs[i] for i in self.order]


def _explicit_mha(m: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(output, probabilities (B, heads, T, T)) of a self-attention call of ``m``, computed the explicit way."""
    bound = _MHA_SIGNATURE.bind(m, *args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    q = a["query"]
    refused = (
        "cross-attention"
        if not (q is a["key"] is a["value"])
        else "a mask"
        if a["key_padding_mask"] is not None or a["attn_mask"] is not None or a["is_causal"]
        else "added key/value biases"
        if m.bias_k is not None or m.add_zero_attn
        else "separate key/value sizes"
        if not m._qkv_same_embed_dim or m.in_proj_weight is None
        else ""
    )
    if refused:
        raise LayerError(
            f"nn.MultiheadAttention called with {refused}: its attention cannot be recomputed faithfully here"
        )
    x = q if m.batch_first else q.transpose(0, 1)
    b, t, e = x.shape
    h = m.num_heads
    qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias).view(b, t, 3, h, e // h).permute(2, 0, 3, 1, 4)
    qh, kh, vh = qkv.unbind(0)
    probs = ((qh * (e // h) ** -0.5) @ kh.transpose(-2, -1)).softmax(dim=-1)
    out = F.linear((probs @ vh).transpose(1, 2).reshape(b, t, e), m.out_proj.weight, m.out_proj.bias)
    out = out if m.batch_first else out.transpose(0, 1)
    weights = (probs.mean(1) if a["average_attn_weights"] else probs) if a["need_weights"] else None
    return (out, weights), probs


@contextmanager
def _switched(sites: list[Site]) -> Iterator[None]:
    """timm modules on their explicit path, Hugging Face configs on eager attention; restored on the way out."""
    flags: list[tuple[Any, bool]] = [(s.module, bool(s.module.fused_attn)) for s in sites if s.kind == "timm"]
    configs: dict[int, Any] = {}
    for s in sites:
        config = getattr(s.module, "config", None)
        if s.kind == "hf" and config is not None and hasattr(config, "_attn_implementation"):
            configs.setdefault(id(config), (config, config._attn_implementation))
    try:
        for m, _ in flags:
            m.fused_attn = False
        for config, _ in configs.values():
            config._attn_implementation = "eager"
        yield
    finally:
        for m, flag in flags:
            m.fused_attn = flag
        for config, previous in reversed(list(configs.values())):
            config._attn_implementation = previous


@contextmanager
def _forward_replaced(module: nn.Module, forward: Any) -> Iterator[None]:
    """``module.forward`` is ``forward`` inside the block (an instance attribute, removed or restored after)."""
    had, before = "forward" in module.__dict__, module.__dict__.get("forward")
    module.forward = forward
    try:
        yield
    finally:
        if had:
            module.__dict__["forward"] = before
        else:
            del module.forward


def _tokens(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


@contextmanager
def recording(model: nn.Module, sites: list[Site], *, grad: bool, blocks: bool = False) -> Iterator[Recorded]:
    """Record every site's attention probabilities during the forward passes run inside the block.

    ``grad``: the first site to run turns its input into a fresh leaf and switches grad mode on, so that the
    probabilities (and ``blocks``' outputs: the module holding each site) are in the graph from the first block on
    and nothing before it records one (run the forward under ``torch.no_grad()``; grad mode is restored on exit).
    Hooks and switched flags are undone on exit, also on error.
    """
    rec = Recorded()
    previous_grad = torch.is_grad_enabled()
    parents = {n: m for n, m in model.named_modules()}

    def start_graph(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        if not grad or torch.is_grad_enabled():
            return None
        first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if first is None:
            return None
        leaf = first.detach().requires_grad_(True)
        torch.set_grad_enabled(True)
        swap = lambda v: leaf if v is first else v  # noqa: E731
        return tuple(swap(a) for a in args), {k: swap(v) for k, v in kwargs.items()}

    def keep(i: int, site: Site, probs: object) -> None:
        if not isinstance(probs, torch.Tensor):
            raise LayerError(f"{site.type} gave no attention probabilities to read; it is not supported here")
        if i in rec.probs:
            raise LayerError(f"{site.type} '{site.name}' runs more than once in one forward pass; not supported")
        rec.probs[i] = probs if grad else probs.detach()
        rec.order.append(i)

    def explicit(i: int, site: Site):
        def forward(*args: Any, **kwargs: Any) -> object:
            output, probs = _explicit_mha(cast(nn.MultiheadAttention, site.module), args, kwargs)
            keep(i, site, probs)
            return output

        return forward

    def after(i: int, site: Site):
        def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: object) -> object:
            if site.kind == "hf":
                keep(i, site, output[site.index] if isinstance(output, (tuple, list)) else None)
            elif i not in rec.probs:
                keep(i, site, None)  # a timm module whose explicit path never reached attn_drop (or an mha not run)
            return None

        return hook

    def at_dropout(i: int, site: Site):
        def hook(_m: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> None:
            keep(i, site, output)

        return hook

    def block_out(i: int):
        def hook(_m: nn.Module, _args: tuple[Any, ...], output: object) -> None:
            rec.blocks[i] = _tokens(output)  # type: ignore[assignment]

        return hook

    with ExitStack() as stack:
        stack.enter_context(_switched(sites))
        handles: list[torch.utils.hooks.RemovableHandle] = []
        stack.callback(_remove, handles)
        stack.callback(torch.set_grad_enabled, previous_grad)
        for i, s in enumerate(sites):
            handles.append(s.module.register_forward_pre_hook(start_graph, with_kwargs=True))  # type: ignore[arg-type]
            handles.append(s.module.register_forward_hook(after(i, s), with_kwargs=True))
            if s.kind == "mha":
                stack.enter_context(_forward_replaced(s.module, explicit(i, s)))
            if s.kind == "timm":
                dropout = cast(nn.Module, s.module.attn_drop)
                handles.append(dropout.register_forward_hook(at_dropout(i, s)))
            if blocks:
                parent = parents[s.name.rpartition(".")[0]] if "." in s.name else model
                handles.append(parent.register_forward_hook(block_out(i)))
        yield rec


def _remove(handles: list[torch.utils.hooks.RemovableHandle]) -> None:
    for h in handles:
        h.remove()


def checked(rec: Recorded, sites: list[Site], batch: int) -> tuple[list[torch.Tensor], int]:
    """The probabilities in the order the blocks ran, and their token count T; a :class:`LayerError` when they are
    not one (B, heads, T, T) square per block for the batch (windows folded into the batch, cross-attention)."""
    if not rec.order:
        raise LayerError("no attention block ran in the forward pass")
    probs = rec.in_order()
    tokens = probs[0].shape[-1]
    for i, p in zip(rec.order, probs, strict=True):
        s = sites[i]
        if p.dim() != 4 or p.shape[0] != batch or p.shape[-2] != p.shape[-1]:
            how = "windows folded into the batch" if p.dim() == 4 and p.shape[0] % batch == 0 else "not square"
            raise LayerError(
                f"{s.type} '{s.name}' gives attention of shape {list(p.shape)} for a batch of {batch} ({how}); "
                "rollout, gradrollout and legrad need one token-by-token matrix per picture"
            )
        if p.shape[-1] != tokens:
            raise LayerError(
                f"{s.type} '{s.name}' attends over {p.shape[-1]} tokens, the first block over {tokens} (token "
                "merging or pooling between blocks); rollout, gradrollout and legrad need the same tokens throughout"
            )
    return probs, tokens
