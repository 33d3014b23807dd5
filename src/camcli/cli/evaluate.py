"""``camcli evaluate``: faithfulness metrics per method, beside baseline maps, or the randomisation sanity check."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ..options import DEFAULT_METHOD, PERTURB_BASELINES, EvalOptions
from ..profiling import phase
from .boundary import EXIT_OK, guarded
from .cam_opts import EvalMethodArgs, TargetArgs, method_option, target_option
from .completion import EXPLAIN, RUN
from .params import BatchArgs, InputsArg, LayerOpt, ModelArgs, shared_options
from .report import ReportOpt, build_and_tell
from .runs import complete_and_count, run_with_report

METRIC_HELP = (
    "Metric, repeatable. Faithfulness: deletion, insertion (RISE, Petsiuk et al. 2018: the class probability as "
    "the map's pixels are removed / revealed, highest first; area under the curve), drop (Average Drop relu(s−m)/s "
    "and Increase in Confidence m>s, Chattopadhyay et al. 2018, with the input multiplied by the map), road (ROAD, "
    "Rong et al. 2022: the change of probability after the most / least relevant pixels are imputed; combined "
    "(LeRF−MoRF)/2). Against --annotations: pointing (the map's maximum on the object, Zhang et al. 2018), "
    "energy-pointing (share of the map in the object's box, Score-CAM), relevance-mass, relevance-rank (Arras et "
    "al. 2022), iou (the map above --iou-threshold of its maximum vs the object). Of the map: sparseness (Gini "
    "index), complexity (entropy). random-logit (Sixt et al. 2020: SSIM with a random other class's map; makes "
    "the maps twice, so only when named). \\[default: the faithfulness ones; with --annotations also the "
    "localisation and complexity ones]"
)
TRUTH = "Ground truth"


@shared_options
def evaluate(
    inputs: InputsArg,
    model: ModelArgs,
    *,
    layer: LayerOpt = None,
    method: Annotated[list[str] | None, method_option("CAM method to measure, repeatable")] = None,
    target: Annotated[list[str] | None, target_option("each image's top class")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help=METRIC_HELP, metavar="NAME", rich_help_panel=EXPLAIN),
    ] = None,
    steps: Annotated[
        int,
        typer.Option(
            "--steps",
            help="Deletion/insertion: steps per curve (steps + 1 points; fewer when steps does not divide the "
            "pixel count evenly, as torchcam).",
            rich_help_panel=EXPLAIN,
        ),
    ] = EvalOptions.steps,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="Deletion/insertion: what removed pixels become: zero (the normalisation's mean colour), blur "
            "or mean (the image's mean colour). \\[default: zero for deletion, blur for insertion, as RISE]",
            metavar="|".join(PERTURB_BASELINES),
            rich_help_panel=EXPLAIN,
        ),
    ] = None,
    road_percents: Annotated[
        str,
        typer.Option(
            "--road-percents", help="ROAD: percentages of pixels removed.", metavar="LIST", rich_help_panel=EXPLAIN
        ),
    ] = EvalOptions.road_percents,
    road_noise: Annotated[
        float,
        typer.Option(
            "--road-noise", help="ROAD: std of the noise on imputed pixels (0: none).", rich_help_panel=EXPLAIN
        ),
    ] = EvalOptions.road_noise,
    baselines: Annotated[
        bool,
        typer.Option(
            "--baselines/--no-baselines",
            help="Also measure a random map, a centred Gaussian and an edge map (Sobel), as rows of the table.",
            rich_help_panel=EXPLAIN,
        ),
    ] = True,
    sanity: Annotated[
        bool,
        typer.Option(
            "--sanity",
            help="Instead of the metrics: the sanity check (Adebayo et al. 2018): randomise the model's weights "
            "from the output towards the input, on a copy, and measure how far each method's map moves.",
            rich_help_panel=EXPLAIN,
        ),
    ] = False,
    sanity_steps: Annotated[
        int, typer.Option("--sanity-steps", help="Sanity check: randomisation steps.", rich_help_panel=EXPLAIN)
    ] = EvalOptions.sanity_steps,
    annotations: Annotated[
        str | None,
        typer.Option(
            "--annotations",
            help="Ground truth to compare the maps with: a COCO instances .json (boxes, polygons, RLE), a folder "
            "of Pascal VOC .xml, a folder of masks named like the inputs, or a .csv of boxes "
            "(input,class,x0,y0,x1,y1). Adds the localisation metrics and a picture per image and method with the "
            "object's outline.",
            metavar="PATH",
            rich_help_panel=TRUTH,
        ),
    ] = None,
    annotation_classes: Annotated[
        str | None,
        typer.Option(
            "--annotation-classes",
            help='JSON mapping the annotation\'s classes to the model\'s: {"cat": ["tabby", "Egyptian cat"]} '
            "(without it: classes of the same name).",
            metavar="FILE",
            rich_help_panel=TRUTH,
        ),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            help="pointing: a hit within this many pixels of the model's input around the object (Zhang et al.).",
            rich_help_panel=TRUTH,
        ),
    ] = EvalOptions.tolerance,
    iou_threshold: Annotated[
        float,
        typer.Option(
            "--iou-threshold",
            help="iou: the map's pixels at or above this fraction of its maximum are its region.",
            rich_help_panel=TRUTH,
        ),
    ] = EvalOptions.iou_threshold,
    truth_overlays: Annotated[
        bool,
        typer.Option(
            "--truth-overlays/--no-truth-overlays",
            help="With --annotations: write each method's map with the object's outline and the map's maximum "
            "(a.jpg.gradcam.truth.285-Egyptian_cat.png), shown by the report.",
            rich_help_panel=TRUTH,
        ),
    ] = True,
    report: ReportOpt = False,
    score_batch: Annotated[
        int, typer.Option(help="Masked images per forward pass for scorecam.", rich_help_panel=RUN)
    ] = EvalOptions.score_batch,
    targets: TargetArgs,
    params: EvalMethodArgs,
    run: BatchArgs,
) -> None:
    """Measure how faithful each method's maps are, and with --annotations whether they point at the object: a
    table per method (mean ± 95 % interval, beside maps that explain nothing), a record per image, method and class
    in OUT/metrics.jsonl, and the plots OUT/curves.png, OUT/scores.png (or OUT/sanity.png).

    Example: camcli evaluate sample_images --method gradcam --method layercam --out eval/
    """
    started = time.perf_counter()
    code = EXIT_OK
    with guarded(run.debug, run.quiet, resumable=True):
        with phase("import"):
            from ..jobs.evaluate import EvaluateJob

        options = EvalOptions(
            layers=list(layer or []),
            methods=list(method or [DEFAULT_METHOD]),
            targets=list(target or []),
            metrics=list(metric or []),
            annotations=annotations,
            annotation_classes=annotation_classes,
            tolerance=tolerance,
            iou_threshold=iou_threshold,
            truth_overlays=truth_overlays,
            steps=steps,
            baseline=baseline,
            road_percents=road_percents,
            road_noise=road_noise,
            baselines=baselines,
            sanity=sanity,
            sanity_steps=sanity_steps,
            score_batch=score_batch,
        )
        targets.apply_to(options)
        params.apply_to(options)
        if sanity and metric:
            from ..errors import UsageError

            raise UsageError("--sanity runs the sanity check instead of the metrics; drop --metric (or --sanity)")
        total = complete_and_count(options, model, run, inputs)
        job = EvaluateJob(options)
        code = run_with_report(job, inputs, total, run, started=started)
        _summarize(job, quiet=run.quiet)  # the plots are written with --quiet too
        if report:
            build_and_tell(options.out, quiet=run.quiet)
    raise typer.Exit(code)


def _summarize(job: object, *, quiet: bool) -> None:
    """The table(s) on stderr and the plots in --out, from every record of this run's settings."""
    from ..io.manifest import manifest_name
    from ..jobs.eval_summary import (
        collect,
        leaders_line,
        metric_rows,
        plot_curves,
        plot_leaderboard,
        plot_sanity,
        plot_scores,
        sanity_rows,
    )
    from ..jobs.evaluate import EvaluateJob
    from . import console

    assert isinstance(job, EvaluateJob)
    o = job.options
    path = o.out / manifest_name(o.resolved_shard(), job.manifest_stem)
    summaries = collect(path, job.record_base(), job.row_names())
    if not summaries:
        return
    title = f"{job.model.name} · layer {'+'.join(job.layers)}"
    if o.sanity:
        columns, rows = sanity_rows(summaries)
        plotted = plot_sanity(summaries, o.out / job.plot_name("sanity"), f"sanity check: {title}")
        what = "rank correlation with the trained model's map, as the weights are randomised from the output"
    else:
        columns, rows = metric_rows(summaries, job.forwards_per_image())
        plotted = plot_curves(summaries, o.out / job.plot_name("curves"), title)
        scored = plot_scores(summaries, o.out / job.plot_name("scores"), title)
        ranked = plot_leaderboard(summaries, o.out / job.plot_name("leaderboard"), title)
        what = "mean ± 95 % interval over n (image, class) pairs; rank: mean rank over the scores (1 = best)"
    if not quiet:
        console.table(f"{what}:", columns, rows, keep=("method",))
        if not o.sanity and (line := leaders_line(summaries)):
            console.info(line)
        if plotted:
            console.info(f"plot: {o.out / job.plot_name('sanity' if o.sanity else 'curves')}")
        if not o.sanity and scored:
            console.info(f"scores beside the baselines: {o.out / job.plot_name('scores')}")
        if not o.sanity and ranked:
            console.info(f"leaderboard: {o.out / job.plot_name('leaderboard')}")
        if job.truth is not None:
            for line in job.truth.end_lines(o.annotations or ""):
                console.info(line)
