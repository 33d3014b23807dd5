"""The one place where failures leave the program: errors → one line on stderr and an exit code.

Exit codes: 0 every input done; 1 some input failed (the rest were still written); 2 usage or setup error
before any input ran (a :class:`~camcli.errors.CamcliError` carries its own code); 130 interrupted (Ctrl-C, or
SIGTERM, which is turned into the same interrupt so both stop cleanly); 141 stdout closed by its reader
(``--json | head``), quietly, as a shell expects after SIGPIPE.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from types import FrameType
from typing import Any

import typer

from .. import profiling
from ..steps import check_stop, clear_stop, request_stop
from . import streams

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
INTERRUPTED = "interrupted; outputs finished so far are kept and recorded, no partial files are left"


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    request_stop()  # kept too: raised inside an import lock's callback, the interrupt would be dropped
    raise KeyboardInterrupt


#: the command's name and arguments as given (set by app.py as the command line is parsed)
GIVEN: ContextVar[list[str] | None] = ContextVar("camcli_given_args", default=None)
RESUME = "--skip-existing"
LONGEST_HINT = 1000  # a resume command longer than this (thousands of files from a glob) is described instead


def resume_hint() -> str:
    """How to go on after an interrupted run: the same command with ``--skip-existing`` (``--overwrite`` dropped),
    quoted for a POSIX shell, or in words when it is not known or too long to be of use."""
    import shlex

    given = GIVEN.get()
    words = f"rerun the same command with {RESUME} to resume"
    if not given:
        return words
    name, args = given[0], [a for a in given[1:] if a != "--overwrite"]
    line = shlex.join(["camcli", name, *args, *([RESUME] if RESUME not in args else [])])
    if len(line) > LONGEST_HINT:
        return words
    return f"resume with: {line}" + (" (the same paths piped in again)" if "-" in args else "")


@contextmanager
def guarded(debug: bool, quiet: bool = False, resumable: bool = False) -> Iterator[None]:
    """Run a command's body: translate camcli errors, interrupts and unexpected exceptions into exit codes.

    ``--debug`` lets exceptions through with their tracebacks. SIGTERM is handled like Ctrl-C while inside.
    ``quiet`` (``-q``): the libraries camcli drives print no progress bars either (:func:`libraries_quiet`).
    ``resumable``: a run over inputs, whose interrupt line says how to resume it (:func:`resume_hint`).
    """
    from ..errors import CamcliError

    installed = _main_thread()  # signal handlers can only be set from the main thread
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if installed else None
    clear_stop()
    try:
        with streams.stdout_for_results(), libraries_quiet() if quiet else nullcontext():
            yield
            check_stop()  # a SIGTERM whose interrupt Python dropped: the run still ends as interrupted
    except CamcliError as e:
        if debug:
            raise
        _error(str(e))
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        _error(f"{INTERRUPTED}; {resume_hint()}" if resumable else INTERRUPTED)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # `camcli … --json | head`: the reader has what it wanted
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except (typer.Exit, SystemExit):
        raise
    except OSError as e:  # a path the user gave that the system refuses: too long, a folder where a file goes …
        if debug or e.filename is None:
            raise
        named = e.filename2 if e.filename2 is not None else e.filename  # a rename's: where the file was to go
        _error(f"{_cut(named)}: {e.strerror or e}; check the path (or pick another --out)")
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as e:  # a bug or a model that fails on its own: one line, the traceback behind --debug
        if debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        _error(f"unexpected {type(e).__name__}: {first} (rerun with --debug for the traceback)")
        raise typer.Exit(EXIT_USAGE) from None
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if profiling.ENABLED:
            for line in profiling.report():
                _error_stream_line(line)


QUIET_ENVIRONMENT = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_VERBOSITY": "error"}


@contextmanager
def libraries_quiet() -> Iterator[None]:
    """``-q``: transformers' and huggingface_hub's progress bars (transformers' "Loading weights", downloads) and
    the hub's notices stay off: through their switches when they are imported already, through their environment
    variables when they are imported inside (those keep the setting for the rest of the process)."""
    saved = {name: os.environ.get(name) for name in QUIET_ENVIRONMENT}
    os.environ.update(QUIET_ENVIRONMENT)
    hub: Any = sys.modules.get("huggingface_hub.utils")
    bars: Any = sys.modules.get("transformers.utils.logging")
    hub_bars = hub is not None and not hub.are_progress_bars_disabled()
    own_bars = bars is not None and bars.is_progress_bar_enabled()
    verbosity = hub.logging.get_verbosity() if hub is not None else None
    if hub is not None:
        hub.disable_progress_bars()
        hub.logging.set_verbosity_error()
    if bars is not None:
        bars.disable_progress_bar()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if own_bars:
            bars.enable_progress_bar()  # the hub's too
        elif hub_bars:
            hub.enable_progress_bars()
        if verbosity is not None:
            hub.logging.set_verbosity(verbosity)


def _error(message: str) -> None:
    from . import console

    console.error(message)


def _cut(name: object) -> str:
    text = os.fsdecode(name) if isinstance(name, str | bytes) else str(name)
    return text if len(text) <= 120 else text[:60] + "…" + text[-40:]


def _error_stream_line(line: str) -> None:
    sys.stderr.write(line + "\n")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, streams.results().fileno())
    os.close(devnull)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
