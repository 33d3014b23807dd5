"""The commands that describe things: ``methods``, ``layers``, ``models``, ``inspect``, ``merge-manifests``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import streams
from .boundary import guarded
from .model_opts import ArchArgsOpt, ArchOpt, CodePathOpt, TrustOpt
from .params import DebugOpt, JsonOpt, ModelArgs, shared_options


def methods(json_out: JsonOpt = False) -> None:
    """List the CAM methods: name, what it does, paper, whether it needs gradients, cost.

    Example: camcli methods
    """
    with guarded(debug=False):
        _methods(json_out)


def _methods(json_out: bool) -> None:
    import json

    from ..methods import REGISTRY
    from . import console

    classes = list(REGISTRY.items())
    if json_out:
        for n, c in classes:
            rec = {
                "name": n,
                "family": c.family,
                "summary": c.summary,
                "paper": c.paper,
                "gradients": c.needs_grad,
                "cost": c.cost,
                "at_layer": c.scope == "layer",
                "params": list(c.params),
            }
            streams.results().write(json.dumps(rec) + "\n")
        return
    table = []
    for n, c in classes:
        cite, _, arxiv = c.paper.partition(", arXiv:")  # the id gets a column of its own, never folded
        table.append((n, c.family, c.summary, cite, arxiv or "-", "yes" if c.needs_grad else "no", c.cost))
    console.table(
        f"{len(classes)} methods (camcli cam --method NAME)",
        ["name", "family", "what", "paper", "arXiv", "gradients", "cost"],
        table,
        stdout=True,
        keep=("name", "arXiv"),
    )
    console.out_console().print(
        "All methods: --smooth N / --aug-smooth average noisy / mirrored passes; --guided adds guided backprop; "
        "--method all runs every method that applies to the model. CAMs: several --layer fuse maps. Pixel "
        "attribution and transformer maps are made from the whole model (--layer does not apply). Methods' "
        "parameters: camcli cam --help, 'Method parameters'.",
        markup=False,
    )


def inspect(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="A .pt/.pth/.bin/.ckpt/.safetensors file, or a model as --model takes it: a Hugging Face folder, "
            "timm:NAME, hf:ORG/NAME, a torchvision name.",
            metavar="CHECKPOINT|MODEL",
        ),
    ],
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    trust_checkpoint: TrustOpt = False,
    code_path: CodePathOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show what a checkpoint holds: format, where the weights are, architecture found, classes, keys; or what a
    model --model names is (a Hugging Face folder, timm:NAME, hf:ORG/NAME …): task, classes, preprocessing,
    default layers, size, and where its default weights are (nothing is downloaded).

    Nothing in the file is executed (weights-only loading) unless --trust-checkpoint is given.

    Example: camcli inspect runs/best.pt
    """
    with guarded(debug):
        import json

        from ..models.checkpoints import inspect_checkpoint
        from . import console
        from .inspect_model import inspect_model, is_model_spec

        if is_model_spec(str(checkpoint)):
            inspect_model(
                str(checkpoint), arch=arch, arch_args=arch_args, trust=trust_checkpoint, code_path=code_path,
                json_out=json_out,
            )  # fmt: skip
            return

        info = inspect_checkpoint(
            str(checkpoint), arch=arch, trust=trust_checkpoint, code_path=code_path, arch_args=arch_args
        )
        n_params = sum(int(v.numel()) for v in info.state_dict.values())
        rec = {
            "path": info.path,
            "format": info.format,
            "container": info.container,
            "stripped_prefixes": info.stripped,
            "architecture": f"{info.arch} without a classifier head" if info.num_classes == 0 else info.arch,
            "num_classes": info.num_classes,
            "candidates": info.candidates,
            "tensors": len(info.state_dict),
            "parameters": n_params,
            "other_keys": [k for k in info.extra_keys if k != info.container],
            "notes": info.notes,
            "first_keys": list(info.state_dict)[:5],
        }
        if json_out:
            streams.results().write(json.dumps(rec) + "\n")
            return
        rows = [
            (k, ", ".join(map(str, v)) if isinstance(v, list) else ("-" if v is None else v)) for k, v in rec.items()
        ]
        console.table(f"checkpoint {checkpoint}", ["field", "value"], rows, stdout=True)
        if info.arch and not any(n.startswith("does not match") for n in info.notes):
            given = [
                *(["--arch", arch] if arch else []),
                *(["--arch-args", f"'{arch_args}'"] if arch_args else []),
                *(["--trust-checkpoint"] if trust_checkpoint else []),
                *(["--code-path", code_path] if code_path else []),
            ]
            what = " --reference PICTURE" if info.num_classes == 0 else ""  # an embedding model: similarity to it
            console.info(f"use it: camcli gradcam IMAGE --model {' '.join([str(checkpoint), *given])}{what}")
            if info.num_classes == 1:
                console.info("one output: a binary head (sigmoid); --target not:0 explains what speaks against it")
        elif len(info.candidates) > 1:
            console.info(f"several architectures fit; add --arch ({', '.join(info.candidates[:5])})")


