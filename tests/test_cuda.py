"""CUDA checks: skipped where no GPU is present (this project's CI machine has none)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from camcli.methods import explain, get_method

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture()
def no_tf32():
    """Full float32 on the GPU: by default cuDNN convolutions use TF32 (10-bit mantissa) on Ampere and later,
    which moves a map by ~1e-3 relative; the comparisons of the methods' arithmetic turn it off."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "eigencam", "scorecam"])
def test_cuda_maps_match_cpu(method, no_tf32):
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


# ------------------------------------------------------------------------------------------ drawing on the GPU
def test_gpu_overlay_equals_pillows():
    import numpy as np
    from PIL import Image

    from camcli import render

    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (301, 457, 3), dtype=np.uint8)
    cam = rng.random((301, 457)).astype(np.float32)
    for blend in ("weighted", "uniform"):
        for alpha in (0.35, 0.5, 1.0):
            want = np.asarray(render.overlay(Image.fromarray(base), cam, "jet", alpha, blend)).astype(int)
            got = render.overlay_tensor(
                torch.from_numpy(base).cuda(), torch.from_numpy(cam).cuda(), "jet", alpha, blend
            )
            assert got.device.type == "cuda"
            diff = np.abs(got.cpu().numpy().astype(int) - want)
            assert diff.max() <= 1 and (diff == 0).mean() > 0.999, (blend, alpha)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_cli_gpu_pictures_match_cpu_pictures(tmp_path, fmt):
    """A run on the GPU (maps drawn there; JPEG encoded with nvJPEG) writes what a CPU run writes, within the
    GPU's float differences (TF32 convolutions) and, for JPEG, the two encoders' differences; the tags are there."""
    import json

    import numpy as np
    from PIL import Image

    from camcli.io.formats import read_tags

    from .conftest import SAMPLES

    for device in ("cuda", "cpu"):
        _cli(["gradcam", str(SAMPLES), "--device", device, "--format", fmt, "--out", str(tmp_path / device), "-q"])
    gpu = sorted((tmp_path / "cuda").glob(f"*.{fmt}"))
    assert [p.name for p in gpu] == sorted(p.name for p in (tmp_path / "cpu").glob(f"*.{fmt}")) and len(gpu) == 3
    for path in gpu:
        a = np.asarray(Image.open(path).convert("RGB")).astype(int)
        b = np.asarray(Image.open(tmp_path / "cpu" / path.name).convert("RGB")).astype(int)
        assert a.shape == b.shape
        diff = np.abs(a - b)
        assert diff.mean() < (0.5 if fmt == "png" else 3.0), (path.name, diff.mean())
        assert json.loads(read_tags(path)["camcli-settings"])["format"] == fmt


def test_detector_and_segmenter_maps_on_cuda_match_cpu(tmp_path, no_tf32):
    """Detectors and segmenters on cuda:0 (--box matched on the boxes' device, masks brought back to the CPU):
    the same objects and maps as on the CPU."""
    import numpy as np

    from camcli.jobs.objects import cam_job
    from camcli.jobs.runner import run_job
    from camcli.options import CamOptions

    from .conftest import SAMPLES
    from .test_objects import random_detector

    def maps(device: str, model, **options) -> list[np.ndarray]:
        out = tmp_path / device / model.name
        job = cam_job(CamOptions(out=out, device=device, save_raw=True, **options), model)
        (result,) = list(run_job(job, [str(SAMPLES / "astronaut.png")]))
        assert result.ok, result.error
        return [np.load(o.raw) for o in result.written if o.raw]

    det = random_detector("fasterrcnn_mobilenet_v3_large_320_fpn")
    cpu = maps("cpu", det, min_score=0.0, max_objects=2)
    gpu = maps("cuda", det, min_score=0.0, max_objects=2)
    assert len(cpu) == len(gpu) == 2
    for a, b in zip(cpu, gpu, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-2)
    det.module.cpu()
    boxed = maps("cuda", det, min_score=0.0, box="0,0,200,200", iou=0.0)
    assert len(boxed) == 1
    torch.manual_seed(0)
    from camcli.models import load_model

    seg = load_model("lraspp_mobilenet_v3_large", "none")
    seg.input_size = (96, 128)
    cpu = maps("cpu", seg, max_objects=1)
    gpu = maps("cuda", seg, max_objects=1)
    assert len(cpu) == len(gpu) == 1
    np.testing.assert_allclose(cpu[0], gpu[0], atol=2e-2)
    assert len(maps("cuda", seg, max_objects=1, region="10,10,300,300")) == 1


