"""camcli benchmark: ratios measured side by side in one run (absolute times on a shared machine move).

    make bench                      # everything
    python bench/bench.py --quick   # fewer rounds

Per model (random weights for torchvision models, so nothing downloads; timing does not depend on weights):
the median time of a no-grad forward of a batch, and of camcli / pytorch-grad-cam / torchcam Grad-CAM
(forward + map at the model's input size) on the same batch, run interleaved round by round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what `camcli` sets for itself before torch loads

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from camcli.methods import explain, get_method, upsample  # noqa: E402
from camcli.models import load_bundled  # noqa: E402

DEVICE = torch.device("cpu")  # --device: where the models run and the tensors live


def _sync() -> None:
    """Wait for queued GPU work, so that a timer measures it (CUDA calls return before the work is done)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _where() -> str:
    if DEVICE.type == "cuda":
        return f"{torch.cuda.get_device_name(DEVICE)}"
    return f"CPU, {torch.get_num_threads()} threads"


def median_times(
    fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2, pre_call: bool = True
) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():  # interleaved: every variant sees the same machine state
            # one untimed call first: freeing the previous variant's autograd graph makes the allocator hand
            # memory back, and the next call (whichever it is) pays page faults for it (measured: up to 2.7×)
            if pre_call:
                fn()
            _sync()
            t = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def models() -> list[tuple[str, torch.nn.Module, str, tuple[int, int]]]:
    import torchvision

    torch.manual_seed(0)
    lite = load_bundled()
    return [
        ("resnet50", torchvision.models.resnet50(weights=None).eval().to(DEVICE), "layer4", (224, 224)),
        ("resnet18", torchvision.models.resnet18(weights=None).eval().to(DEVICE), "layer4", (224, 224)),
        ("efficientnet_lite0", lite.module.eval().to(DEVICE), "_head_act", lite.input_size),
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
    print(
        f"\n## Grad-CAM cost vs a no-grad forward ({_where()}, batch {batch}, median of {rounds} interleaved rounds)\n"
    )
    print(f"| model | layer | forward ms/img | {'camcli':>8} | pytorch-grad-cam | torchcam |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, model, layer, size in models():
        x = torch.randn(batch, 3, *size, device=DEVICE)
        fns = gradcam_variants(model, layer, x)
        t = median_times(fns, rounds)
        fwd = t["forward (no grad)"]
        cells = [f"{t[k] / fwd:.2f}×" if k in t else "n/a" for k in ("camcli", "pytorch-grad-cam", "torchcam")]
        print(f"| {name} | {layer} | {fwd / batch * 1000:.1f} | " + " | ".join(cells) + " |", flush=True)


METHODS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam"]
PGC_NAMES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}
TC_NAMES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMpp",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}


def _sample_batch(size: tuple[int, int], batch: int, model: Any) -> torch.Tensor:
    """Real photos (the sample images, mirrored/cropped for variety), preprocessed for ``model``."""
    from PIL import Image, ImageOps

    from camcli.models import preprocess

    pics = [Image.open(p).convert("RGB") for p in sorted((ROOT / "sample_images").glob("*.png"))]
    out = []
    for i in range(batch):
        im = pics[i % len(pics)]
        if i // len(pics) % 2:
            im = ImageOps.mirror(im)
        out.append(preprocess(im, model))
    return torch.stack(out)


def bench_methods(rounds: int, batch: int, full: bool, only: list[str] | None = None) -> None:
    """Per method and model: seconds per image and the ratio to a no-grad forward, next to the peers."""
    import pytorch_grad_cam as pgc

    try:
        import torchcam.methods as tcm
    except ImportError:
        tcm = None
    from camcli.models import LoadedModel, load_bundled

    print(
        f"\n## Methods: time per image and ratio to a no-grad forward ({_where()}, real photos; gradient methods batch "
        f"{batch}, scorecam batch 1; median of {rounds} rounds, each variant warmed up before it is timed)\n"
    )
    print("| model | method | camcli ms/img | ×fwd | pytorch-grad-cam ms/img | ×fwd | torchcam ms/img | ×fwd |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    import torchvision

    lite = load_bundled()
    specs = [
        ("resnet18", torchvision.models.resnet18(weights=None).eval().to(DEVICE), "layer4"),
        ("resnet50", torchvision.models.resnet50(weights=None).eval().to(DEVICE), "layer4"),
        ("efficientnet_lite0", lite.module.eval().to(DEVICE), "_head_act"),
    ]
    for name, model, layer in specs:
        loaded = lite if name == "efficientnet_lite0" else LoadedModel(name, model)
        module = dict(model.named_modules())[layer]
        for method in only or METHODS:
            if method == "scorecam" and name == "resnet50" and not full:
                print(
                    f"| {name} | scorecam | (skipped: 2048 masked forwards per image; run with --full) | | | | | |",
                    flush=True,
                )
                continue
            b = 1 if method == "scorecam" else batch
            x = _sample_batch(loaded.input_size, b, loaded).to(DEVICE)
            m = get_method(method)
            fns: dict[str, Callable[[], object]] = {}

            def forward(x: torch.Tensor = x, model: torch.nn.Module = model) -> object:
                with torch.no_grad():
                    return model(x)

            fns["fwd"] = forward
            fns["camcli"] = lambda m=m, x=x, model=model, layer=layer: explain(model, x, layer, m, top_k=1)
            cam = getattr(pgc, PGC_NAMES[method])(model=model, target_layers=[module])
            cam.batch_size = 32
            fns["pgc"] = lambda cam=cam, x=x: cam(input_tensor=x, targets=None)
            if tcm is not None and method in TC_NAMES:
                tc = getattr(tcm, TC_NAMES[method])(model, layer, input_shape=tuple(x.shape[1:]))

                def run_tc(
                    tc: Any = tc, x: torch.Tensor = x, method: str = method, model: torch.nn.Module = model
                ) -> object:
                    if method == "scorecam":
                        with torch.no_grad():
                            scores = model(x)
                        return tc(class_idx=scores.argmax(1).tolist(), scores=scores)
                    with torch.enable_grad():
                        scores = model(x)
                        return tc(class_idx=scores.argmax(1).tolist(), scores=scores)

                fns["torchcam"] = run_tc
            r = rounds if method != "scorecam" else 1
            slow = method == "scorecam"  # minutes per call: one timed call each, no warm-up
            t = median_times(fns, r, warmup=0 if slow else 2, pre_call=not slow)
            fwd = t["fwd"]
            cells = []
            for k in ("camcli", "pgc", "torchcam"):
                cells += [f"{t[k] / b * 1000:.0f}", f"{t[k] / fwd:.2f}×"] if k in t else ["n/a", ""]
            print(f"| {name} | {method} | " + " | ".join(cells) + " |", flush=True)
            if hasattr(cam, "activations_and_grads"):
                cam.activations_and_grads.release()
            if tcm is not None and method in TC_NAMES:
                tc.remove_hooks()


def _make_photos(folder: Path, n: int) -> Path:
    """``n`` photos of mixed sizes (crops/rescales/mirrors of the sample images) as JPEG and PNG."""
    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    pics = [Image.open(p).convert("RGB") for p in sorted((ROOT / "sample_images").glob("*.png"))]
    for i in range(n):
        target = folder / f"sub{i % 4}" / f"photo{i:04d}.{'jpg' if i % 3 else 'png'}"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        im = pics[i % len(pics)]
        scale = 0.6 + (i % 7) * 0.15
        im = im.resize((int(im.width * scale), int(im.height * scale)))
        if i % 2:
            im = ImageOps.mirror(im)
        im.save(target, quality=90)
    return folder


def bench_pipeline(n: int, rounds: int = 2, batch: int = 8) -> None:
    """End-to-end images/s (decode → CAM → overlay → picture written) vs the model's no-grad forward throughput on
    the same preprocessed batches, in both memory layouts (camcli feeds the model channels-last on the CPU, so
    the ratio is taken to the faster forward). Forward and end-to-end alternate ``rounds`` times; the best of
    each is reported (the machine is shared: the best run is the one least disturbed). With ``--device cuda``
    it also runs the JPEG output with the JPEG inputs decoded by Pillow instead of nvjpeg, with the overlays
    also drawn on the CPU, and with 4 and 8 decode/write threads instead of the default; on the CPU, with 1
    and 4 threads."""
    from PIL import Image

    from camcli.jobs.cam import CamJob, explain_files
    from camcli.jobs.runner import default_workers
    from camcli.models import load_bundled, load_torchvision, preprocess
    from camcli.options import Options

    photos = _make_photos(ROOT / "bench_out" / f"photos{n}", n)
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    # label → (format, workers, overlays drawn on the GPU, JPEG inputs decoded there)
    variants: dict[str, tuple[str, int | None, bool, bool]] = {
        "png": ("png", None, True, True),
        "jpg": ("jpg", None, True, True),
    }
    if DEVICE.type == "cuda":
        variants |= {"jpg, CPU decoding": ("jpg", None, True, False), "jpg, CPU drawing": ("jpg", None, False, False)}
        variants |= {"jpg, 4 thr": ("jpg", 4, True, True), "jpg, 8 thr": ("jpg", 8, True, True)}
    else:  # fewer and more threads than the default, beside the model's own
        variants |= {"jpg, 1 thr": ("jpg", 1, True, True), "jpg, 4 thr": ("jpg", 4, True, True)}
    print(
        f"\n## End-to-end pipeline vs forward-only throughput ({n} mixed-size photos, {_where()}, batch {batch}, "
        f"{default_workers(DEVICE)} decode/write threads unless said, best of {rounds} alternating runs each)\n"
    )
    print(
        "| model | forward img/s NCHW | forward img/s channels-last | "
        + " | ".join(f"{v} img/s | ratio" for v in variants)
        + " |"
    )
    print("| --- | --- | --- |" + " --- | --- |" * len(variants))
    for name in ("resnet18", "resnet50", "efficientnet_lite0"):
        loaded = load_bundled() if name == "efficientnet_lite0" else load_torchvision(name, "none")
        model = loaded.module.to(DEVICE)
        xs = [preprocess(Image.open(f).convert("RGB"), loaded) for f in files]
        batches = [torch.stack(xs[i : i + batch]).to(DEVICE) for i in range(0, len(xs), batch)]
        cl_batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
        del xs
        with torch.no_grad():
            model(batches[0])
            model(cl_batches[0])
        fwd = {"nchw": 0.0, "cl": 0.0}
        e2e = dict.fromkeys(variants, 0.0)
        for _ in range(rounds):
            for key, bs in (("nchw", batches), ("cl", cl_batches)):
                t = time.perf_counter()
                with torch.no_grad():
                    for b in bs:
                        model(b)
                _sync()
                fwd[key] = max(fwd[key], n / (time.perf_counter() - t))
            for label, (fmt, workers, gpu_render, gpu_decode) in variants.items():
                out = ROOT / "bench_out" / f"cams-{name}"
                shutil.rmtree(out, ignore_errors=True)
                CamJob.gpu_render, CamJob.gpu_decode = gpu_render, gpu_decode
                t = time.perf_counter()
                opts = Options(out=out, batch_size=batch, device=str(DEVICE), format=fmt, workers=workers)
                done = sum(r.ok for r in explain_files([str(photos)], opts, model=loaded))
                e2e[label] = max(e2e[label], done / (time.perf_counter() - t))
                CamJob.gpu_render = CamJob.gpu_decode = True
        best = max(fwd.values())
        ratios = " | ".join(f"{e2e[v]:.1f} | {e2e[v] / best:.2f}×" for v in variants)
        print(f"| {name} | {fwd['nchw']:.1f} | {fwd['cl']:.1f} | {ratios} |", flush=True)


def bench_metrics(rounds: int, batch: int) -> None:
    """`camcli evaluate`'s metrics beside the peers' on the same maps and tensors: deletion + insertion and
    Average Drop / Increase beside torchcam, ROAD (4 percentages, MoRF and LeRF) beside pytorch-grad-cam."""
    import contextlib
    from functools import partial

    import torchvision

    from camcli.metrics import deletion_insertion, drop_increase, road
    from camcli.models import LoadedModel

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(DEVICE)
    loaded = LoadedModel("resnet18", model)
    x = _sample_batch(loaded.input_size, batch, loaded).to(DEVICE)
    ex = explain(model, x, "layer4", get_method("gradcam"))
    maps = torch.stack([upsample(m, tuple(x.shape[-2:])) for m in ex.maps[:, 0]]).to(DEVICE)  # type: ignore[arg-type]
    classes = ex.classes[:, 0].to(DEVICE)
    fns: dict[str, Callable[[], object]] = {
        "forward": lambda: model(x),
        "camcli deletion+insertion": lambda: deletion_insertion(
            model, x, maps, classes, steps=32, insertion_baseline="zero", chunk=batch
        ),
        "camcli drop/increase": lambda: drop_increase(model, x, maps, classes, batch),
        "camcli ROAD": lambda: road(model, x, maps, classes, (20, 40, 60, 80), chunk=batch),
    }

    class Given:  # a torchcam extractor that hands out the maps above
        def __init__(self) -> None:
            self.model = model

        def __call__(self, *a: object, **k: object) -> list[torch.Tensor]:
            return [maps]

        def fuse_cams(self, cams: list[torch.Tensor]) -> torch.Tensor:
            return cams[0]

        @contextlib.contextmanager
        def _hooks_off(self) -> Any:
            yield

    try:
        import torchcam.metrics as tcm

        softmax = partial(torch.softmax, dim=-1)

        def tc_delins() -> object:
            m = tcm.DeletionInsertionMetric(Given(), softmax, steps=32, batch_size=batch)
            m.update(x, class_idx=classes.tolist())
            return m.summary()

        def tc_drop() -> object:
            m = tcm.ClassificationMetric(Given(), softmax)
            m.update(x, class_idx=classes.tolist())
            return m.summary()

        if hasattr(tcm, "DeletionInsertionMetric"):
            fns["torchcam deletion+insertion"] = tc_delins
        fns["torchcam drop/increase"] = tc_drop
    except ImportError:
        pass
    try:
        from pytorch_grad_cam.metrics.road import ROADCombined
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

        targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
        cams = maps.cpu().numpy()
        combined = ROADCombined(percentiles=[20, 40, 60, 80])
        fns["pytorch-grad-cam ROAD"] = lambda: combined(x, cams, targets, model)
    except ImportError:
        pass
    with torch.no_grad():
        t = median_times(fns, rounds, warmup=1, pre_call=False)
    print(
        f"\n## evaluate's metrics beside the peers ({_where()}, resnet18, batch {batch}, real photos, "
        f"median of {rounds})\n"
    )
    print("| metric | camcli ms/img | peer | peer ms/img | camcli / peer |")
    print("| --- | --- | --- | --- | --- |")
    for ours, peer, name in (
        ("camcli deletion+insertion", "torchcam deletion+insertion", "deletion + insertion (32 steps)"),
        ("camcli drop/increase", "torchcam drop/increase", "Average Drop / Increase"),
        ("camcli ROAD", "pytorch-grad-cam ROAD", "ROAD, 4 percentages × MoRF/LeRF"),
    ):
        who = peer.split(" ")[0]
        if peer in t:
            print(
                f"| {name} | {t[ours] / batch * 1000:.0f} | {who} | {t[peer] / batch * 1000:.0f} | "
                f"{t[ours] / t[peer]:.2f}× |"
            )
        else:
            print(f"| {name} | {t[ours] / batch * 1000:.0f} | {who} | n/a | |")
    print(f"\n(a no-grad forward of the batch: {t['forward'] / batch * 1000:.1f} ms/img)")


def bench_report(n: int) -> None:
    """`camcli report` on a folder of ``n`` inputs with one overlay each (hard links of a few real files): the
    first build (thumbnails and viewing copies made) and a rebuild (reused), and, with Chromium, the time from
    opening the page to the first cards shown."""
    import json as _json

    from camcli.report import build_report

    base = ROOT / "bench_out" / f"report{n}"
    shutil.rmtree(base, ignore_errors=True)
    src, out = base / "in", base / "out"
    src.mkdir(parents=True)
    out.mkdir()
    from PIL import Image

    photos = []
    for p in sorted((ROOT / "sample_images").glob("*.png")):
        im = Image.open(p).convert("RGB")
        im.thumbnail((500, 375))
        photos.append(base / f"{p.stem}.jpg")
        im.save(photos[-1], quality=90)
    overlays = []  # one overlay per photo, at its size (as a run writes them)
    for k, photo in enumerate(photos):
        overlays.append(out / f"overlay{k}.png")
        Image.open(ROOT / "docs" / "chelsea.gradcam.png").convert("RGB").resize(Image.open(photo).size).save(
            overlays[k]
        )
    from camcli.io.inputs import content_digest

    digests = {p: content_digest(p) for p in photos}  # as a run records it: the report copies only these inputs
    lines = []
    for i in range(n):
        photo = src / f"{i:05d}.jpg"
        os.link(photos[i % len(photos)], photo)
        ov = out / f"{i:05d}.jpg.gradcam.285-Egyptian_cat.png"
        os.link(overlays[i % len(photos)], ov)
        top = [{"index": 285, "name": "Egyptian cat", "probability": 0.5 + (i % 50) / 100}]
        rec = {"input": str(photo), "kind": "cam", "model": "m", "layer": "l", "settings": {}, "method": "gradcam",
               "status": "ok", "class_index": 285, "class_name": "Egyptian cat", "probability": top[0]["probability"],
               "top_k": top, "outputs": {"overlay": str(ov)},
               "input_sha256": digests[photos[i % len(photos)]]}  # fmt: skip
        lines.append(_json.dumps(rec))
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    cold = build_report(out)  # a folder from runs without --report: the build makes every picture
    shutil.rmtree(out / "report")
    # a run with --report makes each input's pictures while the picture is decoded: the same work, per image
    from camcli.io.thumbs import save_input_pictures

    decoded = {p: Image.open(p).convert("RGB") for p in photos}
    t = time.perf_counter()
    for i in range(n):  # the input's thumbnail and view, and the card's thumbnail of its first overlay
        k = i % len(photos)
        ov = out / f"{i:05d}.jpg.gradcam.285-Egyptian_cat.png"
        save_input_pictures(src / f"{i:05d}.jpg", decoded[photos[k]], out, ov)
    in_run = (time.perf_counter() - t) / n
    after_run = build_report(out)
    again = build_report(out)
    print(f"\n## `camcli report` of {n} inputs ({os.cpu_count()} CPUs)\n")
    print(f"build of a folder from runs without --report (every thumbnail and viewing copy made): {cold.seconds:.1f} s")
    print(
        f"what --report adds to a run: {in_run * 1000:.1f} ms per image (thumbnail + viewing copy, in a writer thread)"
    )
    print(f"build after a run with --report: {after_run.seconds:.1f} s; rebuild: {again.seconds:.1f} s (target < 10 s)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("first view: n/a (no chromium)")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        t = time.perf_counter()
        page.goto((out / "index.html").resolve().as_uri())
        page.wait_for_selector(".card")
        shown = time.perf_counter() - t
        page.fill("#q", "00042")
        page.wait_for_function("document.querySelectorAll('.card').length === 1")
        filtered = time.perf_counter() - t - shown
        browser.close()
    print(f"first view: cards shown {shown * 1000:.0f} ms after opening (target < 1 s); a text filter over all "
          f"{n}: {filtered * 1000:.0f} ms")  # fmt: skip


_PEAK_WRAPPER = """
import sys
from camcli.cli import main
try:
    main()
except SystemExit:
    pass
finally:
    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
    sys.stderr.write(f'VmHWM_KB={peak}\\n')
"""


def bench_memory(sizes: tuple[int, ...]) -> None:
    """Peak RSS (VmHWM, read by the process itself at exit: a fork's ru_maxrss would include this bench's own
    memory) of `camcli gradcam FOLDER --model resnet18 --weights none` for folders of different sizes."""
    print("\n## Peak RSS of `camcli gradcam FOLDER --model resnet18 --weights none` (whole process, VmHWM)\n")
    print("| images | peak RSS MiB | wall s |")
    print("| --- | --- | --- |")
    peaks = []
    for n in sizes:
        photos = _make_photos(ROOT / "bench_out" / f"photos{n}", n)
        out = ROOT / "bench_out" / f"rss{n}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        argv = [
            "camcli",
            "gradcam",
            str(photos),
            "--model",
            "resnet18",
            "--weights",
            "none",
            "--out",
            str(out),
            "-q",
            "--device",
            "cpu",
        ]
        proc = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.argv = {argv!r}\n" + _PEAK_WRAPPER], capture_output=True, text=True
        )
        line = [x for x in proc.stderr.splitlines() if x.startswith("VmHWM_KB=")]
        peak = int(line[-1].split("=")[1]) / 1024 if line else float("nan")
        peaks.append(peak)
        print(f"| {n} | {peak:.0f} | {time.perf_counter() - t:.1f} |", flush=True)
    base = _bare_forward_peak()
    print(f"\npeak RSS ratio {sizes[-1]} vs {sizes[0]} images: {peaks[-1] / peaks[0]:.3f} (target within 1.10)")
    print(
        f"bare `import torch` + resnet18 + a no-grad forward of a batch of 8 at 224×224: {base:.0f} MiB; "
        f"camcli's peak is {max(peaks) - base:+.0f} MiB from it (target within 150)"
    )


_BARE_FORWARD = """
import torch, torchvision
model = torchvision.models.resnet18(weights=None).eval()
with torch.no_grad():
    model(torch.randn(8, 3, 224, 224).contiguous(memory_format=torch.channels_last))
peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(f'VmHWM_KB={peak}')
"""


def _bare_forward_peak() -> float:
    """Peak RSS (MiB) of a process that only imports torch and runs the model once (the issue's reference)."""
    proc = subprocess.run([sys.executable, "-c", _BARE_FORWARD], capture_output=True, text=True, check=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("VmHWM_KB=")]
    return int(line[-1].split("=")[1]) / 1024


def bench_help(rounds: int) -> None:
    exe = shutil.which("camcli") or str(Path(sys.executable).parent / "camcli")
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    print(
        f"\n`camcli --help`: median {statistics.median(times) * 1000:.0f} ms wall over {rounds} runs (target < 300 ms)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--batch", type=int, default=8)
    sections = [
        "gradcam",
        "help",
        "startup",
        "methods",
        "metrics",
        "pipeline",
        "stages",
        "memory",
        "report",
        "identify",
        "targets",
        "grad",
        "refine",
        "perturb",
        "pixel",
        "vit",
        "media",
        "engine",
    ]
    ap.add_argument("--only", choices=sections, default=None)
    ap.add_argument("--full", action="store_true", help="include Score-CAM on resnet50 (minutes)")
    ap.add_argument("--method", action="append", choices=METHODS, help="methods section: only these")
    ap.add_argument("--device", default="cpu", help="gradcam, methods and pipeline sections: cpu, cuda, cuda:N")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    rounds = 3 if args.quick else 7
    print(
        f"camcli bench · torch {torch.__version__} · {torch.get_num_threads()} threads · "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    if args.only in (None, "help"):
        bench_help(rounds)
    if args.only in (None, "startup"):
        from startup import bench_startup

        bench_startup(max(5, rounds // 2) if not args.quick else 3)
    if args.only in (None, "gradcam"):
        bench_gradcam(rounds, args.batch)
    if args.only in (None, "methods"):
        bench_methods(max(3, rounds // 2), args.batch, args.full, args.method)
    if args.only in (None, "metrics"):
        bench_metrics(3 if args.quick else 5, args.batch)
    if args.only in (None, "pipeline"):
        bench_pipeline(200, batch=args.batch)
    if args.only in (None, "stages"):
        from stages import bench_sizes_end_to_end, bench_stages

        bench_stages(3)
        bench_sizes_end_to_end()
    if args.only in (None, "memory"):
        bench_memory((200, 1000))
    if args.only in (None, "report"):
        bench_report(10_000)
    if args.only in (None, "identify"):
        from identify import bench_identify

        bench_identify()
    if args.only in (None, "targets"):
        from targets import bench_targets

        bench_targets(lambda fns: median_times(fns, 3 if args.quick else 5), args.batch, _where())
    # issue 26's methods beside their references (each section also runs alone: python bench/NAME.py)
    few = 3 if args.quick else 5

    def peer_times(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
        return median_times(fns, few, warmup=1, pre_call=False)

    if args.only in (None, "grad"):
        from grad import bench_grad

        bench_grad(peer_times, _where())
    if args.only in (None, "refine"):
        from refine import bench_refine

        bench_refine(peer_times, _where(), args.batch, str(DEVICE))
    if args.only in (None, "perturb"):
        from perturb import bench_perturb

        bench_perturb(peer_times, _where())
    if args.only in (None, "pixel"):
        from pixel import bench_pixel

        bench_pixel(peer_times, _where(), str(DEVICE))
    if args.only in (None, "vit"):
        from vit import bench_vit

        bench_vit(peer_times, _where())
    if args.only in (None, "media"):  # issue 27: videos and volumes end to end vs the forward alone
        from media import bench_media

        bench_media(peer_times, _where())
    if args.only in (None, "engine"):  # issue 29: camcli.Explainer under Ray Data vs the CLI on the same folder
        from engine import bench_engine

        bench_engine(_where(), rounds=2 if args.quick else 3)


if __name__ == "__main__":
    main()
