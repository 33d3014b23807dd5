"""Hostile code and files of the user's own (issue 30): their --arch code is contained (no sys.exit, argparse or
print escapes it), a zip checkpoint that would expand far beyond its size is refused unread, a detector or
segmenter of their own takes class indices, deeply nested JSON is one line, timm's train.py checkpoints load."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from camcli.cli import app
from camcli.errors import CheckpointError, ModelError
from camcli.io.manifest import read_records
from camcli.models import load_model
from camcli.models.checkpoints import inspect_checkpoint, read_file

from .conftest import SAMPLES

NET = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=3):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))
    """
)


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(res, code: int, *texts: str) -> str:
    assert res.exit_code == code, res.output
    line = res.stderr.strip().splitlines()[-1]
    for text in texts:
        assert text in line, res.stderr
    assert "Traceback" not in res.output and "unexpected" not in res.stderr
    return line


def photo(tmp_path: Path) -> Path:
    path = tmp_path / "cat.png"
    Image.open(SAMPLES / "chelsea.png").convert("RGB").resize((40, 32)).save(path)
    return path


def own_code(tmp_path: Path, before: str = "", name: str = "train.py") -> tuple[Path, Path]:
    """(weights, code file): the Net of ``NET`` with ``before`` run first when the file is imported."""
    code = tmp_path / name
    code.write_text(textwrap.dedent(before) + NET)
    scope: dict[str, object] = {}
    exec(NET, scope)
    torch.manual_seed(0)
    torch.save(scope["Net"]().state_dict(), tmp_path / "w.pt")  # type: ignore[operator]
    return tmp_path / "w.pt", code


# --------------------------------------------------------------------------------------------- defect 4
@pytest.mark.parametrize("code", [0, 3, None, "'bye'"])
def test_own_code_that_exits_when_imported_is_one_line_error(tmp_path, code):
    weights, file = own_code(tmp_path, f"import sys\nsys.exit({'' if code is None else code})\n")
    res = invoke("layers", "--model", weights, "--arch", f"{file}:Net")
    one_line(res, 2, str(file), f"sys.exit({code if code is not None else 0})", '__name__ == "__main__"')


def test_own_code_that_exits_when_called_is_one_line_error(tmp_path):
    weights, file = own_code(tmp_path)
    file.write_text(file.read_text() + "\ndef make():\n    raise SystemExit(5)\n")
    res = invoke("layers", "--model", weights, "--arch", f"{file}:make")
    one_line(res, 2, "calling make()", "sys.exit(5)")


def test_own_code_that_parses_arguments_when_imported_sees_none_of_camcli_s(tmp_path, monkeypatch):
    seen = tmp_path / "argv.json"
    weights, file = own_code(
        tmp_path,
        f"""
        import argparse, json, sys
        parser = argparse.ArgumentParser()
        parser.add_argument("--epochs", type=int, default=1)
        args = parser.parse_args()
        open({str(seen)!r}, "w").write(json.dumps(sys.argv))
        """,
    )
    argv = ["camcli", "layers", "--model", str(weights), "--arch", f"{file}:Net"]
    monkeypatch.setattr(sys, "argv", argv)  # what a shell gives camcli
    res = invoke(*argv[1:])
    assert res.exit_code == 0, res.output
    assert json.loads(seen.read_text()) == [str(file)]  # the file's name alone
    assert sys.argv == argv  # given back


def test_own_code_prints_go_to_stderr_and_json_stdout_is_records_only(tmp_path):
    weights, file = own_code(tmp_path, "print('hello from the import')\n")
    file.write_text(file.read_text().replace("super().__init__()", "super().__init__(); print('built')"))
    res = invoke(
        "gradcam", photo(tmp_path), "--model", weights, "--arch", f"{file}:Net", "-o", tmp_path / "o", "--json"
    )
    assert res.exit_code == 0, res.output
    assert "hello from the import" in res.stderr and "built" in res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]  # every line of stdout is a record
    assert [r["status"] for r in records] == ["ok"]


