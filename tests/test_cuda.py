"""CUDA checks: skipped where no GPU is present (this project's CI machine has none)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from camcli.methods import explain, get_method

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "eigencam", "scorecam"])
def test_cuda_maps_match_cpu(method):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    cpu = explain(model, x, "layer4", get_method(method), targets=[3])
    gpu = explain(model.cuda(), x.cuda(), "layer4", get_method(method), targets=[3])
    torch.testing.assert_close(gpu.maps, cpu.maps, atol=1e-3, rtol=1e-3)
    assert gpu.maps.device.type == "cpu"


def test_cli_on_cuda(tmp_path):
    from typer.testing import CliRunner

    from camcli.cli import app

    from .conftest import SAMPLES

    res = CliRunner().invoke(app, ["gradcam", str(SAMPLES), "--device", "cuda", "--out", str(tmp_path), "-q"])
    assert res.exit_code == 0, res.output
    assert len(list(tmp_path.glob("*.png"))) == 3
