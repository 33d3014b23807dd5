"""`make bench` section: what the transformer maps cost. rollout, gradrollout and legrad beside Grad-CAM at the last
block's token layer and a no-grad forward, on timm's vit_small_patch16_224 and on a torchvision ViT of the same size
(ViT-S/16: 12 blocks, 6 heads, 384 dims), where torchcam's LeGrad (torchvision ViTs only) runs beside camcli's
legrad on the same model. Random weights, batch 8, 224 × 224, every block; each number is the median seconds of a
call and its ratio to the no-grad forward.

Run alone: ``PYTHONPATH=src python bench/vit.py`` (CUDA when there is one).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from camcli.methods import explain, get_method

Times = Callable[[dict[str, Callable[[], object]]], dict[str, float]]
BATCH = 8


def _models(device: torch.device) -> list[tuple[str, nn.Module, str]]:
    """(label, model, Grad-CAM's token layer: the last block's first norm, camcli's default)."""
    import timm
    import torchvision

    torch.manual_seed(0)
    small = timm.create_model("vit_small_patch16_224", pretrained=False).eval().to(device)
    tv = torchvision.models.VisionTransformer(
        image_size=224, patch_size=16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536
    ).eval()
    nn.init.normal_(tv.heads.head.weight, std=0.02)  # torchvision starts its head at zero (every gradient 0)
    return [
        ("timm vit_small_patch16_224", small, "blocks.11.norm1"),
        ("torchvision ViT-S/16", tv.to(device), "encoder.layers.encoder_layer_11.ln_1"),
    ]


def _torchcam_legrad(model: nn.Module, x: torch.Tensor) -> Callable[[], object] | None:
    try:
        from torchcam.methods import LeGrad
    except ImportError:
        return None
    blocks = list(model.encoder.layers)  # type: ignore[union-attr]

    def run() -> object:
        with LeGrad(model, blocks) as extractor:
            scores = model(x)
            return extractor(class_idx=scores.argmax(1).tolist(), scores=scores)

    return run


def bench_vit(times: Times, where: str) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"\n## Transformer maps ({where}, batch {BATCH}, 224×224, random weights)\n")
    print("| model | forward (s) | rollout | gradrollout | legrad | Grad-CAM (last block) | torchcam LeGrad |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    x = torch.randn(BATCH, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    for label, model, layer in _models(device):

        def forward(model: nn.Module = model) -> object:
            with torch.no_grad():
                return model(x)

        fns: dict[str, Callable[[], object]] = {"forward": forward}
        for name in ("rollout", "gradrollout", "legrad"):
            fns[name] = lambda m=model, n=name: explain(m, x, [], get_method(n))
        fns["gradcam"] = lambda m=model, ly=layer: explain(m, x, ly, get_method("gradcam"))
        peer = _torchcam_legrad(model, x) if "torchvision" in label else None
        if peer is not None:
            fns["torchcam"] = peer
        t = times(fns)
        cells = [f"{t[k]:.3f} s ({t[k] / t['forward']:.1f}×)" if k in t else "–" for k in list(fns)[1:]]
        if peer is None:
            cells.append("– (torchvision ViTs only)")
        ratio = f" ({t['legrad'] / t['torchcam']:.2f}× torchcam's)" if "torchcam" in t else ""
        cells[2] += ratio
        print(f"| {label} | {t['forward']:.3f} | " + " | ".join(cells) + " |", flush=True)
        model.cpu()


def _median_times(fns: dict[str, Callable[[], object]], rounds: int = 3) -> dict[str, float]:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            out[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in out.items()}


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    bench_vit(lambda fns: _median_times(fns, rounds), name)
