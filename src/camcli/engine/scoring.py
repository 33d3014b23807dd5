"""From a model's output to the numbers camcli explains and shows: the score vector, and its probabilities.

A model's output becomes a **score vector** (B, N), one entry per thing that can be explained:

* a classifier's logits (``Scorer()``): one entry per class, or per label of a multi-label head, or per output
  of a regression head;
* with ``concepts`` (R, D): the cosine similarity of the model's embedding to each concept (a reference picture's
  embedding, several averaged into one concept, or a text prompt's embedding): one entry per concept. This is
  pytorch-grad-cam's ``SimilarityToConceptTarget`` (Zhou et al.'s "concept" use of CAMs), on a batch.

A :class:`~camcli.engine.targets.Target` picks one entry (and ``not:`` negates it): that scalar's gradient (or
masked score) is what every method explains. The **head** says how the scores read as probabilities, for people
and for ``evaluate``: ``softmax`` over the classes, ``sigmoid`` per label (binary and multi-label heads), or
``identity`` (the raw value: regression outputs, similarities). A negated target's probability is ``1 − p``
(softmax, sigmoid: the probability of "not that class") or ``−value`` (identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..checks import HEADS
from ..errors import LayerError, TargetError
from .targets import check_index

#: the keys of a dict-like model output that hold the score vector, in order of preference (``logits``: Hugging
#: Face classifiers, ``out``: torchvision segmenters' dicts); an embedding model's pooled output comes after
LOGIT_KEYS = ("logits", "out", "output")
EMBEDDING_KEYS = ("image_embeds", "pooler_output", "embeddings")


def model_logits(output: object, embedding: bool = False) -> torch.Tensor:
    """The score vector (or, with ``embedding``, the embedding) in a model's output: a tensor, a tuple/list
    starting with it, or a dict (Hugging Face's outputs) holding it under a known key."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for key in LOGIT_KEYS + (EMBEDDING_KEYS if embedding else ()):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    raise LayerError(f"cannot find class scores in the model's output ({type(output).__name__})")


@dataclass
class Scorer:
    """How a model's output turns into scores and probabilities (see the module's text).

    Attributes:
        head: ``softmax``, ``sigmoid`` or ``identity``: how the scores read as probabilities.
        concepts: (R, D) unit vectors; when given, the scores are the cosine similarities of the model's
            (flattened) output to each of them.
        names: what each score is called when it is not a class (a reference picture, a prompt).
    """

    head: str = "softmax"
    concepts: torch.Tensor | None = None
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise TargetError(f"unknown head {self.head!r}; use {', '.join(HEADS)}")

    def scores(self, output: object) -> torch.Tensor:
        """(B, N) scores of a model's output (float32 when they are similarities)."""
        if self.concepts is None:
            logits = model_logits(output)
            if logits.dim() != 2:
                raise TargetError(
                    f"the model's scores have shape {tuple(logits.shape)}; camcli explains (batch, N) scores (an "
                    "embedding of another shape: --reference IMG)"
                )
            return logits
        emb = model_logits(output, embedding=True).flatten(1).float()
        if emb.shape[1] != self.concepts.shape[1]:
            raise TargetError(
                f"the model's output has {emb.shape[1]} values, the references' embeddings {self.concepts.shape[1]}"
            )
        # divided by the true norm (F.normalize clamps it at 1e-12 and would scale a tiny embedding's cosine): an
        # all-zero embedding has no direction, and its NaN fails the image with the non-finite output's message
        return (emb / emb.norm(dim=1, keepdim=True)) @ self.concepts.to(emb.device).T

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, N) probabilities (float32) of scores, as the head reads them."""
        s = scores.detach().float()
        if self.head == "softmax":
            return s.softmax(-1)
        if self.head == "sigmoid":
            return s.sigmoid()
        return s

    def explained(self, scores: torch.Tensor, classes: torch.Tensor, signs: torch.Tensor | None) -> torch.Tensor:
        """(B,) the scalar each sample explains: its entry ``classes`` (B,) of ``scores``, negated where ``signs``
        (B,) is −1 (differentiable)."""
        picked = scores.gather(1, classes.view(-1, 1).to(scores.device))[:, 0]
        return picked if signs is None else picked * signs.to(picked.device, picked.dtype)

    def probability(self, probs: torch.Tensor, classes: torch.Tensor, signs: torch.Tensor | None) -> torch.Tensor:
        """(B,) each sample's probability of its target, from ``probs`` (B, N) of :meth:`probabilities`."""
        p = probs.gather(1, classes.view(-1, 1).to(probs.device))[:, 0]
        if signs is None:
            return p
        negated = signs.to(p.device) < 0
        return torch.where(negated, -p if self.head == "identity" else 1 - p, p)

    def slot_probability(self, probs: torch.Tensor, index: int, negate: bool) -> float:
        """One image's probability (``probs`` (N,)) of entry ``index``, negated or not (:meth:`probability`)."""
        one = torch.tensor([index])
        return float(self.probability(probs[None], one, torch.tensor([-1.0 if negate else 1.0]))[0])


