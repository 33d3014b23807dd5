from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"

# offline and reproducible: no weight downloads, a private cache, stable rich output
os.environ["CAMCLI_OFFLINE"] = "1"
os.environ["CAMCLI_WIDTH"] = "120"
os.environ.setdefault("COLUMNS", "120")

# one intra-op thread, unless OMP_NUM_THREADS says otherwise (and for the CLI runs in subprocesses too): the
# tests' tensors are small, and on 2 cores shared with other work torch's two threads kept waiting for each other
# (measured on such a machine: the whole suite 2× slower; the ROAD peer test 48 s instead of 0.7 s)
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("caches")
    os.environ["XDG_CACHE_HOME"] = str(base / "xdg")
    os.environ["TORCH_HOME"] = str(base / "torch")


@pytest.fixture(scope="session")
def bundled():
    from camcli.models import load_bundled

    return load_bundled()


def calibrated(name: str, size: int = 64) -> nn.Module:
    """A torchvision model with random weights (seed 0) whose BatchNorm statistics are calibrated on one random batch
    of ``size``² inputs, so activations keep a sane scale (uncalibrated random mobilenet_v3 activations shrink to 1e-8
    by the last block) and batch norms have biases of their own; in eval mode."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass sets the batch statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, size, size))
    return model.eval()


@pytest.fixture()
def resnet18():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


class TinyNet(nn.Module):
    """1 input channel → 1×1 conv with 2 channels (weights 1 and 0.5) → global average → linear 2→2."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.tensor([1.0, 0.5]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.feat(x)).flatten(1))


@pytest.fixture()
def tiny() -> TinyNet:
    return TinyNet().eval()


def make_media_files(folder: Path) -> Path:
    """The README's clip.mp4, scan.nii.gz and net3d.pt (examples/make_media.py) written into ``folder``."""
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import make_media
    finally:
        sys.path.remove(str(ROOT / "examples"))
    make_media.clip(folder / "clip.mp4")
    make_media.scan(folder / "scan.nii.gz")
    make_media.net(folder / "net3d.pt")
    return folder
