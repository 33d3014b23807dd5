"""`camcli features` on videos and volumes (camcli.jobs.media_features), on generated files (examples/make_media.py:
a 24-frame clip of the sample cat at 12 fps, a 32 x 40 x 36 scan with a bright blob at voxel (10, 26, 20), a 3-D net).

Checked against independent things: a frame's grid is the grid of the same frame saved as a PNG (today's picture
path); a video classifier's and a 3-D network's grids hold the layer's activations at the time step or depth
worked out by hand, read with forward hooks of our own on clips and scans prepared by hand (Pillow, numpy).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from camcli.cli import app

from .conftest import ROOT, make_media_files

pytest.importorskip("nibabel")
pytest.importorskip("av")

runner = CliRunner()
TITLE = 23  # the title strip above a feature grid (camcli.render.feature_grid: a 13-point font + 10)
NET3D = ["--arch", f"{ROOT / 'examples' / 'net3d.py'}:Net3d", "--input-size", "32,40,36"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = make_media_files(tmp_path_factory.mktemp("media"))
    return folder


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _features(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["features", *args])
    return res.exit_code, res.output


def test_step_of_is_the_layer_step_that_holds_the_frames_centre():
    from camcli.jobs.media_features import step_of

    # 16 frames over 2 steps: frames 0-7 → 0, 8-15 → 1
    assert [step_of(p, 16, 2) for p in (0, 7, 8, 12, 15)] == [0, 0, 1, 1, 1]
    # 5 frames over 3 steps of 5/3 frames: centres 0.5, 1.5 → 0; 2.5 → 1; 3.5, 4.5 → 2
    assert [step_of(p, 5, 3) for p in range(5)] == [0, 0, 1, 2, 2]
    assert [step_of(p, 4, 4) for p in range(4)] == [0, 1, 2, 3]  # one step a frame


def test_a_frames_grid_is_the_grid_of_the_same_frame_as_a_picture(media, tmp_path):
    from camcli.io.video import read_video

    code, said = _features(str(media / "clip.mp4"), "--frame", "7", "--save-raw", "--out", str(tmp_path / "v"))
    assert code == 0, said
    (v,) = _records(tmp_path / "v")
    assert v["index"] == {"frame": 7, "frames": 24, "time": round(7 / 12, 4)}
    assert v["outputs"]["grid"].endswith("clip.mp4.features._head_act.frame7.png")
    assert "clip.mp4 (frame 7)" in said
    # frame 7 decoded on its own (every frame, none skipped), saved as a PNG, through the picture path
    Image.fromarray(read_video(media / "clip.mp4").frames[7]).save(tmp_path / "frame7.png")
    code, said = _features(str(tmp_path / "frame7.png"), "--save-raw", "--out", str(tmp_path / "p"))
    assert code == 0, said
    (p,) = _records(tmp_path / "p")
    assert "index" not in p
    assert v["channels"] == p["channels"] and v["means"] == p["means"] and v["stats"] == p["stats"]
    np.testing.assert_array_equal(np.load(v["outputs"]["raw"]), np.load(p["outputs"]["raw"]))
    grid_v, grid_p = (np.asarray(Image.open(r["outputs"]["grid"])) for r in (v, p))
    assert grid_v.shape == grid_p.shape
    np.testing.assert_array_equal(grid_v[TITLE:], grid_p[TITLE:])  # every tile, the frame's included
    assert not np.array_equal(grid_v[:TITLE], grid_p[:TITLE])  # the titles differ: one says which frame


def _hand_clip(path: Path, first: int, length: int, mean: list[float], std: list[float]) -> torch.Tensor:
    """Frames first … first + length - 1 (the last real one repeated past the end), each resized whole to 112²
    with Pillow and normalised: (1, 3, L, 112, 112)."""
    from camcli.io.video import read_video

    frames = read_video(path).frames[first : first + length]
    frames = np.concatenate([frames, frames[-1:].repeat(length - len(frames), 0)])
    pix = [np.asarray(Image.fromarray(f).resize((112, 112), Image.Resampling.BILINEAR)) for f in frames]
    x = torch.from_numpy(np.stack(pix)).float().div(255).permute(3, 0, 1, 2)  # (3, L, H, W)
    return ((x - torch.tensor(mean).view(3, 1, 1, 1)) / torch.tensor(std).view(3, 1, 1, 1))[None]


def test_a_video_classifiers_grid_is_its_layers_time_step_of_the_frame(media, tmp_path):
    from camcli.jobs.features import FeatureJob
    from camcli.jobs.runner import run_job
    from camcli.media_options import FeatureMediaOptions
    from camcli.options import FeatureOptions

    options = FeatureOptions(model="r3d_18", weights="none", layers=["layer2", "layer4"], out=tmp_path / "out")
    options.save_raw, options.media = True, FeatureMediaOptions(frame=20)
    job = FeatureJob(options)
    (result,) = list(run_job(job, [str(media / "clip.mp4")]))
    assert result.ok, result.error
    by_layer = {r["layer"]: r for r in result.records}
    # frame 20 is the 5th (p = 4) of the second clip, frames 16-23 (8 frames, padded to 16 with frame 23):
    # layer2 has 8 time steps of 2 frames: ⌊4.5 · 8 / 16⌋ = 2; layer4 has 2 of 8 frames: ⌊4.5 · 2 / 16⌋ = 0
    steps = {"layer2": (2, 8), "layer4": (0, 2)}
    module = job.model.module
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(module, name).register_forward_hook(lambda _m, _i, o, name=name: seen.__setitem__(name, o.detach()))
        for name in steps
    ]
    try:
        with torch.no_grad():
            module.eval()(_hand_clip(media / "clip.mp4", 16, 16, job.model.mean, job.model.std))
    finally:
        for h in hooks:
            h.remove()
    for name, (t, count) in steps.items():
        r = by_layer[name]
        assert r["index"] == {"frame": 20, "frames": 24, "time": round(20 / 12, 4), "clip": [16, 23],
                              "layer_time": t, "layer_times": count}  # fmt: skip
        assert seen[name].shape[2] == count
        hand = seen[name][0, :, t]  # (C, h, w) at the time step
        raw = np.load(r["outputs"]["raw"])
        np.testing.assert_allclose(raw, hand.numpy(), rtol=1e-4, atol=1e-4)
        top = torch.sort(hand.mean((1, 2)), descending=True, stable=True).indices[:16].tolist()
        assert r["channels"] == top and r["stats"]["height"] == hand.shape[1]
        assert r["outputs"]["grid"].endswith(f"clip.mp4.features.{name},model=r3d_18,weights=none.frame20.png")


def test_a_volumes_grid_is_its_layers_depth_of_the_slice(media, tmp_path):
    import nibabel as nib

    out = tmp_path / "out"
    args = [str(media / "scan.nii.gz"), "--model", str(media / "net3d.pt"), *NET3D, "--slice", "10", "--save-raw"]
    code, said = _features(*args, "--layer", "features.0", "--layer", "features", "--out", str(out))
    assert code == 0, said
    by_layer = {r["layer"]: r for r in _records(out)}
    # the scan by hand: its 0.5 and 99.5 percentiles scaled to 0 and 1; the net as examples/net3d.py defines it
    data = np.asarray(nib.load(media / "scan.nii.gz").dataobj, dtype=np.float32)
    lo, hi = np.percentile(data, [0.5, 99.5])
    x = torch.from_numpy(np.clip((data - lo) / (hi - lo), 0, 1).astype(np.float32))[None, None]
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from net3d import Net3d
    finally:
        sys.path.remove(str(ROOT / "examples"))
    net = Net3d()
    net.load_state_dict(torch.load(media / "net3d.pt"))
    with torch.no_grad():
        first = net.features[0](x)  # (1, 8, 32, 40, 36)
        last = net.features(x)  # (1, 16, 16, 20, 18)
    # slice 10 of 32: depth 10 of features.0's 32; ⌊10.5 · 16 / 32⌋ = 5 of features' 16
    for name, act, k in (("features.0", first, 10), ("features", last, 5)):
        r = by_layer[name]
        assert r["index"]["slice"] == 10 and r["index"]["slices"] == 32 and r["index"]["layer_depth"] == k
        assert r["index"]["layer_depths"] == act.shape[2] and r["index"]["intensity"].startswith("percentiles")
        np.testing.assert_allclose(np.load(r["outputs"]["raw"]), act[0, :, k].numpy(), rtol=1e-4, atol=1e-5)
    # the grid's first tile is slice 10 in grey: its bright pixels are the blob's, centred on (26, 20) of 40 × 36
    grid = np.asarray(Image.open(by_layer["features.0"]["outputs"]["grid"]).convert("L")).astype(float)
    th, tw = 128, round(128 * 36 / 40)  # a 40 × 36 map's tiles
    tile = grid[TITLE + 3 : TITLE + 3 + th, 3 : 3 + tw]
    rows, cols = np.nonzero(tile > 200)
    assert abs(rows.mean() - 26.5 * th / 40) <= 2 and abs(cols.mean() - 20.5 * tw / 36) <= 2, (rows.mean(), cols.mean())
    assert np.median(tile) < 60  # a bright blob on a dark slice


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--frame", "-1"], "--frame -1 is too small"),
        (["--slice", "-2"], "--slice -2 is too small"),
        (["--slice", "3"], "--slice picks a volume's slice"),  # a picture model
        (["--intensity-window", "5,1"], "LOW must be below HIGH"),
    ],
)
def test_bad_frame_and_slice_values_exit_2_with_one_line(media, args, said):
    code, text = _features(str(media / "clip.mp4"), *args)
    assert code == 2, text
    assert said in text and len(text.strip().splitlines()) == 1, text


def test_a_frame_for_a_3d_network_exits_2(media):
    code, text = _features(str(media / "scan.nii.gz"), "--model", str(media / "net3d.pt"), *NET3D, "--frame", "1")
    assert code == 2, text
    assert "--frame picks a video's frame" in text and "use --slice" in text


def test_a_frame_or_slice_past_the_end_fails_that_input_in_one_line(media, tmp_path):
    code, text = _features(str(media / "clip.mp4"), "--frame", "24", "--out", str(tmp_path / "v"))
    assert code == 1, text
    (r,) = _records(tmp_path / "v")
    assert r["status"] == "error" and "--frame 24 is past its last frame (24 frames: 0…23)" in r["error"]
    scan = [str(media / "scan.nii.gz"), "--model", str(media / "net3d.pt"), *NET3D]
    code, text = _features(*scan, "--slice", "32", "--out", str(tmp_path / "s"))
    assert code == 1, text
    (r,) = _records(tmp_path / "s")
    assert "--slice 32 is past its last slice (32 along D: 0…31)" in r["error"]
    assert not [p for p in (tmp_path / "s").iterdir() if p.suffix in (".png", ".npy")]  # nothing half-written


def test_a_folder_gives_each_video_its_middle_frame_and_a_corrupt_one_is_one_failed_input(media, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00" * 1000)
    (folder / "clip.mp4").write_bytes((media / "clip.mp4").read_bytes())
    (folder / "scan.nii.gz").write_bytes((media / "scan.nii.gz").read_bytes())
    (folder / "cat.png").write_bytes((ROOT / "sample_images" / "chelsea.png").read_bytes())
    out = tmp_path / "out"
    code, said = _features(str(folder), "--out", str(out))
    assert code == 1, said
    records = {Path(r["input"]).name: r for r in _records(out)}
    assert set(records) == {"broken.mp4", "clip.mp4", "scan.nii.gz", "cat.png"}
    assert records["broken.mp4"]["status"] == "error" and "\n" not in records["broken.mp4"]["error"]
    assert "broken.mp4: cannot decode video" in records["broken.mp4"]["error"]
    assert "takes pictures, not volumes" in records["scan.nii.gz"]["error"]
    assert records["clip.mp4"]["index"]["frame"] == 12  # the middle of 24 frames
    assert records["cat.png"]["status"] == "ok" and "index" not in records["cat.png"]
    # --skip-existing: the clip's middle frame and the picture are done; the failed ones are tried again
    again = runner.invoke(app, ["features", str(folder), "--out", str(out), "--skip-existing"])
    assert again.exit_code == 1 and "2 skipped" in again.output, again.output


def test_read_video_from_a_start_frame_keeps_the_same_frames_as_a_whole_decode(media):
    from camcli.io.video import read_video

    whole = read_video(media / "clip.mp4")
    part = read_video(media / "clip.mp4", every=2, max_frames=3, start=5)
    assert part.indices == [5, 7, 9] and part.frame_count == 24
    np.testing.assert_array_equal(part.frames, whole.frames[[5, 7, 9]])
    assert part.times == [whole.times[i] for i in (5, 7, 9)]  # times from the video's first frame, not the start


def test_a_picture_for_a_video_classifier_is_one_failed_input(tmp_path):
    out = tmp_path / "out"
    code, said = _features(str(ROOT / "sample_images" / "chelsea.png"), "--model", "r3d_18", "--weights", "none",
                           "--out", str(out))  # fmt: skip
    assert code == 1, said
    (r,) = _records(out)
    assert r["status"] == "error" and "r3d_18 takes videos (a clip of frames), not pictures" in r["error"]


def test_a_video_classifier_reads_a_scans_slice_as_its_time_step(media, tmp_path):
    """As gradcam does (camcli.jobs.media): the scan's first axis is the clip's time, resized to 16 frames."""
    out = tmp_path / "out"
    code, said = _features(str(media / "scan.nii.gz"), "--model", "r3d_18", "--weights", "none", "--slice", "20",
                           "--out", str(out))  # fmt: skip
    assert code == 0, said
    (r,) = _records(out)
    # layer4 has 2 time steps over the scan's 32 slices: ⌊20.5 · 2 / 32⌋ = 1
    assert r["layer"] == "layer4" and r["index"]["slice"] == 20 and r["index"]["slices"] == 32
    assert r["index"]["layer_depth"] == 1 and r["index"]["layer_depths"] == 2
