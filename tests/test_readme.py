"""The README's examples run as written: every line of its plain code blocks and its Python API example, in a
folder that has the repository's sample_images/ (issue 16: examples used files that did not exist)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

NEEDS = re.compile(r"#.*\b(downloads|GPU)\b")  # lines that say they need a network or a GPU


def _blocks(kind: str) -> list[str]:
    """The bodies of the README's fenced blocks whose info string is ``kind`` ("" for plain fences)."""
    blocks, body, current = [], [], None
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if current is None and line.startswith("```"):
            current, body = line[3:].strip(), []
        elif current is not None and line.strip() == "```":
            if current == kind:
                blocks.append("\n".join(body))
            current = None
        elif current is not None:
            body.append(line)
    return blocks


def _shell_lines() -> list[str]:
    return [line for block in _blocks("") for line in block.splitlines() if line.strip()]


def test_readme_blocks_are_found():
    lines = _shell_lines()
    assert sum(line.startswith("camcli ") for line in lines) >= 20
    assert not [line for line in lines if re.search(r"\b(cat\.jpg|photos/|x\.jpg|/data/)", line)]


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    (tmp_path / "sample_images").symlink_to(ROOT / "sample_images")
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # "Your own model": a class of your own
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    ran, skipped = 0, []
    for line in _shell_lines():
        if NEEDS.search(line):
            skipped.append(line)
            continue
        res = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{line}\n{res.stderr[-2000:]}"
        ran += 1
    assert ran >= 20 and len(skipped) <= 3, skipped
    (api,) = _blocks("python")
    res = subprocess.run(
        [sys.executable, "-c", api], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Egyptian cat" in res.stdout
