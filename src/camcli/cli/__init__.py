"""The command line: the Typer app (:mod:`.app`), options defined once (:mod:`.params`), the run commands
(:mod:`.runs`), the describing commands (:mod:`.info`), the error boundary (:mod:`.boundary`) and the only
module that uses rich (:mod:`.console`)."""

from .app import app, main

__all__ = ["app", "main"]
