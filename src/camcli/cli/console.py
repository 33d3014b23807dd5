"""The only module that imports rich: stderr console, progress bars and tables."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

_err: Console | None = None
_out: Console | None = None


def err_console() -> Console:
    """Console for people: progress, tables, warnings (stderr)."""
    global _err
    if _err is None:
        _err = Console(stderr=True, width=_width(), highlight=False)
    return _err


def out_console() -> Console:
    """Console for results (stdout)."""
    global _out
    if _out is None:
        _out = Console(width=_width(), highlight=False)  # file=None: follows sys.stdout
    return _out


def _width() -> int | None:
    """``CAMCLI_WIDTH`` (columns, for stable output in tests and logs); ignored unless a positive number."""
    text = os.environ.get("CAMCLI_WIDTH", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def info(message: str) -> None:
    err_console().print(message, markup=False)


def error(message: str) -> None:
    err_console().print(f"[bold red]error:[/bold red] {_escape(message)}", soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class _ImagesPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Any) -> Any:
        from rich.text import Text

        # images done over the time since the bar started, shown once a second has passed: a rate taken over
        # the first few milliseconds (or over skipped inputs) says nothing
        elapsed = task.elapsed or 0.0
        if elapsed < 1.0 or not task.completed:
            return Text("--- img/s")
        return Text(f"{task.completed / elapsed:5.1f} img/s")


@contextmanager
def progress(total: int | None, enabled: bool) -> Iterator[Any]:
    """A progress bar on stderr; yields ``advance(n)``. Disabled: a no-op callable."""
    if not enabled:
        yield lambda n=1: None
        return
    bar = Progress(
        TextColumn("[bold]explaining"),
        BarColumn(),
        MofNCompleteColumn(),
        _ImagesPerSecond(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=False,
    )
    with bar:
        task = bar.add_task("images", total=total)
        yield lambda n=1: bar.advance(task, n)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, stdout: bool = False) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[_escape(str(v)) for v in r])
    (out_console() if stdout else err_console()).print(t)
