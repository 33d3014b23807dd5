"""CPU milliseconds per image for each stage of a CAM run, for an ImageNet-sized and a phone-sized JPEG.

    python bench/bench.py --only stages

Each stage is timed on its own (median of a few runs, CPU time of the whole process, so threads count), with
the bundled model, Grad-CAM, batch 8. Columns: the written format and the --max-size cap; the model's stage does
not depend on the picture's size (it sees 224×224), but the decode, the map's upsampling, the blend and the
encode do. Then whole runs over copies of each photo with --max-size 1024, timed by the wall clock.
"""

# ruff: noqa: B023  (each lambda is timed at once, inside the iteration that defines it)
from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from camcli import render
from camcli.io.decode import decode, fit_long_side
from camcli.io.formats import encode_picture
from camcli.io.outputs import atomic_write_bytes
from camcli.methods import explain, get_method, normalize, upsample, upsample_normalized
from camcli.models import load_bundled, preprocess

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"500×375": (500, 375), "4032×3024": (4032, 3024)}
COLUMNS = [("png", None), ("jpg", None), ("jpg", 1024)]


def _cpu_ms(fn: Callable[[], object], rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times) * 1000


def _photo(folder: Path, size: tuple[int, int]) -> Path:
    path = folder / f"photo-{size[0]}x{size[1]}.jpg"
    if not path.exists():
        im = Image.open(ROOT / "sample_images" / "chelsea.png").convert("RGB")
        im.resize(size, Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def bench_stages(rounds: int = 3) -> None:
    loaded = load_bundled()
    method = get_method("gradcam")
    folder = ROOT / "bench_out" / "stages"
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, float]] = {}
    headers = []
    for label, size in SIZES.items():
        path = _photo(folder, size)
        for fmt, cap in COLUMNS:
            head = f"{label} {fmt}" + (f" --max-size {cap}" if cap else "")
            headers.append(head)
            col: dict[str, float] = {}
            col["read"] = _cpu_ms(lambda: path.read_bytes(), rounds)
            h, w = loaded.input_size
            col["decode"] = _cpu_ms(lambda: decode(path, None, cap, (w, h)), rounds)
            full = decode(path, None, cap, (w, h))
            col["preprocess"] = _cpu_ms(lambda: preprocess(full, loaded), rounds)
            x = torch.stack([preprocess(full, loaded)] * 8).contiguous(memory_format=torch.channels_last)
            col["model (per image, batch 8)"] = _cpu_ms(lambda: explain(loaded.module, x, "_head_act", method), 2) / 8
            picture = fit_long_side(full, cap)
            if picture is not full:
                col["scale to --max-size"] = _cpu_ms(lambda: fit_long_side(full, cap), rounds)
            cam = explain(loaded.module, x[:1], "_head_act", method).by_method["gradcam"][0, 0]
            shape = (picture.height, picture.width)
            col["map (upsample, normalise)"] = _cpu_ms(lambda: upsample_normalized(cam, shape).numpy(), rounds)
            full_map = normalize(upsample(cam, shape)).numpy()
            col["render (colour, blend)"] = _cpu_ms(lambda: render.overlay(picture, full_map), rounds)
            overlay = render.overlay(picture, full_map)
            col["encode"] = _cpu_ms(lambda: encode_picture(overlay, fmt, 90, {"camcli-input": "x"}), rounds)
            data = encode_picture(overlay, fmt, 90, {"camcli-input": "x"})
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                col["write"] = _cpu_ms(lambda: atomic_write_bytes(Path(tmp) / f"o.{fmt}", data), rounds)
            col["total"] = sum(col.values())
            for stage, ms in col.items():
                rows.setdefault(stage, {})[head] = ms
    print(f"\n## CPU ms per image by stage (bundled model, Grad-CAM; median of {rounds}; process CPU time)\n")
    print("| stage | " + " | ".join(headers) + " |")
    print("| --- |" + " --- |" * len(headers))
    for stage, cols in rows.items():
        print(f"| {stage} | " + " | ".join(f"{cols[h]:.1f}" if h in cols else "-" for h in headers) + " |")


def bench_sizes_end_to_end(copies: int = 16, rounds: int = 2) -> None:
    """Wall seconds per image of whole runs (bundled model, batch 8, the default threads) over ``copies`` copies
    of the 500×375 JPEG and of the 4032×3024 JPEG, both with ``--max-size 1024`` (the small one is under it),
    alternating, best of ``rounds``: the issue's goal is at most 2× for the large photo."""
    import shutil

    from camcli.jobs.cam import explain_files
    from camcli.options import CamOptions

    loaded = load_bundled()
    root = ROOT / "bench_out" / "sizes"
    folders = {}
    for label, size in SIZES.items():
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        photo = _photo(root, size)
        for i in range(copies):
            if not (folder / f"{i:03d}.jpg").exists():
                shutil.copy(photo, folder / f"{i:03d}.jpg")
        folders[label] = folder
    head = f"{copies} copies of each photo, --max-size 1024 (bundled model, batch 8, best of {rounds})"
    print(f"\n## End to end, {head}")
    print()
    print("| format | " + " | ".join(f"{label} s/image" for label in SIZES) + " | ratio |")
    print("| --- |" + " --- |" * (len(SIZES) + 1))
    for fmt in ("png", "jpg"):
        best = dict.fromkeys(SIZES, float("inf"))
        for _ in range(rounds):
            for label, folder in folders.items():
                out = root / f"out-{label}"
                shutil.rmtree(out, ignore_errors=True)
                opts = CamOptions(out=out, batch_size=8, device="cpu", format=fmt, max_size=1024)
                t = time.perf_counter()
                done = sum(r.ok for r in explain_files([str(folder)], opts, model=loaded))
                assert done == copies
                best[label] = min(best[label], (time.perf_counter() - t) / copies)
        small, large = best.values()
        print(f"| {fmt} | {small:.4f} | {large:.4f} | {large / small:.2f}× |", flush=True)


if __name__ == "__main__":
    bench_stages()
    bench_sizes_end_to_end()
