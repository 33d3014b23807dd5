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


def _cli(args):
    from typer.testing import CliRunner

    from camcli.cli import app

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res


def test_cli_options_on_cuda_match_cpu(tmp_path):
    """Smoothing, guided backprop, several methods and raw maps on cuda:0 give the CPU's maps."""
    from .conftest import SAMPLES

    img = str(SAMPLES / "chelsea.png")
    common = [img, "--method", "gradcam", "--method", "scorecam", "--smooth", "2", "--guided", "--save-raw", "-q"]
    _cli(["gradcam", *common, "--device", "cuda:0", "--out", str(tmp_path / "gpu")])
    _cli(["gradcam", *common, "--device", "cpu", "--out", str(tmp_path / "cpu")])
    import numpy as np

    raws = sorted(p.name for p in (tmp_path / "cpu").glob("*.npy"))
    assert len(raws) == 2
    for name in raws:
        np.testing.assert_allclose(np.load(tmp_path / "gpu" / name), np.load(tmp_path / "cpu" / name), atol=2e-3)
    assert len(list((tmp_path / "gpu").glob("*guided*.png"))) == 3  # guided backprop, guided-gradcam, guided-scorecam


def test_features_on_cuda(tmp_path):
    from .conftest import SAMPLES

    _cli(["features", str(SAMPLES), "--device", "cuda", "--top", "4", "--out", str(tmp_path), "-q"])
    assert len(list(tmp_path.glob("*.png"))) == 3


def test_checkpoint_loads_onto_cuda(tmp_path):
    """A checkpoint saved from GPU tensors loads and runs (map_location), on the GPU and on the CPU."""
    from .conftest import SAMPLES

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).cuda()
    torch.save(model.state_dict(), tmp_path / "gpu.pt")
    for device in ("cuda", "cpu"):
        out = tmp_path / device
        _cli(["gradcam", str(SAMPLES / "coffee.png"), "--model", str(tmp_path / "gpu.pt"), "--device", device,
              "--out", str(out), "-q"])  # fmt: skip
        assert len(list(out.glob("*.png"))) == 1


def test_missing_cuda_index_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from camcli.cli import app

    from .conftest import SAMPLES

    n = torch.cuda.device_count()
    res = CliRunner().invoke(app, ["gradcam", str(SAMPLES), "--device", f"cuda:{n}", "--out", str(tmp_path)])
    assert res.exit_code == 2 and f"cuda:{n}" in res.output and "Traceback" not in res.output
    assert not list(tmp_path.glob("*.png"))
