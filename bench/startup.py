"""Time to first result: whole-process wall time of one-shot camcli commands, paired with a floor script.

A floor script (``bench/floors/``) does the same work with the same libraries and nothing else: the fastest a
one-shot Python process can do it. Each pair runs alternately ``rounds`` times; medians and their ratio are
printed, then camcli's own phase breakdown (``CAMCLI_PROFILE=1``) of one more run of each command.

    python bench/bench.py --only startup
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = Path(__file__).resolve().parent / "floors"
IMAGE = ROOT / "sample_images" / "chelsea.png"


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr[-500:]}")
    return elapsed


def _checkpoint(folder: Path) -> Path:
    import torch
    import torchvision

    path = folder / "resnet18_state_dict.pt"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def bench_startup(rounds: int) -> None:
    exe = shutil.which("camcli") or str(Path(sys.executable).parent / "camcli")
    py = sys.executable
    out = ROOT / "bench_out" / "startup"
    ckpt = _checkpoint(ROOT / "bench_out")
    env = {**os.environ, "CAMCLI_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    image = str(IMAGE)
    pairs = [
        (
            "gradcam, bundled model, 1 image",
            [exe, "gradcam", image, "-q", "--out", str(out / "g")],
            [py, str(FLOORS / "bundled_top1.py"), image],
            1.25,
        ),
        (
            "gradcam, resnet18 --weights none, 1 image",
            [exe, "gradcam", image, "-q", "--model", "resnet18", "--weights", "none", "--out", str(out / "t")],
            [py, str(FLOORS / "torchvision_top1.py"), image, "resnet18"],
            1.25,
        ),
        ("layers, bundled model", [exe, "layers"], [py, str(FLOORS / "bundled_layers.py")], 1.5),
        (
            "features, bundled model, 1 image",
            [exe, "features", image, "-q", "--out", str(out / "f")],
            [py, str(FLOORS / "bundled_top1.py"), image],
            None,
        ),
        (
            "inspect, resnet18 state_dict",
            [exe, "inspect", str(ckpt)],
            [py, str(FLOORS / "inspect_checkpoint.py"), str(ckpt)],
            1.5,
        ),
    ]
    print(
        f"\n## Time to first result (whole process, wall, median of {rounds} alternating runs; floor = bench/floors/)\n"
    )
    print("| command | camcli s | floor s | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    for label, cmd, floor, goal in pairs:
        _wall(cmd, env)  # warm the file cache and camcli's own caches, as a second use would be
        _wall(floor, env)
        ours, base = [], []
        for _ in range(rounds):
            ours.append(_wall(cmd, env))
            base.append(_wall(floor, env))
        a, b = statistics.median(ours), statistics.median(base)
        print(f"| {label} | {a:.2f} | {b:.2f} | {a / b:.2f}× | {'' if goal is None else f'≤ {goal}×'} |", flush=True)
    print("\nPhases inside camcli (CAMCLI_PROFILE=1, one run each):")
    for label, cmd, _floor, _goal in pairs:
        res = subprocess.run(cmd, capture_output=True, text=True, env={**env, "CAMCLI_PROFILE": "1"})
        lines = [ln.removeprefix("profile: ") for ln in res.stderr.splitlines() if ln.startswith("profile: ")]
        print(f"- {label}: " + "; ".join(" ".join(ln.split()) for ln in lines))
