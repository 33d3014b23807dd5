"""`make bench` section (issue 29): images per second through :class:`camcli.Explainer` under Ray Data
(``read_binary_files`` → ``map_batches(Explainer)`` → ``write_parquet``) against ``camcli gradcam`` on the same
folder (the sample pictures, ``COPIES`` copies of each), both end to end: the CLI as a fresh process (start-up and
model loading included), the Ray pipeline on a running local cluster (its workers start and load the model in
the run). Runs alternate; the best of each is reported. The bundled model, on the CPU, one output folder per run.

    PYTHONPATH=src python bench/engine.py [COPIES]     # this section alone (default 24 copies: 72 pictures)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

NAMES = ("astronaut.png", "chelsea.png", "coffee.png")


def make_folder(folder: Path, copies: int) -> list[Path]:
    """``copies`` copies of each sample picture in ``folder`` (made once)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for name in NAMES:
            if not (folder / f"{k:03d}-{name}").exists():
                shutil.copy(ROOT / "sample_images" / name, folder / f"{k:03d}-{name}")
    return sorted(folder.glob("*.png"))


def _cli(folder: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "camcli", "gradcam", str(folder), "--out", str(out), "-q"]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return time.perf_counter() - t


def _ray(ray_data, folder: Path, out: Path, workers: int, cpus: float) -> float:
    from camcli import CamOptions, Explainer

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    ds = ray_data.read_binary_files(str(folder), include_paths=True)
    rows = ds.map_batches(
        Explainer,
        fn_constructor_kwargs={"options": CamOptions(out=out), "root": str(folder)},
        concurrency=workers,
        num_cpus=cpus,
        batch_size=8,
    )
    rows.write_parquet(str(out / "rows"))
    return time.perf_counter() - t


def bench_engine(where: str, copies: int = 24, rounds: int = 2) -> None:
    try:
        import ray
    except ImportError:
        print("\n## camcli.Explainer under Ray Data: skipped (pip install 'camcli[ray]')")
        return
    base = ROOT / "bench_out"
    files = make_folder(base / f"engine{copies}", copies)
    n, cores = len(files), os.cpu_count() or 2
    ray.init(
        num_cpus=cores,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src")}},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    # one worker with a CPU (Ray gives it one torch thread); a worker per core, sharing all but the one CPU that
    # Ray Data's read tasks need (with less left for them, the pipeline waits for ever)
    variants = {"Ray, 1 worker": (1, 1.0)}
    if cores >= 2:
        variants[f"Ray, {cores} workers"] = (cores, (cores - 1) / cores)
    best = dict.fromkeys(["CLI", *variants], float("inf"))
    try:
        for _ in range(rounds):
            best["CLI"] = min(best["CLI"], _cli(base / f"engine{copies}", base / "engine-cli"))
            for label, (workers, cpus) in variants.items():
                took = _ray(ray.data, base / f"engine{copies}", base / "engine-ray", workers, cpus)
                best[label] = min(best[label], took)
    finally:
        ray.shutdown()
    print(f"\n## camcli.Explainer under Ray Data vs the CLI ({n} pictures, {where}, best of {rounds} runs each)\n")
    print("| run | seconds | images/s | ÷ CLI's images/s |")
    print("| --- | --- | --- | --- |")
    for label, took in best.items():
        print(f"| {label} | {took:.1f} | {n / took:.1f} | {best['CLI'] / took:.2f}× |")


if __name__ == "__main__":
    import torch

    bench_engine(f"CPU, {torch.get_num_threads()} threads", int(sys.argv[1]) if len(sys.argv) > 1 else 24)
