"""Reading a user's checkpoint file into Python objects: the only place that deserializes user files.

Safety: ``torch.load(..., weights_only=True, map_location="cpu")`` always; there is no automatic fallback to
full unpickling. A file that needs arbitrary classes is refused with the classes it would import, unless the
user passes ``--trust-checkpoint``; then the classes it names are imported, contained as the user's own code is
(:func:`~camcli.models.custom.user_code`). A zip whose entries would expand far beyond the file is refused before
anything is read (:func:`~camcli.models.ckpt_format.detect_format`).
"""

from __future__ import annotations

import pickle
import threading
import zipfile
from pathlib import Path

import torch

from ..checks import first_words
from ..errors import CheckpointError, ModelError, UsageError
from .ckpt_format import SAFE_DATA, SAFE_NAMES, detect_format
from .custom import explain_unpickling, import_path, said, user_code

# torch.serialization.safe_globals edits one process-wide list: one load at a time changes it
_SAFE_LOCK = threading.Lock()


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:
        return []


def read_file(path: Path, trust: bool, code_path: str | None = None) -> tuple[str, object]:
    """(format, deserialized object) without ever running code from the file unless ``trust`` (then the classes
    it names are imported, with ``code_path`` first on the import path)."""
    if not path.exists():
        raise UsageError(f"checkpoint '{path}' does not exist; check the path or pass a model name")
    if path.is_dir():
        raise UsageError(f"'{path}' is a folder; pass a checkpoint file (.pt, .pth, .ckpt, .safetensors)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); re-save or re-download it")
    with path.open("rb") as f:
        head = f.read(16)
    fmt = detect_format(path, head)
    if fmt == "torchscript":
        raise CheckpointError(
            f"{path}: a TorchScript archive; hooks cannot be attached to scripted modules. Save the eager "
            "model's state_dict instead: torch.save(model.state_dict(), 'model.pt')"
        )
    if fmt == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(
                "reading .safetensors needs the safetensors package: pip install safetensors"
            ) from None
        try:
            return fmt, load_file(str(path), device="cpu")
        except Exception as e:
            raise CheckpointError(f"{path}: not a valid safetensors file ({said(e)})") from None
    if code_path and not Path(code_path).expanduser().is_dir():
        raise UsageError(f"--code-path '{code_path}' is not a folder")
    try:
        if trust:  # the classes it names are imported: the user's own code, contained
            with import_path(code_path), user_code(str(path), f"{path}: unpickling it (--trust-checkpoint)"):
                return fmt, torch.load(str(path), map_location="cpu", weights_only=False)
        with _SAFE_LOCK:  # only what is not allowed already: leaving the block takes these away again
            have = torch.serialization.get_safe_globals()
            extra = [g for g in SAFE_DATA if g not in have]
            with torch.serialization.safe_globals(extra):
                return fmt, torch.load(str(path), map_location="cpu", weights_only=True)
    except (ModuleNotFoundError, AttributeError) as e:
        raise explain_unpickling(path, e) from None
    except pickle.UnpicklingError as e:
        if trust:
            raise CheckpointError(f"{path}: cannot unpickle ({said(e)})") from None
        # the file's own classes first (they are what the user recognises), torch internals last
        names = sorted(set(_unsafe_globals(path)) - SAFE_NAMES, key=lambda n: (n.startswith("torch."), n))
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            what = f"it would import {len(names)} class(es)/function(s): {shown}"
            if any(n.split(".")[0] in ("omegaconf", "lightning", "pytorch_lightning", "functools") for n in names):
                what += " (a training framework's settings beside the weights, e.g. Lightning's hyper_parameters)"
        else:
            what = "it needs objects beyond plain tensors"
        raise CheckpointError(
            f"{path}: refused to load: {what}, which can run arbitrary code. Re-save it as a state_dict "
            "(torch.save(model.state_dict(), 'model.pt')) or safetensors, or pass --trust-checkpoint if you "
            "trust the file"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first_words(e, 160)})") from None
    except ModelError:
        raise  # user_code's answer to a sys.exit() in the code a trusted pickle imports
    except Exception as e:  # only a trusted pickle runs code: the code of the classes it imports
        raise CheckpointError(f"{path}: unpickling it (--trust-checkpoint) raised {said(e)}") from None