# ------------------------------------------------------------------------------------------ decoding on the GPU
def _jpegs(folder):
    from PIL import Image

    from .conftest import SAMPLES

    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    for name in ("chelsea", "coffee", "astronaut"):
        Image.open(SAMPLES / f"{name}.png").convert("RGB").save(folder / f"{name}.jpg", quality=92)
    turned = Image.open(SAMPLES / "chelsea.png").convert("RGB").transpose(Image.Transpose.ROTATE_90)
    turned.save(folder / "turned.jpg", quality=92, exif=exif)
    Image.open(SAMPLES / "coffee.png").convert("L").save(folder / "gray.jpg", progressive=True)
    return folder


def test_nvjpeg_decode_matches_pillow(tmp_path):
    """nvjpeg's pixels, turned upright on the GPU, are Pillow's within the two decoders' rounding."""
    import numpy as np

    from camcli.io.decode import decode, read_jpeg
    from camcli.io.picture import decode_jpegs

    files = sorted(_jpegs(tmp_path / "in").iterdir())
    jpegs = [read_jpeg(f) for f in files]
    assert all(j is not None for j in jpegs)
    for f, pixels in zip(files, decode_jpegs(jpegs, torch.device("cuda")), strict=True):
        assert pixels is not None and pixels.device.type == "cuda", f.name
        want = np.asarray(decode(f)).astype(int)
        got = pixels.cpu().numpy().astype(int)
        assert got.shape == want.shape, f.name
        assert np.abs(got - want).mean() < 1.5, (f.name, np.abs(got - want).mean())


@pytest.mark.parametrize("extra", [[], ["--max-size", "300", "--format", "jpg"]])
def test_cli_jpeg_inputs_decoded_on_the_gpu_match_cpu(tmp_path, extra):
    """JPEG inputs on cuda:0 are decoded there (nvjpeg) and drawn there: the CPU run's classes and pictures."""
    import json

    import numpy as np
    from PIL import Image

    from camcli.jobs import prepare

    inputs = _jpegs(tmp_path / "in")
    seen: list[str] = []
    real = prepare.decode_jpegs

    def counted(jpegs, device):
        seen.extend(j.path.name for j in jpegs)
        return real(jpegs, device)

    prepare.decode_jpegs = counted
    try:
        runs = {}
        for device in ("cuda", "cpu"):
            args = ["gradcam", str(inputs), "--device", device, "--out", str(tmp_path / device), "--json", "-q"]
            res = _cli(args + extra)
            runs[device] = {r["input"]: r for r in map(json.loads, res.stdout.splitlines())}
    finally:
        prepare.decode_jpegs = real
    assert sorted(seen) == sorted(p.name for p in inputs.iterdir())  # every file, on the GPU run only
    assert runs["cuda"].keys() == runs["cpu"].keys() and len(runs["cpu"]) == 5
    for key, a in runs["cpu"].items():
        b = runs["cuda"][key]
        assert a["class_index"] == b["class_index"], key
        pa = np.asarray(Image.open(a["outputs"]["overlay"]).convert("RGB")).astype(int)
        pb = np.asarray(Image.open(b["outputs"]["overlay"]).convert("RGB")).astype(int)
        assert pa.shape == pb.shape and np.abs(pa - pb).mean() < 3.0, key
