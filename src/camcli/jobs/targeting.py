"""What a classifier-style run explains, decided once per run: the head, the score vector, the targets.

:func:`plan_targets` reads the options (``--head --target --threshold --reference --prompt --targets-file``) against
the loaded model and returns a :class:`TargetPlan`: the :class:`~camcli.engine.scoring.Scorer` (the model's output
→ scores and probabilities), the targets given for every image, and those of each image from a targets file.
The CAM job and ``evaluate`` share it; a new kind of target changes this module and the scorer, not the jobs.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checks import TargetFields, json_value, regular_file
from ..engine.hooks import eval_mode
from ..engine.scoring import Scorer, model_logits
from ..engine.targets import Target, parse_target, parse_targets
from ..errors import InputError, TargetError, UsageError
from ..io.decode import decode
from ..io.inputs import InputFile, identity
from ..io.outputs import Setting
from ..models import LoadedModel, preprocess
from ..models.labels import class_name
from ..options import DEFAULT_MAX_PIXELS

MAX_REFERENCES = 256  # pictures averaged into one concept
MAX_PROMPTS = 1024


@dataclass
class TargetPlan:
    """How a run's model output is explained (see the module's text)."""

    scorer: Scorer
    names: list[str]  # what each entry of the score vector is called (classes, or the concepts)
    head_why: str  # why this head: "from --head", "one output", "Hugging Face problem_type …", "similarity"
    head_given: bool  # --head chose a head other than the one the model declares (output names say so)
    targets: list[Target] = field(default_factory=list)  # the same for every image
    threshold: float | None = None
    per_image: dict[Path, Target] | None = None  # --targets-file: by the input's resolved path
    targets_file: str | None = None
    references: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    negative: str | None = None  # a binary head's name for its negative (--labels with two names)

    @property
    def head(self) -> str:
        return self.scorer.head

    def class_name(self, index: int) -> str:
        return class_name(self.names, index)

    def target_name(self, target: Target) -> str:
        """What people call a target: ``tabby``, ``not tabby`` (a binary head's negative by its own name)."""
        if target.negate and self.negative is not None:
            return self.negative
        name = self.class_name(target.index)
        return f"not {name}" if target.negate else name

    def value_label(self) -> str:
        """What the number beside a class is: a probability, a similarity or a raw value."""
        if self.scorer.concepts is not None:
            return "similarity"
        return "value" if self.head == "identity" else "probability"

    def describe(self) -> str:
        """For the run's header: ``head sigmoid (one output)``."""
        return f"head {self.head}" + (f" ({self.head_why})" if self.head_why else "")

    def settings(self) -> dict[str, Any]:
        """What shapes the run's numbers and captions, for the records and the pictures' settings."""
        out: dict[str, Any] = {"head": self.head}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.references:
            out["references"] = [str(identity(Path(r))) for r in self.references]
        if self.prompts:
            out["prompts"] = list(self.prompts)
        if self.targets_file:
            out["targets_file"] = str(identity(Path(self.targets_file)))
        return out

    def named(self) -> list[Setting]:
        """The settings output names carry: a head chosen against the model's own, a threshold, a targets file."""
        out: list[Setting] = []
        if self.head_given:
            out.append(("head", self.head))
        if self.threshold is not None:
            out.append(("threshold", f"{self.threshold:g}"))
        if self.targets_file:
            out.append(("targets", Path(self.targets_file).stem))
        return out

    def for_images(self, items: tuple[InputFile, ...]) -> list[Target | None]:
        """Each image's target from the targets file (None: the file names none for it)."""
        table = self.per_image or {}
        return [table.get(identity(item.origin)) for item in items]

    def batch_targets(
        self, items: tuple[InputFile, ...], size: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[bool]]:
        """For a batch of ``size`` images, ``items``: the classes (B, 1) and signs (B, 1) the targets file gives them
        (None, None without one), and which images it names nothing for (explained for class 0, then failed)."""
        if self.per_image is None:
            return None, None, [False] * size
        if len(items) != size:
            raise RuntimeError(f"a batch of {size} images with {len(items)} inputs: their targets cannot be told")
        own = self.for_images(items)
        chosen = [t or Target(0) for t in own]
        classes = torch.tensor([[t.index] for t in chosen])
        signs = torch.tensor([[t.sign] for t in chosen])
        return classes, signs, [t is None for t in own]

    def missing_error(self, path: Path) -> InputError:
        return InputError(
            f"{path}: --targets-file {self.targets_file} names no target for this input; add a row input,target"
        )

    def verdict(self, probs: torch.Tensor, target: Target) -> dict[str, Any]:
        """``--targets-file``: the model's own answer for an image (``predicted``) and whether the target is it
        (``correct``), as the head reads its outputs: softmax, the top class (for ``not:C``: any other); sigmoid,
        the label's own probability at least 0.5 (a binary head predicts its negative below that); identity and
        similarities have no answer (``correct`` null). Empty without a targets file."""
        if self.per_image is None:
            return {}
        top = int(probs.argmax())
        binary = self.head == "sigmoid" and len(self.names) == 1  # the positive or the negative, the likelier
        said = Target(0, negate=float(probs[0]) < 0.5) if binary else Target(top)
        predicted = {
            "index": said.index,
            "name": self.target_name(said),
            "probability": round(self.scorer.slot_probability(probs, said.index, said.negate), 6),
            **({"target": str(said)} if binary else {}),
        }
        if self.head == "sigmoid":
            correct: bool | None = self.scorer.slot_probability(probs, target.index, target.negate) >= 0.5
        elif self.head != "softmax" or self.scorer.concepts is not None:
            correct = None
        else:
            correct = (top != target.index) if target.negate else (top == target.index)
        return {"predicted": predicted, "correct": correct}


def plan_targets(model: LoadedModel, o: TargetFields) -> TargetPlan:
    """The :class:`TargetPlan` of a run of ``model`` with options ``o`` (usage errors name the fix)."""
    scorer, why, given = _scorer(model, o)
    names = scorer.names or list(model.categories)
    plan = TargetPlan(scorer, names, why, given, references=list(o.references), prompts=list(o.prompts))
    plan.negative = model.negative if not scorer.names else None
    if not scorer.names and model.encode_text is not None:
        raise UsageError(
            f"{model.name} is an image–text model: explain what matches a text with --prompt TEXT (or a picture "
            "with --reference IMG)"
        )
    if not scorer.names and model.embedding:
        raise UsageError(
            f"{model.name} has no classifier head (it returns an embedding); explain what makes a picture similar "
            "to another with --reference IMG (camcli features shows its layers as they are)"
        )
    if scorer.names:  # the entries are the prompts (or the references' one concept), not classes
        for value in o.targets:
            text = str(value).strip().lower().removeprefix("not:").strip()
            if text.isdigit() and int(text) >= len(names):
                what = f"{len(names)} prompt(s)" if o.prompts else "one concept (the references)"
                raise UsageError(f"--target {value}: there are {what}, numbered from 0 to {len(names) - 1}")
    plan.targets = parse_targets(o.targets, names, plan.negative)
    if scorer.names and not plan.targets and o.targets_file is None:  # each prompt (or the references' concept)
        plan.targets = [Target(i) for i in range(len(scorer.names))]
    if o.threshold is not None:
        if scorer.head != "sigmoid":
            raise UsageError(
                f"--threshold reads independent labels' probabilities, but {model.name}'s head is {scorer.head}; "
                "pass --head sigmoid if its outputs are independent labels"
            )
        plan.threshold = o.threshold
    if o.targets_file is not None:
        plan.per_image = read_targets_file(o.targets_file, names, plan.negative)
        plan.targets_file = o.targets_file
    return plan


def _scorer(model: LoadedModel, o: TargetFields) -> tuple[Scorer, str, bool]:
    """The scorer, why its head, and whether --head overrode the model's own head."""
    if o.references or o.prompts:
        if o.head not in (None, "identity"):
            raise UsageError(
                f"--head {o.head}: similarities to --reference/--prompt are shown as they are (cosine, −1…1); drop "
                "--head"
            )
        if o.prompts:
            return prompt_scorer(model, o.prompts), f"cosine similarity to {len(o.prompts)} prompt(s)", False
        return reference_scorer(model, o.references, o.max_pixels), "cosine similarity to the reference(s)", False
    declared, why = model.head, model.head_why
    if declared is None and model.num_classes == 1:
        declared, why = "sigmoid", "one output: a binary head"
    if o.head is not None:
        if o.head == "softmax" and model.num_classes == 1:
            raise UsageError(
                f"--head softmax: {model.name} has one output, whose softmax is always 1; use sigmoid (a binary "
                "head) or identity (a value)"
            )
        return Scorer(o.head), "from --head", o.head != (declared or "softmax")
    return Scorer(declared or "softmax"), why, False


def reference_scorer(model: LoadedModel, references: list[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Scorer:
    """Similarity to the mean of the references' embeddings (one concept; pytorch-grad-cam's
    ``SimilarityToConceptTarget``): each picture preprocessed as the inputs are, run once on the CPU."""
    if len(references) > MAX_REFERENCES:
        raise UsageError(f"--reference is given {len(references)} times; at most {MAX_REFERENCES}")
    pictures = []
    for ref in references:
        if Path(ref).is_dir():
            raise UsageError(f"--reference {ref} is a folder; pass picture files (repeat --reference for several)")
        try:
            pictures.append(preprocess(decode(Path(ref), max_pixels), model))
        except InputError as e:
            raise UsageError(f"--reference: {e}") from None
    module = model.module
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    embs = []
    with torch.inference_mode(), eval_mode(module):
        for start in range(0, len(pictures), 8):  # a few at a time: a large model's activations stay small
            batch = torch.stack(pictures[start : start + 8]).to(device)
            embs.append(model_logits(module(batch), embedding=True).flatten(1).float())
    concept = unit(torch.cat(embs), references, "--reference").mean(0, keepdim=True)
    if float(concept.norm()) < 1e-6:
        raise UsageError("--reference: the references' embeddings cancel out (opposite directions); pass fewer")
    concept = (concept / concept.norm()).cpu()
    stem = Path(references[0]).stem
    name = f"like-{stem}" + (f"+{len(references) - 1}" if len(references) > 1 else "")
    return Scorer("identity", concept, [name])


def prompt_scorer(model: LoadedModel, prompts: list[str]) -> Scorer:
    """Similarity to each prompt's text embedding (CLIP-style models: the model's own text tower)."""
    if model.encode_text is None:
        raise UsageError(
            f"--prompt needs an image–text model (CLIP, SigLIP: a Hugging Face folder, hf:ORG/NAME or "
            f"open_clip:ARCH); {model.name} has no text tower"
        )
    if len(prompts) > MAX_PROMPTS:
        raise UsageError(f"--prompt is given {len(prompts)} times; at most {MAX_PROMPTS}")
    with torch.inference_mode():
        emb = model.encode_text([p.strip() for p in prompts]).float().cpu()
    return Scorer("identity", unit(emb, prompts, "--prompt"), [p.strip() for p in prompts])


def unit(emb: torch.Tensor, given: list[str], option: str) -> torch.Tensor:
    """Each embedding over its own norm (not clamped: a tiny one keeps its direction); an all-zero one is refused."""
    norms = emb.norm(dim=1, keepdim=True)
    zero = [g for g, n in zip(given, norms[:, 0].tolist(), strict=True) if not n > 0]
    if zero:
        raise UsageError(f"{option} {zero[0]!r}: the model's embedding of it is all zeros (no direction to compare)")
    return emb / norms


# ---------------------------------------------------------------------------------------------- targets file
def read_targets_file(path: str, names: list[str], negative: str | None = None) -> dict[Path, Target]:
    """``--targets-file``: a CSV with a header ``input,target`` or JSON lines with those keys → each input's
    target, keyed by the input's resolved path (a relative path is taken as given, else relative to the file)."""
    file = Path(path).expanduser()
    regular_file("--targets-file", str(file))
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read --targets-file '{path}' ({getattr(e, 'strerror', None) or e})") from None
    rows = _rows(text, path)
    if not rows:
        raise UsageError(f"--targets-file '{path}' has no rows; write a header input,target and a row per image")
    out: dict[Path, Target] = {}
    for line, given, value in rows:
        try:
            target = parse_target(value, names, negative, exact=True)  # a label: its exact name, never a guess
        except TargetError as e:
            raise UsageError(f"--targets-file '{path}' line {line}: {e}") from None
        p = Path(given).expanduser()
        found = [p] if p.is_absolute() else [p, file.parent / p]
        key = next((identity(c) for c in found if c.exists()), identity(found[-1]))
        if key in out and out[key] != target:
            raise UsageError(f"--targets-file '{path}' line {line}: {given} already has target {out[key]}")
        out[key] = target
    return out


def _rows(text: str, path: str) -> list[tuple[int, str, str]]:
    """(line, input, target) of a CSV with a header or of JSON lines."""
    if text.lstrip().startswith("{"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json_value(line)
            except ValueError as e:
                raise UsageError(f"--targets-file '{path}' line {n} is not JSON ({e})") from None
            if not isinstance(rec, dict) or "input" not in rec or "target" not in rec:
                raise UsageError(f"--targets-file '{path}' line {n}: give an object with keys input and target")
            rows.append((n, str(rec["input"]), str(rec["target"])))
        return rows
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if "input" not in header or "target" not in header:
        raise UsageError(f"--targets-file '{path}': the first line must be the header input,target")
    i, t = header.index("input"), header.index("target")
    rows = []
    for n, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(i, t):
            raise UsageError(f"--targets-file '{path}' line {n}: needs an input and a target")
        rows.append((n, row[i].strip(), row[t].strip()))
    return rows
