"""Videos and volumes through `camcli gradcam` (camcli.jobs.media), end to end on generated files
(examples/make_media.py: a clip of the sample cat, a scan with a bright blob, a 3-D net whose evidence is the blob).

Checked against independent things: a video frame's map equals the map `camcli gradcam` makes of the same frame
as a picture; the written NIfTI's affine and shape are the scan's and its peak is the blob's voxel; the overlay
video has the frames and rate of the frames explained; files that cannot be decoded are one failed input each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from camcli.cli import app

from .conftest import ROOT, make_media_files

nib = pytest.importorskip("nibabel")
pytest.importorskip("av")

runner = CliRunner()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = make_media_files(tmp_path_factory.mktemp("media"))
    return folder


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_a_video_with_a_picture_model_gives_an_overlay_video_a_sheet_and_each_frames_picture_map(media, tmp_path):
    from PIL import Image

    from camcli.io.video import read_video

    out = tmp_path / "out"
    res = runner.invoke(app, ["gradcam", str(media / "clip.mp4"), "--every", "3", "--save-raw", "--out", str(out)])
    assert res.exit_code == 0, res.output
    (r,) = _records(out)
    assert r["status"] == "ok" and r["class_name"] == "Egyptian cat" and r["media"]["kind"] == "video"
    assert r["media"]["frames"] == list(range(0, 24, 3)) and r["media"]["fps"] == 4.0  # 12 fps, every 3rd frame
    files = r["outputs"]
    assert Path(files["overlay"]).name == "clip.mp4.gradcam,every=3.285-Egyptian_cat.mp4"  # frames chosen: named
    again = runner.invoke(
        app, ["gradcam", str(media / "clip.mp4"), "--every", "3", "--out", str(out), "--skip-existing"]
    )
    assert again.exit_code == 0 and "1 skipped" in again.output, again.output
    written = read_video(Path(files["overlay"]))
    assert written.frames.shape[:3] == (8, 120, 200) and written.fps == 4.0
    assert Path(files["sheet"]).is_file() and Image.open(files["sheet"]).width > 400
    raw = np.load(files["raw"])
    assert raw.shape == (8, 120, 200) and raw.dtype == np.float32
    # frame 6 (the third kept) as a picture: the same pixels, through the picture pipeline, the same map
    frame = read_video(media / "clip.mp4", every=3).frames[2]
    Image.fromarray(frame).save(tmp_path / "frame.png")
    pic = runner.invoke(app, ["gradcam", str(tmp_path / "frame.png"), "--save-raw", "--out", str(tmp_path / "pic")])
    assert pic.exit_code == 0, pic.output
    (p,) = _records(tmp_path / "pic")
    assert p["class_index"] == r["class_index"]
    np.testing.assert_allclose(np.load(p["outputs"]["raw"]), raw[2], atol=1e-5)


def test_a_video_classifier_is_explained_clip_by_clip(media, tmp_path):
    from camcli.io.video import read_video

    out = tmp_path / "out"
    args = ["gradcam", str(media / "clip.mp4"), "--model", "r3d_18", "--weights", "none", "--save-raw"]
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    (r,) = _records(out)
    assert r["layer"] == "layer4" and r["media"]["clips"] == [[0, 15], [16, 23]]  # 16 frames a clip, the last short
    raw = np.load(r["outputs"]["raw"])
    assert raw.shape == (24, 120, 200) and 0.9 < float(raw.max()) <= 1.0  # the clip's peak, resized
    written = read_video(Path(r["outputs"]["overlay"]))
    assert len(written.frames) == 24 and written.fps == 12.0


def test_a_volume_map_is_aligned_on_its_scan_and_points_at_the_blob(media, tmp_path):
    out = tmp_path / "out"
    args = ["gradcam", str(media / "scan.nii.gz"), "--model", str(media / "net3d.pt")]
    args += ["--arch", f"{ROOT / 'examples' / 'net3d.py'}:Net3d", "--input-size", "32,40,36", "--save-raw"]
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    (r,) = _records(out)
    assert r["class_index"] == 1 and r["probability"] > 0.9 and r["media"]["kind"] == "volume"
    scan = nib.load(media / "scan.nii.gz")
    written = nib.load(r["outputs"]["map"])
    np.testing.assert_array_equal(written.affine, scan.affine)
    assert written.shape == scan.shape and written.get_data_dtype() == np.float32
    cam = np.asarray(written.dataobj)
    peak = np.unravel_index(int(cam.argmax()), cam.shape)
    assert all(abs(int(a) - b) <= 2 for a, b in zip(peak, (10, 26, 20), strict=True)), peak
    np.testing.assert_allclose(np.load(r["outputs"]["raw"]), cam)
    assert Path(r["outputs"]["overlay"]).name.endswith(".montage.png")
    # --skip-existing finds them
    again = runner.invoke(app, [*args, "--out", str(out), "--skip-existing"])
    assert again.exit_code == 0 and "1 skipped" in again.output, again.output


def test_files_that_cannot_be_decoded_are_one_failed_input_each_and_the_rest_goes_on(media, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00" * 1000)
    (folder / "broken.nii.gz").write_bytes(b"not gzip at all")
    (folder / "cat.png").write_bytes((ROOT / "sample_images" / "chelsea.png").read_bytes())
    (folder / "maps.npy").write_bytes(b"")  # a folder's .npy is not taken for a volume: not an input
    out = tmp_path / "out"
    res = runner.invoke(app, ["gradcam", str(folder), "--out", str(out)])
    assert res.exit_code == 1, res.output
    records = {Path(r["input"]).name: r for r in _records(out)}
    assert set(records) == {"broken.mp4", "broken.nii.gz", "cat.png"}
    assert records["cat.png"]["status"] == "ok"
    for name in ("broken.mp4", "broken.nii.gz"):
        assert records[name]["status"] == "error" and "\n" not in records[name]["error"]
    assert "takes pictures, not volumes" in records["broken.nii.gz"]["error"]  # refused before it is read


def test_a_video_classifier_reads_a_scan_as_a_clip_when_its_channels_fit(media, tmp_path):
    out = tmp_path / "out"
    args = ["gradcam", str(media / "scan.nii.gz"), "--model", "r3d_18", "--weights", "none"]
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    (r,) = _records(out)
    assert r["media"]["input_size"] == [16, 112, 112] and r["media"]["shape"] == [32, 40, 36]
    written = nib.load(r["outputs"]["map"])
    assert written.shape == (32, 40, 36) and float(np.asarray(written.dataobj).max()) == pytest.approx(1.0)


def test_methods_that_cannot_explain_a_video_classifier_say_so_in_one_line(media, tmp_path):
    args = ["cam", str(media / "clip.mp4"), "--model", "r3d_18", "--weights", "none", "--method", "scorecam"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output
    (r,) = _records(tmp_path / "out")
    assert "scorecam cannot explain a video or volume" in r["error"] and "gradcam" in r["error"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.suffix in (".mp4", ".png")]  # nothing half-written


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--every", "2", "--fps", "3"], "--every and --fps both choose frames"),
        (["--every", "0"], "--every 0 is too small"),
        (["--intensity-window", "400,-1000"], "LOW must be below HIGH"),
        (["--intensity-percentiles", "x"], "give two numbers"),
    ],
)
def test_bad_media_options_exit_2(media, args, said):
    res = runner.invoke(app, ["gradcam", str(media / "clip.mp4"), *args])
    assert res.exit_code == 2, res.output
    assert said in res.output


def test_a_clip_keeps_its_normalisation_over_time(media, tmp_path, monkeypatch):
    """A video classifier's map is normalised over its clip: frames with less evidence stay darker (a picture
    model's frames are each normalised, as pictures are)."""
    import torch

    import camcli.jobs.media as media_job

    real = media_job.explain_volume

    def fading(*a, **k):  # the evidence fades over each clip: frame t at (t + 1) / L of the first's strength
        ex = real(*a, **k)
        for name, v in ex.by_method.items():
            ramp = torch.linspace(1, 1 / v.shape[2], v.shape[2]).view(1, 1, -1, 1, 1)
            ex.by_method[name] = torch.ones_like(v) * ramp  # flat in each frame: its peak is the ramp
        return ex

    monkeypatch.setattr(media_job, "explain_volume", fading)
    out = tmp_path / "out"
    args = ["gradcam", str(media / "clip.mp4"), "--model", "r3d_18", "--weights", "none", "--save-raw"]
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 0
    raw = np.load(_records(out)[0]["outputs"]["raw"])
    peaks = raw.reshape(24, -1).max(1)
    np.testing.assert_allclose(peaks[:16], np.linspace(1, 1 / 16, 16), atol=1e-5)


