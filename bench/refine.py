"""`make bench` section: the methods that refine others. Finer-CAM (Grad-CAM on the class's score less its closest
rivals') and RefineCAM (Grad-CAM++ maps of two layers multiplied), each beside pytorch-grad-cam's on the same model,
batch and classes, and beside camcli's plain Grad-CAM / Grad-CAM++ (what the refinement costs)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torchvision

from camcli.methods import explain, get_method

Times = Callable[[dict[str, Callable[[], object]]], dict[str, float]]


def _pgc_finer(model: torch.nn.Module, layer: str, x: torch.Tensor, cls: int) -> Callable[[], object]:
    import pytorch_grad_cam as pgc

    def run() -> object:  # its hooks are released after each call, so that they never slow camcli's calls down
        cam = pgc.FinerCAM(model, [dict(model.named_modules())[layer]], base_method=pgc.GradCAM)
        try:
            return cam(x, target_idx=cls)
        finally:
            cam.base_cam.activations_and_grads.release()

    return run


def _pgc_refine(model: torch.nn.Module, layers: list[str], x: torch.Tensor, cls: int) -> Callable[[], object]:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    modules = dict(model.named_modules())
    targets = [ClassifierOutputTarget(cls)] * x.shape[0]

    def run() -> object:
        cam = pgc.RefineCAM(model, [modules[n] for n in layers])
        try:
            return cam(x, targets)
        finally:
            for base in cam.base_cam_per_layer:
                base.activations_and_grads.release()

    return run


def bench_refine(times: Times, where: str, batch: int = 8, device: str = "cpu") -> None:
    print(f"\n## Methods that refine others ({where}, batch {batch}, 224×224, random weights)\n")
    print("| method | model | camcli | pytorch-grad-cam | camcli ÷ pgc | ÷ camcli's base method |")
    print("| --- | --- | --- | --- | --- | --- |")
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, device=device)
    for name in ("resnet18", "resnet50"):
        model = torchvision.models.get_model(name, weights=None).eval().to(device)
        _one_model(times, name, model, x)
        model.zero_grad(set_to_none=True)  # pytorch-grad-cam's backward fills them


def _one_model(times: Times, name: str, model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        cls = int(model(x[:1]).argmax())
    finer, gradcam = get_method("finercam"), get_method("gradcam")
    t = times(
        {
            "camcli": lambda: explain(model, x, "layer4", finer, targets=[cls]),
            "pgc": _pgc_finer(model, "layer4", x, cls),
            "base": lambda: explain(model, x, "layer4", gradcam, targets=[cls]),
        }
    )
    _row("finercam (Grad-CAM, layer4)", name, t)
    layers = ["layer3", "layer4"]
    refine, gradcampp = get_method("refinecam"), get_method("gradcam++")
    t = times(
        {
            "camcli": lambda: explain(model, x, layers, refine, targets=[cls]),
            "pgc": _pgc_refine(model, layers, x, cls),
            "base": lambda: explain(model, x, layers, gradcampp, targets=[cls]),
        }
    )
    _row("refinecam (Grad-CAM++, layer3 × layer4)", name, t)


def _row(label: str, model: str, t: dict[str, float]) -> None:
    print(
        f"| {label} | {model} | {t['camcli'] * 1000:.0f} ms | {t['pgc'] * 1000:.0f} ms | {t['camcli'] / t['pgc']:.2f}× "
        f"| {t['camcli'] / t['base']:.2f}× |",
        flush=True,
    )


if __name__ == "__main__":  # python bench/refine.py [cuda]: this section alone, with bench.py's timer
    import bench as _bench  # bench/bench.py (this folder is first on the path); it puts src/ on the path too

    _bench.DEVICE = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu")
    bench_refine(lambda fns: _bench.median_times(fns, 3), _bench._where(), device=str(_bench.DEVICE))
