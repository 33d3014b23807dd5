"""The options that say where a model's architecture and code come from (``--arch``, ``--arch-args``,
``--trust-checkpoint``, ``--code-path``): part of every command's model options
(:class:`camcli.cli.params.ModelArgs`)."""

from __future__ import annotations

from typing import Annotated

import typer

from .completion import MODEL, complete_model

ArchOpt = Annotated[
    str | None,
    typer.Option(
        help="Architecture of a checkpoint: a torchvision name, timm:NAME, or your own class as file.py:Class or "
        "package.module:factory (this runs your code, by your choice).",
        metavar="NAME",
        autocompletion=complete_model,
        rich_help_panel=MODEL,
    ),
]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Allow a model to run arbitrary code while loading: full unpickling of a checkpoint or "
        "pytorch_model.bin, a Hugging Face model's own Python (auto_map). Only for files you trust.",
        rich_help_panel=MODEL,
    ),
]
ArchArgsOpt = Annotated[
    str | None,
    typer.Option(
        "--arch-args",
        help="Keyword arguments for your --arch class or factory, as JSON: '{\"num_classes\": 7}'.",
        metavar="JSON",
        rich_help_panel=MODEL,
    ),
]
CodePathOpt = Annotated[
    str | None,
    typer.Option(
        "--code-path",
        help="A folder put on the import path, for --arch package.module:factory and for the classes a "
        "--trust-checkpoint pickle imports.",
        metavar="DIR",
        rich_help_panel=MODEL,
    ),
]
TaskOpt = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="What the model does, for a class of your own camcli cannot tell: classification, detection (a "
        "torchvision-style detector: a list of pictures in, boxes/labels/scores out) or segmentation (a dict "
        "with 'out'). \\[default: told from the model]",
        metavar="TASK",
        rich_help_panel=MODEL,
    ),
]
InputSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--input-size",
        help="A 3-D network's input as D,H,W (a volume is resized to it), when camcli cannot read it from the model.",
        metavar="D,H,W",
        rich_help_panel=MODEL,
    ),
]
