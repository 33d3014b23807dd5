"""What the transformer-native maps share: the model's attention blocks and one forward pass that records their
attention probabilities (:mod:`camcli.engine.attention`), the token rows the head reads and the patch grid
(:mod:`camcli.engine.readout`), and the one-line refusal for a model without attention blocks.

A pass is recorded once per batch and shared by the class slots and the methods of the batch (``ctx.cache``):
without gradients for rollout alone; with the graph from the first block on (``retain_graph`` across slots) when
gradrollout or legrad asks, which rollout then reads too.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import torch
from torch import nn

from ..engine.attention import Site, attention_sites, checked, recording
from ..engine.readout import patch_grid, readout_rows
from ..errors import CamcliError, LayerError
from .whole import ModelContext, ModelMethod


@dataclass
class AttentionPass:
    """One recorded forward pass of a batch.

    ``probs``: each block's attention probabilities (B, heads, T, T) in the order the blocks ran; ``blocks``: each
    block's output tokens (B, T, D) (graph passes only); ``scores``: the model's scores (B, N), in the graph for a
    graph pass; ``prefix`` tokens before the ``grid`` (h, w) of patch tokens; ``rows`` (T,): the token rows the
    head reads, summing to 1.
    """

    probs: list[torch.Tensor]
    blocks: list[torch.Tensor]
    scores: torch.Tensor
    prefix: int
    grid: tuple[int, int]
    rows: torch.Tensor
    graph: bool

    def on_grid(self, relevance: torch.Tensor) -> torch.Tensor:
        """(B, T) relevance of each token → (B, h, w) over the patch tokens."""
        return relevance[:, self.prefix :].reshape(relevance.shape[0], *self.grid)

    def read(self, rel: torch.Tensor) -> torch.Tensor:
        """(B, T, T) token-to-token relevance → (B, h, w): the rows the head reads, over the patch tokens."""
        return self.on_grid(torch.einsum("t,btu->bu", self.rows.to(rel.device, rel.dtype), rel))


def others() -> str:
    """The registered methods outside this family, for the refusal."""
    from . import REGISTRY  # the registry imports this module; read it when it is complete

    return ", ".join(n for n, cls in REGISTRY.items() if cls.family != "transformer")


def _transformers_major() -> int:
    try:
        return int(metadata.version("transformers").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 0


class TransformerMethod(ModelMethod):
    """Base of the maps made from a vision transformer's attention; subclasses supply :meth:`model_map` from
    :meth:`attention`. Maps are at the patch-token grid; no outliers are clipped (``outliers = 0``)."""

    family = "transformer"
    outliers = 0.0

    def refusal(self, model: nn.Module, layers: list[str]) -> str | None:
        try:
            found = attention_sites(model)
        except CamcliError as e:
            return str(e).split(";")[0]
        return None if found else "needs a transformer's attention blocks"

    def sites(self, ctx: ModelContext) -> list[Site]:
        """The model's attention modules; the one-line refusal when it has none."""
        if "attention_sites" not in ctx.cache:
            ctx.cache["attention_sites"] = attention_sites(ctx.model)
        sites: list[Site] = ctx.cache["attention_sites"]
        if not sites:
            hint = ""
            if hasattr(getattr(ctx.model, "config", None), "model_type") and _transformers_major() < 5:
                hint = " (Hugging Face models: transformers 5 or later names their attention modules)"
            raise LayerError(
                f"{self.name} needs a transformer's attention blocks and {type(ctx.model).__name__} has none{hint}; "
                f"on it use {others()}"
            )
        return sites

    def attention(self, ctx: ModelContext, graph: bool) -> AttentionPass:
        """The batch's recorded pass (with the graph when ``graph``), recorded on first use."""
        if "attention_graph" in ctx.cache:
            return ctx.cache["attention_graph"]
        if not graph and "attention" in ctx.cache:
            return ctx.cache["attention"]
        sites = self.sites(ctx)
        with recording(ctx.model, sites, grad=graph, blocks=graph) as rec:
            with torch.no_grad():  # a graph pass switches grad mode on at the first block
                scores = ctx.scorer.scores(ctx.output(ctx.x))
            probs, tokens = checked(rec, sites, ctx.x.shape[0])
            blocks = [rec.blocks[i] for i in rec.order] if graph else []
        prefix, grid = patch_grid(ctx.model, tokens, (int(ctx.x.shape[-2]), int(ctx.x.shape[-1])))
        rows = readout_rows(ctx.model, tokens, prefix)
        made = AttentionPass(probs, blocks, scores, prefix, grid, rows, graph)
        ctx.cache["attention_graph" if graph else "attention"] = made
        return made

    def explained(self, ctx: ModelContext, scores: torch.Tensor) -> torch.Tensor:
        """The slot's explained scalar summed over the batch, in the graph (each row's class, negated for not:)."""
        with torch.enable_grad():
            return ctx.scorer.explained(scores, ctx.classes.to(scores.device), ctx.signs).sum()
