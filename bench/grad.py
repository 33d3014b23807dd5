"""`make bench` section: Eigen-Grad-CAM, Grad-CAM element-wise, KPCA-CAM, ShapleyCAM, FullGrad and Random-CAM beside
pytorch-grad-cam's on the same model and batch (torchvision resnet18 and resnet50, random weights, batch 8 at
224 × 224, the layer methods at layer4, the top class): milliseconds per image and the ratio to a no-grad forward,
every variant timed interleaved in one call of the bench's timer per model.

pytorch-grad-cam's FullGrad scales and resizes every bias channel's map to the input with NumPy and OpenCV, one
channel at a time (resnet50: about 26,000 channels × 8 images, minutes per batch on two cores); it gets one timed
call of its own after the others instead of the timer's rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from camcli.methods import explain, get_method

PEERS = {
    "eigengradcam": "EigenGradCAM",
    "gradcamelementwise": "GradCAMElementWise",
    "kpcacam": "KPCA_CAM",
    "shapleycam": "ShapleyCAM",
    "fullgrad": "FullGrad",
    "random": "RandomCAM",
}
ONE_CALL = {"fullgrad"}  # the peer's: minutes per call


def _camcli(model: nn.Module, x: torch.Tensor, name: str) -> Callable[[], object]:
    method = get_method(name)
    layers: list[str] | str = [] if method.scope == "model" else "layer4"
    return lambda: explain(model, x, layers, method, top_k=1)


def _peer(model: nn.Module, x: torch.Tensor, name: str) -> Callable[[], object]:
    """One pytorch-grad-cam call, its hooks made and released around it (several cams' hooks on one model at once
    would each keep every other call's activations)."""
    import pytorch_grad_cam as pgc

    cls = getattr(pgc, PEERS[name])
    targets = [] if name == "fullgrad" else [model.layer4]

    def call() -> object:
        cam = cls(model=model, target_layers=targets)
        try:
            return cam(input_tensor=x, targets=None)
        finally:
            for h in cam.activations_and_grads.handles:
                h.remove()

    return call


def bench_grad(times: Callable[[dict[str, Callable[[], object]]], dict[str, float]], where: str) -> None:
    batch = 8
    print(f"\n## Gradient-family CAMs beside pytorch-grad-cam ({where}, batch {batch}, 224×224, random weights)\n")
    print("| model | method | camcli ms/img | ×fwd | pytorch-grad-cam ms/img | ×fwd | camcli ÷ pgc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model_name in ("resnet18", "resnet50"):
        torch.manual_seed(0)
        model = torchvision.models.get_model(model_name, weights=None).eval()
        x = torch.randn(batch, 3, 224, 224)

        def forward(model: nn.Module = model, x: torch.Tensor = x) -> object:
            with torch.no_grad():
                return model(x)

        fns: dict[str, Callable[[], object]] = {"forward": forward}
        for name in PEERS:
            fns[f"camcli {name}"] = _camcli(model, x, name)
            if name not in ONE_CALL:
                fns[f"pgc {name}"] = _peer(model, x, name)
        t = times(fns)
        for name in ONE_CALL:
            start = time.perf_counter()
            _peer(model, x, name)()
            t[f"pgc {name}"] = time.perf_counter() - start
        fwd = t["forward"]
        for name in PEERS:
            ours, peer = t[f"camcli {name}"], t[f"pgc {name}"]
            once = " (1 call)" if name in ONE_CALL else ""
            print(
                f"| {model_name} | {name} | {ours / batch * 1000:.0f} | {ours / fwd:.2f}× | "
                f"{peer / batch * 1000:.0f}{once} | {peer / fwd:.2f}× | {ours / peer:.2f} |",
                flush=True,
            )


if __name__ == "__main__":  # python bench/grad.py: one section on its own, fewer rounds
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import median_times

    where = f"CPU, {torch.get_num_threads()} threads"
    bench_grad(lambda fns: median_times(fns, 3, warmup=1, pre_call=False), where)
