"""The only module that imports rich: stderr console, progress bars and tables."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, cast

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..checks import one_line
from ..steps import listening
from .streams import ResultsFile

_err: Console | None = None
_out: Console | None = None


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich's own handling exits with status 1; the boundary exits quietly with 141, as a shell expects
        # after SIGPIPE (`camcli methods | head -3`)
        raise BrokenPipeError


def err_console() -> Console:
    """Console for people: progress, tables, warnings (stderr)."""
    global _err
    if _err is None:
        _err = _Console(stderr=True, width=_width(), highlight=False)
    return _err


def out_console() -> Console:
    """Console for results (stdout)."""
    global _out
    if _out is None:
        _out = _Console(file=cast(IO[str], ResultsFile()), width=_width(), highlight=False)  # the results
    return _out


def _width() -> int | None:
    """``CAMCLI_WIDTH`` (columns, for stable output in tests and logs); ignored unless a positive number."""
    text = os.environ.get("CAMCLI_WIDTH", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def info(message: str) -> None:
    err_console().print(message, markup=False, soft_wrap=True)  # one line, however long: logs stay greppable


def error(message: str) -> None:
    err_console().print(f"[bold red]error:[/bold red] {_escape(message)}", soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class RateMeter:
    """Images per second over a moving window, for the progress display.

    The first batch is not timed: its results arrive together once the model is warm, so a rate over them
    would be thousands of images per second. The window starts when ``warmup`` images are done and then
    slides (``window`` seconds), always beginning at a completion; a rate is given once the window spans
    ``min_span`` seconds and holds a completion. Only images that were computed count (not skipped ones).
    """

    def __init__(
        self, warmup: int = 1, window: float = 10.0, min_span: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.warmup = max(1, warmup)
        self.window = window
        self.min_span = min_span
        self.clock = clock
        self.count = 0
        self._samples: deque[tuple[float, int]] = deque()  # (time, count) at completions after the warm-up

    BURST = 0.05  # seconds: completions this close to the previous one are one burst (a batch written together)

    def add(self, n: int = 1) -> None:
        self.count += n
        if self.count < self.warmup:
            return
        now = self.clock()
        if self._samples and now - self._samples[-1][0] <= self.BURST:
            # the same burst: a window that starts here must not count the rest of it as done after its start
            self._samples[-1] = (self._samples[-1][0], self.count)
        else:
            self._samples.append((now, self.count))
        self._trim(now)

    def _trim(self, now: float) -> None:
        # keep the newest sample at or before the window's start (the window begins at a completion), and at
        # least two: when nothing completes for a while, the rate falls with the time that passes
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def rate(self) -> float | None:
        if not self._samples:
            return None
        now = self.clock()
        self._trim(now)
        t0, c0 = self._samples[0]
        span = now - t0
        if span < self.min_span or self.count <= c0:
            return None
        return (self.count - c0) / span


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Reporter:
    """What a run tells the progress display: an input settled, and how far slow work inside a batch is."""

    def __init__(self, total: int | None, warmup: int) -> None:
        self.total = total
        self.completed = 0
        self.meter = RateMeter(warmup)
        self.started = time.monotonic()
        self.step_text: str | None = None  # "scorecam masked batches 3/16" while one runs

    def done(self, counted: bool = True) -> None:
        """One input settled; ``counted``: it was computed (skipped inputs do not make a rate)."""
        self.completed += 1
        if counted:
            self.meter.add()
        self._changed()

    def step(self, what: str, done: int, total: int) -> None:
        self.step_text = None if done >= total else f"{what} {done}/{total}"
        self._changed()

    def _changed(self) -> None:
        """Redraw (the bar's subclass) or nothing (log lines are written on a clock)."""

    def rate(self) -> float | None:
        return self.meter.rate()

    def eta(self) -> float | None:
        rate = self.rate()
        if self.total is None or not rate:
            return None
        return max(0, self.total - self.completed) / rate

    def status(self, final: bool = False) -> str:
        """The log line: ``[0:00:12] 40/100 images · 12.1 img/s · eta 0:00:05`` (and the step in progress);
        ``final``: the rate over the whole run since progress began, as the summary gives it."""
        elapsed = time.monotonic() - self.started
        rate = (self.meter.count / elapsed if elapsed > 0 and self.meter.count else None) if final else self.rate()
        count = f"{self.completed}/{self.total}" if self.total is not None else f"{self.completed}"
        parts = [f"[{_clock(elapsed)}] {count} images"]
        parts.append(rate_text(rate).strip() + (" on average" if final and rate else ""))
        if self.total is not None and not final:
            parts.append(f"eta {_clock(self.eta())}")
        if self.step_text:
            parts.append(self.step_text)
        return " · ".join(parts)


class _BarReporter(Reporter):
    def __init__(self, total: int | None, warmup: int, bar: Progress, task: Any, sub: Any) -> None:
        super().__init__(total, warmup)
        self.bar, self.task, self.sub = bar, task, sub

    def _changed(self) -> None:
        self.bar.update(self.task, completed=self.completed)

    def step(self, what: str, done: int, total: int) -> None:
        super().step(what, done, total)
        if done >= total:
            self.bar.update(self.sub, visible=False)
        else:
            self.bar.update(self.sub, description=f"  {what}", completed=done, total=total, visible=True)


class _MainOnly(TextColumn):
    """A text that only the run's own row shows (not the row of a step inside a batch)."""

    def __init__(self, text: Callable[[Reporter], str]) -> None:
        super().__init__("")
        self.text = text
        self.reporter: Reporter | None = None

    def render(self, task: Any) -> Any:
        from rich.text import Text

        if self.reporter is None or not task.fields.get("main"):
            return Text("")
        return Text(self.text(self.reporter))


def _rate_text(r: Reporter) -> str:
    return rate_text(r.rate())


def rate_text(rate: float | None) -> str:
    """``12.1 img/s``, or ``31.0 s/img`` below one image a second (Score-CAM), or ``--- img/s`` unknown."""
    if not rate:
        return "--- img/s"
    return f"{rate:5.1f} img/s" if rate >= 1 else f"{1 / rate:5.1f} s/img"


def _eta_text(r: Reporter) -> str:
    return f"eta {_clock(r.eta())}" if r.total is not None else ""


LOG_INTERVAL = 10.0  # seconds between progress lines when stderr is not a terminal (CAMCLI_LOG_INTERVAL)


def _log_interval() -> float:
    try:
        value = float(os.environ.get("CAMCLI_LOG_INTERVAL", LOG_INTERVAL))
    except ValueError:
        return LOG_INTERVAL
    return value if math.isfinite(value) and value > 0 else LOG_INTERVAL


@contextmanager
def progress(total: int | None, enabled: bool, *, label: str = "explaining", warmup: int = 1) -> Iterator[Reporter]:
    """Progress of a run on stderr; yields a :class:`Reporter`.

    On a terminal: a bar with a rate over a moving window, an ETA, and a second row for slow work inside a batch
    (one image: a spinner that goes away at the end). Otherwise (a log file, Slurm, nohup): one plain line every
    ``CAMCLI_LOG_INTERVAL`` seconds (10) and one at the end. Disabled: a reporter that shows nothing.
    """
    if not enabled:
        yield Reporter(total, warmup)
        return
    console = err_console()
    if not console.is_terminal:
        yield from _log_lines(total, warmup, label)
        return
    rate, eta = _MainOnly(_rate_text), _MainOnly(_eta_text)
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        rate,
        eta,
        TimeElapsedColumn(),
        console=console,
        transient=total == 1,  # one image: the summary says what was written
    )
    with bar:
        task = bar.add_task(label, total=total, main=True)
        sub = bar.add_task("", total=1, visible=False, main=False)
        reporter = _BarReporter(total, warmup, bar, task, sub)
        rate.reporter = eta.reporter = reporter
        with listening(reporter.step):
            yield reporter


