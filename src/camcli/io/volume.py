"""3-D volumes in and out: NIfTI (``.nii``, ``.nii.gz``, through nibabel) and ``.npy`` arrays.

**Axes.** A :class:`Volume`'s array is ``(C, D, H, W)``, channels first (the layout of PyTorch's ``Conv3d`` and of
MONAI's channel-first images). For NIfTI, D, H and W are the file's voxel axes *as stored*, i, j and k, never
transposed or flipped (MONAI's ``LoadImage`` keeps the same order), so a map computed on the array is written
back with the input's affine unchanged and opens aligned on the scan in 3D Slicer or ITK-SNAP. Where the axes
point in the body is the affine's business (:attr:`Volume.axes` says it for the records, ``nibabel.aff2axcodes``);
a 4-D NIfTI's 4th axis (time points or channels) becomes C. A ``.npy`` file carries no geometry: a 3-D array is
``(D, H, W)`` with C = 1, a 4-D array is ``(C, D, H, W)`` as stored; its affine is the identity.

**Which files.** :func:`is_volume` decides by the name alone (:data:`VOLUME_SUFFIXES`), without opening the file:
a ``.npy`` that holds a 2-D or 5-D array is still a volume input, refused by :func:`read_volume` with its reason
(one failed input, the run goes on). DICOM series, NRRD, MHA and Analyze ``.img/.hdr`` are not read: convert them
to NIfTI first (``dcm2niix``, 3D Slicer, ``SimpleITK.WriteImage``).

nibabel is an optional extra (``pip install 'camcli[volume]'``), imported when a NIfTI file is read or written.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from .inputs import NIFTI_SUFFIXES, VOLUME_SUFFIXES
from .outputs import atomic_save_npy, atomic_write_bytes

_gzip: Any = gzip
try:  # the same gzip format, about twice as fast as Python's at the same level
    from zlib_ng import gzip_ng as _gzip
except ImportError:  # pragma: no cover - a platform without its wheel
    pass

# the most values (voxels × channels) a volume may hold: 2**28, 1 GiB as float32 (a 512×512×1024 CT fits); a
# header that declares more is refused before any voxel is read (a few bytes of gzip can declare terabytes)
DEFAULT_MAX_VOXELS = 1 << 28


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise UsageError("reading NIfTI volumes needs nibabel: pip install 'camcli[volume]'") from None
    return nibabel


def is_volume(path: Path) -> bool:
    """``path`` names a volume input by its suffix (case-insensitive): ``.nii``, ``.nii.gz`` or ``.npy``.

    The name decides; the contents are checked by :func:`read_volume` (a ``.npy`` that is not 3-D or 4-D is a
    failed input there, with its reason)."""
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


@dataclass
class Volume:
    """A volume read by :func:`read_volume`.

    ``data``: ``(C, D, H, W)`` float32, finite, channels first (C = 1 for a plain scan), intensities in the scan's
    units (NIfTI scaling ``scl_slope``/``scl_inter`` applied). ``affine``: ``(4, 4)`` float64 voxel (i, j, k) →
    world (mm, RAS+) of the NIfTI file (nibabel's ``img.affine``: the sform, else the qform), the identity for
    ``.npy``. ``header``: the nibabel header, reused when the map is written (None for ``.npy``). ``axes``: how
    the array's axes map to the file's, in words for the records (module docstring).
    """

    data: np.ndarray
    affine: np.ndarray
    header: Any | None
    path: Path
    axes: str

    @property
    def geometry(self) -> np.ndarray | None:
        """The affine when the file has one (NIfTI), None for ``.npy`` (whose identity affine means nothing):
        what :func:`camcli.montage.montage_tiles` takes to orient its views."""
        return self.affine if self.header is not None else None

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel sizes along D, H, W in mm: the lengths of the affine's first three columns (1, 1, 1 for .npy)."""
        sizes = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def read_volume(path: Path, max_voxels: int | None = DEFAULT_MAX_VOXELS) -> Volume:
    """Read a NIfTI or ``.npy`` volume as a :class:`Volume` (axes: module docstring).

    Every file that cannot be used raises :class:`InputError` with one line: missing or not a regular file,
    corrupt or truncated (gzip or NIfTI), not 3-D or 4-D, more than ``max_voxels`` values (checked on the header,
    before the voxels are read; None: no limit), values that are not finite (how many), a ``.npy`` of Python
    objects (never unpickled) or of a type that is not numbers. Values are converted to float32.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    if is_nifti(path):
        data, affine, header, axes = _read_nifti(path, max_voxels)
    elif path.name.lower().endswith(".npy"):
        data, axes = _read_npy(path, max_voxels)
        affine, header = np.eye(4), None
    else:
        raise InputError(f"{path}: not a volume ({', '.join(VOLUME_SUFFIXES)})")
    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(
            f"{path}: {bad:,} of {data.size:,} voxels are NaN or infinite (as float32); "
            "replace them (e.g. numpy.nan_to_num) and save the volume again"
        )
    return Volume(data=data, affine=affine, header=header, path=path, axes=axes)


def _check_shape(path: Path, shape: tuple[int, ...], what: str, max_voxels: int | None) -> None:
    if len(shape) not in (3, 4):
        raise InputError(
            f"{path}: a {len(shape)}-D {what} of shape {tuple(shape)}; camcli reads 3-D volumes and 4-D ones "
            "(several channels or time points)"
        )
    count = math.prod(shape)
    if count == 0:
        raise InputError(f"{path}: an empty {what} (shape {tuple(shape)})")
    if max_voxels is not None and count > max_voxels:
        raise InputError(
            f"{path}: {'x'.join(map(str, shape))} = {count:,} values is over the limit of {max_voxels:,}; "
            "raise it with --max-voxels if the file is trusted"
        )


# what numpy and gzip raise on a corrupt or truncated file (a short gzip stream is an EOFError, a damaged one a
# zlib.error or gzip.BadGzipFile, an OSError); nibabel's own errors are added where it is used
_BROKEN: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error, TypeError)


def _nibabel_errors(nib: Any) -> tuple[type[BaseException], ...]:
    from nibabel.spatialimages import HeaderDataError, ImageDataError

    return (*_BROKEN, nib.filebasedimages.ImageFileError, HeaderDataError, ImageDataError)


def _read_nifti(path: Path, max_voxels: int | None) -> tuple[np.ndarray, np.ndarray, Any, str]:
    nib = _nibabel()
    broken = _nibabel_errors(nib)
    try:
        img = nib.load(path)
    except broken as e:
        raise InputError(f"{path}: not a NIfTI file nibabel can read ({_first_line(e)})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{path}: a {type(img).__name__}, not a single-file NIfTI image")
    shape = tuple(int(n) for n in img.shape)
    _check_shape(path, shape, "NIfTI image", max_voxels)
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":
        raise InputError(f"{path}: NIfTI voxels of type {dtype} (RGB or complex); camcli reads scalar volumes")
    try:
        # the stored values with the header's scaling (scl_slope, scl_inter) applied, as float32; the image's
        # cache is left empty so the file's array is not kept twice
        data = img.get_fdata(caching="unchanged", dtype=np.float32)
    except broken as e:
        raise InputError(f"{path}: truncated or corrupt NIfTI data ({_first_line(e)})") from None
    codes = ",".join(str(c) for c in nib.aff2axcodes(img.affine))
    if data.ndim == 4:
        data = np.ascontiguousarray(np.moveaxis(data, 3, 0))
        axes = f"C,D,H,W = NIfTI 4th axis,i,j,k (i,j,k towards {codes})"
    else:
        data = data[None]
        axes = f"D,H,W = NIfTI i,j,k (towards {codes})"
    return data, np.asarray(img.affine, dtype=np.float64), img.header.copy(), axes


def _read_npy(path: Path, max_voxels: int | None) -> tuple[np.ndarray, str]:
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)  # then the header only: no voxel is read yet (3.0 differs from 2.0 only
            # in allowing UTF-8 in field names, which a numeric array has none of)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(f)
    except _BROKEN as e:
        raise InputError(f"{path}: not a .npy file numpy can read ({_first_line(e)})") from None
    if dtype.hasobject:
        raise InputError(
            f"{path}: a .npy of Python objects (pickled); camcli never unpickles: save a numeric array "
            "(numpy.save(path, array.astype('float32')))"
        )
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: a .npy of {dtype}; camcli reads arrays of numbers (bool, int, float)")
    _check_shape(path, tuple(int(n) for n in shape), ".npy array", max_voxels)
    try:
        with open(path, "rb") as f:
            array = fmt.read_array(f, allow_pickle=False)
    except _BROKEN as e:
        raise InputError(f"{path}: truncated or corrupt .npy ({_first_line(e)})") from None
    data = np.ascontiguousarray(array, dtype=np.float32)
    if data.ndim == 3:
        return data[None], "D,H,W = .npy axes 0,1,2"
    return data, "C,D,H,W = .npy axes 0,1,2,3"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def scale_intensity(
    data: np.ndarray,
    window: tuple[float, float] | None = None,
    percentiles: tuple[float, float] | None = (0.5, 99.5),
) -> tuple[np.ndarray, str]:
    """``data`` clipped to ``[low, high]`` and scaled to [0, 1] as float32: ``(clip(x, low, high) - low) / (high -
    low)``; and a description for the records.

    ``window``: ``(low, high)`` in the scan's units (CT: Hounsfield units, e.g. ``(-1000, 400)``); else the
    ``percentiles`` of all of ``data`` (numpy's default linear interpolation), e.g. ``(0.5, 99.5)``: robust to a
    few hot voxels, the usual MRI normalisation; both None: the minimum and maximum. A constant volume (``high ==
    low``) scales to zeros. Description: ``"window -1000…400"``, ``"percentiles 0.5–99.5: -12.3…845"`` or
    ``"min–max: 0…1"``.
    """
    if window is not None:
        low, high = float(window[0]), float(window[1])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise UsageError(f"intensity window {low:g},{high:g}: the low end must be below the high end")
        text = f"window {_num(low)}…{_num(high)}"
    elif percentiles is not None:
        p_lo, p_hi = float(percentiles[0]), float(percentiles[1])
        if not 0.0 <= p_lo < p_hi <= 100.0:
            raise UsageError(f"intensity percentiles {p_lo:g},{p_hi:g}: need 0 ≤ low < high ≤ 100")
        low, high = (float(v) for v in np.percentile(data, [p_lo, p_hi]))
        text = f"percentiles {p_lo:g}–{p_hi:g}: {_num(low)}…{_num(high)}"
    else:
        low, high = float(np.min(data)), float(np.max(data))
        text = f"min–max: {_num(low)}…{_num(high)}"
    out = np.asarray(data, dtype=np.float32).copy()
    if high <= low:
        out[...] = 0.0
        return out, text + " (constant: all 0)"
    np.clip(out, low, high, out=out)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    np.clip(out, 0.0, 1.0, out=out)  # float32 rounding of the product may step past 1 by an ulp
    return out, text


def _num(value: float) -> str:
    """A value for a description: up to 4 significant digits (845.0 → 845, -12.345 → -12.35, 1e6 → 1e+06)."""
    return f"{value:.4g}"


def map_suffix(like: Volume) -> str:
    """The suffix of the map file :func:`write_map_nifti` writes for a map of ``like``: ``.nii.gz`` for a NIfTI
    input, ``.npy`` for a ``.npy`` input."""
    return ".nii.gz" if like.header is not None else ".npy"


def write_map_nifti(target: Path, map_: np.ndarray, like: Volume) -> None:
    """Write a ``(D, H, W)`` map of the volume ``like`` atomically, aligned on it.

    NIfTI input: a NIfTI file (gzip-compressed when ``target`` ends in ``.gz``) with the input's affine and a
    header derived from the input's: the same NIfTI version, qform and sform (codes kept), voxel sizes and units;
    data type float32, ``scl_slope``/``scl_inter`` reset (the map is stored as is), ``dim`` for 3-D, intent and
    display range (``cal_min``/``cal_max``) cleared, no header extensions (they may hold a scanner's or a
    patient's details), ``descrip`` "camcli map". The map's axes are the input's D, H, W = i, j, k, so nothing
    is transposed. ``.npy`` input: a ``.npy`` of the map (there is no geometry to keep); ``target`` must end in
    :func:`map_suffix`.
    """
    shape = tuple(like.data.shape[1:])
    if map_.shape != shape:
        raise ValueError(f"map of shape {map_.shape} for a volume of shape {shape}")
    name = target.name.lower()
    if like.header is None:
        if not name.endswith(".npy"):
            raise ValueError(f"the map of a .npy volume is a .npy, not {target.name}")
        atomic_save_npy(target, np.ascontiguousarray(map_, dtype=np.float32))
        return
    if not name.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"the map of a NIfTI volume is a .nii or .nii.gz, not {target.name}")
    nib = _nibabel()
    header = like.header.copy()
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    header.set_data_dtype(np.float32)
    header.set_slope_inter(None, None)
    header.set_intent("none", (), name="")
    header["cal_min"], header["cal_max"] = 0.0, 0.0
    header["descrip"] = b"camcli map"
    header.extensions.clear()
    image = image_class(np.ascontiguousarray(map_, dtype=np.float32), like.affine, header=header)
    # the codes of the input, set again: nibabel's constructor would set a code the input did not have (e.g.
    # sform code 2 when the input had none) if its affine were not already the header's
    sform_code, qform_code = int(like.header["sform_code"]), int(like.header["qform_code"])
    image.header["sform_code"], image.header["qform_code"] = sform_code, qform_code
    raw = image.to_bytes()
    if name.endswith(".gz"):
        # zlib-ng (a camcli dependency) at level 6: the size of Python's gzip at level 6 in half the time (a
        # 256×256×180 map: 1.05 s instead of 2.2 s, 31 MB); mtime 0: the same map gives the same bytes
        raw = _gzip.compress(raw, compresslevel=6, mtime=0)
    atomic_write_bytes(target, raw)
