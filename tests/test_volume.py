"""3-D volumes (camcli.io.volume) and their montages (camcli.montage), on NIfTI and .npy files made here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from camcli.errors import InputError, UsageError
from camcli.io.volume import is_volume, map_suffix, read_volume, scale_intensity, write_map_nifti
from camcli.montage import montage_tiles, montage_views

nib = pytest.importorskip("nibabel")

SHAPE = (20, 24, 16)  # i, j, k
BLOB = (5, 17, 11)  # the blob's voxel (i, j, k)
# voxel → world: 0.8 × 1.0 × 2.5 mm voxels, stored in RAS order, shifted
AFFINE = np.array([[0.8, 0, 0, -8.0], [0, 1.0, 0, -12.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])


def blob(shape=SHAPE, at=BLOB, width=2.0) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum((g - c) ** 2 for g, c in zip(grids, at, strict=True))
    return np.exp(-d2 / (2 * width**2)).astype(np.float32)


def save_nifti(path: Path, data: np.ndarray, affine=AFFINE, slope=None, inter=0.0, codes=(1, 4), cls=None) -> Path:
    img = (cls or nib.Nifti1Image)(data, affine)
    img.header.set_qform(affine, code=codes[0])
    img.header.set_sform(affine, code=codes[1])
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, path)
    return path


@pytest.fixture
def scan(tmp_path) -> Path:
    """int16 voxels 0…1000 (a blob on a ramp along i) stored with scl_slope 2, scl_inter -100."""
    raw = (np.rint(blob() * 900) + np.arange(SHAPE[0])[:, None, None] * 5).astype(np.int16)
    path = save_nifti(tmp_path / "scan.nii.gz", raw, slope=2.0, inter=-100.0)
    proxy = nib.load(path).dataobj
    assert (proxy.slope, proxy.inter) == (2.0, -100.0)  # the file really is scaled
    assert np.array_equal(np.asarray(proxy.get_unscaled()), raw)
    return path


def test_is_volume_by_name():
    assert all(is_volume(Path(n)) for n in ["a.nii", "b.NII.GZ", "c.npy", "d/e.f.nii.gz"])
    assert not any(is_volume(Path(n)) for n in ["a.png", "a.gz", "a.nii.zip", "a.npz", "nii"])


def test_nifti_read_applies_scaling_and_keeps_the_affine(scan):
    vol = read_volume(scan)
    raw = np.asarray(nib.load(scan).dataobj.get_unscaled()).astype(np.float64)
    assert vol.data.shape == (1, *SHAPE) and vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data[0], raw * 2.0 - 100.0)  # stored × slope + inter, axes as stored
    np.testing.assert_array_equal(vol.affine, nib.load(scan).affine)  # the header's float32 values
    np.testing.assert_allclose(vol.affine, AFFINE, rtol=1e-6)
    assert vol.affine.dtype == np.float64
    assert vol.zooms == pytest.approx((0.8, 1.0, 2.5))
    assert vol.axes == "D,H,W = NIfTI i,j,k (towards R,A,S)"
    assert vol.geometry is vol.affine and vol.header is not None
    assert map_suffix(vol) == ".nii.gz"


def test_four_d_nifti_channels_come_first(tmp_path):
    data = np.random.default_rng(0).normal(size=(*SHAPE, 3)).astype(np.float32)
    vol = read_volume(save_nifti(tmp_path / "four.nii", data))
    assert vol.data.shape == (3, *SHAPE)
    for c in range(3):
        np.testing.assert_array_equal(vol.data[c], data[..., c])
    assert vol.axes.startswith("C,D,H,W = NIfTI 4th axis,i,j,k")


def test_npy_volumes(tmp_path):
    three = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
    np.save(tmp_path / "a.npy", three)
    vol = read_volume(tmp_path / "a.npy")
    assert vol.data.shape == (1, *SHAPE) and vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data[0], three)
    np.testing.assert_array_equal(vol.affine, np.eye(4))
    assert vol.header is None and vol.geometry is None and map_suffix(vol) == ".npy"
    four = np.asfortranarray(np.random.default_rng(1).random((2, *SHAPE)))  # Fortran order is read the same
    np.save(tmp_path / "b.npy", four)
    np.testing.assert_array_equal(read_volume(tmp_path / "b.npy").data, four.astype(np.float32))


def test_map_written_back_is_aligned_on_the_scan(scan, tmp_path):
    vol = read_volume(scan)
    ext = nib.nifti1.Nifti1Extension("comment", b"patient: Jane Doe")
    vol.header.extensions.append(ext)
    map_ = blob(width=3.0)
    target = tmp_path / "out" / "scan.gradcam.nii.gz"
    write_map_nifti(target, map_, vol)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary file left
    assert target.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    back, source = nib.load(target), nib.load(scan)
    assert back.shape == SHAPE and back.get_data_dtype() == np.float32
    np.testing.assert_array_equal(back.affine, source.affine)
    np.testing.assert_array_equal(back.header.get_qform(), source.header.get_qform())
    np.testing.assert_array_equal(back.header.get_sform(), source.header.get_sform())
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (1, 4)
    assert back.header.get_zooms() == source.header.get_zooms()
    assert int(back.header["dim"][0]) == 3
    assert np.isnan(back.header["scl_slope"]) or back.header["scl_slope"] in (0.0, 1.0)
    assert (back.dataobj.slope, back.dataobj.inter) == (1.0, 0.0)
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float32), map_)  # the map, unscaled, axes unchanged
    assert len(back.header.extensions) == 0 and b"Jane" not in gzip.decompress(target.read_bytes())
    assert nib.aff2axcodes(back.affine) == ("R", "A", "S")
    before = target.read_bytes()
    write_map_nifti(target, map_, vol)
    assert target.read_bytes() == before  # the same map gives the same bytes (no time stamp in the gzip)


def test_map_of_a_four_d_nifti2_and_of_an_npy(tmp_path):
    data = np.ones((*SHAPE, 2), dtype=np.float32)
    src = save_nifti(tmp_path / "two.nii", data, cls=nib.Nifti2Image, codes=(2, 0))
    vol = read_volume(src)
    write_map_nifti(tmp_path / "m.nii", blob(), vol)
    back = nib.load(tmp_path / "m.nii")
    assert isinstance(back, nib.Nifti2Image) and back.shape == SHAPE
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (2, 0)
    np.testing.assert_array_equal(back.affine, nib.load(src).affine)
    np.save(tmp_path / "v.npy", np.zeros(SHAPE))
    npy = read_volume(tmp_path / "v.npy")
    write_map_nifti(tmp_path / "v.map.npy", blob(), npy)
    np.testing.assert_array_equal(np.load(tmp_path / "v.map.npy"), blob())
    with pytest.raises(ValueError, match=r"is a \.npy"):
        write_map_nifti(tmp_path / "v.map.nii.gz", blob(), npy)
    with pytest.raises(ValueError, match="shape"):
        write_map_nifti(tmp_path / "m.nii", blob()[:-1], vol)


def test_scaling_by_window_percentiles_and_range():
    ct = np.array([-1000.0, -500.0, 0.0, 400.0, 1000.0], dtype=np.float32)
    out, text = scale_intensity(ct, window=(-1000, 400))
    np.testing.assert_allclose(out, [0.0, 500 / 1400, 1000 / 1400, 1.0, 1.0], rtol=1e-6)
    assert text == "window -1000…400"
    ramp = np.arange(101, dtype=np.float32)  # percentile p of 0…100 is p itself (linear interpolation)
    out, text = scale_intensity(ramp, percentiles=(10, 90))
    np.testing.assert_allclose(out[[0, 10, 50, 90, 100]], [0.0, 0.0, 0.5, 1.0, 1.0], rtol=1e-6)
    assert text == "percentiles 10–90: 10…90"
    out, text = scale_intensity(ramp * 2 - 12.345, percentiles=None)
    np.testing.assert_allclose(out[[0, 25, 100]], [0.0, 0.25, 1.0], atol=1e-6)
    assert text == "min–max: -12.35…187.7"
    out, text = scale_intensity(np.full(8, 7.0), percentiles=(1, 99))
    assert not out.any() and text.endswith("(constant: all 0)")
    assert scale_intensity(ramp)[1] == "percentiles 0.5–99.5: 0.5…99.5"
    assert scale_intensity(ramp)[0].dtype == np.float32 and ramp[3] == 3.0  # the input is not changed
    with pytest.raises(UsageError, match="low end"):
        scale_intensity(ramp, window=(400, -1000))
    with pytest.raises(UsageError, match="percentiles"):
        scale_intensity(ramp, percentiles=(50, 101))


def _refused(path: Path, *words: str, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        read_volume(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, message
    return message


def test_files_that_are_refused(scan, tmp_path):
    whole = scan.read_bytes()
    (tmp_path / "short.nii.gz").write_bytes(whole[: len(whole) // 2])
    _refused(tmp_path / "short.nii.gz", "truncated or corrupt")
    (tmp_path / "junk.nii.gz").write_bytes(b"not gzip at all" * 40)
    _refused(tmp_path / "junk.nii.gz", "not a NIfTI file")
    _refused(save_nifti(tmp_path / "flat.nii", np.zeros((20, 24), np.float32)), "2-D", "(20, 24)")
    _refused(save_nifti(tmp_path / "five.nii", np.zeros((4, 4, 4, 2, 2), np.float32)), "5-D")
    nans = np.zeros(SHAPE, np.float32)
    nans[0, 0, :3] = np.nan
    nans[1, 1, 1] = np.inf
    _refused(save_nifti(tmp_path / "nan.nii.gz", nans), "4 of 7,680 voxels are NaN or infinite")
    np.save(tmp_path / "nan.npy", nans)
    _refused(tmp_path / "nan.npy", "4 of 7,680")
    _refused(scan, "7,680 values is over the limit of 7,000", "--max-voxels", max_voxels=7000)
    assert read_volume(scan, max_voxels=7680).data.shape == (1, *SHAPE)
    np.save(tmp_path / "flat.npy", np.zeros((3, 3)))
    _refused(tmp_path / "flat.npy", "2-D .npy array")
    np.save(tmp_path / "five.npy", np.zeros((1, 1, 2, 2, 2)))
    _refused(tmp_path / "five.npy", "5-D")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    _refused(tmp_path / "objects.npy", "pickled", "never unpickles")
    np.save(tmp_path / "complex.npy", np.zeros(SHAPE, np.complex64))
    _refused(tmp_path / "complex.npy", "complex64")
    np.savez(tmp_path / "zipped.npy", a=np.zeros(SHAPE))  # savez adds .npz: rename it
    (tmp_path / "zipped.npy.npz").rename(tmp_path / "zipped.npy")
    _refused(tmp_path / "zipped.npy", "not a .npy file")
    good = tmp_path / "cut.npy"
    np.save(good, np.zeros(SHAPE))
    good.write_bytes(good.read_bytes()[:500])
    _refused(good, "truncated or corrupt .npy")
    _refused(tmp_path / "missing.nii.gz", "no such file")
    _refused(tmp_path, "not a regular file")


def test_montage_slices_go_through_the_blob(scan):
    vol = read_volume(scan)
    scan01, _ = scale_intensity(vol.data[0])
    map_ = blob()
    views = montage_views(scan01, map_, vol.geometry)
    assert [v.caption for v in views] == ["axial z=11", "coronal y=17", "sagittal x=5", "MIP (axial)"]
    assert [(v.axis, v.index) for v in views] == [(2, 11), (1, 17), (0, 5), (2, None)]
    for v in views:
        assert v.map.max() == 1.0  # each view holds the peak voxel
    # RAS storage: axial shows (j, i) with anterior (high j) at the top and right (high i) on the left
    axial, coronal, sagittal, mip = views
    assert axial.map.shape == (24, 20) and np.unravel_index(axial.map.argmax(), (24, 20)) == (24 - 1 - 17, 20 - 1 - 5)
    assert coronal.map.shape == (16, 20) and sagittal.map.shape == (16, 24)
    assert np.unravel_index(sagittal.map.argmax(), (16, 24)) == (16 - 1 - 11, 24 - 1 - 17)
    np.testing.assert_array_equal(mip.map, map_.max(axis=2)[::-1, ::-1].T)
    np.testing.assert_allclose(mip.scan, scan01.mean(axis=2)[::-1, ::-1].T)
    assert axial.spacing == pytest.approx((1.0, 0.8)) and coronal.spacing == pytest.approx((2.5, 0.8))


def test_montage_does_not_depend_on_how_the_file_stores_the_axes(tmp_path):
    """One anatomy stored three ways (RAS; LPS: i and j reversed; slices first: (k, i, j)) gives the same
    pictures; only the captions' voxel indices, which are the file's own, differ."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3], flip[1, 1], flip[1, 3] = -1, SHAPE[0] - 1, -1, SHAPE[1] - 1
    perm = np.zeros((4, 4))
    perm[0, 1], perm[1, 2], perm[2, 0], perm[3, 3] = 1, 1, 1, 1  # stored voxel (k, i, j) → RAS voxel (i, j, k)
    storage = {  # how to store an (i, j, k) array, and the affine of the stored voxels
        "ras": (lambda a: a, AFFINE),
        "lps": (lambda a: a[::-1, ::-1, :].copy(), AFFINE @ flip),
        "kij": (lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)), AFFINE @ perm),
    }
    anatomy = blob(width=2.5) + np.linspace(0, 1, SHAPE[0], dtype=np.float32)[:, None, None]
    views = {}
    for name, (store, affine) in storage.items():
        vol = read_volume(save_nifti(tmp_path / f"{name}.nii.gz", store(anatomy), affine=affine))
        scan01, _ = scale_intensity(vol.data[0], percentiles=None)
        views[name] = montage_views(scan01, store(blob()), vol.geometry)
    assert nib.aff2axcodes(AFFINE @ flip) == ("L", "P", "S") and nib.aff2axcodes(AFFINE @ perm) == ("S", "R", "A")
    for name in ("lps", "kij"):
        for a, b in zip(views["ras"], views[name], strict=True):
            np.testing.assert_allclose(b.scan, a.scan, atol=1e-6)
            np.testing.assert_array_equal(b.map, a.map)
            assert b.spacing == pytest.approx(a.spacing)
    assert [v.caption for v in views["lps"]] == ["axial z=11", "coronal y=6", "sagittal x=14", "MIP (axial)"]
    assert [v.caption for v in views["kij"]] == ["axial x=11", "coronal z=17", "sagittal y=5", "MIP (axial)"]


