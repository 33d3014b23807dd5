"""`make bench` section: the CAMs that re-run the model (Ablation-CAM, SS-CAM, IS-CAM) and Seg-Eigen-CAM, each beside
its peer (pytorch-grad-cam 1.5.7, torchcam 0.5) on the same model, picture, class and layer: resnet18 with random
weights, batch 1, 224×224.

SS-CAM and IS-CAM cost N × C forwards (35 × C and 10 × C by default): both sides run 2 samples / steps at layer2
(128 channels) here, which keeps the section to minutes on a CPU; their cost grows linearly in both on both sides.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import torch
import torchvision

from camcli.method_params import MethodParams
from camcli.methods import explain, get_method

Times = Callable[[dict[str, Callable[[], object]]], dict[str, float]]


def bench_perturb(times: Times, where: str) -> None:
    import pytorch_grad_cam as pgc
    import torchcam.methods as tcm
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    print(f"\n## Perturbation CAMs beside their peers ({where}, resnet18 random weights, batch 1, 224×224)\n")
    print("| method | layer | camcli s/img | peer | peer s/img | peer ÷ camcli |")
    print("| --- | --- | --- | --- | --- | --- |")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    device = next(model.parameters()).device
    x = torch.randn(1, 3, 224, 224, device=device)
    with torch.no_grad():
        cls = int(model(x).argmax())
    targets = [ClassifierOutputTarget(cls)]

    def ours(name: str, layer: str, split: bool | None = None, **params: Any) -> Callable[[], object]:
        method = get_method(name)
        if split is not None:
            method.split = split  # type: ignore[attr-defined]  # ablationcam: the whole model on every copy
        given = MethodParams(**params)
        return lambda: explain(model, x, layer, method, targets=[cls], score_batch=32, params=given)

    def pgc_run(cls_name: str, layer: str, **kw: Any) -> Callable[[], object]:
        """The peer made, called and its hooks released in every call: none of them stays on the model while
        camcli's runs are timed (their hooks record activations, torchcam's copy every input)."""
        module = dict(model.named_modules())[layer]

        def run() -> object:
            cam = getattr(pgc, cls_name)(model=model, target_layers=[module], **kw)
            try:
                with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
                    return cam(input_tensor=x, targets=targets)
            finally:
                cam.activations_and_grads.release()

        return run

    def torchcam_run(cls_name: str, layer: str, **kw: Any) -> Callable[[], object]:
        def run() -> object:
            with getattr(tcm, cls_name)(model, layer, input_shape=(3, 224, 224), batch_size=32, **kw) as extractor:
                with torch.no_grad():
                    scores = model(x)
                return extractor(class_idx=[cls], scores=scores)

        return run

    # (method, layer, camcli's runs by label, the peer's name, the peer's run)
    rows: list[tuple[str, str, dict[str, Callable[[], object]], str, Callable[[], object]]] = [
        ("ablationcam", "layer4", {"": ours("ablationcam", "layer4"),
         ", whole model on every copy": ours("ablationcam", "layer4", split=False)}, "pgc AblationCAM",
         pgc_run("AblationCAM", "layer4", batch_size=32)),
        ("ablationcam", "layer3", {"": ours("ablationcam", "layer3")}, "pgc AblationCAM",
         pgc_run("AblationCAM", "layer3", batch_size=32)),
        ("segeigencam", "layer4", {"": ours("segeigencam", "layer4")}, "pgc SegEigenCAM",
         pgc_run("SegEigenCAM", "layer4")),
        ("sscam", "layer2", {", 2 samples": ours("sscam", "layer2", sscam_samples=2)}, "torchcam SSCAM, 2 samples",
         torchcam_run("SSCAM", "layer2", num_samples=2)),
        ("iscam", "layer2", {", 2 steps": ours("iscam", "layer2", iscam_steps=2)}, "torchcam ISCAM, 2 steps",
         torchcam_run("ISCAM", "layer2", num_samples=2)),
    ]  # fmt: skip
    for name, layer, variants, peer, run in rows:
        t = times({**{name + label: fn for label, fn in variants.items()}, "peer": run})
        for label in variants:
            ours_s = t[name + label]
            ratio = t["peer"] / ours_s
            print(f"| {name}{label} | {layer} | {ours_s:.3f} | {peer} | {t['peer']:.3f} | {ratio:.2f}× |", flush=True)


if __name__ == "__main__":  # python bench/perturb.py [ROUNDS]: this section alone (default 3 rounds, 2 warm-ups)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import _where, median_times

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    bench_perturb(lambda fns: median_times(fns, rounds, warmup=1 if rounds < 3 else 2), _where())
