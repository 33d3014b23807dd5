"""The documentation site (docs/, mkdocs.yml) builds with --strict: no broken link between pages, no missing
anchor or picture, every page in the navigation; and it needs no network: no web fonts, no CDN (issue 25)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    assert len(pages) >= 15
    assert not [p for p in pages if f": {p}\n" not in nav]


def test_the_site_builds_strictly_and_offline(tmp_path: Path):
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[test]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WARNING" not in res.stderr, res.stderr[-3000:]
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html") in pages and (site / "commands" / "gradcam.html") in pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        # every stylesheet, script and font is a file of the site itself (the pages' own links may point anywhere)
        remote = re.findall(r'<(?:link|script)[^>]*(?:href|src)="((?:https?:)?//[^"]*)"', html)
        assert not remote, (page, remote)
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, page
    index = (site / "index.html").read_text(encoding="utf-8")
    for ref in re.findall(r'<(?:link|script)[^>]*(?:href|src)="([^"#?]+)', index):
        assert (site / ref).is_file(), ref  # the theme's CSS and JS are in the built folder
    assert (site / "report.jpg").is_file() and (site / "chelsea.gradcam.png").is_file()


def test_the_readme_links_to_files_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in t]
    assert sum(t.startswith("docs/") for t in targets) >= 15
    assert not [t for t in targets if not (ROOT / t).is_file()]
