"""`make bench` section: the pixel-attribution family beside captum. Time per image of camcli's saliency, ig,
smoothgrad, occlusion and rise and of captum's counterparts (rise: camcli alone, captum has none) on resnet18 and
resnet50 with random weights at 224², measured side by side; then the peak memory of ig and occlusion on a large
input, camcli with its ``--score-batch`` batches against captum's defaults (all of Integrated Gradients' steps in one
batch; one occluded copy per forward), each variant in a fresh process, read from the process's peak RSS
(``ru_maxrss``; tracemalloc does not see torch's allocations) or, on a GPU, ``torch.cuda.max_memory_allocated``.

    python bench/pixel.py                 # both parts, on the CPU
    python bench/pixel.py --rounds 1 --memory-size 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from camcli.method_params import MethodParams  # noqa: E402
from camcli.methods import explain, get_method  # noqa: E402

Times = Callable[[dict[str, Callable[[], object]]], dict[str, float]]


def _settings(device: str) -> dict[str, int]:
    """The methods' parameters: camcli's defaults on a GPU; fewer on a CPU (the ratios hold, the wait does not)."""
    if device == "cuda":
        return {"steps": 50, "samples": 25, "window": 32, "stride": 16, "masks": 2000, "score_batch": 32}
    return {"steps": 16, "samples": 8, "window": 56, "stride": 28, "masks": 64, "score_batch": 32}


def _variants(
    model: torch.nn.Module, x: torch.Tensor, s: dict[str, int]
) -> list[tuple[str, dict[str, Callable[[], object]]]]:
    """(method, {label: fn}) for one model and one image, camcli first."""
    import warnings

    from captum import attr

    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")

    classes = torch.zeros(1, 1, dtype=torch.long, device=x.device)
    params = MethodParams(
        steps=s["steps"], samples=s["samples"], window=s["window"], stride=s["stride"], masks=s["masks"]
    )
    span = float(x.max() - x.min())

    def ours(name: str) -> Callable[[], object]:
        return lambda: explain(
            model, x, [], get_method(name), classes=classes, params=params, score_batch=s["score_batch"]
        )

    w, st = s["window"], s["stride"]
    return [
        ("saliency", {"camcli": ours("saliency"), "captum": lambda: attr.Saliency(model).attribute(x, target=0)}),
        ("ig", {"camcli": ours("ig"),
                "captum": lambda: attr.IntegratedGradients(model).attribute(x, target=0, n_steps=s["steps"])}),
        ("smoothgrad", {"camcli": ours("smoothgrad"),
                        "captum": lambda: attr.NoiseTunnel(attr.Saliency(model)).attribute(
                            x, nt_type="smoothgrad", nt_samples=s["samples"], stdevs=0.15 * span, target=0)}),
        ("occlusion", {"camcli": ours("occlusion"),
                       "captum": lambda: attr.Occlusion(model).attribute(
                           x, sliding_window_shapes=(3, w, w), strides=(3, st, st), target=0),
                       "captum batch": lambda: attr.Occlusion(model).attribute(
                           x, sliding_window_shapes=(3, w, w), strides=(3, st, st), target=0,
                           perturbations_per_eval=s["score_batch"])}),
        ("rise", {"camcli": ours("rise")}),
    ]  # fmt: skip


def bench_pixel(
    times: Times,
    where: str,
    device: str = "cpu",
    memory_size: int | None = 1024,
    models: tuple[str, ...] = ("resnet18", "resnet50"),
) -> None:
    """The time table, then (unless ``memory_size`` is None) the memory table at ``memory_size``²."""
    s = _settings(device)
    print(f"\n## Pixel attribution beside captum ({where}, one 224×224 image, random weights)\n")
    print(
        f"ig {s['steps']} steps (Gauss–Legendre in both), smoothgrad {s['samples']} samples, occlusion window "
        f"{s['window']} stride {s['stride']} (captum: one copy per forward by default; 'captum batch': "
        f"perturbations_per_eval={s['score_batch']}), rise {s['masks']} masks; camcli --score-batch "
        f"{s['score_batch']}\n"
    )
    print("| model | method | camcli s/image | captum s/image | camcli ÷ captum |")
    print("| --- | --- | --- | --- | --- |")
    for name in models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval().to(device)
        x = torch.randn(1, 3, 224, 224, device=device)
        for method, fns in _variants(model, x, s):
            t = times(fns)
            others = [k for k in t if k != "camcli"] or [None]
            for other in others:
                theirs = f"{t[other]:.3f} ({other})" if other else "–"
                ratio = f"{t['camcli'] / t[other]:.2f}×" if other else "–"
                print(f"| {name} | {method} | {t['camcli']:.3f} | {theirs} | {ratio} |", flush=True)
    if memory_size is not None:
        bench_pixel_memory(where, device, memory_size)


#: the memory variants: (label, method, what it runs)
MEMORY = [
    ("ig camcli --score-batch 2", "ig", "camcli"),
    ("ig captum (no internal_batch_size)", "ig", "captum"),
    ("ig captum internal_batch_size=2", "ig", "captum-batched"),
    ("occlusion camcli --score-batch 16", "occlusion", "camcli"),
    ("occlusion captum (perturbations_per_eval=1)", "occlusion", "captum"),
    ("occlusion captum perturbations_per_eval=16", "occlusion", "captum-batched"),
]


def bench_pixel_memory(where: str, device: str = "cpu", size: int = 1024) -> None:
    steps, window = (50, 128) if device == "cuda" else (8, 256)
    model = "resnet50" if device == "cuda" else "resnet18"
    print(
        f"\n### Peak memory on a large input ({where}, {model}, one {size}×{size} image; ig {steps} steps, occlusion "
        f"window {window} stride {window // 2}; each variant in its own process)\n"
    )
    print("| variant | peak memory above the loaded model and input | time |")
    print("| --- | --- | --- |")
    for label, method, how in MEMORY:
        cmd = [sys.executable, __file__, "--one", method, how, "--device", device, "--memory-size", str(size)]
        cmd += ["--steps", str(steps), "--window", str(window), "--model", model]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        if done.returncode != 0:
            print(f"| {label} | failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:80]} | – |", flush=True)
            continue
        got = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {label} | {got['peak_mb']:.0f} MB | {got['seconds']:.1f} s |", flush=True)


def _one(method: str, how: str, device: str, size: int, steps: int, window: int, model_name: str) -> None:
    """Run one memory variant in this process and print {"peak_mb", "seconds"} as JSON."""
    from captum import attr

    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)(weights=None).eval().to(device)
    x = torch.randn(1, 3, size, size, device=device)
    batch = 2 if method == "ig" else 16
    params = MethodParams(steps=steps, window=window, stride=window // 2)
    classes = torch.zeros(1, 1, dtype=torch.long, device=device)
    occ = {"sliding_window_shapes": (3, window, window), "strides": (3, window // 2, window // 2), "target": 0}

    def ours(name: str) -> object:
        return explain(model, x, [], get_method(name), classes=classes, params=params, score_batch=batch)

    runs: dict[tuple[str, str], Callable[[], object]] = {
        ("ig", "camcli"): lambda: ours("ig"),
        ("ig", "captum"): lambda: attr.IntegratedGradients(model).attribute(x, target=0, n_steps=steps),
        ("ig", "captum-batched"): lambda: attr.IntegratedGradients(model).attribute(
            x, target=0, n_steps=steps, internal_batch_size=batch),
        ("occlusion", "camcli"): lambda: ours("occlusion"),
        ("occlusion", "captum"): lambda: attr.Occlusion(model).attribute(x, **occ),
        ("occlusion", "captum-batched"): lambda: attr.Occlusion(model).attribute(
            x, perturbations_per_eval=batch, **occ),
    }  # fmt: skip
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    t = time.perf_counter()
    runs[(method, how)]()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    print(json.dumps({"peak_mb": peak / 2**20, "seconds": time.perf_counter() - t}))


def _median_times(rounds: int, best: bool = False) -> Times:
    """Interleaved rounds after one warm-up call each; the median of each variant's times (``best``: the least,
    which a machine shared with other work disturbs less)."""

    def times(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
        for fn in fns.values():  # warm-up
            fn()
        out: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):
            for k, fn in fns.items():  # interleaved
                t = time.perf_counter()
                fn()
                out[k].append(time.perf_counter() - t)
        return {k: min(v) if best else statistics.median(v) for k, v in out.items()}

    return times


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory-size", type=int, default=1024)
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--time-only", action="store_true")
    ap.add_argument("--best", action="store_true", help="the least time of the rounds instead of the median")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "HOW"))  # a memory variant, in this process
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--model", default="resnet18")  # the memory variants' model
    ap.add_argument("--models", default="resnet18,resnet50")  # the time table's
    a = ap.parse_args()
    if a.one:
        _one(a.one[0], a.one[1], a.device, a.memory_size, a.steps, a.window, a.model)
    else:
        where = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        if a.memory_only:
            bench_pixel_memory(where, a.device, a.memory_size)
        else:
            memory = None if a.time_only else a.memory_size
            bench_pixel(_median_times(a.rounds, a.best), where, a.device, memory, tuple(a.models.split(",")))
