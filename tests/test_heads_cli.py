"""Heads and targets through the CLI, on small random-weight checkpoints: binary, multi-label, regression,
embeddings, the user's own class, one target per image, evaluate; each number checked against the model's own
output computed here."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from camcli.cli import app
from camcli.models import load_model, preprocess

from .conftest import SAMPLES

runner = CliRunner()
CAT, COFFEE, ASTRONAUT = (str(SAMPLES / n) for n in ("chelsea.png", "coffee.png", "astronaut.png"))


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def outputs_of(path: str, picture: str) -> torch.Tensor:
    """The model's raw outputs for one picture, computed here as camcli's loader prepares it."""
    model = load_model(path)
    x = preprocess(Image.open(picture).convert("RGB"), model)[None]
    with torch.no_grad():
        return model.module(x)[0]


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    d = tmp_path_factory.mktemp("heads")
    torch.manual_seed(0)
    for n, name in [(1, "binary"), (5, "multi"), (3, "reg")]:
        torch.save(torchvision.models.resnet18(num_classes=n).state_dict(), d / f"{name}.pt")
    emb = torchvision.models.resnet18()
    emb.fc = nn.Identity()
    torch.save(emb.state_dict(), d / "emb.pt")
    return d


def test_binary_head_is_sigmoid_and_not_explains_against(heads, tmp_path):
    out = tmp_path / "o"
    r = run("gradcam", CAT, "--model", heads / "binary.pt", "-t", "0", "-t", "not:0", "--out", out)
    assert r.exit_code == 0, r.output
    assert "head sigmoid (one output: a binary head)" in r.output
    p = torch.sigmoid(outputs_of(str(heads / "binary.pt"), CAT)[0]).item()
    recs = {rec["target"]: rec for rec in records(out)}
    assert recs["0"]["probability"] == pytest.approx(p, abs=1e-5)
    assert recs["not:0"]["probability"] == pytest.approx(1 - p, abs=1e-5)
    assert recs["not:0"]["class_name"] == "not class_0"
    assert recs["0"]["settings"]["head"] == "sigmoid"
    a = np.asarray(Image.open(recs["0"]["outputs"]["overlay"]))
    b = np.asarray(Image.open(recs["not:0"]["outputs"]["overlay"]))
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 1  # two different maps
    # --labels with two names: the negative's, then the positive's
    (tmp_path / "names.txt").write_text("no_cat\ncat\n")
    r = run("gradcam", CAT, "--model", heads / "binary.pt", "--labels", tmp_path / "names.txt", "-t", "no_cat",
            "--out", tmp_path / "o2", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert (rec["class_name"], rec["target"]) == ("no_cat", "not:0")
    assert rec["outputs"]["overlay"].endswith(".0-no_cat.png")


def test_multilabel_threshold_explains_every_label_that_probable(heads, tmp_path):
    out = tmp_path / "o"
    r = run("gradcam", CAT, COFFEE, "--model", heads / "multi.pt", "--head", "sigmoid", "--threshold", "0.5",
            "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    recs = records(out)
    for picture in (CAT, COFFEE):
        probs = torch.sigmoid(outputs_of(str(heads / "multi.pt"), picture))
        expected = {i for i, p in enumerate(probs.tolist()) if p >= 0.5}
        mine = [rec for rec in recs if rec["input"] == picture]
        assert {rec["class_index"] for rec in mine} == expected and expected
        for rec in mine:
            assert rec["probability"] == pytest.approx(probs[rec["class_index"]].item(), abs=1e-5)
    # the names say the threshold; a rerun skips them
    assert all(",head=sigmoid,threshold=0.5." in rec["outputs"]["overlay"] for rec in recs)
    again = run("gradcam", CAT, COFFEE, "--model", heads / "multi.pt", "--head", "sigmoid", "--threshold", "0.5",
                "--out", out, "--skip-existing")  # fmt: skip
    assert "2 skipped" in again.output.replace("\n", " "), again.output
    # a softmax head has no independent labels: refused with the fix
    r = run("gradcam", CAT, "--model", heads / "multi.pt", "--threshold", "0.5", "--out", out)
    assert r.exit_code == 2 and "pass --head sigmoid" in r.output
    # nothing that probable: an answer, not a failure
    r = run("gradcam", CAT, "--model", heads / "multi.pt", "--head", "sigmoid", "--threshold", "0.9999",
            "--out", tmp_path / "none", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert rec["status"] == "no_label" and len(rec["top_k"]) == 5
    assert list(rec["outputs"]) == ["answer"]  # a small answer file, no picture, so that a rerun skips it
    again = run("gradcam", CAT, "--model", heads / "multi.pt", "--head", "sigmoid", "--threshold", "0.9999",
                "--out", tmp_path / "none", "--skip-existing")  # fmt: skip
    assert "1 skipped" in again.output.replace("\n", " "), again.output


def test_regression_identity_shows_the_raw_value_and_not_lowers_it(heads, tmp_path):
    out = tmp_path / "o"
    r = run("gradcam", CAT, "--model", heads / "reg.pt", "--head", "identity", "-t", "2", "-t", "not:2",
            "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    value = outputs_of(str(heads / "reg.pt"), CAT)[2].item()
    recs = {rec["target"]: rec for rec in records(out)}
    assert recs["2"]["probability"] == pytest.approx(value, abs=1e-5)
    assert recs["not:2"]["probability"] == pytest.approx(-value, abs=1e-5)
    assert "class (value)" in r.output


def test_embedding_model_needs_a_reference_and_explains_similarity(heads, tmp_path):
    r = run("gradcam", CAT, "--model", heads / "emb.pt", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no classifier head" in r.output and "--reference" in r.output
    out = tmp_path / "o2"
    r = run("gradcam", CAT, COFFEE, "--model", heads / "emb.pt", "--reference", ASTRONAUT, "--reference", COFFEE,
            "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "resnet18 without a classifier head" in r.output and "fc is missing" in r.output
    path = str(heads / "emb.pt")
    refs = torch.stack([outputs_of(path, ASTRONAUT), outputs_of(path, COFFEE)])
    concept = torch.nn.functional.normalize(torch.nn.functional.normalize(refs, dim=1).mean(0), dim=0)
    for rec in records(out):
        emb = outputs_of(path, rec["input"])
        expected = torch.nn.functional.cosine_similarity(emb, concept, dim=0).item()
        assert rec["probability"] == pytest.approx(expected, abs=1e-4)
        assert rec["class_name"] == "like-astronaut+1" and rec["settings"]["head"] == "identity"
    # --head on similarities is refused; a missing reference is a usage error
    r = run("gradcam", CAT, "--model", heads / "emb.pt", "--reference", COFFEE, "--head", "softmax", "--out", out)
    assert r.exit_code == 2 and "drop --head" in r.output
    r = run("gradcam", CAT, "--model", heads / "emb.pt", "--reference", tmp_path / "nope.png", "--out", out)
    assert r.exit_code == 2 and "--reference" in r.output


OWN = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, outputs=4):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Linear(8, outputs)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))
    """
)


