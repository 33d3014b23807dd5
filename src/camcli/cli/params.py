"""Command-line options, each defined once.

Options that one command has are written in its signature. Options that several commands share come in groups
(:class:`ModelArgs`, :class:`BatchArgs`): a command asks for a group by a parameter typed with it, and
:func:`shared_options` puts the group's options into the signature there (what Typer reads for ``--help`` and
parsing) and hands the values to the command as one object. Each option is an (annotation, default) pair.
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
import typer.models

from ..options import BUNDLED, ModelFields, RunOptions
from .completion import (
    EXPLAIN,
    MODEL,
    OUTPUT,
    RUN,
    complete_colormap,
    complete_format,
    complete_layer,
    complete_layout,
    complete_model,
)
from .model_opts import ArchArgsOpt, ArchOpt, CodePathOpt, InputSizeOpt, TaskOpt, TrustOpt

# ----------------------------------------------------------------- options a command lists in its own signature
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.", rich_help_panel=RUN)]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON record per line on stdout.", rich_help_panel=OUTPUT)
]
InputsArg = Annotated[
    list[str],
    typer.Argument(help="Image files, folders (recursive), globs, list files (.txt) or - for stdin.", metavar="INPUTS"),
]


def _layer_option(what: str) -> Any:
    return typer.Option(
        "--layer",
        "-l",
        help=f"Dotted layer name (camcli layers), repeatable: {what}. "
        "\\[default: the last layer with a spatial output]",
        metavar="LAYER",
        autocompletion=complete_layer,
        rich_help_panel=EXPLAIN,
    )


LayerOpt = Annotated[list[str] | None, _layer_option("maps of several layers are fused")]
GridLayerOpt = Annotated[list[str] | None, _layer_option("a grid per layer")]
ColormapOpt = Annotated[
    str,
    typer.Option(
        help="Colormap: jet, turbo, viridis, inferno, magma, plasma, or any matplotlib name.",
        metavar="NAME",
        autocompletion=complete_colormap,
        rich_help_panel=OUTPUT,
    ),
]


# --------------------------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class ModelArgs:
    """``--model --weights --labels --arch --trust-checkpoint``: which model to load."""

    model: str
    weights: str | None
    labels: str | None
    arch: str | None
    arch_args: str | None
    trust_checkpoint: bool
    code_path: str | None
    task: str | None
    input_size: str | None

    def apply_to(self, spec: ModelFields) -> None:
        spec.model = self.model
        spec.weights = self.weights
        spec.labels = self.labels
        spec.arch = self.arch
        spec.arch_args = self.arch_args
        spec.trust_checkpoint = self.trust_checkpoint
        spec.code_path = self.code_path
        spec.task = self.task
        spec.input_size = self.input_size


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
    format: str
    quality: int
    max_size: int | None
    layout: str | None
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
        options.shard = self.shard  # K/N, auto or auto/N: resolved when the options are checked
        options.fsync = self.fsync
        options.format = self.format
        options.quality = self.quality
        options.max_size = self.max_size
        options.layout = self.layout


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


GROUPS: dict[type, list[inspect.Parameter]] = {
    ModelArgs: [
        option(
            "model",
            Annotated[
                str,
                typer.Option(
                    "--model",
                    "-m",
                    help=f"{BUNDLED} (bundled, offline), a torchvision classifier, detector or segmenter (camcli "
                    "models), timm:NAME, hf:ORG/NAME, a Hugging Face save_pretrained folder, or a checkpoint file.",
                    metavar="NAME|PATH",
                    autocompletion=complete_model,
                    rich_help_panel=MODEL,
                ),
            ],
            BUNDLED,
        ),
        option(
            "weights",
            Annotated[
                str | None,
                typer.Option(
                    help="Weights: default, none (random init), or a torchvision name such as IMAGENET1K_V2. "
                    "\\[default: default]",
                    metavar="NAME",
                    rich_help_panel=MODEL,
                ),
            ],
            None,
        ),
        option(
            "labels",
            Annotated[
                str | None,
                typer.Option(
                    help="Class names: a text file (one per line) or a JSON list/dict. \\[default: the model's own]",
                    metavar="PATH",
                    rich_help_panel=MODEL,
                ),
            ],
            None,
        ),
        option("arch", ArchOpt, None),
        option("arch_args", ArchArgsOpt, None),
        option("trust_checkpoint", TrustOpt, False),
        option("code_path", CodePathOpt, None),
        option("task", TaskOpt, None),
        option("input_size", InputSizeOpt, None),
    ],
    BatchArgs: [
        option(
            "out",
            Annotated[
                Path, typer.Option("--out", "-o", help="Output folder.", metavar="FOLDER", rich_help_panel=OUTPUT)
            ],
            RunOptions.out,
        ),
        option(
            "batch_size",
            Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward pass.", rich_help_panel=RUN)],
            RunOptions.batch_size,
        ),
        option(
            "device",
            Annotated[
                str,
                typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.", metavar="DEVICE", rich_help_panel=RUN),
            ],
            RunOptions.device,
        ),
        option(
            "workers",
            Annotated[
                int | None,
                typer.Option(
                    help="Decode/write threads ahead of and behind the model. "
                    "\\[default: min(4, CPUs); on a GPU min(16, CPUs)]",
                    rich_help_panel=RUN,
                ),
            ],
            None,
        ),
        option(
            "max_pixels",
            Annotated[
                int,
                typer.Option(help="Refuse images with more pixels (decompression-bomb guard).", rich_help_panel=RUN),
            ],
            RunOptions.max_pixels,
        ),
        option(
            "skip_existing",
            Annotated[
                bool,
                typer.Option(
                    "--skip-existing/--overwrite",
                    help="Skip inputs whose outputs all exist (resume), or redo them.",
                    rich_help_panel=OUTPUT,
                ),
            ],
            False,
        ),
        option(
            "shard",
            Annotated[
                str | None,
                typer.Option(
                    help="Process only slice K of N (a stable hash of each path), e.g. 3/8. auto: this array task's "
                    "slice (Slurm, PBS, LSF, Grid Engine, AWS Batch, Kubernetes); auto/N where the scheduler does not "
                    "say the count N.",
                    metavar="K/N|auto",
                    rich_help_panel=RUN,
                ),
            ],
            None,
        ),
        option(
            "fsync",
            Annotated[
                bool,
                typer.Option(
                    "--fsync",
                    help="Sync the manifest to disk after every image (survives power loss).",
                    rich_help_panel=RUN,
                ),
            ],
            RunOptions.fsync,
        ),
        option(
            "format",
            Annotated[
                str,
                typer.Option(
                    "--format",
                    help="Picture files: png (lossless), jpg or webp (smaller, faster to write); maps stay .npy.",
                    metavar="png|jpg|webp",
                    autocompletion=complete_format,
                    rich_help_panel=OUTPUT,
                ),
            ],
            RunOptions.format,
        ),
        option(
            "quality",
            Annotated[int, typer.Option(help="jpg/webp quality, 1–100.", rich_help_panel=OUTPUT)],
            RunOptions.quality,
        ),
        option(
            "max_size",
            Annotated[
                int | None,
                typer.Option(
                    "--max-size",
                    help="Longest side of written pictures in pixels; JPEG inputs are then decoded at a reduced "
                    "scale. \\[default: the input's size]",
                    rich_help_panel=OUTPUT,
                ),
            ],
            None,
        ),
        option(
            "layout",
            Annotated[
                str | None,
                typer.Option(
                    "--layout",
                    help="Where the layers' grid is, when camcli cannot tell (camcli layers shows it): nchw, nhwc "
                    "(channels last), tokens or tokens:N (N class/register tokens first).",
                    metavar="LAYOUT",
                    autocompletion=complete_layout,
                    rich_help_panel=EXPLAIN,
                ),
            ],
            None,
        ),
        option("json_out", JsonOpt, False),
        option(
            "quiet",
            Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.", rich_help_panel=OUTPUT)],
            False,
        ),
        option("debug", DebugOpt, False),
    ],
}

# a group's fields and its options must be the same names, in order
assert all([f.name for f in dataclasses.fields(g)] == [p.name for p in ps] for g, ps in GROUPS.items())

R = TypeVar("R")

# metavars by type, for options that do not name their own: `--top-k N`, not `--top-k <int>`; flags show none
_METAVARS: dict[Any, str] = {bool: "", int: "N", float: "X", str: "TEXT", Path: "PATH"}


def _with_metavar(annotation: Any) -> Any:
    """Give the option in ``annotation`` a plain metavar by its type when it has none."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation
    kind, *extras = typing.get_args(annotation)
    for info in extras:
        if isinstance(info, typer.models.ParameterInfo) and info.metavar is None:
            base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # X | None → X
            base = typing.get_args(base)[0] if typing.get_origin(base) is list else base
            if base in _METAVARS:
                info.metavar = _METAVARS[base]
    return annotation


def shared_options(command: Callable[..., R]) -> Callable[..., R]:
    """Expand each parameter of ``command`` typed :class:`ModelArgs` or :class:`BatchArgs` into that group's
    options (in that place of the signature), and rebuild the group object from them on each call. Every option
    without a metavar gets one by its type (``N``, ``X``, ``TEXT``, ``PATH``; none for flags)."""
    hints = typing.get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}
    for p in inspect.signature(command).parameters.values():
        group = hints[p.name]
        if group in GROUPS:
            groups[p.name] = group
            params.extend(q.replace(annotation=_with_metavar(q.annotation)) for q in GROUPS[group])
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=_with_metavar(group)))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:
        for name, group in groups.items():
            kwargs[name] = group(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(group)})
        return command(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
