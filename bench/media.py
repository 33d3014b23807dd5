"""`make bench` section: videos and volumes end to end (``camcli gradcam clip.mp4`` / ``scan.nii.gz`` through the
Python API, in-process: decode, preprocess, the class chosen, the maps, the overlay video and contact sheet or the
NIfTI map and montage written) against the model's no-grad forward alone on the same inputs. Random weights,
nothing downloaded; the media are generated (:func:`make_media`).

* a clip of 96 frames, 320×240 at 24 fps, with the bundled picture model (efficientnet_lite0, 224×224): frames/s
  end to end vs the forward's frames/s on the same frames preprocessed, in batches of 8 (the job's batch), in
  both memory layouts (the picture runner feeds the CPU channels-last; the ratio is taken to the faster one);
* the same clip with torchvision's r3d_18 (``--weights none``): 6 clips of 16 frames at 112×112, batches of 8
  clips, frames/s end to end vs the forward alone on the same clips (NCDHW and channels-last-3d);
* a 96×96×96 NIfTI scan with examples/net3d.py's Net3d (random weights) and MONAI's 3-D DenseNet121 (its initial
  weights), ``--input-size 96,96,96``: seconds end to end vs the forward alone on one volume.

Each end-to-end and forward call alternates with the others (the bench's ``times``: median of interleaved rounds).
The parts of one more end-to-end run are timed by wrapping camcli.jobs.media's functions (the rest: the job's
set-up, layer checks, the manifest).

    PYTHONPATH=src python bench/media.py [ROUNDS]     # this section alone (default 3 rounds)
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

Times = Callable[[dict[str, Callable[[], object]]], dict[str, float]]

FRAMES, WIDTH, HEIGHT, FPS = 96, 320, 240, 24
SIDE = 96  # the scan's voxels along each axis
BATCH = 8  # the job's default --batch-size: frames (picture model) or clips (video classifier) per forward
DENSENET_ARGS = '{"spatial_dims": 3, "in_channels": 1, "out_channels": 2}'


def make_media(folder: Path) -> tuple[Path, Path, Path]:
    """clip.mp4 (the sample cat panning across a grey frame), scan.nii.gz (noise and a bright blob, 1 mm voxels)
    and net3d.pt (examples/net3d.py's Net3d, seeded random weights); made once per folder."""
    import nibabel as nib
    from PIL import Image

    from camcli.io.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    clip, scan, net = folder / "clip.mp4", folder / "scan.nii.gz", folder / "net3d.pt"
    if not clip.exists():
        cat = np.asarray(Image.open(ROOT / "sample_images" / "chelsea.png").convert("RGB").resize((240, 180)))
        frames = np.full((FRAMES, HEIGHT, WIDTH, 3), 40, np.uint8)
        for t in range(FRAMES):
            x = round(t * (WIDTH - 240) / (FRAMES - 1))
            frames[t, 30:210, x : x + 240] = cat
        write_video(clip, frames, FPS)
    if not scan.exists():
        rng = np.random.default_rng(0)
        d, h, w = np.mgrid[0:SIDE, 0:SIDE, 0:SIDE]
        data = 100 + 10 * rng.standard_normal((SIDE, SIDE, SIDE))
        data += 800 * np.exp(-((d - 30) ** 2 + (h - 60) ** 2 + (w - 50) ** 2) / (2 * 6.0**2))
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), str(scan))
    if not net.exists():
        sys.path.insert(0, str(ROOT / "examples"))
        from net3d import Net3d

        torch.manual_seed(0)
        torch.save(Net3d().state_dict(), net)
    return clip, scan, net


@contextlib.contextmanager
def clocked(module: Any, names: list[str]) -> Iterator[dict[str, float]]:
    """Seconds spent in each of ``module``'s functions ``names`` while inside (wrapped, then put back)."""
    spent = dict.fromkeys(names, 0.0)
    real = {n: getattr(module, n) for n in names}

    def wrap(name: str) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return real[name](*a, **k)
            finally:
                spent[name] += time.perf_counter() - start

        return timed

    for n in names:
        setattr(module, n, wrap(n))
    try:
        yield spent
    finally:
        for n, fn in real.items():
            setattr(module, n, fn)


def _run(path: Path, out: Path, model: Any, **options: Any) -> Callable[[], object]:
    """One end-to-end `camcli gradcam PATH` (its outputs removed first); raises if the input failed."""
    from camcli.jobs.api import explain_files
    from camcli.options import CamOptions

    def run() -> object:
        shutil.rmtree(out, ignore_errors=True)
        opts = CamOptions(out=out, device="cpu", batch_size=BATCH, **options)
        (result,) = explain_files([str(path)], opts, model=model)
        if not result.ok:
            raise RuntimeError(f"{path}: {result.error}")
        return result

    return run


def _forward(model: torch.nn.Module, batches: list[torch.Tensor]) -> Callable[[], object]:
    def forward() -> object:
        with torch.no_grad():
            return [model(b) for b in batches]

    return forward


def _video_inputs(clip: Path, loaded: Any) -> torch.Tensor:
    """The clip's frames as the job preprocesses them, (T, 3, H, W)."""
    from PIL import Image

    from camcli.io.video import read_video
    from camcli.models import preprocess

    frames = read_video(clip).frames
    return torch.stack([preprocess(Image.fromarray(f), loaded) for f in frames])