def test_own_class_outputs_are_counted(tmp_path):
    (tmp_path / "net.py").write_text(OWN)
    import importlib.util

    spec = importlib.util.spec_from_file_location("own_net_for_test", tmp_path / "net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.Net(4).state_dict(), tmp_path / "four.pt")
    torch.save(module.Net(1).state_dict(), tmp_path / "one.pt")
    r = run("gradcam", CAT, "--model", tmp_path / "four.pt", "--arch", f"{tmp_path / 'net.py'}:Net", "-t", "3",
            "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "its 4 outputs are read as class scores (softmax)" in r.output
    r = run("gradcam", CAT, "--model", tmp_path / "one.pt", "--arch", f"{tmp_path / 'net.py'}:Net",
            "--arch-args", '{"outputs": 1}', "--out", tmp_path / "o1")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "head sigmoid (one output: a binary head)" in r.output


def test_targets_file_gives_each_image_its_target(heads, tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\ncup\n")
    csv = tmp_path / "targets.csv"
    # relative to the file's folder; by name; negated
    (tmp_path / "pics").mkdir()
    for name in ("chelsea.png", "coffee.png"):
        (tmp_path / "pics" / name).write_bytes((SAMPLES / name).read_bytes())
    csv.write_text("input,target\npics/chelsea.png,cat\npics/coffee.png,not:2\n")
    out = tmp_path / "o"
    r = run("gradcam", tmp_path / "pics", "--model", heads / "reg.pt", "--labels", tmp_path / "labels.txt",
            "--targets-file", csv, "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    recs = {rec["input"].rsplit("/", 1)[-1]: rec for rec in records(out)}
    assert (recs["chelsea.png"]["class_index"], recs["chelsea.png"]["target"]) == (0, "0")
    assert (recs["coffee.png"]["class_index"], recs["coffee.png"]["target"]) == (2, "not:2")
    for name, rec in recs.items():
        logits = outputs_of(str(heads / "reg.pt"), str(SAMPLES / name))
        top = int(logits.argmax())
        assert rec["predicted"]["index"] == top
        assert rec["correct"] == ((top == 0) if name == "chelsea.png" else (top != 2))
    # JSON lines; an image the file does not name fails alone (exit 1), with the fix
    (tmp_path / "pics" / "astronaut.png").write_bytes((SAMPLES / "astronaut.png").read_bytes())
    jl = tmp_path / "targets.jsonl"
    jl.write_text(json.dumps({"input": str(tmp_path / "pics" / "chelsea.png"), "target": 1}) + "\n")
    r = run("gradcam", tmp_path / "pics", "--model", heads / "reg.pt", "--targets-file", jl, "--out", tmp_path / "o2")
    assert r.exit_code == 1
    assert "names no target for this input" in r.output and "1 done" in r.output.replace("\n", " ")
    # a class the model does not have: refused before any image, with the line
    csv.write_text("input,target\npics/chelsea.png,zebra\n")
    r = run("gradcam", tmp_path / "pics", "--model", heads / "reg.pt", "--targets-file", csv, "--out", out)
    assert r.exit_code == 2 and "line 2" in r.output


def test_evaluate_reads_the_binary_heads_probability(heads, tmp_path):
    out = tmp_path / "e"
    r = run("evaluate", CAT, "--model", heads / "binary.pt", "--metric", "deletion", "--metric", "drop",
            "--steps", "4", "--out", out, "--no-baselines")  # fmt: skip
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    p = torch.sigmoid(outputs_of(str(heads / "binary.pt"), CAT)[0]).item()
    assert rec["probability"] == pytest.approx(p, abs=1e-5)
    # the softmax of one logit never moves (AUC 1, drop 0); the sigmoid does
    assert rec["scores"]["deletion_auc"] != pytest.approx(1.0, abs=1e-3)
    assert rec["settings"]["head"] == "sigmoid"
    assert not math.isclose(rec["scores"]["avg_drop"], 0.0, abs_tol=1e-6) or rec["scores"]["increase"] == 1.0


def test_binary_verdicts_read_the_sigmoid(tmp_path):
    # a binary head that always says "no" (bias −20): the prediction is its negative, and not:0 is correct
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1)
    with torch.no_grad():
        model.fc.bias.fill_(-20.0)
    torch.save(model.state_dict(), tmp_path / "no.pt")
    (tmp_path / "t.csv").write_text(f"input,target\n{CAT},0\n{COFFEE},not:0\n")
    out = tmp_path / "o"
    r = run("gradcam", CAT, COFFEE, "--model", tmp_path / "no.pt", "--targets-file", tmp_path / "t.csv", "--out", out)
    assert r.exit_code == 0, r.output
    recs = {rec["target"]: rec for rec in records(out)}
    assert recs["0"]["correct"] is False and recs["not:0"]["correct"] is True
    for rec in recs.values():
        assert rec["predicted"]["target"] == "not:0" and rec["predicted"]["name"] == "not class_0"
        assert rec["predicted"]["probability"] == pytest.approx(1.0, abs=1e-6)


def test_evaluate_keeps_a_target_and_its_negation_apart(heads, tmp_path):
    out = tmp_path / "e"
    r = run("evaluate", CAT, "--model", heads / "multi.pt", "-t", "3", "-t", "not:3", "--metric", "drop",
            "--no-baselines", "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted(rec["target"] for rec in recs) == ["3", "not:3"]
    from camcli.jobs.eval_summary import collect

    base = {k: recs[0][k] for k in ("kind", "model", "layer", "settings")}
    assert len(collect(out / "metrics.jsonl", base, ["gradcam"])["gradcam"].values["avg_drop"]) == 2
    # a targets file that changes: --skip-existing measures the image again for its new target
    tf = tmp_path / "t.csv"
    tf.write_text(f"input,target\n{CAT},1\n")
    args = ["evaluate", CAT, "--model", heads / "multi.pt", "--targets-file", tf, "--metric", "drop", "--no-baselines",
            "--out", tmp_path / "e2", "--skip-existing"]  # fmt: skip
    assert run(*args).exit_code == 0
    tf.write_text(f"input,target\n{CAT},not:2\n")
    r = run(*args)
    assert r.exit_code == 0 and "skipped" not in r.output, r.output
    recs = [json.loads(line) for line in (tmp_path / "e2" / "metrics.jsonl").read_text().splitlines()]
    assert [rec["target"] for rec in recs] == ["1", "not:2"]


def test_a_class_named_like_a_negation_keeps_its_name(heads, tmp_path):
    (tmp_path / "names.txt").write_text("hotdog\nnot-hotdog\ncup\n")
    r = run("gradcam", CAT, "--model", heads / "reg.pt", "--labels", tmp_path / "names.txt", "-t", "1", "-t", "not:0",
            "--out", tmp_path / "o", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [(rec["target"], rec["class_name"]) for rec in recs] == [("1", "not-hotdog"), ("not:0", "not hotdog")]


def test_timm_without_its_head_is_an_embedding_model(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    torch.save(timm.create_model("convnext_atto", num_classes=0).state_dict(), tmp_path / "e.pth")
    out = tmp_path / "o"
    r = run("gradcam", CAT, "--model", tmp_path / "e.pth", "--arch", "timm:convnext_atto", "--reference", COFFEE,
            "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "timm:convnext_atto without a classifier head" in r.output
    (rec,) = records(out)
    assert -1 <= rec["probability"] <= 1 and rec["class_name"] == "like-coffee"
    r = run("gradcam", CAT, "--model", tmp_path / "e.pth", "--arch", "timm:convnext_atto", "--arch-args",
            '{"num_classes": 0}', "--out", out)  # fmt: skip
    assert r.exit_code == 2 and "--arch-args is for your own class" in r.output
