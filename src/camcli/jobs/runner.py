"""The streaming runner: inputs → decode (threads) → batches → model → render/write (threads) → results.

Generic over a :class:`~camcli.jobs.job.Job`. Memory stays flat: inputs are discovered lazily, at most a
bounded window of decoded images and pending writes is held, records are streamed to the manifest. Prints
nothing; yields :class:`ImageResult` objects in input order.

Two entry points:

* :func:`process_inputs` runs a job over input files and yields a result per input (no manifest);
* :func:`run_job` is what the CLI and the Python API call: it discovers the inputs and hands them to
  :func:`run_items`, which runs :func:`process_inputs`, writes each result's records to the manifest
  (:class:`~camcli.jobs.ledger.Ledger`) and calls the callbacks (an engine's worker calls it with inputs of
  its own: camcli.jobs.engine_api).
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..io.inputs import InputFile, content_digest, iter_inputs
from ..io.outputs import all_or_nothing
from ..io.picture import Picture
from ..options import DEFAULT_MAX_PIXELS
from ..steps import check_stop
from .job import C, Job
from .ledger import Ledger
from .prepare import Decoded, decode_and_prepare, prepare_on_device
from .results import ImageResult

# Batches go to the model in channels-last layout on the CPU: oneDNN picks faster kernels for it (measured
# here, no-grad forward of a batch of 32: resnet18 1.3×, resnet50 1.2×, EfficientNet-Lite0 1.75× faster) and
# the model's own weights stay as they are. ``make bench`` measures the forward-only baseline the same way.
CPU_LAYOUT = torch.channels_last

ResultCallback = Callable[[ImageResult], None]


def default_workers(device: torch.device | None = None) -> int:
    """Decode threads (and as many write threads) when --workers is not given: on the CPU at most 4, since the
    model's own threads need the cores; with a GPU the model needs almost no CPU and the CPU side sets the pace,
    so up to 16 (``make bench`` with ``--device cuda`` measures 4, 8 and 16)."""
    cap = 16 if device is not None and device.type == "cuda" else 4
    return max(1, min(cap, (os.cpu_count() or 2)))


def _is_oom(e: RuntimeError) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e)


def compute_with_retry(job: Job[C], x: torch.Tensor) -> list[C]:
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
        # the halves' own inputs and picture sizes (per-image targets, --box in picture pixels), restored after
        inputs, sizes = getattr(job, "batch_inputs", ()), getattr(job, "picture_sizes", ())
        try:
            job.batch_inputs, job.picture_sizes = inputs[:half], sizes[:half]
            first = compute_with_retry(job, x[:half])
            job.batch_inputs, job.picture_sizes = inputs[half:], sizes[half:]
            return first + compute_with_retry(job, x[half:])
        finally:
            job.batch_inputs, job.picture_sizes = inputs, sizes


def decode_on_device(job: Job[C], slots: Sequence[Slot], max_pixels: int | None, max_size: int | None) -> None:
    """Decode the batch's JPEGs waiting for ``job.decode_on`` in one call (see :func:`prepare_on_device`); a
    file that the device's decoder refuses is read with Pillow instead, and fails only if Pillow fails too."""
    waiting = [s for s in slots if s.decoded is not None and s.decoded.jpeg is not None]
    if not waiting or job.decode_on is None:
        return
    jpegs = [s.decoded.jpeg for s in waiting if s.decoded is not None and s.decoded.jpeg is not None]
    for s, done in zip(waiting, prepare_on_device(jpegs, job.model, job.decode_on, max_size), strict=True):
        try:
            s.decoded = done or decode_and_prepare(s.item, job.model, max_pixels, max_size)
        except InputError as e:
            s.fail(str(e))