def _clips(inputs: torch.Tensor, length: int) -> torch.Tensor:
    """(N, 3, L, H, W) clips of ``length`` frames as the job cuts them (the last padded with its last frame)."""
    out = []
    for i in range(0, len(inputs), length):
        c = inputs[i : i + length]
        if c.shape[0] < length:
            c = torch.cat([c, c[-1:].expand(length - c.shape[0], *c.shape[1:])])
        out.append(c.transpose(0, 1))
    return torch.stack(out)


def _parts(spent: dict[str, float], total: float, labels: dict[str, str]) -> str:
    cells = [f"{labels[k]} {v:.2f}" for k, v in spent.items() if k in labels]
    return ", ".join(cells) + f", rest {total - sum(spent[k] for k in labels):.2f} (of {total:.2f} s)"


def _video_parts(run: Callable[[], object], classifier: bool) -> str:
    import camcli.jobs.media as job

    explain = "_video_clips" if classifier else "_video_frames"
    names = ["read_video", "preprocess", explain, "_write_video"]
    with clocked(job, names) as spent:
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    labels = {"read_video": "decode", "preprocess": "preprocess", explain: "explain (one pass, rows of another "
              "class again)", "_write_video": "overlays + video + sheet"}  # fmt: skip
    return _parts(spent, total, labels)


def _volume_parts(run: Callable[[], object]) -> str:
    import camcli.jobs.media as job

    names = ["volume_input", "explain_volume", "upsample_volume", "_write_volume"]
    with clocked(job, names) as spent:
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    labels = {"volume_input": "read + scale + resize", "explain_volume": "explain",
              "upsample_volume": "map to scan", "_write_volume": "NIfTI + montage"}  # fmt: skip
    return _parts(spent, total, labels)


def bench_media(times: Times, where: str) -> None:
    from camcli.models import load_bundled, load_model

    folder = ROOT / "bench_out" / f"media-{FRAMES}x{WIDTH}x{HEIGHT}-{SIDE}"  # made once per size
    clip, scan, net = make_media(folder)
    out = folder / "out"
    print(f"\n## Videos and volumes end to end vs the model's forward alone ({where}, random weights)\n")
    print(f"Video: {FRAMES} frames {WIDTH}×{HEIGHT} at {FPS} fps, every frame explained (gradcam, default layer); "
          f"batches of {BATCH} (frames or clips).\n")  # fmt: skip
    print("| model | forward frames/s NCHW | forward frames/s channels-last | end to end frames/s | "
          "÷ best forward | parts of one run (s) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    torch.manual_seed(0)
    lite = load_bundled()
    inputs = _video_inputs(clip, lite)
    batches = [inputs[i : i + BATCH] for i in range(0, len(inputs), BATCH)]
    cl = [b.contiguous(memory_format=torch.channels_last) for b in batches]
    run = _run(clip, out, lite)
    t = times({"nchw": _forward(lite.module, batches), "cl": _forward(lite.module, cl), "e2e": run})
    best = min(t["nchw"], t["cl"])
    print(f"| {lite.name} ({lite.input_size[0]}×{lite.input_size[1]}) | {FRAMES / t['nchw']:.1f} | "
          f"{FRAMES / t['cl']:.1f} | {FRAMES / t['e2e']:.1f} | {best / t['e2e']:.2f}× | "
          f"{_video_parts(run, False)} |", flush=True)  # fmt: skip
    del inputs, batches, cl

    r3d = load_model("r3d_18", "none")
    length = r3d.clip_length or 16
    clips = _clips(_video_inputs(clip, r3d), length)
    clip_batches = [clips[i : i + BATCH] for i in range(0, len(clips), BATCH)]
    run = _run(clip, out, r3d)
    cl = [b.contiguous(memory_format=torch.channels_last_3d) for b in clip_batches]
    t = times({"nchw": _forward(r3d.module, clip_batches), "cl": _forward(r3d.module, cl), "e2e": run})
    best = min(t["nchw"], t["cl"])
    shape = "×".join(str(s) for s in clips.shape[2:])
    print(f"| r3d_18 ({len(clips)} clips of {shape}) | {FRAMES / t['nchw']:.1f} | {FRAMES / t['cl']:.1f} (3-D) | "
          f"{FRAMES / t['e2e']:.1f} | {best / t['e2e']:.2f}× | {_video_parts(run, True)} |", flush=True)  # fmt: skip
    del clips, clip_batches, cl

    print(f"\nVolume: a {SIDE}×{SIDE}×{SIDE} NIfTI scan (float32, gzip), gradcam at the default layer, "
          f"--input-size {SIDE},{SIDE},{SIDE}.\n")  # fmt: skip
    print("| model | forward s | end to end s | ÷ forward | parts of one run (s) |")
    print("| --- | --- | --- | --- | --- |")
    size = f"{SIDE},{SIDE},{SIDE}"
    arch = f"{ROOT / 'examples' / 'net3d.py'}:Net3d"
    volumes = [
        ("Net3d (examples/net3d.py)", load_model(str(net), arch=arch, input_size=size)),
        ("monai:DenseNet121 (3-D)", load_model("monai:DenseNet121", "none", arch_args=DENSENET_ARGS, input_size=size)),
    ]
    x = torch.randn(1, 1, SIDE, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    for label, loaded in volumes:
        run = _run(scan, out, loaded)
        t = times({"fwd": _forward(loaded.module, [x]), "e2e": run})
        print(f"| {label} | {t['fwd']:.3f} | {t['e2e']:.3f} | {t['e2e'] / t['fwd']:.2f}× | {_volume_parts(run)} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import _where, median_times

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    bench_media(lambda fns: median_times(fns, rounds, warmup=1, pre_call=False), _where())
