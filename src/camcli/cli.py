"""The Typer app: parse options, call the library, report, map errors to exit codes.

Nothing heavy (torch, numpy, PIL, rich tables) is imported at module import time, so ``camcli --help`` and
``camcli --version`` stay instant. Exit codes: 0 all inputs done; 1 some input failed; 2 usage or setup
error before any input ran; 130 interrupted.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__

app = typer.Typer(
    name="camcli",
    help="Grad-CAM overlays and feature-map grids for PyTorch vision models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_MODEL = "efficientnet_lite0"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"camcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Grad-CAM overlays and feature-map grids for PyTorch vision models."""


@contextmanager
def _boundary(debug: bool) -> Iterator[None]:
    """Translate camcli errors into one line on stderr and an exit code (tracebacks only with --debug)."""
    from .errors import CamcliError

    try:
        yield
    except CamcliError as e:
        if debug:
            raise
        from . import console

        console.error(str(e))
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        from . import console

        console.error("interrupted; finished outputs are kept, no partial files are left")
        raise typer.Exit(EXIT_INTERRUPTED) from None


# ------------------------------------------------------------------------------------- shared options
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="efficientnet_lite0 (bundled, offline), a torchvision model name (see: camcli models), "
        "or a checkpoint file.",
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(help="torchvision weights: default, none (random init), or a name such as IMAGENET1K_V2."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
LabelsOpt = Annotated[str | None, typer.Option(help="Class names: a text file (one per line) or a JSON list/dict.")]
ArchOpt = Annotated[str | None, typer.Option(help="Architecture of a checkpoint (torchvision name).")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Allow a checkpoint to run arbitrary code while loading (full unpickling). Only for files you trust.",
    ),
]


