"""Streaming runner: inputs → decode (worker threads) → batches → model → render/write (worker threads).

Generic over a *job* (Grad-CAM-family maps, feature grids) that knows how to compute a batch and write one
image's outputs. Memory stays flat: inputs are discovered lazily, at most a bounded window of decoded images
and pending writes is held, records are streamed to the manifest. Prints nothing; yields result objects.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from . import images
from .errors import InputError
from .models import BUNDLED, LoadedModel, load_model


@dataclass
class RunOptions:
    """The options every run shares: which model, where outputs go, and how the batch run behaves."""

    model: str = BUNDLED
    weights: str | None = None
    layers: list[str] = field(default_factory=list)  # empty: the default layer
    colormap: str = "jet"
    save_raw: bool = False
    out: Path = Path("camcli-out")
    batch_size: int = 8
    device: str = "auto"
    workers: int | None = None
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS
    skip_existing: bool = False
    shard: tuple[int, int] | None = None
    labels: str | None = None
    arch: str | None = None
    trust_checkpoint: bool = False

    def load_model(self) -> LoadedModel:
        return load_model(
            self.model, self.weights, labels=self.labels, arch=self.arch, trust_checkpoint=self.trust_checkpoint
        )


@dataclass
class Prediction:
    index: int
    name: str
    probability: float


@dataclass
class ImageResult:
    """What happened to one input."""

    input: str
    ok: bool
    error: str | None = None
    skipped: bool = False  # --skip-existing found all its outputs
    size: tuple[int, int] | None = None  # (width, height) of the upright original
    predictions: list[Prediction] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)  # one entry per manifest record
    maps: dict[str, np.ndarray] | None = None  # full-size maps by output key, when asked for (Python API)
    records: list[dict[str, Any]] = field(default_factory=list)  # what went to the manifest (empty if skipped)


class Job(Protocol):
    """The part of a run that depends on what is computed."""

    model: LoadedModel
    device: torch.device
    batch_size: int

    def outputs_exist(self, item: images.InputFile) -> bool: ...

    def compute(self, x: torch.Tensor) -> list[Any]: ...

    def write(self, item: images.InputFile, image: Image.Image, computed: Any) -> ImageResult: ...

    def records(self, result: ImageResult) -> list[dict[str, Any]]: ...


def preprocess(image: Image.Image, model: LoadedModel) -> torch.Tensor:
    """The whole picture resized to the model's input size (no crop, so maps line up with it), normalized."""
    h, w = model.input_size
    resized = image.resize((w, h), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(model.mean).view(3, 1, 1)
    std = torch.tensor(model.std).view(3, 1, 1)
    return (x - mean) / std


# Batches go to the model in channels-last layout on the CPU: oneDNN picks faster kernels for it (measured
# here, no-grad forward of a batch of 32: resnet18 1.3×, resnet50 1.2×, EfficientNet-Lite0 1.75× faster) and
# the model's own weights stay as they are. ``make bench`` measures the forward-only baseline the same way.
CPU_LAYOUT = torch.channels_last


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2)))


def _is_oom(e: RuntimeError) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


def compute_with_retry(job: Job, x: torch.Tensor) -> list[Any]:
    """``job.compute`` on a batch; on out-of-memory, halve the batch and retry, down to one image."""
    try:
        return job.compute(x)
    except RuntimeError as e:
        if not _is_oom(e):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if x.shape[0] == 1:
            raise InputError("out of memory even with a batch of 1; try --device cpu or a smaller model") from None
        half = x.shape[0] // 2
        return compute_with_retry(job, x[:half]) + compute_with_retry(job, x[half:])


def _decode_and_prepare(item: images.InputFile, model: LoadedModel, max_pixels: int | None) -> Any:
    try:
        im = images.decode(item.path, max_pixels)
        return im, preprocess(im, model)
    except InputError as e:
        return e


