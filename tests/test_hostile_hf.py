"""Hostile Hugging Face folders and hf: ids: a folder's own Python never runs without --trust-checkpoint and
transformers never asks on stdin; config.json and preprocessor_config.json are checked before transformers reads
them (one line naming the file and the field); loading is strict; -q silences transformers' progress bars."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from camcli.cli import app
from camcli.errors import CamcliError
from camcli.models import load_model

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed: pip install -e '.[dev]' installs the extras"
)
from safetensors.torch import load_file, save_file  # noqa: E402

from .conftest import SAMPLES  # noqa: E402

runner = CliRunner()
PHOTO = str(SAMPLES / "chelsea.png")
EVIL = """import pathlib
pathlib.Path({marker!r}).write_text("ran")
"""


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def _one_line_error(res, text: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], res.stderr
    assert "Traceback" not in res.output and "unexpected" not in res.stderr


@pytest.fixture(scope="module")
def vit(tmp_path_factory) -> Path:
    """A tiny ViT classifier written by save_pretrained (random weights, 3 classes)."""
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=16, num_labels=3, id2label={0: "cat", 1: "dog", 2: "cup"}, label2id={"cat": 0, "dog": 1, "cup": 2},
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "vit"
    transformers.ViTForImageClassification(config).eval().save_pretrained(folder)
    return folder


def _copy(vit: Path, dest: Path, **changes) -> Path:
    shutil.copytree(vit, dest)
    config = json.loads((dest / "config.json").read_text())
    config.update(changes)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def _refused(folder: Path, *texts: str) -> str:
    with pytest.raises(CamcliError) as err:
        load_model(str(folder))
    message = str(err.value)
    assert "\n" not in message and all(t in message for t in texts), message
    return message


def test_a_normal_folder_still_loads_strictly(vit):
    loaded = load_model(str(vit))
    assert loaded.categories == ["cat", "dog", "cup"] and loaded.weights == "checkpoint"


# ------------------------------------------------------------------------------- the folder's own code (trust)
def _evil(tmp_path: Path, model_type: str = "evilnet") -> tuple[Path, Path]:
    folder, marker = tmp_path / "evil", tmp_path / "MARKER"
    folder.mkdir()
    config = {
        "model_type": model_type,
        "architectures": ["EvilForImageClassification"],
        "auto_map": {
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModelForImageClassification": "modeling_evil.EvilForImageClassification",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_evil.py").write_text(
        EVIL.format(marker=str(marker))
        + "from transformers import PretrainedConfig\n\nclass EvilConfig(PretrainedConfig):\n"
        + "    model_type = 'evilnet'\n"
    )
    (folder / "modeling_evil.py").write_text(
        EVIL.format(marker=str(marker))
        + "import torch\nfrom transformers import PreTrainedModel\nfrom .configuration_evil import EvilConfig\n\n"
        + "class EvilForImageClassification(PreTrainedModel):\n    config_class = EvilConfig\n\n"
        + "    def __init__(self, config):\n        super().__init__(config)\n"
        + "        self.conv = torch.nn.Conv2d(3, 2, 3)\n        self.post_init()\n\n"
        + "    def forward(self, pixel_values):\n        return self.conv(pixel_values).mean((2, 3))\n"
    )
    save_file({"conv.weight": torch.randn(2, 3, 3, 3), "conv.bias": torch.zeros(2)}, str(folder / "model.safetensors"))
    return folder, marker


def test_a_folders_own_code_never_runs_and_nothing_is_asked(tmp_path):
    folder, marker = _evil(tmp_path)
    res = invoke("gradcam", PHOTO, "--model", str(folder), "--json", "--out", str(tmp_path / "o"), input="y\ny\n")
    _one_line_error(res, "--trust-checkpoint")
    assert "modeling_evil.py" in res.stderr and "configuration_evil.py" in res.stderr
    assert "Do you wish" not in res.output and not marker.exists()


def test_trust_checkpoint_runs_a_folders_own_code(tmp_path, monkeypatch):
    from transformers import dynamic_module_utils

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder, marker = _evil(tmp_path)
    res = invoke("gradcam", PHOTO, "--model", str(folder), "--trust-checkpoint", "--out", str(tmp_path / "o"), "-q")
    assert res.exit_code == 0, res.output
    assert marker.exists()


def test_auto_map_beside_a_known_model_type_is_not_run(tmp_path, vit):
    folder = _copy(vit, tmp_path / "vit", auto_map={"AutoModelForImageClassification": "modeling_evil.Evil"})
    marker = tmp_path / "MARKER"
    (folder / "modeling_evil.py").write_text(EVIL.format(marker=str(marker)))
    loaded = load_model(str(folder))
    assert not marker.exists() and any("modeling_evil.py" in n and "not run" in n for n in loaded.notes)


# ----------------------------------------------------------------------------------------------- config.json
def test_a_huge_class_count_is_refused_before_transformers_reads_it(tmp_path, vit, monkeypatch):
    from camcli.models import hf_files

    folder = _copy(vit, tmp_path / "f", num_labels=100_000_000, id2label=None, label2id=None)

    def never(*args, **kwargs):
        raise AssertionError("transformers read the config")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", never)
    _refused(folder, "config.json", '"num_labels"', "100,000,000", f"{hf_files.MAX_LABELS:,}")


def test_a_class_count_over_the_cap_stands_when_the_weights_back_it(tmp_path, vit, monkeypatch):
    from camcli.models import hf_files

    monkeypatch.setattr(hf_files, "MAX_LABELS", 2)
    assert load_model(str(vit)).num_classes == 3  # the classifier in model.safetensors has 3 rows
    folder = _copy(vit, tmp_path / "f", num_labels=5, id2label=None, label2id=None)
    _refused(folder, '"num_labels" declares 5 classes', "no tensor in the weights has that many rows")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "holds a JSON list"),
        ('{"model_type": "vit", "id2label": {"a": "cat"}}', '"id2label" key'),
        ('{"model_type": "vit", "id2label": {"0": {"x": 1}}}', "not a class name"),
        ('{"model_type": "vit", "id2label": ["cat"]}', '"id2label" must map'),
        ('{"model_type": "vit", "num_labels": "abc"}', '"num_labels" "abc"'),
        ('{"model_type": "vit", "problem_type": ["x"]}', '"problem_type"'),
        ('{"model_type": "vit", "architectures": "ViT"}', '"architectures"'),
        ('{"model_type": "vit", "hidden_size": "abc"}', "hidden_size"),
        ('{"architectures": ["ViTForImageClassification"]}', '"model_type"'),
        ('{"model_type": "no-such-model"}', "upgrade transformers"),
        ('{"model_type": "vit", "transformers_weights": "../../etc/x.safetensors"}', '"transformers_weights"'),
    ],
)
def test_a_malformed_config_json_is_one_line_naming_it(tmp_path, vit, text, says):
    shutil.copytree(vit, tmp_path / "f")
    (tmp_path / "f" / "config.json").write_text(text)
    res = invoke("layers", "--model", str(tmp_path / "f"))
    _one_line_error(res, "config.json")
    assert says in res.stderr


# ----------------------------------------------------------------------------------- preprocessor_config.json
@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"size": "abc"}', '"size" "abc"'),
        ('{"size": -5}', '"size" -5'),
        ('{"size": 1e999}', '"size" Infinity'),
        ('{"size": []}', '"size" []'),
        ('{"size": {"height": "x"}}', '"size"'),
        ('{"size": 100000}', "from 1 to 8192"),
        ('{"do_center_crop": true, "crop_size": "x"}', '"crop_size"'),
        ('{"image_std": [0, 0, 0]}', '"image_std"'),
        ('{"image_mean": "abc"}', '"image_mean"'),
        ('{"image_mean": [NaN, 0, 0]}', "NaN"),
        ('{"resample": 99}', '"resample"'),
        ("{nope", "not valid JSON"),
        ("[1]", "holds a JSON list"),
    ],
)
def test_a_malformed_preprocessor_config_is_one_line_naming_it(tmp_path, vit, text, field):
    shutil.copytree(vit, tmp_path / "f")
    (tmp_path / "f" / "preprocessor_config.json").write_text(text)
    res = invoke("layers", "--model", str(tmp_path / "f"))
    _one_line_error(res, "preprocessor_config.json")
    assert field in res.stderr


# ------------------------------------------------------------------------------------------- strict weights
def test_a_config_with_more_layers_than_the_weights_is_refused(tmp_path, vit):
    folder = _copy(vit, tmp_path / "f", num_hidden_layers=4)
    _refused(folder, "do not fit config.json", "missing (", "layers.2.")


def test_wrong_shapes_and_unexpected_keys_are_listed(tmp_path, vit):
    folder = _copy(vit, tmp_path / "f")
    state = load_file(str(folder / "model.safetensors"))
    state["classifier.weight"] = torch.zeros(5, 32)
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"))
    message = _refused(folder, "1 unexpected (extra.weight)", "1 wrong shape (classifier.weight [5, 32]≠[3, 32])")
    assert "random" not in message


def test_a_config_far_larger_than_its_weights_is_refused_before_it_is_built(tmp_path, vit):
    folder = _copy(vit, tmp_path / "f", hidden_size=65536, intermediate_size=262144, num_attention_heads=1)
    _refused(folder, "config.json", "parameters", "its weights files hold")


def test_a_truncated_safetensors_file_is_named(tmp_path, vit):
    folder = _copy(vit, tmp_path / "f")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:1000])
    _refused(folder, "model.safetensors: not a valid safetensors file")


def test_a_pickled_bin_needs_trust_checkpoint_and_then_loads(tmp_path, vit):
    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(vit / "config.json", folder)
    # a UserDict is a mapping the safe unpickler does not allow: the file could as well name any other class
    torch.save(collections.UserDict(load_file(str(vit / "model.safetensors"))), folder / "pytorch_model.bin")
    res = invoke("layers", "--model", str(folder))
    _one_line_error(res, "pytorch_model.bin")
    assert "--trust-checkpoint" in res.stderr and "collections.UserDict" in res.stderr
    assert load_model(str(folder), trust_checkpoint=True).categories == ["cat", "dog", "cup"]


# ---------------------------------------------------------------------------------------------- hf: ids, -q
@pytest.mark.parametrize("name", ["../../etc", "a/b/c", "org/", "org/na..me", "/etc"])
def test_an_hf_id_must_be_org_name(name):
    _one_line_error(invoke("layers", "--model", f"hf:{name}"), "an hf: id is ORG/NAME")


def test_quiet_silences_transformers_progress_bars(tmp_path, vit):
    res = invoke("gradcam", PHOTO, "--model", str(vit), "--out", str(tmp_path / "o"), "-q")
    assert res.exit_code == 0, res.output
    assert "Loading weights" not in res.stderr and "it/s" not in res.stderr, res.stderr


def test_an_hf_id_in_the_cache_is_checked_like_a_folder(tmp_path, monkeypatch):
    """``hf:ORG/NAME`` from the hub's cache: its config.json is checked, its own code refused, nothing asked."""
    from huggingface_hub import constants

    folder, marker = _evil(tmp_path)
    repo = tmp_path / "hub" / "models--someone--evil"
    shutil.copytree(folder, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    res = invoke("layers", "--model", "hf:someone/evil", input="y\ny\n")
    _one_line_error(res, "--trust-checkpoint")
    assert "modeling_evil.py" in res.stderr and not marker.exists()
