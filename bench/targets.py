"""`make bench` section: what a target costs. Grad-CAM with each kind of target (a class, a binary head's
``not:0``, a multi-label ``--threshold``, similarity to a reference picture, a text prompt of a CLIP model),
against a no-grad forward and against a forward plus a full backward pass (every parameter's gradient), measured
side by side on the same batch."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

from camcli.engine.scoring import Scorer
from camcli.engine.targets import Target
from camcli.methods import explain, get_method


def _costs(model: nn.Module, x: torch.Tensor, explained: Callable[[], object], times) -> tuple[float, float]:
    """(target ÷ forward, target ÷ forward+backward) for one explained call, timed with the bench's timer."""

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    def backward() -> object:
        model.zero_grad(set_to_none=True)
        out = model(x)
        (out if isinstance(out, torch.Tensor) else out[0]).float().sum().backward()
        return None

    t = times({"forward": forward, "forward+backward": backward, "target": explained})
    model.zero_grad(set_to_none=True)
    return t["target"] / t["forward"], t["target"] / t["forward+backward"]


def bench_targets(times: Callable[[dict[str, Callable[[], object]]], dict[str, float]], batch: int, where: str) -> None:
    print(f"\n## What a target costs: Grad-CAM at the last stage ({where}, batch {batch}, 224×224)\n")
    print("| target | model | ÷ no-grad forward | ÷ forward + full backward |")
    print("| --- | --- | --- | --- |")
    gradcam = get_method("gradcam")
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 224, 224)
    rows: list[tuple[str, str, nn.Module, Callable[[], object]]] = []
    classifier = torchvision.models.resnet50(weights=None).eval()
    rows.append(("class (top-1, softmax)", "resnet50", classifier,
                 lambda: explain(classifier, x, "layer4", gradcam, top_k=1)))  # fmt: skip
    binary = torchvision.models.resnet50(num_classes=1).eval()
    against = [Target(0, True)]
    rows.append(("binary not:0 (sigmoid)", "resnet50, 1 output", binary,
                 lambda: explain(binary, x, "layer4", gradcam, targets=against, scorer=Scorer("sigmoid"))))  # fmt: skip
    tags = torchvision.models.resnet50(num_classes=20).eval()
    rows.append(("--threshold 0.5 (sigmoid, all labels ≥ 0.5)", "resnet50, 20 labels", tags,
                 lambda: explain(tags, x, "layer4", gradcam, scorer=Scorer("sigmoid"), threshold=0.5)))  # fmt: skip
    embed = torchvision.models.resnet50(weights=None)
    embed.fc = nn.Identity()
    embed.eval()
    with torch.no_grad():
        concept = nn.functional.normalize(embed(torch.randn(1, 3, 224, 224)), dim=1)
    similar = Scorer("identity", concept, ["ref"])
    rows.append(("--reference (cosine similarity)", "resnet50 without head", embed,
                 lambda: explain(embed, x, "layer4", gradcam, targets=[0], scorer=similar)))  # fmt: skip
    try:
        from camcli.jobs.targeting import prompt_scorer
        from camcli.models import load_model

        clip = load_model("open_clip:ViT-B-32", "none")
        prompts = prompt_scorer(clip, ["a photo of a cat"])
        layer = str(clip.default_layer)
        tower = clip.module
        rows.append(("--prompt (CLIP, cosine similarity)", "open_clip ViT-B-32", tower,
                     lambda: explain(tower, x, layer, gradcam, targets=[0], scorer=prompts)))  # fmt: skip
    except Exception as e:  # open_clip not installed
        print(f"(open_clip: {type(e).__name__}: {e}; the prompt row is left out)\n")
    for name, model_name, model, fn in rows:
        fwd, full = _costs(model, x, fn, times)
        print(f"| {name} | {model_name} | {fwd:.2f}× | {full:.2f}× |", flush=True)
