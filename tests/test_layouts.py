"""Layer layouts: NCHW, NHWC (channels last) and token grids are told apart from shapes and what the model says,
never guessed (camcli.engine.layouts), and a map lands where the image changed on every torchvision classifier."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from camcli.cli import app
from camcli.engine.hooks import capture
from camcli.engine.layers import default_layer, hookable, resolve, trace
from camcli.engine.layouts import infer_layout, to_grid
from camcli.errors import LayerError, UsageError
from camcli.models import load_model
from camcli.options import Layout, parse_layout

SQUARE = (224, 224)


@pytest.mark.parametrize(
    ("shape", "size", "prefix", "expected"),
    [
        ((1, 768, 7, 7), SQUARE, None, "nchw"),
        ((1, 7, 7, 768), SQUARE, None, "nhwc"),
        ((1, 56, 56, 96), SQUARE, None, "nhwc"),
        ((1, 8, 7, 7), SQUARE, None, "nchw"),  # 8 × 7 is one cell off a square: the exact reading wins
        ((1, 197, 384), SQUARE, None, "tokens:1"),
        ((1, 196, 384), SQUARE, None, "tokens:0"),
        ((1, 198, 384), SQUARE, 2, "tokens:2"),  # distilled DeiT: class + distillation token
        ((1, 261, 384), (224, 224), None, "tokens:5"),  # class token + 4 registers, 16 × 16
        ((1, 64, 10, 7), (320, 224), None, "nchw"),
        ((1, 10, 7, 64), (320, 224), None, "nhwc"),
        ((1, 71, 64), (320, 224), None, "tokens:1"),  # a 10 × 7 grid and a class token
        ((1, 768), SQUARE, None, None),
        ((1, 768, 1, 1), SQUARE, None, None),
    ],
)
def test_layout_is_read_from_shape(shape, size, prefix, expected):
    layout, problem = infer_layout(shape, size, prefix)
    assert (str(layout) if layout else None) == expected
    assert problem == ""


def test_a_shape_that_reads_both_ways_is_not_guessed():
    layout, problem = infer_layout((1, 7, 7, 7), SQUARE)
    assert layout is None and "channels first" in problem and "channels last" in problem
    assert infer_layout((1, 7, 7, 7), SQUARE, module_type="Conv2d")[0] == Layout("nchw")  # a conv is channels first
    layout, problem = infer_layout((1, 199, 64), SQUARE, prefix=1)  # the model's prefix count does not fit
    assert layout is None and "prefix" in problem


def test_to_grid_reads_each_layout_to_the_same_grid():
    g = torch.randn(2, 5, 4, 6)
    assert torch.equal(to_grid(g, Layout("nchw"), (40, 60)), g)
    assert torch.equal(to_grid(g.permute(0, 2, 3, 1), Layout("nhwc"), (40, 60)), g)
    tokens = torch.cat([torch.randn(2, 1, 5), g.flatten(2).transpose(1, 2)], dim=1)
    assert torch.equal(to_grid(tokens, Layout("tokens", 1), (40, 60)), g)
    assert torch.equal(to_grid(tokens, None, (40, 60)), g)
    with pytest.raises(LayerError, match="--layout"):
        to_grid(torch.zeros(1, 7, 7, 7), None, SQUARE)


def test_parse_layout():
    assert parse_layout("NHWC") == Layout("nhwc")
    assert parse_layout("tokens:2") == Layout("tokens", 2)
    assert str(parse_layout("tokens")) == "tokens"
    for bad in ("nwhc", "nchw:1", "tokens:x", "tokens:-1"):
        with pytest.raises(UsageError, match="--layout"):
            parse_layout(bad)


# --------------------------------------------------------------------------------------------- the probe
def probe_pair(size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, tuple[slice, slice]]:
    """A flat grey picture, and the same with a checkerboard patch in its top-right corner (where a transposed
    reading of the grid would put it bottom-left, and a striped one nowhere)."""
    h, w = size
    blank = torch.full((1, 3, h, w), 0.2)
    rows, cols = slice(0, h // 3), slice(w - w // 3, w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    board = (((yy // 8) + (xx // 8)) % 2).float() * 4 - 2
    probe = blank.clone()
    probe[:, :, rows, cols] = board[rows, cols]
    return blank, probe, (rows, cols)


def sample_layers(infos, preferred, n=6):
    """About ``n`` spatial layers spread over the forward pass, and the default layer."""
    usable = hookable(infos)
    step = max(1, len(usable) // n)
    names = [i.name for i in usable[::step]] + [default_layer(infos, preferred)]
    return list(dict.fromkeys(names))


def check_probe(name: str, n: int = 8) -> list[str]:
    """Layers of ``name`` (random weights) whose grid, read with the layout camcli chose, does not change most
    where the picture changed.

    Only layers whose weights make that possible are judged: where the change has a clear peak (its largest cell
    at least twice the median cell). A branch that mixes the whole picture (an attention branch before its
    residual sum, MaxViT's grid attention) changes every cell alike, and no layout could place the patch there.
    A wrong reading of a local layer (transposed, striped) still has a peak, in the wrong place, so it fails. At
    least half of the probed layers must be judged."""
    torch.manual_seed(0)
    loaded = load_model(name, "none")
    model = loaded.module.eval()
    size = loaded.input_size
    infos = trace(model, size, loaded.builder, loaded.layer_key, loaded.prefix_tokens)
    by_name = {i.name: i for i in infos}
    layers = sample_layers(infos, loaded.default_layer, n)
    modules = {n: resolve(model, n) for n in layers}
    blank, probe, (rows, cols) = probe_pair(size)
    acts = []
    for x in (blank, probe):
        with torch.no_grad(), capture(model, modules, grad=False) as cap:
            model(x)
        acts.append({n: to_grid(a, by_name[n].layout, size).float() for n, a in cap.acts.items()})
    wrong, judged = [], 0
    for n in layers:
        change = (acts[1][n] - acts[0][n]).norm(dim=1)[0]  # (h, w)
        if float(change.max()) < 2 * float(change.median()) or not bool(change.any()):
            continue
        judged += 1
        h, w = change.shape
        i, j = divmod(int(change.flatten().argmax()), w)
        cy, cx = (i + 0.5) * size[0] / h, (j + 0.5) * size[1] / w  # the peak cell's centre in input pixels
        cell_h, cell_w = size[0] / h, size[1] / w
        inside = rows.start - cell_h <= cy <= rows.stop + cell_h and cols.start - cell_w <= cx <= cols.stop + cell_w
        if not inside:
            wrong.append(f"{name}:{n} ({by_name[n].layout}, {by_name[n].shape}) peak at cell {i},{j} of {h}x{w}")
    if judged < len(layers) / 2:
        wrong.append(f"{name}: only {judged} of {len(layers)} probed layers have a clear peak")
    return wrong


FAST_PROBE = ["resnet18", "swin_t", "convnext_tiny", "maxvit_t", "vit_b_16"]


@pytest.mark.parametrize("name", FAST_PROBE)
def test_maps_land_where_the_picture_changed(name):
    assert check_probe(name) == []


TIMM_PROBE = [
    "timm:swin_tiny_patch4_window7_224",
    "timm:convnext_tiny",
    "timm:maxvit_tiny_tf_224",
    "timm:vit_small_patch16_224",
    "timm:deit_small_distilled_patch16_224",
]


@pytest.mark.parametrize("name", TIMM_PROBE)
def test_timm_maps_land_where_the_picture_changed(name):
    pytest.importorskip("timm", reason="timm is not installed: pip install -e '.[dev]' installs the extras")
    assert check_probe(name) == []


@pytest.mark.slow
def test_every_torchvision_classifier_reads_its_layers_right():
    import torchvision

    names = [n for n in torchvision.models.list_models(module=torchvision.models) if n not in FAST_PROBE]
    wrong = [line for n in names for line in check_probe(n)]
    assert wrong == []


# --------------------------------------------------------------------------------------------- the CLI
def test_layers_command_shows_layouts(tmp_path):
    result = CliRunner().invoke(app, ["layers", "--model", "swin_t", "--spatial", "--json"])
    assert result.exit_code == 0, result.output
    import json

    rows = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["features.5"]["layout"] == "nhwc"
    assert rows["permute"]["layout"] == "nchw" and rows["permute"]["default"]


def test_swin_stage_gives_a_grid_of_the_right_shape(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "features",
            "sample_images/chelsea.png",
            "--model",
            "swin_t",
            "--weights",
            "none",
            "--layer",
            "features.5",
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    stats = json.loads(result.stdout.splitlines()[0])["stats"]
    assert (stats["channels"], stats["height"], stats["width"]) == (384, 14, 14)


def test_a_layout_that_does_not_fit_is_refused(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "gradcam",
            "sample_images/chelsea.png",
            "--model",
            "vit_b_16",
            "--weights",
            "none",
            "--layout",
            "nhwc",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "cannot be read as --layout nhwc" in result.output


def test_overrides_that_do_not_fit_the_input_are_refused(tmp_path):
    img = "sample_images/chelsea.png"
    for model, layer, layout in [("swin_t", "features.7", "nchw"), ("vit_b_32", None, "tokens:8")]:
        args = ["gradcam", img, "--model", model, "--weights", "none", "--layout", layout, "--out", str(tmp_path)]
        result = CliRunner().invoke(app, args + (["--layer", layer] if layer else []))
        assert result.exit_code == 2 and f"cannot be read as --layout {layout}" in result.output, result.output


def test_layout_is_in_the_names_and_records(tmp_path):
    args = [
        "gradcam",
        "sample_images/chelsea.png",
        "--model",
        "swin_t",
        "--weights",
        "none",
        "--layer",
        "features.5",
        "--layout",
        "nhwc",
        "--json",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    import json

    rec = json.loads(result.stdout.splitlines()[0])
    assert rec["settings"]["layout"] == "nhwc" and ",layout=nhwc" in rec["outputs"]["overlay"]


def test_odd_outputs_are_not_grids():
    from camcli.engine.layers import LayerInfo, classify

    infos = [
        LayerInfo("temperature", "Scale", (), 1, 1),  # a scalar
        LayerInfo("windows", "Attention", (4, 49, 384), 1, 2),  # windows folded into the batch
        LayerInfo("tokens", "LayerNorm", (1, 196, 192), 1, 3),
        LayerInfo("attn", "Dropout", (1, 4, 196, 196), 1, 4),  # attention between the 196 tokens
        LayerInfo("table", "Linear", (1, 15, 15, 512), 1, 5, taller=(1, 15, 15, 512)),  # does not grow
        LayerInfo("pool", "AdaptiveAvgPool2d", (1, 256, 6, 6), 1, 6, taller=(1, 256, 6, 6)),  # pooled: a grid
        LayerInfo("patches", "PatchEmbed", (1, 196, 384), 1, 7),  # before the class token is added
    ]
    layouts = {i.name: str(i.layout) if i.layout else None for i in classify(infos, SQUARE, prefix=1)}
    assert layouts == {
        "temperature": None,
        "windows": None,
        "tokens": "tokens:0",
        "attn": None,
        "table": None,
        "pool": "nchw",
        "patches": "tokens:0",
    }