@app.command()
def gradcam(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or globs.")],
    model: ModelOpt = DEFAULT_MODEL,
    weights: WeightsOpt = None,
    layer: Annotated[
        str | None, typer.Option("--layer", "-l", help="Dotted layer name; default: last spatial layer.")
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="Class index or name to explain (repeatable); default: top-1."),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Explain each image's K best classes.")] = 1,
    method: Annotated[str, typer.Option(help="CAM method (see: camcli methods).")] = "gradcam",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("camcli-out"),
    colormap: Annotated[str, typer.Option(help="Any matplotlib colormap name.")] = "jet",
    alpha: Annotated[float, typer.Option(help="Opacity of the map over the picture, 0–1.")] = 0.5,
    save_raw: Annotated[bool, typer.Option("--save-raw", help="Also write each map as float32 .npy.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward pass.")] = 8,
    device: DeviceOpt = "auto",
    max_pixels: Annotated[
        int | None, typer.Option(help="Refuse images with more pixels (decompression-bomb guard).")
    ] = None,
    labels: LabelsOpt = None,
    arch: ArchOpt = None,
    trust_checkpoint: TrustOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON record per line on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Write Grad-CAM overlays (one PNG per image and class) and a manifest.jsonl.

    Example: camcli gradcam sample_images --out out/ --top-k 2
    """
    code = EXIT_USAGE
    with _boundary(debug):
        code = _run_gradcam(locals())
    raise typer.Exit(code)


def _run_gradcam(args: dict[str, Any]) -> int:
    from . import console, images, pipeline

    opts = pipeline.Options(
        model=args["model"],
        weights=args["weights"],
        layer=args["layer"],
        method=args["method"],
        targets=list(args["target"] or []),
        top_k=args["top_k"],
        out=args["out"],
        colormap=args["colormap"],
        alpha=args["alpha"],
        save_raw=args["save_raw"],
        batch_size=args["batch_size"],
        device=args["device"],
        labels=args["labels"],
        arch=args["arch"],
        trust_checkpoint=args["trust_checkpoint"],
    )
    if args["max_pixels"] is not None:
        from PIL import Image

        opts.max_pixels = args["max_pixels"]
        Image.MAX_IMAGE_PIXELS = max(args["max_pixels"], Image.MAX_IMAGE_PIXELS or 0)
    items = images.discover(args["inputs"], opts.out)
    if not items:
        from .errors import UsageError

        raise UsageError(
            "no images found in the inputs (extensions: "
            + ", ".join(sorted(e.lstrip(".") for e in images.IMAGE_EXTENSIONS))
            + ")"
        )
    prep = pipeline.prepare(opts)
    quiet = args["quiet"]
    if not quiet:
        how = "auto: last spatial layer" if prep.layer_chosen else "from --layer"
        console.info(
            f"model {prep.model.name} · layer {prep.layer} ({how}) · method {prep.method.name} · "
            f"device {prep.device} · {len(items)} image(s) → {opts.out}"
        )
    return _drive(items, prep, json_out=args["json_out"], quiet=quiet)


def _drive(items: list[Any], prep: Any, *, json_out: bool, quiet: bool) -> int:
    """Run the pipeline with progress, per-file errors, the manifest, --json and the summary."""
    import json

    from . import console, pipeline

    started = time.perf_counter()
    manifest = pipeline.Manifest(prep.options.out)
    done: list[Any] = []
    failed: list[Any] = []
    interrupted = False
    try:
        with console.progress(len(items), enabled=not quiet and len(items) > 1) as advance:
            for result in pipeline.run(items, prep):
                recs = pipeline.records(result, prep)
                manifest.write(recs)
                if json_out:
                    for r in recs:
                        sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                if result.ok:
                    done.append(result)
                else:
                    failed.append(result)
                    console.error(result.error or "failed")
                advance(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        manifest.close()
    if not quiet:
        _summary(done, failed, time.perf_counter() - started, prep, manifest.path)
    if interrupted:
        console.error("interrupted; finished outputs are kept, no partial files are left")
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _summary(done: list[Any], failed: list[Any], seconds: float, prep: Any, manifest: Path) -> None:
    from . import console

    if 0 < len(done) <= 20:
        rows = []
        for r in done:
            top = r.predictions[0]
            rows.append((r.input, f"{top.index} {top.name}", f"{top.probability:.3f}", len(r.classes)))
        console.table("top prediction per image", ["image", "class", "prob", "maps"], rows)
    rate = len(done) / seconds if seconds > 0 else 0.0
    console.info(
        f"{len(done)} done, {len(failed)} failed in {seconds:.1f}s ({rate:.1f} img/s); "
        f"outputs and {manifest.name} in {prep.options.out}"
    )


@app.command()
def layers(
    model: ModelOpt = DEFAULT_MODEL,
    weights: WeightsOpt = None,
    spatial: Annotated[bool, typer.Option("--spatial", help="Only layers with a spatial output.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
    labels: LabelsOpt = None,
    arch: ArchOpt = None,
    trust_checkpoint: TrustOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List every layer: dotted name, type, output shape (batch 1); the default Grad-CAM layer is marked.

    Example: camcli layers --model resnet18
    """
    with _boundary(debug):
        import json

        from . import console
        from .layers import default_layer, trace
        from .models import load_model

        loaded = load_model(
            model,
            "none" if weights is None and model != DEFAULT_MODEL else weights,
            labels=labels,
            arch=arch,
            trust_checkpoint=trust_checkpoint,
        )
        infos = trace(loaded.module, loaded.input_size, loaded.builder)
        chosen = default_layer(infos, loaded.default_layer)
        shown = [i for i in infos if i.spatial] if spatial else infos
        if json_out:
            for i in shown:
                rec = {
                    "name": i.name,
                    "type": i.type,
                    "shape": list(i.shape) if i.shape else None,
                    "calls": i.calls,
                    "spatial": i.spatial,
                    "default": i.name == chosen,
                }
                sys.stdout.write(json.dumps(rec) + "\n")
            return
        rows = [
            (
                ("* " if i.name == chosen else "  ") + i.name,
                i.type,
                "×".join(map(str, i.shape)) if i.shape else ("(not run)" if i.calls == 0 else "-"),
                i.calls if i.calls != 1 else "",
            )
            for i in shown
        ]
        console.table(
            f"{loaded.name}: layers for a 1×3×{loaded.input_size[0]}×{loaded.input_size[1]} input "
            f"(* = default layer: {chosen})",
            ["layer", "type", "output shape", "calls"],
            rows,
            stdout=True,
        )


@app.command()
def models(
    pattern: Annotated[str | None, typer.Argument(help="Only names containing this text.")] = None,
) -> None:
    """List the model names --model accepts (the bundled offline model first).

    Example: camcli models resnet
    """
    from .models import BUNDLED, available_models

    for name in available_models():
        if pattern is None or pattern.lower() in name:
            typer.echo(name + ("  (bundled, offline, default)" if name == BUNDLED else ""))


def main() -> None:
    """Console-script entry point."""
    _wrap(app)


def _wrap(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