@dataclass
class Slot:
    """One input on its way through the run: decoding → decoded → writing → result.

    Skipped and unreadable inputs get their ``result`` straight away; the others move from ``decoding`` (a
    decoder future) to ``decoded`` (picture and tensor) to ``writing`` (a writer future), and get their
    ``result`` from :meth:`outcome`. :attr:`settled` says that the result is there or can be had without waiting.
    """

    item: InputFile
    decoding: Future[Decoded] | None = None
    decoded: Decoded | None = None
    writing: Future[ImageResult] | None = None
    result: ImageResult | None = None
    reported: bool = False  # settled (recorded) and handed on

    @property
    def started(self) -> bool:
        """It has (or is getting) a result: skipped, failed, or its write was handed out."""
        return self.result is not None or self.writing is not None

    def wait_decoded(self) -> None:
        """Block until decoded; a file that cannot be read settles as a failure."""
        if self.decoding is None:
            return
        try:
            self.decoded = self.decoding.result()
        except InputError as e:
            self.result = ImageResult.failed(self.item.display, str(e))
        self.decoding = None

    def fail(self, error: str) -> None:
        self.decoded = None
        self.result = ImageResult.failed(self.item.display, error)

    def start_write(self, writer: ThreadPoolExecutor, job: Job[C], computed: C) -> None:
        assert self.decoded is not None and self.decoded.picture is not None
        self.writing = writer.submit(_write_all_or_nothing, job, self.item, self.decoded.picture, computed)
        self.decoded = None  # the picture now belongs to the writer

    @property
    def settled(self) -> bool:
        return self.result is not None or (self.writing is not None and self.writing.done())

    def outcome(self) -> ImageResult:
        """The result, waiting for the write if it is still running."""
        if self.result is None:
            assert self.writing is not None, "a slot leaves the runner only after it was written or settled"
            try:
                self.result = self.writing.result()
            except InputError as e:
                self.result = ImageResult.failed(self.item.display, str(e))
            except OSError as e:
                self.result = ImageResult.failed(self.item.display, f"{self.item.path}: cannot write output ({e})")
                if e.errno in _OUT_OF_SPACE:
                    self.result.stop_run = f"cannot write outputs ({e.strerror or e})"
        return self.result


_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _write_all_or_nothing(job: Job[C], item: InputFile, picture: Picture, computed: C) -> ImageResult:
    """``job.write`` in a writer thread; when it fails half-way, the files it wrote are removed again. Nothing is
    written through a symbolic link to a folder inside ``--out``. The input's digest goes into its records (the
    report makes copies only of the inputs whose digest still matches)."""
    with all_or_nothing(inside=job.options.out):
        result = job.write(item, picture, computed)
    if result.ok:
        result.input_sha256 = content_digest(item.path)
    return result


def _to_device(job: Job[C], tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    if all(t.device.type == "cpu" for t in tensors):
        x = torch.stack(list(tensors))
        if job.device.type == "cuda":  # pinned host memory lets the copy overlap with queued GPU work
            x = x.pin_memory()
        x = x.to(job.device, non_blocking=True)
    else:  # decoded on the GPU (a file its decoder refused comes from the CPU)
        x = torch.stack([t.to(job.device) for t in tensors])
    if job.device.type == "cpu":
        x = x.contiguous(memory_format=CPU_LAYOUT)
    return x


def _compute_batch(
    job: Job[C], ready: list[Slot], writer: ThreadPoolExecutor, max_pixels: int | None, max_size: int | None
) -> None:
    """Run the model on the decoded slots and hand each image's result to a writer (or fail them all)."""
    decode_on_device(job, ready, max_pixels, max_size)
    ready = [s for s in ready if s.decoded is not None]
    if not ready:
        return
    tensors, sizes = [], []
    for s in ready:  # every slot left is decoded: by Pillow in a thread, or on the device just now
        assert s.decoded is not None and s.decoded.tensor is not None and s.decoded.picture is not None
        tensors.append(s.decoded.tensor)
        sizes.append((s.decoded.picture.height, s.decoded.picture.width))
    x = _to_device(job, tensors)
    #: (H, W) of each picture drawn on, for jobs whose options are in its pixels (--box, --region)
    job.picture_sizes = tuple(sizes)
    job.batch_inputs = tuple(s.item for s in ready)
    try:
        computed = compute_with_retry(job, x)
    except InputError as e:
        for s in ready:
            s.fail(f"{s.item.path}: {e}")
        return
    for s, c in zip(ready, computed, strict=True):
        s.start_write(writer, job, c)


def process_inputs(
    job: Job[C],
    items: Iterable[InputFile],
    *,
    workers: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_size: int | None = None,
    skip: Callable[[InputFile], bool] | None = None,
    settle: ResultCallback | None = None,
) -> Iterator[ImageResult]:
    """Process every input; yields one :class:`ImageResult` per input, in input order.

    ``max_size`` caps the long side of the pictures drawn on (see :func:`decode_and_prepare`). Decoding runs
    ``workers`` images ahead of the model in threads; rendering and writing run behind it in
    threads. ``skip(item)`` true: the input is skipped (resume). ``settle(result)`` is called once for every
    result, in order, before it is yielded; also for the results whose files were written when the run stops
    early (Ctrl-C, an error, or the consumer closing this generator), so that every written file is settled
    (recorded). On Ctrl-C those results are also yielded before the interrupt propagates.
    """
    n = workers or default_workers(job.device)
    window = max(job.batch_size * 2, n * 2)
    decoder = ThreadPoolExecutor(max_workers=n, thread_name_prefix="camcli-decode")
    writer = ThreadPoolExecutor(max_workers=n, thread_name_prefix="camcli-write")
    queued: deque[Slot] = deque()  # being decoded, in input order
    pending: deque[Slot] = deque()  # handed to the model or settled, yielded in input order

    def emit() -> ImageResult:
        """The first pending slot's result, settled exactly once, then removed."""
        slot = pending[0]
        result = slot.outcome()
        if not slot.reported and settle is not None:
            settle(result)
        slot.reported = True
        pending.popleft()
        return result

    source = iter(items)
    try:
        while True:
            while len(queued) < window and (item := next(source, None)) is not None:
                slot = Slot(item)
                if item.problem is not None:
                    slot.result = ImageResult.failed(item.display, item.problem)
                elif skip is not None and skip(item):
                    slot.result = ImageResult.skipped_existing(item.display)
                elif item.media:  # a video or volume: explained whole, here (its files all written or none)
                    slot.result = job.explain_media(item)
                    if slot.result.ok:
                        slot.result.input_sha256 = content_digest(item.path)
                else:
                    on_device = job.decode_on is not None
                    slot.decoding = decoder.submit(decode_and_prepare, item, job.model, max_pixels, max_size, on_device)
                queued.append(slot)
            if not queued:
                break
            check_stop()  # a SIGTERM's interrupt that Python dropped (see camcli.steps.request_stop)
            ready: list[Slot] = []  # taken in order until batch_size of them are decoded
            while queued and len(ready) < job.batch_size:
                slot = queued.popleft()
                pending.append(slot)
                slot.wait_decoded()
                if slot.decoded is not None:
                    ready.append(slot)
            if ready:
                _compute_batch(job, ready, writer, max_pixels, max_size)
            while len(pending) > window or (pending and pending[0].settled):
                yield emit()
        while pending:
            yield emit()
    except KeyboardInterrupt:
        # finish what was handed to the writers, report it, then stop
        while pending and pending[0].started:
            yield emit()
        raise
    finally:
        # stopped early (closed by the consumer, an error): settle what was written, without yielding
        try:
            while pending and pending[0].started:
                emit()
        finally:
            decoder.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=False)