def choose(
    scores: torch.Tensor,
    scorer: Scorer,
    targets: Sequence[tuple[int, bool]] | None,
    top_k: int,
    threshold: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What each image explains: (classes (B, K), signs (B, K) ±1, valid (B, K) bool).

    The same ``targets`` (index, negate) for every image; else, with ``threshold``, every entry whose probability
    is at least it, most probable first (K is the most any image has; the other slots are not valid); else each
    image's ``top_k`` highest scores.
    """
    b, n = scores.shape
    device = scores.device
    if targets:
        for index, _ in targets:
            check_index(index, n)
        classes = torch.tensor([t[0] for t in targets], device=device).expand(b, -1)
        signs = torch.tensor([-1.0 if t[1] else 1.0 for t in targets], device=device).expand(b, -1)
        return classes, signs, torch.ones_like(classes, dtype=torch.bool)
    if threshold is not None:
        probs = scorer.probabilities(scores)
        order = probs.argsort(dim=1, descending=True)
        passed = probs.gather(1, order) >= threshold
        k = max(1, int(passed.sum(1).max()))
        classes = order[:, :k]
        return classes, torch.ones(classes.shape, device=device), passed[:, :k]
    k = max(1, min(top_k, n))
    classes = scores.detach().topk(k, dim=1).indices
    return classes, torch.ones(classes.shape, device=device), torch.ones_like(classes, dtype=torch.bool)


@dataclass
class Slots:
    """What each of N samples explains, for the metrics that re-run the model (``evaluate``): entry ``classes``
    (N,) of the scores, negated where ``signs`` (N,) is −1, read as ``scorer``'s head reads it."""

    classes: torch.Tensor
    signs: torch.Tensor | None = None
    scorer: Scorer = field(default_factory=Scorer)

    @classmethod
    def of(cls, targets: torch.Tensor | Slots) -> Slots:
        """``targets`` as slots (a bare class tensor: those classes' softmax probabilities)."""
        return targets if isinstance(targets, Slots) else cls(targets)

    def __getitem__(self, index: object) -> Slots:
        signs = self.signs[index] if self.signs is not None else None  # type: ignore[index]
        return Slots(self.classes[index], signs, self.scorer)  # type: ignore[index]

    def repeat_interleave(self, n: int) -> Slots:
        signs = self.signs.repeat_interleave(n) if self.signs is not None else None
        return Slots(self.classes.repeat_interleave(n), signs, self.scorer)

    def probability(self, output: object) -> torch.Tensor:
        """(N,) each sample's probability of its target in a model's output for them."""
        s = self.scorer
        return s.probability(s.probabilities(s.scores(output)), self.classes, self.signs)
