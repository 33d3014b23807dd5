"""camcli: Grad-CAM overlays and feature-map grids for PyTorch vision models.

The Python API mirrors the CLI; heavy modules (torch) load on first use, so ``import camcli`` is cheap::

    from pathlib import Path
    from camcli import CamOptions, explain_files

    for result in explain_files(["photos/"], CamOptions(out=Path("cams"), top_k=2)):
        print(result.input, result.ok)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CamOptions": "camcli.options",
    "Options": "camcli.options",  # the old name of CamOptions
    "FeatureOptions": "camcli.options",
    "EvalOptions": "camcli.options",
    "EvaluateJob": "camcli.jobs.evaluate",
    "evaluate_files": "camcli.jobs.api",
    "CamJob": "camcli.jobs.cam",
    "explain_files": "camcli.jobs.api",
    "Explainer": "camcli.jobs.engine_api",
    "FeatureJob": "camcli.jobs.features",
    "feature_files": "camcli.jobs.features",
    "ImageResult": "camcli.jobs.results",
    "merge_manifests": "camcli.io.manifest",
    "explain": "camcli.methods",
    "Target": "camcli.engine.targets",
    "Scorer": "camcli.engine.scoring",
    "get_method": "camcli.methods",
    "load_model": "camcli.models",
    "LoadedModel": "camcli.models",
    "CamcliError": "camcli.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'camcli' has no attribute {name!r}")