def run_job(
    job: Job[C],
    inputs: Sequence[str],
    *,
    on_result: ResultCallback | None = None,
    on_error: ResultCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Generator[ImageResult, None, None]:
    """Discover ``inputs`` and run ``job`` over them (:func:`run_items`) with its run options (out, workers,
    max_pixels, skip_existing, shard, fsync): what the CLI and the Python API call."""
    items = iter_inputs(inputs, job.options.out, job.options.resolved_shard(), media=job.media)
    yield from run_items(job, items, on_result=on_result, on_error=on_error, on_note=on_note)


def run_items(
    job: Job[C],
    items: Iterable[InputFile],
    *,
    ledger: Ledger | None = None,
    on_result: ResultCallback | None = None,
    on_error: ResultCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Generator[ImageResult, None, None]:
    """Run ``job`` over prepared inputs with its run options, record every result in the ledger as soon as its
    files are in place (see :class:`Ledger`), call ``on_result`` for each input done or skipped and ``on_error``
    for each failed one, and yield the results in input order; ``on_note`` hears about repairs of the ledger.

    ``ledger``: one the caller keeps open across calls (an engine's worker, camcli.jobs.engine_api: its resume
    set is read once); None: one is opened for this call and closed after it.

    Raises :class:`~camcli.errors.OutputError` after the run when the ledger could not be written (a full
    disk): the run stops there, and the files of the images it could not record were removed."""
    options = job.options
    own = ledger is None
    if ledger is None:
        ledger = Ledger(job)
        if ledger.manifest.repaired and on_note is not None:
            on_note(
                f"{ledger.manifest.path}: dropped a torn last line ({ledger.manifest.repaired} bytes) left by an "
                "interrupted run (--skip-existing redoes the image it was about)"
            )
    try:
        for result in process_inputs(
            job,
            items,
            workers=options.workers,
            max_pixels=options.max_pixels,
            max_size=options.max_size,
            skip=ledger.already_done if options.skip_existing else None,
            settle=ledger.record,
        ):
            callback = on_result if result.ok else on_error
            if callback is not None:
                callback(result)
            yield result
            if ledger.error is not None:
                break  # nothing more can be recorded: stop (what is in flight is settled on the way out)
    finally:
        if own:
            ledger.close()
    ledger.raise_if_broken()