def test_own_code_errors_are_one_line(tmp_path):
    weights, file = own_code(tmp_path, "raise ValueError('first line\\nsecond line\\nthird')\n")
    line = one_line(invoke("layers", "--model", weights, "--arch", f"{file}:Net"), 2, "ValueError: first line")
    assert "second" not in invoke("layers", "--model", weights, "--arch", f"{file}:Net").stderr
    assert line.startswith("error: --arch: running")


def test_trusted_pickle_whose_module_exits_or_prints_when_imported(tmp_path):
    pkg = tmp_path / "code" / "hostile_pkg_exit"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "net.py").write_text(NET)
    script = "import torch; from hostile_pkg_exit.net import Net; torch.save(Net(), 'full.pt')"
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, env={"PYTHONPATH": str(pkg.parent)})
    (pkg / "net.py").write_text("print('imported')\nimport sys\nsys.exit(4)\n" + NET)
    res = invoke("layers", "--model", tmp_path / "full.pt", "--trust-checkpoint", "--code-path", pkg.parent)
    one_line(res, 2, "full.pt", "--trust-checkpoint", "sys.exit(4)")
    assert "imported" not in res.stdout and "imported" in res.stderr
    sys.modules.pop("hostile_pkg_exit.net", None)
    sys.modules.pop("hostile_pkg_exit", None)
    (pkg / "net.py").write_text("raise ImportError('no GPU here\\nmore')\n" + NET)
    res = invoke("layers", "--model", tmp_path / "full.pt", "--trust-checkpoint", "--code-path", pkg.parent)
    one_line(res, 2, "full.pt", "ImportError: no GPU here")
    sys.modules.pop("hostile_pkg_exit", None)


# --------------------------------------------------------------------------------------------- defect 7
def bomb(path: Path, mib: int = 80) -> Path:
    """A torch.save checkpoint whose data/0 is ``mib`` MiB of zeros, deflated (about 80 KB), written in chunks."""
    torch.save({"w": torch.zeros(4)}, path.with_suffix(".plain"))
    with zipfile.ZipFile(path.with_suffix(".plain")) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            if not info.filename.endswith("data/0"):
                out.writestr(info, src.read(info.filename))
                continue
            entry = zipfile.ZipInfo(info.filename)
            entry.compress_type = zipfile.ZIP_DEFLATED
            with out.open(entry, "w") as f:
                chunk = bytes(1 << 20)
                for _ in range(mib):
                    f.write(chunk)
    return path


def test_a_zip_checkpoint_that_expands_far_beyond_its_size_is_refused_unread(tmp_path, monkeypatch):
    path = bomb(tmp_path / "bomb.pt")
    assert path.stat().st_size < 1 << 20

    def no_load(*_a, **_k):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(CheckpointError, match=r"would expand to 80 MiB from a 0\.1 MiB file") as err:
        inspect_checkpoint(str(path))
    assert "torch.save" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.undo()
    ckpt = bomb(tmp_path / "lightning.ckpt")  # Lightning's .ckpt is torch.save's zip too; so is `camcli inspect`'s
    one_line(invoke("inspect", ckpt), 2, "lightning.ckpt", "would expand to 80 MiB")
    one_line(invoke("inspect", ckpt, "--trust-checkpoint"), 2, "would expand")
    torch.save({"w": torch.zeros(4)}, tmp_path / "fine.pt")  # torch.save's own zips: stored, within reason
    fmt, obj = read_file(tmp_path / "fine.pt", trust=False)
    assert fmt == "torch-zip" and torch.equal(obj["w"], torch.zeros(4))  # type: ignore[index]