def run(
    job: Job,
    items: Iterable[images.InputFile],
    *,
    workers: int | None = None,
    max_pixels: int | None = images.DEFAULT_MAX_PIXELS,
    skip_existing: bool = False,
) -> Iterator[ImageResult]:
    """Process every input; yields one :class:`ImageResult` per input, in input order.

    Decoding runs ``workers`` images ahead of the model in threads; rendering and writing run behind it in
    threads. On Ctrl-C the writes already handed out are finished (atomic: never partial) and their results
    yielded before the interrupt propagates.
    """
    n = workers or default_workers()
    window = max(job.batch_size * 2, n * 2)
    decoder = ThreadPoolExecutor(max_workers=n, thread_name_prefix="camcli-decode")
    writer = ThreadPoolExecutor(max_workers=n, thread_name_prefix="camcli-write")
    pending_writes: deque[tuple[images.InputFile, Future[ImageResult] | ImageResult]] = deque()

    def finished(entry: tuple[images.InputFile, Future[ImageResult] | ImageResult]) -> ImageResult:
        item, value = entry
        if isinstance(value, ImageResult):
            return value
        try:
            return value.result()
        except InputError as e:
            return ImageResult(item.display, False, str(e))
        except OSError as e:
            return ImageResult(item.display, False, f"{item.path}: cannot write output ({e})")

    def drain(limit: int) -> Iterator[ImageResult]:
        while len(pending_writes) > limit or (pending_writes and _done(pending_writes[0][1])):
            yield finished(pending_writes.popleft())

    try:
        decoded: deque[tuple[images.InputFile, Future[Any] | ImageResult]] = deque()
        source = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(decoded) < window:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                if skip_existing and job.outputs_exist(item):
                    decoded.append((item, ImageResult(item.display, True, skipped=True)))
                else:
                    decoded.append((item, decoder.submit(_decode_and_prepare, item, job.model, max_pixels)))
            if not decoded:
                break
            # one batch: take entries in order until batch_size images decoded
            batch: list[tuple[images.InputFile, Any]] = []
            good = 0
            while decoded and good < job.batch_size:
                item, fut = decoded.popleft()
                value = fut if isinstance(fut, ImageResult) else fut.result()
                batch.append((item, value))
                good += isinstance(value, tuple)
            ready = [(item, v) for item, v in batch if isinstance(v, tuple)]
            computed: list[Any] = []
            failure: str | None = None
            if ready:
                x = torch.stack([t for _, (_, t) in ready])
                if job.device.type == "cuda":  # pinned host memory lets the copy overlap with queued GPU work
                    x = x.pin_memory()
                x = x.to(job.device, non_blocking=True)
                if job.device.type == "cpu":
                    x = x.contiguous(memory_format=CPU_LAYOUT)
                try:
                    computed = compute_with_retry(job, x)
                except InputError as e:
                    failure = str(e)
            row = 0
            for item, value in batch:
                if isinstance(value, ImageResult):
                    pending_writes.append((item, value))
                elif isinstance(value, InputError):
                    pending_writes.append((item, ImageResult(item.display, False, str(value))))
                elif failure is not None:
                    pending_writes.append((item, ImageResult(item.display, False, f"{item.path}: {failure}")))
                else:
                    pending_writes.append((item, writer.submit(job.write, item, value[0], computed[row])))
                    row += 1
            yield from drain(window)
        while pending_writes:
            yield finished(pending_writes.popleft())
    except KeyboardInterrupt:
        # finish what was handed to the writers, report it, then stop
        while pending_writes:
            yield finished(pending_writes.popleft())
        raise
    finally:
        decoder.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=False)


def _done(value: Future[ImageResult] | ImageResult) -> bool:
    return isinstance(value, ImageResult) or value.done()


class Manifest:
    """``manifest.jsonl`` (or a shard's part) in the output folder, written line by line, nothing kept."""

    def __init__(self, out_dir: Path, append: bool = False, name: str = "manifest.jsonl") -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / name
        self._f = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, recs: Iterable[dict[str, Any]]) -> None:
        for r in recs:
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def manifest_name(shard: tuple[int, int] | None) -> str:
    return (
        "manifest.jsonl" if shard is None else f"manifest.shard-{shard[0]:0{len(str(shard[1]))}d}-of-{shard[1]}.jsonl"
    )


def merge_manifests(out_dir: Path) -> tuple[Path, int, int]:
    """Join ``manifest.shard-*.jsonl`` parts (and an existing manifest.jsonl) into ``manifest.jsonl``.

    Records are keyed by (input, method, layer, class, kind); a later part's record replaces an earlier one;
    the result is sorted by input. Returns (path, parts read, records written).
    """
    parts = sorted(out_dir.glob("manifest.shard-*.jsonl"))
    target = out_dir / "manifest.jsonl"
    sources = ([target] if target.exists() else []) + parts
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for src in sources:
        for line in src.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            key = (rec.get("input"), rec.get("method"), rec.get("layer"), rec.get("class_index"), rec.get("kind"))
            merged[key] = rec
    body = "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in sorted(merged.values(), key=lambda r: str(r.get("input")))
    )
    images.atomic_write_bytes(target, body.encode("utf-8"))
    return target, len(parts), len(merged)


def drive(
    job: Job,
    inputs: list[str],
    options: RunOptions,
    *,
    on_result: Callable[[ImageResult], None] | None = None,
    on_error: Callable[[ImageResult], None] | None = None,
) -> Generator[ImageResult, None, None]:
    """Discover ``inputs``, run ``job`` over them with the run options of ``options`` (out, workers,
    max_pixels, skip_existing, shard), stream records to the manifest, call the callbacks."""
    items = images.iter_inputs(inputs, options.out, options.shard)
    manifest = Manifest(options.out, append=options.skip_existing, name=manifest_name(options.shard))
    try:
        for result in run(
            job, items, workers=options.workers, max_pixels=options.max_pixels, skip_existing=options.skip_existing
        ):
            if not result.skipped:
                result.records = job.records(result)
                manifest.write(result.records)
            callback = on_error if not result.ok else on_result
            if callback is not None:
                callback(result)
            yield result
    finally:
        manifest.close()