def merge_manifests_cmd(
    out: Annotated[Path, typer.Argument(help="The output folder the shards wrote to.")],
    debug: DebugOpt = False,
) -> None:
    """Join the manifest.shard-K-of-N.jsonl parts of a sharded run into manifest.jsonl (keeps each output's last
    record; also compacts the manifest of reruns into one folder); `camcli evaluate`'s metrics.shard-K-of-N.jsonl
    parts into metrics.jsonl the same way.

    Example: camcli merge-manifests cams/
    """
    with guarded(debug):
        import os

        from ..errors import UsageError
        from ..io.manifest import merge_manifests
        from . import console

        problems, merged = [], 0
        for stem in ("manifest", "metrics"):
            if stem == "metrics" and not any(out.glob("metrics.shard-*.jsonl")):
                continue
            path, parts, n, bad = merge_manifests(out, stem)  # writes nothing when there is nothing to merge
            if not parts and not os.path.lexists(path):
                continue  # (an evaluate-only folder has no manifest, and gets none)
            for line in bad:
                console.error(line)
            console.info(f"merged {parts} part(s) into {path}: {n} records")
            problems += bad
            merged += 1
        if not merged:
            raise UsageError(f"no manifest.jsonl, manifest or metrics parts in {out}; pass the --out folder of a run")
        if problems:  # the merge is done, but lines that were not records were left out: say so in the status
            raise typer.Exit(1)


@shared_options
def layers(
    model: ModelArgs,
    spatial: Annotated[bool, typer.Option("--spatial", help="Only layers with a spatial output.")] = False,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List every layer: dotted name, type, output shape (batch 1) and where its grid is (nchw, nhwc channels
    last, tokens:N with N class/register tokens first; "?" when the shape cannot tell: pass --layout); the
    default Grad-CAM layer is marked.

    Example: camcli layers --model resnet18
    """
    with guarded(debug):
        import json

        from ..caches import remember_layer_names
        from ..engine.layers import hookable, trace
        from ..errors import LayerError
        from ..jobs.objects import default_layers
        from ..models import folder_model, is_bundled, load_spec, looks_like_path
        from ..options import ModelSpec
        from . import console

        spec = ModelSpec()
        model.apply_to(spec)
        named = not looks_like_path(spec.model) and folder_model(spec.model) is None
        if spec.weights is None and named and not is_bundled(spec.model):
            spec.weights = "none"  # the layers are the same with any weights: never download for a listing
        loaded = load_spec(spec)
        infos = trace(
            loaded.module,
            loaded.input_size,
            loaded.builder,
            loaded.layer_key,
            loaded.prefix_tokens,
            loaded.task != "detection",
            loaded.sample_shape()[:-2],  # a clip's frames, a volume's channels and slices
        )
        try:
            chosen, why = default_layers(loaded, infos), ""
        except LayerError as e:  # still list the layers, to pick one with --layer
            chosen, why = [], str(e)
        remember_layer_names(spec.model, [i.name for i in hookable(infos)])
        shown = [i for i in infos if i.spatial or i.problem] if spatial else infos
        if json_out:
            for i in shown:
                rec = {
                    "name": i.name,
                    "type": i.type,
                    "shape": list(i.shape) if i.shape else None,
                    "calls": i.calls,
                    "spatial": i.spatial,
                    "layout": str(i.layout) if i.layout else None,
                    **({"layout_problem": i.problem} if i.problem else {}),
                    "default": i.name in chosen,
                }
                streams.results().write(json.dumps(rec) + "\n")
            return
        calls = any(i.calls != 1 for i in shown)  # a column only when some layer runs more than once (or never)
        rows = [
            (
                ("* " if i.name in chosen else "  ") + i.name,  # not indented: the full name fits where it is copied
                i.type,
                "×".join(map(str, i.shape)) if i.shape else ("(not run)" if i.calls == 0 else "-"),
                str(i.layout) if i.layout else ("? --layout" if i.problem else ""),
                *([i.calls if i.calls != 1 else ""] if calls else []),
            )
            for i in shown
        ]
        marked = f"* = default layer{'s' if len(chosen) > 1 else ''}: {', '.join(chosen)}" if chosen else why
        console.table(
            f"{loaded.name}: layers for a {'×'.join(map(str, (1, *loaded.sample_shape())))} input ({marked})",
            ["layer", "type", "output shape", "layout", *(["calls"] if calls else [])],
            rows,
            stdout=True,
            keep=("layer",),
        )


@shared_options
def models(
    pattern: Annotated[str | None, typer.Argument(help="Only names containing this text.", metavar="TEXT")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the model names --model accepts: the bundled offline model first, then torchvision's classifiers, video
    classifiers, detectors and segmenters, each with its task, its default weights and whether it runs offline
    (weights bundled or already cached). timm:NAME, hf:ORG/NAME and monai:NAME models are not listed.

    Example: camcli models resnet
    """
    with guarded(debug=False):
        import json

        from ..caches import write_json
        from ..models import model_catalog
        from ..options import MODEL_NAMES_ENTRY
        from . import console

        catalog = model_catalog()
        write_json(MODEL_NAMES_ENTRY, [e.name for e in catalog])  # for shell completion of --model
        wanted = (pattern or "").strip().lower().replace("-", "_")
        shown = [e for e in catalog if wanted in e.name]
        if not shown:
            console.error(f"no model name contains '{pattern}'; camcli models lists all {len(catalog)}")
            raise typer.Exit(1)
        if json_out:
            for e in shown:
                rec = {"name": e.name, "task": e.task, "weights": e.weights, "offline": e.offline, "where": e.where}
                streams.results().write(json.dumps(rec) + "\n")
            return
        offline = sum(e.offline for e in shown)
        console.table(
            f"models: {len(shown)}, {offline} offline with their weights (any of them with --weights none)",
            ["name", "task", "default weights", "weights file"],
            [(e.name, e.task, e.weights or "-", e.where) for e in shown],
            stdout=True,
            keep=("name",),
        )
