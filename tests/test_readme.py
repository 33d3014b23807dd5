"""The examples run as written: every line of the plain code blocks of README.md and of each page under docs/,
and the Python API example, in a folder that has the repository's sample_images/ (issue 16: examples used files
that did not exist; issue 25: the README's sections moved into docs/, and their examples with them).

A block is run when its fence has no language (```); ```sh, ```bash, ```text and ```json blocks are shown, not
run (the make commands, the Slurm and multi-GPU scripts, sample outputs). ```python blocks are run with Python
after the page's shell lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

NEEDS = re.compile(r"#.*\b(downloads|GPU)\b")  # lines that say they need a network or a GPU
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _blocks(page: Path, kind: str) -> list[str]:
    """The bodies of the page's fenced blocks whose info string is ``kind`` ("" for plain fences)."""
    blocks, body, current = [], [], None
    for line in page.read_text(encoding="utf-8").splitlines():
        if current is None and line.startswith("```"):
            current, body = line[3:].strip(), []
        elif current is not None and line.strip() == "```":
            if current == kind:
                blocks.append("\n".join(body))
            current = None
        elif current is not None:
            body.append(line)
    return blocks


def _shell_lines(page: Path) -> list[str]:
    return [line for block in _blocks(page, "") for line in block.splitlines() if line.strip()]


EXAMPLES = [page for page in PAGES if _shell_lines(page) or _blocks(page, "python")]


def test_examples_are_found():
    lines = [line for page in PAGES for line in _shell_lines(page)]
    assert sum(line.startswith("camcli ") for line in lines) >= 60
    assert not [line for line in lines if re.search(r"\b(cat\.jpg|photos/|x\.jpg|/data/)", line)]
    assert len([line for line in lines if NEEDS.search(line)]) <= 3
    assert ROOT / "docs" / "commands" / "gradcam.md" in EXAMPLES
    assert len(_blocks(ROOT / "docs" / "python-api.md", "python")) == 1


def test_readme_has_an_example_of_every_command():
    import typer.main

    from camcli.cli import app

    commands = sorted(typer.main.get_command(app).commands)
    lines = _shell_lines(ROOT / "README.md")
    missing = [c for c in commands if not any(line.startswith(f"camcli {c} ") for line in lines)]
    assert len(commands) >= 10 and not missing, missing


@pytest.mark.slow
@pytest.mark.parametrize("page", EXAMPLES, ids=_name)
def test_examples_run_as_written(page: Path, tmp_path: Path):
    (tmp_path / "sample_images").symlink_to(ROOT / "sample_images")
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # "Your own model": a class of your own
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for line in _shell_lines(page):  # a line may take minutes (README: evaluate --method all, 13 on 2 cores)
        if NEEDS.search(line):
            continue
        res = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, f"{_name(page)}: {line}\n{res.stderr[-2000:]}"
    for code in _blocks(page, "python"):
        res = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800
        )
        assert res.returncode == 0, f"{_name(page)}\n{res.stderr[-2000:]}"
        if page.name == "python-api.md":
            assert "Egyptian cat" in res.stdout
