"""Command-line options, each defined once.

Options that one command has are written in that command's signature. Options that several commands share
come in groups, :class:`ModelArgs` and :class:`BatchArgs`: a command asks for a group by a parameter typed
with it, and :func:`shared_options` puts the group's options into the command's signature in that place (what
Typer reads for ``--help`` and parsing) and hands the parsed values to the command as one typed object.
Typer cannot take a default inside ``Annotated``, so each option is an (annotation, default) pair here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..options import BUNDLED, ModelFields, RunOptions, parse_shard

# ----------------------------------------------------------------- options a command lists in its own signature
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON record per line on stdout.")]
ArchOpt = Annotated[str | None, typer.Option(help="Architecture of a checkpoint (torchvision name).")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Allow a checkpoint to run arbitrary code while loading (full unpickling). Only for files you trust.",
    ),
]
InputsArg = Annotated[
    list[str], typer.Argument(help="Image files, folders (recursive), globs, list files (.txt) or - for stdin.")
]


# --------------------------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class ModelArgs:
    """``--model --weights --labels --arch --trust-checkpoint``: which model to load."""

    model: str
    weights: str | None
    labels: str | None
    arch: str | None
    trust_checkpoint: bool

    def apply_to(self, spec: ModelFields) -> None:
        spec.model = self.model
        spec.weights = self.weights
        spec.labels = self.labels
        spec.arch = self.arch
        spec.trust_checkpoint = self.trust_checkpoint


@dataclass(frozen=True)
class BatchArgs:
    """The options of every command that runs over inputs: outputs, batching, device, resume, reporting."""

    out: Path
    batch_size: int
    device: str
    workers: int | None
    max_pixels: int
    skip_existing: bool
    shard: str | None
    fsync: bool
    json_out: bool
    quiet: bool
    debug: bool

    def apply_to(self, options: RunOptions) -> None:
        options.out = self.out
        options.batch_size = self.batch_size
        options.device = self.device
        options.workers = self.workers
        options.max_pixels = self.max_pixels
        options.skip_existing = self.skip_existing
        options.shard = parse_shard(self.shard)
        options.fsync = self.fsync


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


_GROUPS: dict[type, list[inspect.Parameter]] = {
    ModelArgs: [
        _option(
            "model",
            Annotated[
                str,
                typer.Option(
                    "--model",
                    "-m",
                    help=f"{BUNDLED} (bundled, offline), a torchvision model name (see: camcli models), "
                    "or a checkpoint file.",
                ),
            ],
            BUNDLED,
        ),
        _option(
            "weights",
            Annotated[
                str | None,
                typer.Option(help="torchvision weights: default, none (random init), or a name such as IMAGENET1K_V2."),
            ],
            None,
        ),
        _option(
            "labels",
            Annotated[str | None, typer.Option(help="Class names: a text file (one per line) or a JSON list/dict.")],
            None,
        ),
        _option("arch", ArchOpt, None),
        _option("trust_checkpoint", TrustOpt, False),
    ],
    BatchArgs: [
        _option("out", Annotated[Path, typer.Option("--out", "-o", help="Output folder.")], RunOptions.out),
        _option(
            "batch_size",
            Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward pass.")],
            RunOptions.batch_size,
        ),
        _option("device", Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")], RunOptions.device),
        _option(
            "workers",
            Annotated[
                int | None,
                typer.Option(help="Decode/write threads ahead of and behind the model (default: min(4, CPUs))."),
            ],
            None,
        ),
        _option(
            "max_pixels",
            Annotated[int, typer.Option(help="Refuse images with more pixels (decompression-bomb guard).")],
            RunOptions.max_pixels,
        ),
        _option(
            "skip_existing",
            Annotated[
                bool,
                typer.Option(
                    "--skip-existing/--overwrite", help="Skip inputs whose outputs all exist (resume), or redo them."
                ),
            ],
            False,
        ),
        _option(
            "shard",
            Annotated[str | None, typer.Option(help="K/N: process only slice K of N (stable hash of the path).")],
            None,
        ),
        _option(
            "fsync",
            Annotated[
                bool,
                typer.Option("--fsync", help="Sync the manifest to disk after every image (survives power loss)."),
            ],
            RunOptions.fsync,
        ),
        _option("json_out", JsonOpt, False),
        _option("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")], False),
        _option("debug", DebugOpt, False),
    ],
}

for _group, _params in _GROUPS.items():  # a group's fields and its options must be the same names, in order
    assert [f.name for f in dataclasses.fields(_group)] == [p.name for p in _params], _group

R = TypeVar("R")


def shared_options(command: Callable[..., R]) -> Callable[..., R]:
    """Expand each parameter of ``command`` typed :class:`ModelArgs` or :class:`BatchArgs` into that group's
    options (in that place of the signature), and rebuild the group object from them on each call."""
    hints = typing.get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}
    for p in inspect.signature(command).parameters.values():
        group = hints[p.name]
        if group in _GROUPS:
            groups[p.name] = group
            params.extend(_GROUPS[group])
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=group))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:
        for name, group in groups.items():
            kwargs[name] = group(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(group)})
        return command(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