def test_frames_whose_own_top_class_differs_are_explained_for_the_class_chosen(tmp_path):
    """One pass explains each frame's own top class; frames of another class (here coffee among cats) are
    explained again for the video's class: their maps equal a picture run with --target of that class."""
    from PIL import Image

    from camcli.io.video import read_video, write_video

    cat = np.asarray(Image.open(ROOT / "sample_images" / "chelsea.png").convert("RGB").resize((160, 120)))
    cup = np.asarray(Image.open(ROOT / "sample_images" / "coffee.png").convert("RGB").resize((160, 120)))
    write_video(tmp_path / "mixed.mp4", np.stack([cat] * 5 + [cup] * 2), 10)
    out = tmp_path / "out"
    res = runner.invoke(app, ["gradcam", str(tmp_path / "mixed.mp4"), "--save-raw", "--out", str(out)])
    assert res.exit_code == 0, res.output
    (r,) = _records(out)
    assert r["class_index"] == 285
    raw = np.load(r["outputs"]["raw"])
    Image.fromarray(read_video(tmp_path / "mixed.mp4").frames[6]).save(tmp_path / "cup.png")
    args = ["gradcam", str(tmp_path / "cup.png"), "--target", "285", "--save-raw", "--out", str(tmp_path / "pic")]
    assert runner.invoke(app, args).exit_code == 0
    (p,) = _records(tmp_path / "pic")
    assert p["top_k"][0]["index"] != 285  # the frame alone is about something else
    np.testing.assert_allclose(np.load(p["outputs"]["raw"]), raw[6], atol=1e-5)
