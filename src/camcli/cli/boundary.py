"""The one place where failures leave the program: errors → one line on stderr and an exit code.

Exit codes: 0 every input done; 1 some input failed (the rest were still written); 2 usage or setup error
before any input ran (a :class:`~camcli.errors.CamcliError` carries its own code); 130 interrupted (Ctrl-C, or
SIGTERM, which is turned into the same interrupt so both stop cleanly); 141 stdout closed by its reader
(``--json | head``), quietly, as a shell expects after SIGPIPE.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer

from .. import profiling

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
INTERRUPTED = "interrupted; outputs finished so far are kept and recorded, no partial files are left"


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def guarded(debug: bool) -> Iterator[None]:
    """Run a command's body: translate camcli errors, interrupts and unexpected exceptions into exit codes.

    ``--debug`` lets exceptions through with their tracebacks. SIGTERM is handled like Ctrl-C while inside.
    """
    from ..errors import CamcliError

    installed = _main_thread()  # signal handlers can only be set from the main thread
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if installed else None
    try:
        yield
    except CamcliError as e:
        if debug:
            raise
        _error(str(e))
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        _error(INTERRUPTED)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # `camcli … --json | head`: the reader has what it wanted
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except (typer.Exit, SystemExit):
        raise
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


def _error(message: str) -> None:
    from . import console

    console.error(message)


def _error_stream_line(line: str) -> None:
    import sys

    sys.stderr.write(line + "\n")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit does not fail again."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
