"""Slice montages of a 3-D map over its scan: three orthogonal slices through the map's peak and a projection.

A module of its own, a layer above :mod:`camcli.io` and :mod:`camcli.render`: a montage draws a volume read by
:mod:`camcli.io.volume` with render's overlays, and the import contracts keep io and render apart.

**Orientation (NIfTI: an affine is given).** The volume is turned to the closest RAS+ axes with nibabel's
``io_orientation`` / ``apply_orientation`` (axis permutations and flips only, no resampling: an oblique scan is
shown along its nearest axes), and each view is drawn as the radiological viewers 3D Slicer and ITK-SNAP show it
by default: axial with anterior at the top and the patient's right on the screen's left; coronal with superior
at the top and the patient's right on the left; sagittal with superior at the top and anterior on the left. The
caption names the slice by the file's own voxel index, as ITK-SNAP's voxel coordinates do (x, y, z = the
stored axes i, j, k): ``axial z=12`` is the slice ``k = 12`` of a file stored in RAS order, and of a file
stored in another order it is the axis that runs from inferior to superior, named by its stored letter.
Pixels are shaped by the voxel sizes (the lengths of the affine's columns), so a scan with 1 × 1 × 3 mm voxels
is not squashed.

**Without an affine (.npy).** The arrays' own axes are shown, with square voxels: ``D=…`` is ``a[d]`` (rows H,
columns W), ``H=…`` is ``a[:, h, :]`` (rows D, columns W), ``W=…`` is ``a[:, :, w]`` (rows D, columns H), and the
projection is over D. Nothing anatomical is claimed.

**Projection.** The map's maximum-intensity projection along the axial axis (along D without an affine), drawn
over the scan's *mean* projection along the same axis: a scan's own MIP is nearly uniformly bright once its
intensities are scaled to [0, 1], its mean shows the anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .errors import UsageError
from .render import overlay


@dataclass(frozen=True)
class View:
    """One view of a montage: ``scan`` and ``map`` as displayed (row 0 at the top), values in [0, 1];
    ``spacing``: (mm per row, mm per column); ``axis``: the volume's array axis (0 = D, 1 = H, 2 = W) that the
    view slices or projects along; ``index``: the slice's index along it, None for the projection."""

    caption: str
    scan: np.ndarray
    map: np.ndarray
    spacing: tuple[float, float]
    axis: int
    index: int | None


def _shown(plane: np.ndarray) -> np.ndarray:
    """A plane of a RAS+ volume, (first axis, second axis), as displayed: both axes reversed and swapped, so
    that rows run from the second axis's positive end (anterior or superior) down and columns from the first
    axis's positive end (right or anterior) to the left of the screen."""
    return np.ascontiguousarray(plane[::-1, ::-1].T)


