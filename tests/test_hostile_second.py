"""The second hostile pass over issue 30's fixes: what a tester still found (non-UTF-8 and huge or odd indices in
--labels, a name longer than the system allows, a folder where a run-level file goes, a model's forward that
prints into --json, a preprocessor size of three numbers)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from camcli.errors import ModelError
from camcli.models.hf_files import input_size

from .test_hostile_code import NET, invoke, one_line, own_code, photo


def test_labels_that_are_not_utf8_or_have_odd_indices_are_one_line(tmp_path):
    weights, file = own_code(tmp_path)
    model = ["--model", weights, "--arch", f"{file}:Net"]
    cases = {
        "latin.txt": (b"c0\n\xff\xfebad\nc2\n", "not UTF-8 text"),
        "huge.json": (b'{"99999999999999999999999": "y"}', "must map indices to names"),
        "far.json": (b'{"cat": 100000000}', "is not from 0 to 999,999"),
        "negative.json": (b'{"cat": -3}', "is not from 0 to"),
        "super.json": ('{"0": "a", "1": "b", "²": "c"}'.encode(), "must map indices to names"),
    }
    for name, (data, said) in cases.items():
        labels = tmp_path / name
        labels.write_bytes(data)
        one_line(invoke("layers", *model, "--labels", labels), 2, said)


def test_a_superscript_index_in_id2label_is_one_line(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=16,
        num_labels=3,
    )  # fmt: skip
    folder = tmp_path / "vit"
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw["id2label"] = {"0": "a", "1": "b", "²": "c"}
    (folder / "config.json").write_text(json.dumps(raw))
    one_line(invoke("layers", "--model", folder), 2, "config.json", "id2label")


def test_a_size_of_three_numbers_is_not_an_input_size(tmp_path):
    with pytest.raises(ModelError, match="is not an input size"):
        input_size(tmp_path / "preprocessor_config.json", "size", [1, 2, 3])
    assert input_size(tmp_path, "size", [32, 48]) == (32, 48)


def test_a_name_longer_than_the_system_allows_is_one_line(tmp_path):
    long = "a" * 300
    one_line(invoke("gradcam", tmp_path / f"{long}.png", "-o", tmp_path / "o"), 2, "check the path")
    one_line(invoke("inspect", tmp_path / f"{long}.pt"), 2)
    one_line(invoke("report", tmp_path / long), 2)


def test_a_folder_where_a_run_level_file_goes_is_one_line(tmp_path):
    out = tmp_path / "out"
    res = invoke("gradcam", photo(tmp_path), "--model", "resnet18", "--weights", "none", "-o", out, "-q")
    assert res.exit_code == 0, res.output
    shutil.rmtree(out / "report", ignore_errors=True)
    (out / "index.html").mkdir()
    one_line(invoke("report", out), 2, "index.html", "check the path")


def test_what_a_models_forward_prints_never_reaches_the_records_on_stdout(tmp_path):
    printing = NET.replace("return self.head(", "print('FORWARD SAYS HI')\n        return self.head(")
    assert printing != NET
    code = tmp_path / "net.py"
    code.write_text(printing)
    scope: dict[str, object] = {}
    exec(NET, scope)
    torch.save(scope["Net"]().state_dict(), tmp_path / "w.pt")  # type: ignore[operator]
    res = invoke("gradcam", photo(tmp_path), "--model", tmp_path / "w.pt", "--arch", f"{code}:Net", "--json",
                 "-o", tmp_path / "o", "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["input"] for line in lines), res.stdout
    assert "FORWARD SAYS HI" in res.stderr


def test_the_report_shows_a_long_text_from_a_record_cut_short(tmp_path):
    from camcli.report.entries import MAX_TEXT

    out = tmp_path / "out"
    out.mkdir()
    record = {"input": str(tmp_path / "a.png"), "kind": "cam", "status": "error", "error": "x" * 3_000_000}
    (out / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    res = invoke("report", out)
    assert res.exit_code == 0, res.output
    (data,) = (out / "report").glob("data-*.js")
    assert "x" * MAX_TEXT not in data.read_text() and data.stat().st_size < 100_000