def test_montage_tiles_have_the_shape_of_millimetres_and_the_map_at_the_peak(scan):
    vol = read_volume(scan)
    scan01, _ = scale_intensity(vol.data[0])
    tiles = montage_tiles(scan01, blob(), colormap="jet", alpha=0.8, affine=vol.geometry, size=240)
    assert [c for c, _ in tiles] == ["axial z=11", "coronal y=17", "sagittal x=5", "MIP (axial)"]
    # axial: 24 mm of rows (j), 16 mm of columns (i × 0.8); coronal: 40 mm (k × 2.5) by 16; sagittal: 40 by 24
    assert [t.size for _, t in tiles] == [(160, 240), (96, 240), (144, 240), (160, 240)]
    axial = np.asarray(tiles[0][1]).astype(int)
    # the blob's voxel centre (i 5, j 17) on the axial tile: column (20 - 0.5 - 5) / 20, row (24 - 0.5 - 17) / 24
    r, _, b = axial[round(6.5 / 24 * 240), round(14.5 / 20 * 160)]
    assert r > 100 and b < 60  # jet's dark red at the top of the scale
    corner = axial[2, 2]
    assert corner[0] == corner[1] == corner[2]  # away from the blob the grey scan shows as it is


def test_montage_of_an_npy_names_array_axes(tmp_path):
    np.save(tmp_path / "v.npy", blob(shape=(12, 14, 10), at=(3, 9, 6)))
    vol = read_volume(tmp_path / "v.npy")
    map_ = vol.data[0]
    views = montage_views(map_, map_, vol.geometry)
    assert [v.caption for v in views] == ["D=3", "H=9", "W=6", "MIP over D"]
    np.testing.assert_array_equal(views[0].map, map_[3])
    np.testing.assert_array_equal(views[2].map, map_[:, :, 6])
    np.testing.assert_array_equal(views[3].map, map_.max(axis=0))
    assert views[3].map.shape == (14, 10)
    tiles = montage_tiles(map_, map_, affine=None, size=140)  # D 12, H 14, W 10: (W, H), (W, D), (H, D), (W, H)
    assert [t.size for _, t in tiles] == [(100, 140), (117, 140), (140, 120), (100, 140)]
    with pytest.raises(ValueError, match="same"):
        montage_views(map_, map_[:-1])


def test_without_nibabel_one_line_names_the_extra(scan, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "nibabel", None)  # import nibabel now raises ImportError
    with pytest.raises(UsageError, match=r"needs nibabel: pip install 'camcli\[volume\]'"):
        read_volume(scan)
    np.save(scan.with_name("v.npy"), np.zeros(SHAPE))
    assert read_volume(scan.with_name("v.npy")).data.shape == (1, *SHAPE)  # .npy needs no nibabel