def montage_views(scan01: np.ndarray, map01: np.ndarray, affine: np.ndarray | None = None) -> list[View]:
    """The four views of :func:`montage_tiles` as arrays (orientation: module docstring): axial, coronal and
    sagittal slices through the map's peak voxel (the first maximum in C order) and the map's MIP.

    ``scan01`` and ``map01``: ``(D, H, W)`` in [0, 1], the volume's array axes (:mod:`camcli.io.volume`);
    ``affine``: the NIfTI file's voxel → world affine, or None for a volume without geometry (``.npy``).
    """
    if scan01.ndim != 3 or scan01.shape != map01.shape:
        raise ValueError(f"scan {scan01.shape} and map {map01.shape} must be the same (D, H, W)")
    peak = tuple(int(i) for i in np.unravel_index(int(np.argmax(map01)), map01.shape))
    ornt = _orientation(affine) if affine is not None else None
    if ornt is None:
        d, h, w = peak
        return [
            View(f"D={d}", scan01[d], map01[d], (1.0, 1.0), 0, d),
            View(f"H={h}", scan01[:, h, :], map01[:, h, :], (1.0, 1.0), 1, h),
            View(f"W={w}", scan01[:, :, w], map01[:, :, w], (1.0, 1.0), 2, w),
            View("MIP over D", scan01.mean(axis=0), map01.max(axis=0), (1.0, 1.0), 0, None),
        ]
    from nibabel.orientations import apply_orientation

    assert affine is not None
    scan, map_ = apply_orientation(scan01, ornt), apply_orientation(map01, ornt)
    stored = [int(np.flatnonzero(ornt[:, 0] == a)[0]) for a in range(3)]  # RAS axis → the stored axis along it
    sizes = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    mm = [float(sizes[s]) for s in stored]  # voxel size along x, y, z
    at = [map01.shape[s] - 1 - peak[s] if ornt[s, 1] < 0 else peak[s] for s in stored]  # the peak's RAS+ indices
    x, y, z = at

    def caption(name: str, a: int) -> str:
        return f"{name} {'xyz'[stored[a]]}={peak[stored[a]]}"

    return [
        View(
            caption("axial", 2),
            _shown(scan[:, :, z]),
            _shown(map_[:, :, z]),
            (mm[1], mm[0]),
            stored[2],
            peak[stored[2]],
        ),
        View(
            caption("coronal", 1),
            _shown(scan[:, y, :]),
            _shown(map_[:, y, :]),
            (mm[2], mm[0]),
            stored[1],
            peak[stored[1]],
        ),
        View(caption("sagittal", 0), _shown(scan[x]), _shown(map_[x]), (mm[2], mm[1]), stored[0], peak[stored[0]]),
        View("MIP (axial)", _shown(scan.mean(axis=2)), _shown(map_.max(axis=2)), (mm[1], mm[0]), stored[2], None),
    ]


def _orientation(affine: np.ndarray) -> Any:
    """nibabel's (3, 2) orientation of the affine's voxel axes (RAS+ axis, ±1 flip), None when an axis has none
    (a degenerate affine: a zero column)."""
    try:
        from nibabel.orientations import io_orientation
    except ImportError:
        raise UsageError("reading NIfTI volumes needs nibabel: pip install 'camcli[volume]'") from None
    ornt = io_orientation(np.asarray(affine, dtype=np.float64))
    if np.isnan(ornt).any() or sorted(ornt[:, 0].astype(int).tolist()) != [0, 1, 2]:
        return None
    return ornt


def _resized(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float plane resampled to ``size`` (width, height) by Pillow's bilinear filter (antialiased when it
    shrinks)."""
    picture = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), "F")
    return np.asarray(picture.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def montage_tiles(
    scan01: np.ndarray,
    map01: np.ndarray,
    colormap: str = "jet",
    alpha: float = 0.5,
    affine: np.ndarray | None = None,
    size: int = 256,
) -> list[tuple[str, Image.Image]]:
    """Captioned pictures of the views of :func:`montage_views`: the grey scan with the map overlaid
    (:func:`camcli.render.overlay`, ``colormap``, ``alpha``, weighted blend: where the map is 0 the scan shows as
    it is), for :func:`camcli.sheets.captioned_sheet`.

    Each picture's longer side is ``size`` pixels and its shape is the view's shape in millimetres (voxel sizes
    from ``affine``), so views of one volume differ in size. Captions: ``"axial z=12"``, ``"coronal y=30"``,
    ``"sagittal x=20"``, ``"MIP (axial)"`` (``.npy``: ``"D=12"``, ``"H=30"``, ``"W=20"``, ``"MIP over D"``).
    """
    tiles = []
    for view in montage_views(scan01, map01, affine):
        rows, cols = view.scan.shape
        height, width = rows * view.spacing[0], cols * view.spacing[1]
        scale = size / max(height, width)
        shape = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = np.rint(np.clip(_resized(view.scan, shape), 0.0, 1.0) * 255.0).astype(np.uint8)
        heat = np.clip(_resized(view.map, shape), 0.0, 1.0)
        tiles.append((view.caption, overlay(Image.fromarray(grey, "L"), heat, colormap, alpha)))
    return tiles