def test_a_hugging_face_folder_s_zip_weights_are_checked_before_transformers_reads_them(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    tiny = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    config = {"model_type": "vit", "architectures": ["ViTModel"], "image_size": 32, "patch_size": 8, **tiny}
    (folder / "config.json").write_text(json.dumps(config))  # small: the config's own size check passes
    bomb(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: its .* would expand"):
        load_model(str(folder))


def test_a_safetensors_header_that_claims_more_than_the_file_is_one_line(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 1 << 32]}}).encode()
    path = tmp_path / "big.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    one_line(invoke("inspect", path), 2, "big.safetensors", "not a valid safetensors file")


# --------------------------------------------------------------------------------------------- defect 18
OBJECTS = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision.models.detection.transform import GeneralizedRCNNTransform


    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.transform = GeneralizedRCNNTransform(64, 96, [0.0] * 3, [1.0] * 3)
            self.backbone = nn.Module()
            self.backbone.body = nn.Conv2d(3, 2, 1)

        def forward(self, images):
            batch, _ = self.transform(images)
            score = torch.sigmoid(self.backbone.body(batch.tensors)[0, :, 10:30, 40:60].mean())
            box = torch.tensor([[40.0, 10.0, 60.0, 30.0]])
            out = [{"boxes": box, "labels": torch.tensor([1]), "scores": score[None]}]
            return self.transform.postprocess(out, batch.image_sizes, [tuple(i.shape[-2:]) for i in images])


    class Segmenter(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Module()
            self.backbone.body = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            f = self.backbone.body(x)
            return {"out": F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)}
    """
)


@pytest.fixture()
def objects_code(tmp_path):
    file = tmp_path / "objects.py"
    file.write_text(OBJECTS)
    scope: dict[str, object] = {}
    exec(OBJECTS, scope)
    torch.manual_seed(0)
    for name in ("Detector", "Segmenter"):
        torch.save(scope[name]().state_dict(), tmp_path / f"{name}.pt")  # type: ignore[operator]
    return file


def run_objects(tmp_path, file, cls: str, task: str, *args: str):
    return invoke(
        "gradcam", photo(tmp_path), "--model", tmp_path / f"{cls}.pt", "--arch", f"{file}:{cls}", "--task", task,
        "--layer", "backbone.body", "-o", tmp_path / "o", "--json", *args,
    )  # fmt: skip


def test_own_detector_takes_class_indices_without_labels(tmp_path, objects_code):
    res = run_objects(tmp_path, objects_code, "Detector", "detection", "--min-score", "0", "--target", "1")
    assert res.exit_code == 0, res.output
    assert "classes unknown" in res.stderr and "None" not in res.stderr and "…-1" not in res.stderr
    (rec,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert rec["status"] == "ok" and rec["target"]["label"] == 1
    res = run_objects(tmp_path, objects_code, "Detector", "detection", "--min-score", "0", "--target", "20")
    assert res.exit_code == 0, res.output  # a class it never predicts: said, as for any detector
    assert [json.loads(line)["status"] for line in res.stdout.splitlines()] == ["no_detection"]
    res = run_objects(tmp_path, objects_code, "Detector", "detection", "--target", "cat")
    one_line(res, 2, "'cat'", "classes are unknown", "class index", "--labels FILE")


def test_own_segmenter_takes_class_indices_and_says_its_count_once_known(tmp_path, objects_code):
    res = run_objects(tmp_path, objects_code, "Segmenter", "segmentation", "--target", "2")
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["target"]["label"] for line in res.stdout.splitlines()] == [2]
    res = run_objects(tmp_path, objects_code, "Segmenter", "segmentation", "--target", "20")
    one_line(res, 2, "class 20 is out of range: the model has classes 0…2")


# --------------------------------------------------------------------------------------------- defect 19
DEEP = "[" * 100_000


def test_deeply_nested_json_is_one_line_wherever_a_user_gives_json(tmp_path):
    weights, file = own_code(tmp_path)
    res = invoke("layers", "--model", weights, "--arch", f"{file}:Net", "--arch-args", DEEP)
    line = one_line(res, 2, "--arch-args", "not JSON (nested too deeply)")
    assert len(line) < 300  # the option's text is shortened, not repeated whole
    labels = tmp_path / "labels.json"
    labels.write_text(DEEP)
    res = invoke(
        "gradcam", photo(tmp_path), "--model", weights, "--arch", f"{file}:Net", "--labels", labels, "-o", tmp_path
    )
    one_line(res, 2, "labels.json", "not valid JSON")
    targets = tmp_path / "targets.jsonl"
    targets.write_text('{"input": ' + DEEP + "\n")
    res = invoke("gradcam", photo(tmp_path), "--targets-file", targets, "-o", tmp_path / "o")
    one_line(res, 2, "targets.jsonl", "line 1 is not JSON")
    ledger = tmp_path / "manifest.jsonl"
    ledger.write_text(DEEP + "\n" + json.dumps({"input": "a"}) + "\n")
    records, bad = read_records(ledger)
    assert records == [{"input": "a"}] and len(bad) == 1 and "not a JSON record" in bad[0]
    from camcli.checks import json_value

    with pytest.raises(ValueError, match="nested too deeply"):
        json_value(DEEP.encode())


def test_a_hugging_face_folder_s_malformed_files_are_one_line(tmp_path):
    from camcli.models.hf_files import read_processor

    (tmp_path / "preprocessor_config.json").write_text(DEEP)
    with pytest.raises(ModelError, match=r"preprocessor_config\.json: not valid JSON"):
        read_processor(tmp_path)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 4)
    for config, said in ((DEEP, "not valid JSON"), ("{bad", "not valid JSON"), ("[1]", "not an object")):
        (folder / "config.json").write_text(config)
        one_line(invoke("layers", "--model", folder), 2, "config.json", said)
    pytest.importorskip("transformers")
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    one_line(invoke("layers", "--model", folder), 2, "model.safetensors: not a valid safetensors file", "re-save")


# --------------------------------------------------------------------------------------------- defect 20
timm = pytest.importorskip("timm")


def train_py_checkpoint(path: Path, name: str, *, arch: bool = True) -> torch.nn.Module:
    """What timm's train.py (its CheckpointSaver) writes: epoch, arch, state_dict, optimizer, version, args (an
    argparse.Namespace), metric, the EMA weights and the AMP scaler's state."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(1, 3, 64, 64)).sum().backward()
    opt.step()
    args = argparse.Namespace(model=name, num_classes=7, lr=0.1, epochs=3, data_dir="/data", input_size=None, amp=True)
    saved = {
        "epoch": 2,
        "arch": name,
        "state_dict": model.state_dict(),
        "optimizer": opt.state_dict(),
        "version": 2,
        "args": args,
        "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
        "metric": 0.5,
        "state_dict_ema": model.state_dict(),
    }
    if not arch:
        del saved["arch"]
    torch.save(saved, path)
    return model


@pytest.mark.parametrize("arch", [True, False])
def test_timm_train_py_checkpoints_load_safely(tmp_path, arch):
    original = train_py_checkpoint(tmp_path / "last.pth.tar", "resnet10t", arch=arch)
    loaded = load_model(str(tmp_path / "last.pth.tar"))
    # named by 'arch', or by the arguments' --model (not by comparing with every timm architecture)
    assert loaded.num_classes == 7 and "architecture named in the file (resnet10t)" in loaded.notes
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(original(x), loaded.module(x), atol=1e-5)


def test_arch_without_a_checkpoint_is_refused_not_ignored(tmp_path):
    """--arch with a named --model (the default one included) used to be ignored: the bundled model ran instead."""
    _, file = own_code(tmp_path)
    for extra in ([], ["--model", "resnet18", "--weights", "none"]):
        res = invoke("layers", "--arch", f"{file}:Net", *extra)
        one_line(res, 2, "--arch: for a checkpoint file", "pass your checkpoint as --model FILE")
