"""camcli benchmark: ratios measured side by side in one run (absolute times on a shared machine move).

    make bench                      # everything
    python bench/bench.py --quick   # fewer rounds

Per model (random weights for torchvision models, so nothing downloads; timing does not depend on weights):
the median time of a no-grad forward of a batch, and of camcli / pytorch-grad-cam / torchcam Grad-CAM
(forward + map at the model's input size) on the same batch, run interleaved round by round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from camcli.methods import explain, get_method, upsample  # noqa: E402
from camcli.models import load_bundled  # noqa: E402


def median_times(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():  # interleaved: every variant sees the same machine state
            # one untimed call first: freeing the previous variant's autograd graph makes the allocator hand
            # memory back, and the next call (whichever it is) pays page faults for it (measured: up to 2.7×)
            fn()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def models() -> list[tuple[str, torch.nn.Module, str, tuple[int, int]]]:
    import torchvision

    torch.manual_seed(0)
    lite = load_bundled()
    return [
        ("resnet50", torchvision.models.resnet50(weights=None).eval(), "layer4", (224, 224)),
        ("resnet18", torchvision.models.resnet18(weights=None).eval(), "layer4", (224, 224)),
        ("efficientnet_lite0", lite.module.eval(), "_head_act", lite.input_size),
    ]


def gradcam_variants(model: torch.nn.Module, layer: str, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    size = tuple(x.shape[-2:])
    method = get_method("gradcam")

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    def camcli() -> object:
        ex = explain(model, x, layer, method, top_k=1)
        return upsample(ex.maps[:, 0], size)  # type: ignore[arg-type]

    fns: dict[str, Callable[[], object]] = {"forward (no grad)": forward, "camcli": camcli}
    module = dict(model.named_modules())[layer]
    try:
        from pytorch_grad_cam import GradCAM as PgcGradCAM

        pgc = PgcGradCAM(model=model, target_layers=[module])
        fns["pytorch-grad-cam"] = lambda: pgc(input_tensor=x, targets=None)
    except ImportError:
        pass
    try:
        from torchcam.methods import GradCAM as TcGradCAM

        tc = TcGradCAM(model, layer)

        def torchcam() -> object:
            with torch.enable_grad():
                scores = model(x)
                cams = tc(class_idx=scores.argmax(1).tolist(), scores=scores)
            return F.interpolate(cams[0][:, None], size=size, mode="bilinear")

        fns["torchcam"] = torchcam
    except ImportError:
        pass
    return fns


def bench_gradcam(rounds: int, batch: int) -> None:
    print(f"\n## Grad-CAM cost vs a no-grad forward (CPU, batch {batch}, {torch.get_num_threads()} threads, "
          f"median of {rounds} interleaved rounds)\n")
    print(f"| model | layer | forward ms/img | {'camcli':>8} | pytorch-grad-cam | torchcam |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, model, layer, size in models():
        x = torch.randn(batch, 3, *size)
        fns = gradcam_variants(model, layer, x)
        t = median_times(fns, rounds)
        fwd = t["forward (no grad)"]
        cells = [f"{t[k] / fwd:.2f}×" if k in t else "n/a" for k in ("camcli", "pytorch-grad-cam", "torchcam")]
        print(f"| {name} | {layer} | {fwd / batch * 1000:.1f} | " + " | ".join(cells) + " |", flush=True)


def bench_help(rounds: int) -> None:
    exe = shutil.which("camcli") or str(Path(sys.executable).parent / "camcli")
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    print(f"\n`camcli --help`: median {statistics.median(times) * 1000:.0f} ms wall over {rounds} runs "
          f"(target < 300 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--only", choices=["gradcam", "help"], default=None)
    args = ap.parse_args()
    rounds = 3 if args.quick else 7
    print(f"camcli bench · torch {torch.__version__} · {time.strftime('%Y-%m-%d %H:%M')}")
    if args.only in (None, "help"):
        bench_help(rounds)
    if args.only in (None, "gradcam"):
        bench_gradcam(rounds, args.batch)


if __name__ == "__main__":
    main()
