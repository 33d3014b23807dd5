"""Methods made from the whole model (camcli.methods.whole): the plumbing every pixel-attribution and transformer
method shares, and saliency against a hand computation and captum."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from camcli.errors import UsageError
from camcli.method_params import USED_BY, MethodParams
from camcli.methods import REGISTRY, explain, explain_smooth, get_method
from camcli.methods.whole import ModelContext, clip_outliers


class LinearNet(nn.Module):
    """Two class scores, each a weighted sum of the pixels: d y_c / d x = W_c, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 2, bias=False)
        with torch.no_grad():
            w = torch.arange(24, dtype=torch.float32).view(2, 12) - 11.5  # signed, no two equal
            self.fc.weight.copy_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_saliency_hand_computed():
    # x: (1, 3, 2, 2); y_1 = Σ W_1 · x, so the gradient is W_1 laid out as (3, 2, 2); the map is the largest
    # |W_1| over the three colour channels at each pixel: W_1 = 0.5 … 11.5, channel 2 holds 8.5 … 11.5
    model = LinearNet().eval()
    x = torch.randn(1, 3, 2, 2)
    ctx = ModelContext(model, x, torch.tensor([1]), torch.tensor([1.0]))
    raw = get_method("saliency").model_map(ctx)  # type: ignore[attr-defined]
    torch.testing.assert_close(raw[0], torch.tensor([[8.5, 9.5], [10.5, 11.5]]))
    # class 0: W_0 = −11.5 … −0.5: the largest magnitudes are channel 0's, 11.5 … 8.5
    ctx = ModelContext(model, x, torch.tensor([0]), torch.tensor([1.0]))
    torch.testing.assert_close(get_method("saliency").model_map(ctx)[0], torch.tensor([[11.5, 10.5], [9.5, 8.5]]))  # type: ignore[attr-defined]


def test_saliency_equals_captum(resnet18):
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    classes = torch.tensor([3, 7])
    ctx = ModelContext(resnet18, x, classes, torch.ones(2))
    ours = get_method("saliency").model_map(ctx)  # type: ignore[attr-defined]
    theirs = captum.Saliency(resnet18).attribute(x, target=classes, abs=True).amax(dim=1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_negated_target_and_parameters_untouched(resnet18):
    # not:c explains −y_c: the gradient flips sign, its magnitude (the saliency map) does not; no .grad is set
    x = torch.randn(1, 3, 32, 32)
    pos = ModelContext(resnet18, x, torch.tensor([5]), torch.tensor([1.0]))
    neg = ModelContext(resnet18, x, torch.tensor([5]), torch.tensor([-1.0]))
    torch.testing.assert_close(pos.input_gradient(x), -neg.input_gradient(x))
    assert all(p.grad is None for p in resnet18.parameters())


def test_explain_mixes_layer_and_whole_model_methods(resnet18):
    x = torch.randn(2, 3, 64, 64)
    ex = explain(resnet18, x, "layer4", [get_method("gradcam"), get_method("saliency")], top_k=2)
    assert ex.by_method["gradcam"].shape == (2, 2, 2, 2)  # the layer's grid
    assert ex.by_method["saliency"].shape == (2, 2, 64, 64)  # the input's
    assert list(ex.by_method) == ["gradcam", "saliency"]  # in the order asked for
    for maps in ex.by_method.values():
        assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    # the whole-model method explains the same classes as the layer methods
    alone = explain(resnet18, x, [], get_method("saliency"), classes=ex.classes)
    torch.testing.assert_close(alone.by_method["saliency"], ex.by_method["saliency"])
    # several layers: no per-layer map of a whole-model method
    two = explain(resnet18, x, ["layer3", "layer4"], [get_method("gradcam"), get_method("saliency")])
    assert {m for m, _ in two.per_layer} == {"gradcam"}
    # smoothing wraps it like any method
    smooth = explain_smooth(resnet18, x, "layer4", get_method("saliency"), smooth=2)
    assert smooth.by_method["saliency"].shape == (2, 1, 64, 64)


def test_clip_outliers():
    maps = torch.arange(100, dtype=torch.float32).view(1, 10, 10)
    clipped = clip_outliers(maps, 2.0)
    # the 98th percentile of 0 … 99 (linear interpolation): 97.02
    assert float(clipped.max()) == pytest.approx(97.02)
    assert float(clipped[0, 0, 0]) == 0
    torch.testing.assert_close(clip_outliers(maps, 0), maps)


def test_method_params_checked_and_named():
    for bad in (MethodParams(steps=0), MethodParams(baseline="grey"), MethodParams(masks=0), MethodParams(window=0)):
        with pytest.raises(UsageError):
            bad.check()
    p = MethodParams(steps=64, masks=500)
    assert p.named(["ig", "gradcam"]) == [("steps", "64")]  # only the parameters of the methods asked for
    assert p.named(["gradcam"]) == []
    assert p.setting(["gradcam"]) == {}  # runs without such methods keep the settings they had
    assert p.setting(["rise"]) == {"method_params": {"masks": 500, "seed": 0}}
    assert MethodParams(window=20).used(["occlusion"])["stride"] == 10


def test_method_params_table_matches_the_methods():
    # camcli.method_params.USED_BY is written out so that options need no torch; each method says the same
    for name, cls in REGISTRY.items():
        assert tuple(cls.params) == USED_BY.get(name, ()), name


def test_methods_lists_family_and_json(capsys):
    from typer.testing import CliRunner

    from camcli.cli import app

    result = CliRunner().invoke(app, ["methods", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["saliency"]["family"] == "pixel attribution" and by_name["saliency"]["at_layer"] is False
    assert by_name["gradcam"]["family"] == "CAM" and by_name["gradcam"]["at_layer"] is True


def test_cli_saliency_run_and_bad_parameter(tmp_path):
    from typer.testing import CliRunner

    from camcli.cli import app
    from tests.conftest import SAMPLES

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["cam", str(SAMPLES / "coffee.png"), "--method", "saliency", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "coffee.png.saliency.967-espresso.png").is_file()
    bad = CliRunner().invoke(app, ["cam", str(SAMPLES / "coffee.png"), "--method", "saliency", "--steps", "0"])
    assert bad.exit_code == 2 and "--steps 0 is too small" in bad.output


def test_method_all_keeps_what_applies_and_says_why_not(resnet18):
    from camcli.methods import REGISTRY, for_model, get_methods, left_out_note

    every = get_methods(["all"])
    assert [m.name for m in every] == list(REGISTRY)
    kept, left = for_model(["all"], every, resnet18, ["layer4"])
    # a CNN has no attention blocks; one layer is too few for a method that multiplies layers' maps
    assert {"rollout", "gradrollout", "legrad"} <= set(left) and left["refinecam"].startswith("fuses 2 or more")
    assert "gradcam" in [m.name for m in kept] and not set(left) & {m.name for m in kept}
    note = left_out_note(left)
    assert note.startswith(" · left out: ") and "rollout, gradrollout, legrad (needs a transformer" in note
    kept2, left2 = for_model(["all"], every, resnet18, ["layer3", "layer4"])
    assert "refinecam" in [m.name for m in kept2] and "refinecam" not in left2
    with pytest.raises(UsageError, match="give it alone"):
        get_methods(["all", "gradcam"])
    objects = get_methods(["all"], objects=True)
    assert objects and all(m.on_objects for m in objects)
