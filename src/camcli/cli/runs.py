"""The commands that run over inputs: ``gradcam``/``cam`` and ``features``, and how a run is reported.

Each command builds its options object (:mod:`camcli.options`), counts the inputs (so a bad path fails before
the model loads), sets up the job, and hands it to :func:`run_with_report`, which shows progress, prints ``--json``
records, reports failed inputs, prints the summary and returns the exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..array_jobs import shard_note
from ..options import DEFAULT_METHOD, CamOptions, FeatureOptions, RunOptions
from ..profiling import phase
from . import streams
from .boundary import EXIT_OK, EXIT_SOME_FAILED, guarded
from .cam_opts import MethodArgs, ObjectArgs, TargetArgs, method_option, target_option
from .completion import EXPLAIN, OUTPUT, RUN, SMOOTHING, complete_blend, complete_normalize
from .media_opts import FeatureMediaArgs, MediaArgs
from .params import BatchArgs, ColormapOpt, GridLayerOpt, InputsArg, LayerOpt, ModelArgs, shared_options
from .report import ReportOpt, build_and_tell
from .summary import Summary

if TYPE_CHECKING:
    from ..jobs.job import C, Job
    from ..jobs.results import ImageResult


@shared_options
def cam(
    inputs: InputsArg,
    model: ModelArgs,
    *,
    layer: LayerOpt = None,
    method: Annotated[
        list[str] | None, method_option("CAM method, repeatable (several share one forward pass)")
    ] = None,
    target: Annotated[list[str] | None, target_option("each image's top-k")] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", "-k", help="Explain each image's N best classes.", rich_help_panel=EXPLAIN)
    ] = CamOptions.top_k,
    colormap: ColormapOpt = CamOptions.colormap,
    alpha: Annotated[
        float,
        typer.Option(
            help="Opacity of the map over the picture, 0–1 (the most, with --blend weighted).", rich_help_panel=OUTPUT
        ),
    ] = CamOptions.alpha,
    blend: Annotated[
        str,
        typer.Option(
            help="weighted: each pixel's opacity follows the map, so cold regions show the photo as it was; "
            "uniform: the same opacity everywhere.",
            metavar="weighted|uniform",
            autocompletion=complete_blend,
            rich_help_panel=OUTPUT,
        ),
    ] = CamOptions.blend,
    annotate: Annotated[
        bool,
        typer.Option(
            "--annotate",
            help="A caption under each overlay: class, probability, method, layer, colour scale.",
            rich_help_panel=OUTPUT,
        ),
    ] = CamOptions.annotate,
    save_raw: Annotated[
        bool, typer.Option("--save-raw", help="Also write each map as float32 .npy.", rich_help_panel=OUTPUT)
    ] = False,
    report: ReportOpt = False,
    panel: Annotated[
        bool,
        typer.Option(
            "--panel",
            help="Also write one picture per image: the input and every method's map side by side (a row per "
            "class), titled, with the colour scale.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    per_layer: Annotated[
        bool,
        typer.Option("--per-layer", help="With several --layer: each layer's map too.", rich_help_panel=OUTPUT),
    ] = False,
    guided: Annotated[
        bool,
        typer.Option("--guided", help="Also write guided backprop and guided CAM images.", rich_help_panel=OUTPUT),
    ] = False,
    smooth: Annotated[
        int,
        typer.Option(help="Average N extra maps of noisy copies (SmoothGrad-style).", rich_help_panel=SMOOTHING),
    ] = CamOptions.smooth,
    noise: Annotated[
        float,
        typer.Option(
            help="Noise std for --smooth and smoothgrad, as a fraction of the input range.", rich_help_panel=SMOOTHING
        ),
    ] = CamOptions.noise,
    aug_smooth: Annotated[
        bool,
        typer.Option("--aug-smooth", help="Average with the mirrored image's map.", rich_help_panel=SMOOTHING),
    ] = False,
    score_batch: Annotated[
        int, typer.Option(help="Masked images per forward pass for scorecam.", rich_help_panel=RUN)
    ] = CamOptions.score_batch,
    objects: ObjectArgs,
    targets: TargetArgs,
    params: MethodArgs,
    media: MediaArgs,
    run: BatchArgs,
) -> None:
    started = time.perf_counter()
    code = EXIT_OK
    with guarded(run.debug, run.quiet, resumable=True):
        with phase("import"):
            from ..jobs.objects import cam_job

        options = CamOptions(
            layers=list(layer or []),
            methods=list(method or [DEFAULT_METHOD]),
            targets=list(target or []),
            top_k=top_k,
            colormap=colormap,
            alpha=alpha,
            save_raw=save_raw,
            per_layer=per_layer,
            smooth=smooth,
            noise=noise,
            aug_smooth=aug_smooth,
            guided=guided,
            score_batch=score_batch,
            blend=blend,
            annotate=annotate,
            panel=panel,
            report=report,
        )
        objects.apply_to(options)
        targets.apply_to(options)
        params.apply_to(options, noise)
        media.apply_to(options)
        total = complete_and_count(options, model, run, inputs)
        code = run_with_report(cam_job(options), inputs, total, run, started=started)
        if report:
            build_and_tell(options.out, quiet=run.quiet)
    raise typer.Exit(code)


@shared_options
def features(
    inputs: InputsArg,
    model: ModelArgs,
    *,
    layer: GridLayerOpt = None,
    all_layers: Annotated[
        bool,
        typer.Option(
            "--all", help="A grid for every layer with a spatial output, in forward order.", rich_help_panel=EXPLAIN
        ),
    ] = False,
    top: Annotated[
        int, typer.Option(help="Show the N channels with the highest mean activation.", rich_help_panel=EXPLAIN)
    ] = FeatureOptions.top,
    channels: Annotated[
        str | None,
        typer.Option(help="Show these channels instead, e.g. 0,5,17-24.", metavar="LIST", rich_help_panel=EXPLAIN),
    ] = None,
    normalize: Annotated[
        str,
        typer.Option(
            help="tile: each tile on its own scale; layer: one scale for the grid.",
            metavar="tile|layer",
            autocompletion=complete_normalize,
            rich_help_panel=OUTPUT,
        ),
    ] = FeatureOptions.normalize,
    colormap: ColormapOpt = FeatureOptions.colormap,
    tile: Annotated[int, typer.Option(help="Tile size in pixels.", rich_help_panel=OUTPUT)] = FeatureOptions.tile,
    save_raw: Annotated[
        bool, typer.Option("--save-raw", help="Also write the layer output as .npy.", rich_help_panel=OUTPUT)
    ] = False,
    stats: Annotated[
        bool, typer.Option("--stats", help="Print channels, size, mean, max, % zeros.", rich_help_panel=OUTPUT)
    ] = False,
    report: ReportOpt = False,
    media: FeatureMediaArgs,
    run: BatchArgs,
) -> None:
    """Write feature-map grids: the input picture, then the layer's strongest channels, one PNG per layer.

    A video shows one frame (--frame), a volume one slice (--slice); the file name says which.

    Example: camcli features sample_images/chelsea.png --model resnet18 --weights none --layer layer2 --top 32
    """
    started = time.perf_counter()
    code = EXIT_OK
    with guarded(run.debug, run.quiet, resumable=True):
        with phase("import"):
            from ..jobs.features import FeatureJob

        options = FeatureOptions(
            layers=list(layer or []),
            all_layers=all_layers,
            top=top,
            channels=channels,
            normalize=normalize,  # type: ignore[arg-type]  # checked by FeatureOptions.check
            colormap=colormap,
            tile=tile,
            save_raw=save_raw,
        )
        media.apply_to(options)
        total = complete_and_count(options, model, run, inputs)
        rows = _StatsRows()
        job = FeatureJob(options)
        try:
            code = run_with_report(job, inputs, total, run, started=started, on_result=rows.add if stats else None)
        finally:  # an interrupted run shows the rows of the images it finished
            if stats:
                from . import console

                console.table("layer statistics", rows.columns, rows.rows, stdout=not run.json_out)
        if report:
            build_and_tell(options.out, quiet=run.quiet)
    raise typer.Exit(code)


@dataclass
class _StatsRows:
    """``features --stats``: one table row per image and layer, collected as results arrive."""

    columns: tuple[str, ...] = ("image", "layer", "channels", "h×w", "mean", "max", "% zeros")
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, result: ImageResult) -> None:
        from ..jobs.results import FeatureOutput

        for o in result.written:
            if isinstance(o, FeatureOutput):
                st = o.stats
                size = f"{st.height}×{st.width}"
                where = o.where()
                name = result.input if where is None else f"{result.input} ({where})"
                self.rows.append((name, o.layer, st.channels, size, st.mean, st.max, st.zeros_pct))


def complete_and_count(options: RunOptions, model: ModelArgs, run: BatchArgs, inputs: list[str]) -> int | None:
    """Fill in the shared options, check them, and count the inputs (None when reading stdin): a bad option or
    path fails before the model loads, and an option before a (possibly long) walk of the inputs."""
    from ..errors import UsageError
    from ..io.inputs import IMAGE_EXTENSIONS, count_inputs
    from ..io.outputs import ensure_writable_folder

    model.apply_to(options)
    run.apply_to(options)
    options.check()
    ensure_writable_folder(options.out)
    # videos and volumes: gradcam and cam (camcli.jobs.media), features (camcli.jobs.media_features)
    media = isinstance(options, (CamOptions, FeatureOptions))
    shard = options.resolved_shard()
    total = count_inputs(inputs, options.out, shard, media)  # also refuses an --out that is an input folder
    if total == 0 and shard is None:
        exts = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise UsageError(f"no images found in the inputs (extensions: {exts})")
    return total


def run_with_report(
    job: Job[C],
    inputs: list[str],
    total: int | None,
    run: BatchArgs,
    *,
    started: float,
    on_result: Callable[[ImageResult], None] | None = None,
) -> int:
    """Run ``job`` with progress, ``--json`` records, per-file errors and the summary; the exit code.

    ``started`` is when the command began (``time.perf_counter()``): the summary's time is the run's wall time,
    with the set-up (model loading) before the first image given apart.

    Ctrl-C / SIGTERM: the writes already handed out finish and are recorded, the summary is printed, and the
    interrupt goes on to the boundary (exit 130). A closed stdout (``--json | head``): the same, quietly, exit 141
    as for SIGPIPE.
    """
    from ..errors import OutputError, UsageError
    from ..io.manifest import encode_record, manifest_name
    from ..jobs.runner import run_job
    from . import console

    ready = time.perf_counter()
    if not run.quiet:
        if job.model.notes:
            console.info(f"checkpoint {job.model.name}: " + "; ".join(job.model.notes))
        count = "?" if total is None else total
        shard = shard_note(job.options.resolved_shard(), job.options.shard_source)  # "shard 3/8 (from Slurm's …)"
        console.info(f"{job.header()}{' · ' + shard if shard else ''} · {count} image(s) → {job.options.out}")
        if job.model.random_weights:
            console.info(
                f"note: {job.model.name} has random weights (--weights none): its classes and maps say nothing "
                "about a trained model"
            )
    summary = Summary(job)

    def show_summary() -> None:
        if not run.quiet:
            end = time.perf_counter()
            summary.show(
                end - started,
                ready - started,
                job.options.out,
                manifest_name(job.options.resolved_shard(), job.manifest_stem),
            )

    results = run_job(job, inputs, on_result=on_result, on_note=console.info)
    try:
        with (
            phase("run"),
            console.progress(total, not run.quiet, label=job.label, warmup=job.batch_size) as progress,
        ):
            for result in results:
                if run.json_out:
                    streams.results().buffer.write(b"".join(encode_record(r) for r in result.records))
                    streams.results().flush()
                if not result.ok:
                    console.error(result.error or "failed")
                summary.add(result)
                progress.done(counted=result.ok and not result.skipped)
    except BrokenPipeError:
        results.close()  # records what was written; the boundary exits quietly
        raise
    except (KeyboardInterrupt, OutputError):
        results.close()
        show_summary()
        raise
    if total is None and not (summary.done or summary.failed or summary.skipped):
        raise UsageError("no image paths came on standard input; pipe one path per line into '-'")
    show_summary()
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK
