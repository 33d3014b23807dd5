"""The user's own model classes: --arch file.py:Class and package.module:factory with --arch-args, trusted pickles
with --code-path, and the one-line answers for classes defined in a training script, torch.export and ONNX."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import torch
from typer.testing import CliRunner

from camcli.cli import app

from .conftest import SAMPLES

NET = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=10, width=8):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                          nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))

    def make(num_classes=10):
        return Net(num_classes=num_classes, width=8)
    """
)


def write_code(tmp_path):
    for name in [m for m in sys.modules if m.split(".")[0] == "mymodels"]:  # imported by an earlier test
        del sys.modules[name]
    pkg = tmp_path / "code" / "mymodels"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "net.py").write_text(NET)
    (tmp_path / "train.py").write_text(NET)
    return tmp_path / "code"


def python(code: str, cwd, *path) -> None:
    env_path = ":".join(str(p) for p in path)
    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True, env={"PYTHONPATH": env_path, "PATH": ""})


def net_code() -> dict:
    """The training code's names (Net, make), run here: a state_dict saved from them holds tensors only, the
    file another process would write (without the seconds a Python that imports torch takes to start)."""
    names: dict = {}
    exec(NET, names)
    return names


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_own_class_from_a_file_with_arch_args(tmp_path):
    write_code(tmp_path)
    torch.manual_seed(0)
    torch.save(net_code()["Net"](num_classes=7).state_dict(), tmp_path / "w.pt")
    img = SAMPLES / "chelsea.png"
    no_args = run("gradcam", img, "--model", tmp_path / "w.pt", "--arch", f"{tmp_path}/train.py:Net", "-o", tmp_path)
    assert no_args.exit_code == 2 and "head.weight" in no_args.output  # 10 classes built, 7 saved: says which key
    result = run(
        "gradcam",
        img,
        "--model",
        tmp_path / "w.pt",
        "--arch",
        f"{tmp_path}/train.py:Net",
        "--arch-args",
        '{"num_classes": 7}',
        "--json",
        "-o",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout.splitlines()[0])
    assert rec["status"] == "ok" and rec["layer"] == "features"


def test_own_factory_from_a_module_on_code_path(tmp_path):
    code = write_code(tmp_path)
    torch.save(net_code()["make"](5).state_dict(), tmp_path / "w.pt")
    args = ["layers", "--model", tmp_path / "w.pt", "--arch", "mymodels.net:make", "--arch-args", '{"num_classes": 5}']
    missing = run(*args)
    assert missing.exit_code == 2 and "--code-path" in missing.output
    result = run(*args, "--code-path", code, "--json")
    assert result.exit_code == 0, result.output
    assert any(json.loads(line)["default"] for line in result.stdout.splitlines())


def test_bad_arch_forms_are_one_line(tmp_path):
    write_code(tmp_path)
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    for arch, says in [
        (f"{tmp_path}/train.py:Nett", "no 'Nett'; its nn.Module classes: Net"),
        (f"{tmp_path}/nope.py:Net", "no file"),
    ]:
        result = run("layers", "--model", tmp_path / "w.pt", "--arch", arch)
        assert result.exit_code == 2 and says in result.output, result.output
    bad_json = run("layers", "--model", tmp_path / "w.pt", "--arch", f"{tmp_path}/train.py:Net", "--arch-args", "{x")
    assert bad_json.exit_code == 2 and "not JSON" in bad_json.output


def test_trusted_pickle_of_a_module_class_needs_its_code_path(tmp_path, monkeypatch):
    code = write_code(tmp_path)
    with monkeypatch.context() as m:  # the pickle names mymodels.net.Net; then mymodels is forgotten again
        m.syspath_prepend(str(code))
        torch.save(importlib.import_module("mymodels.net").make(4), tmp_path / "full.pt")
    for name in [n for n in sys.modules if n.split(".")[0] == "mymodels"]:
        del sys.modules[name]
    img = SAMPLES / "chelsea.png"
    without = run("gradcam", img, "--model", tmp_path / "full.pt", "--trust-checkpoint", "-o", tmp_path / "o")
    assert without.exit_code == 2
    assert "module 'mymodels" in without.output and "--code-path" in without.output
    ok = run(
        "gradcam", img, "--model", tmp_path / "full.pt", "--trust-checkpoint", "--code-path", code, "-o", tmp_path / "o"
    )
    assert ok.exit_code == 0, ok.output


def test_trusted_pickle_of_a_class_from_the_training_script_says_how_to_fix(tmp_path):
    write_code(tmp_path)
    python("exec(open('train.py').read()); torch.save(Net(), 'main.pt')", tmp_path, tmp_path)
    result = run("layers", "--model", tmp_path / "main.pt", "--trust-checkpoint")
    assert result.exit_code == 2
    assert "defined in the training script itself (__main__)" in result.output
    assert "state_dict" in result.output and "--arch train.py:Net" in result.output


def test_export_and_onnx_files_are_refused_in_one_line(tmp_path, tiny):
    exported = torch.export.export(tiny, (torch.zeros(1, 1, 4, 4),))
    torch.export.save(exported, str(tmp_path / "m.pt2"))
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07\x12\x04test")
    for name, says in [("m.pt2", "torch.export archive"), ("m.onnx", "ONNX")]:
        result = run("layers", "--model", tmp_path / name)
        assert result.exit_code == 2 and says in result.output and "state_dict" in result.output, result.output
        assert "Traceback" not in result.output
