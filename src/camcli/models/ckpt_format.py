"""What kind of file a checkpoint is, from its first bytes, whether a zip's entries stay within reason, and what
plain data beside the weights the safe loader may build (nothing is deserialized here)."""

from __future__ import annotations

import argparse
import pathlib
import zipfile
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

# Plain data that training frameworks put beside the weights, allowed by name to the safe loader (nothing runs:
# the unpickler builds these from the names below only). timm's train.py saves its arguments as an
# argparse.Namespace ('args'); Lightning's hyper_parameters may hold paths (saved on Linux/macOS, by Python 3.13,
# or on Windows) and AttributeDicts (read as the plain dicts they are). Anything else — OmegaConf configs, enums,
# functools.partial, classes of the training script — still needs --trust-checkpoint.
SAFE_DATA: list[Any] = [  # classes, or (class, the name a pickle gives it)
    argparse.Namespace,
    pathlib.PosixPath,
    (pathlib.PosixPath, "pathlib._local.PosixPath"),
    (pathlib.PureWindowsPath, "pathlib.WindowsPath"),
    (pathlib.PureWindowsPath, "pathlib._local.WindowsPath"),
    (dict, "lightning.fabric.utilities.data.AttributeDict"),
    (dict, "lightning_fabric.utilities.data.AttributeDict"),
    (dict, "pytorch_lightning.utilities.parsing.AttributeDict"),
]
#: the names the pickles give them (what get_unsafe_globals_in_checkpoint lists)
SAFE_NAMES = frozenset(g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in SAFE_DATA)


# torch.save (and Lightning's .ckpt, which is torch.save) stores a zip's entries uncompressed: what they expand to
# is the file's size. A zip whose entries expand to much more (a deflated run of zeros, entries that share their
# bytes) is refused from its directory, before torch reads and allocates them: at most EXPANSION times the file,
# or EXPANSION_FLOOR for a small file (a compressed buffer of zeros beside small weights).
EXPANSION = 20
EXPANSION_FLOOR = 64 << 20


def check_expansion(path: Path, entries: list[zipfile.ZipInfo]) -> None:
    """A :class:`CheckpointError` when the zip ``path``'s ``entries`` (its central directory) say they expand to
    more than :data:`EXPANSION` times the file (and more than :data:`EXPANSION_FLOOR`)."""
    size = path.stat().st_size
    total = sum(e.file_size for e in entries)
    if total > max(EXPANSION * size, EXPANSION_FLOOR):
        packed = sum(e.compress_type != zipfile.ZIP_STORED for e in entries)
        raise CheckpointError(
            f"{path}: its {len(entries)} zip entries ({packed} compressed) would expand to {total / 2**20:,.0f} MiB "
            f"from a {size / 2**20:,.1f} MiB file; refused unread (torch.save stores them uncompressed: re-save "
            "it with torch.save, not re-zipped)"
        )


def detect_format(path: Path, head: bytes) -> str:
    """The file's format from its first bytes (the suffix decides only for .safetensors, which has no magic)."""
    no_modules = (
        "it holds a graph of operations, not the nn.Module whose layers camcli hooks; save the eager model's "
        "state_dict instead (torch.save(model.state_dict(), 'model.pt'))"
    )
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path}: an ONNX file is not supported: {no_modules}")
    # safetensors: an 8-byte little-endian header length, then the JSON header
    if path.suffix.lower() == ".safetensors" or (len(head) > 9 and head[8:10] in (b'{"', b"{ ")):
        return "safetensors"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                entries = z.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise CheckpointError(f"{path}: truncated or corrupt archive; re-save or re-download it") from None
        check_expansion(path, entries)
        names = [e.filename for e in entries]
        if path.suffix.lower() == ".pt2" or any(
            "serialized_exported_program" in n or "archive_format" in n for n in names
        ):
            raise CheckpointError(f"{path}: a torch.export archive (.pt2) is not supported: {no_modules}")
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "torch-zip"
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "torch-legacy"
    raise CheckpointError(
        f"{path}: not a checkpoint camcli can read (expected torch.save .pt/.pth/.ckpt or .safetensors)"
    )