def _log_lines(total: int | None, warmup: int, label: str) -> Iterator[Reporter]:
    reporter = Reporter(total, warmup)
    stop = threading.Event()
    interval = _log_interval()

    def write(line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"{label}: {line}\n")
            sys.stderr.flush()

    def tick() -> None:
        while not stop.wait(interval):
            write(reporter.status())

    thread = threading.Thread(target=tick, name="camcli-progress-log", daemon=True)
    thread.start()
    try:
        with listening(reporter.step):
            yield reporter
    finally:
        stop.set()
        thread.join()
        write(reporter.status(final=True))


def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    stdout: bool = False,
    keep: Sequence[str] = (),
) -> None:
    """A table on stderr (or stdout). Nothing is cut with "…": a long cell folds onto more lines, and the
    ``keep`` columns (what users copy: layer names, model names) stay on one line at full width while the others
    fold around them."""
    console = out_console() if stdout else err_console()
    texts = [[one_line(str(v)) for v in r] for r in rows]  # a newline in a class name does not split a row
    widths = [max([len(c), *(len(r[k]) for r in texts)]) for k, c in enumerate(columns)]
    kept = sum(w for w, c in zip(widths, columns, strict=True) if c in keep)
    others = sum(min(w, 10) for w, c in zip(widths, columns, strict=True) if c not in keep)
    if keep and kept + others + 3 * len(columns) + 1 > console.width:
        # too narrow for a table that keeps the names whole: aligned plain lines (a terminal may wrap a long
        # line on screen, but the text is whole when copied)
        console.print(title, markup=False, soft_wrap=True)
        for r in [list(columns), *texts]:
            line = "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True))
            console.print(line.rstrip(), markup=False, soft_wrap=True, highlight=False)
        return
    t = Table(title=title, title_justify="left")
    for k, c in enumerate(columns):
        if c in keep:
            t.add_column(c, no_wrap=True, min_width=min(widths[k], max(10, console.width - 12)), overflow="fold")
        else:
            t.add_column(c, overflow="fold")
    for r in texts:
        t.add_row(*[_escape(v) for v in r])
    console.print(t)
