"""`make bench` section: how long identifying a checkpoint's architecture takes, the first time (signatures not
yet cached) and later (cached), for torchvision, timm state_dicts and a timm train.py checkpoint."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch


def _timed(path: Path) -> tuple[float, str]:
    from camcli.models.checkpoints import inspect_checkpoint

    start = time.perf_counter()
    info = inspect_checkpoint(str(path))
    found = info.arch or ", ".join(info.candidates) or "none"
    return time.perf_counter() - start, found


def bench_identify() -> None:
    try:
        import timm
    except ImportError:
        print("\nidentification: timm is not installed (pip install -e '.[dev]'); skipped")
        return
    import torchvision

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # a cold cache of camcli's own
        try:
            files = {"torchvision resnet50 (state_dict)": folder / "tv.pth"}
            torch.save(
                torchvision.models.resnet50(num_classes=7).state_dict(), files["torchvision resnet50 (state_dict)"]
            )
            for name in ("vit_small_patch16_224", "swin_tiny_patch4_window7_224", "convnext_tiny", "efficientnet_b0"):
                path = folder / f"{name}.pth"
                torch.save(timm.create_model(name, num_classes=7).state_dict(), path)
                files[f"timm {name} (state_dict)"] = path
            path = folder / "train.pth.tar"
            state = timm.create_model("convnext_tiny", num_classes=7).state_dict()
            torch.save({"arch": "convnext_tiny", "state_dict": state, "epoch": 1}, path)
            files["timm convnext_tiny (train.py, 'arch')"] = path
            rows = []
            for label, p in files.items():
                first, found = _timed(p)
                later, _ = _timed(p)
                rows.append((label, first, later, found))
        finally:
            if old is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = old
    print("\nidentifying a checkpoint's architecture (first: nothing cached; later: signatures cached)")
    print(f"{'checkpoint':48} {'first':>8} {'later':>8}  found")
    for label, first, later, found in rows:
        print(f"{label:48} {first:7.2f}s {later:7.2f}s  {found[:60]}")
    print("(the torchvision row's first time includes building the signatures of every torchvision model once)")
