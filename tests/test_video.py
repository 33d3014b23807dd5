"""Video files (camcli.io.video): frames sampled as asked, in order, with their numbers and times; the pixels are
the pictures that were encoded; written videos read back with their frame count, rate and size; files that are
not videos fail with one line. The videos are made here with PyAV itself, not with the code under test."""

from __future__ import annotations

import os
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from camcli.errors import InputError, UsageError

av = pytest.importorskip("av")

from camcli.io.video import is_video, read_video, video_rate, write_video  # noqa: E402

W, H, N, RATE = 64, 48, 24, 12
SQUARE = 12  # the bright square's side; its left edge is at x = 4 + 2 i in frame i, rows 18…29


def picture(i: int, w: int = W, h: int = H) -> np.ndarray:
    a = np.full((h, w, 3), 30, np.uint8)
    x = 4 + 2 * i
    a[18 : 18 + SQUARE, x : x + SQUARE] = 255
    return a


def square_x(i: int, scale: float = 1.0) -> float:
    """Where frame i's square's centroid is written, in columns (scaled with the frame)."""
    return (4 + 2 * i + (SQUARE - 1) / 2 + 0.5) * scale - 0.5


def centroid_x(frame: np.ndarray) -> float:
    _, xs = np.nonzero(frame.mean(axis=2) > 128)
    return float(xs.mean())


def encode(
    path: Path,
    codec: str = "libx264",
    n: int = N,
    rate: int | Fraction = RATE,
    fmt: str | None = None,
    pix_fmt: str = "yuv420p",
    w: int = W,
    h: int = H,
    rotation: int | None = None,
) -> Path:
    """A video of ``n`` frames of :func:`picture` written with PyAV directly."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture(i, w, h), format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return encode(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_every_frame_in_order_with_its_number_time_and_pixels(clip):
    v = read_video(clip)
    assert v.frames.shape == (N, H, W, 3) and v.frames.dtype == np.uint8
    assert v.indices == list(range(N))
    np.testing.assert_allclose(v.times, [i / RATE for i in range(N)], atol=1e-6)
    assert v.fps == RATE and v.frame_count == N and v.size == (W, H)
    for i, frame in enumerate(v.frames):
        assert abs(centroid_x(frame) - square_x(i)) < 0.75, i  # the square moves 2 pixels a frame, as written
        assert abs(int(frame[5, 5, 0]) - 30) <= 4  # the background's grey, within the codec's error


def test_every_and_max_frames(clip):
    v = read_video(clip, every=5)
    assert v.indices == [0, 5, 10, 15, 20] and len(v.frames) == 5
    np.testing.assert_allclose(v.times, [i / RATE for i in v.indices], atol=1e-6)
    assert [round(centroid_x(f)) for f in v.frames] == [round(square_x(i)) for i in v.indices]
    capped = read_video(clip, every=5, max_frames=3)
    assert capped.indices == [0, 5, 10] and capped.frames.shape[0] == 3
    assert capped.frame_count == N  # the rest counted by its packets, not decoded
    np.testing.assert_array_equal(capped.frames, v.frames[:3])


def nearest(times: list[Fraction], fps: Fraction) -> list[int]:
    """By brute force: the frame nearest to each time k / fps (the earlier on a tie), up to half a frame after the
    last one; each frame once."""
    end = times[-1] + Fraction(1, 2 * RATE)
    chosen: list[int] = []
    k = 0
    while k / fps <= end:
        best = min(range(len(times)), key=lambda i: (abs(times[i] - k / fps), i))
        if best not in chosen:
            chosen.append(best)
        k += 1
    return chosen


@pytest.mark.parametrize("fps", [3, 5, 2.5, 8, 24, 100])
def test_fps_keeps_the_frames_nearest_to_each_time(clip, fps):
    v = read_video(clip, fps=fps)
    expected = nearest([Fraction(i, RATE) for i in range(N)], Fraction(fps))
    assert v.indices == expected
    if fps == 3:
        assert expected == [0, 4, 8, 12, 16, 20]  # by hand: one frame in four at 12 fps
    if fps == 8:  # 1/8 s is 1.5 frames: the times k/8 fall on frames 0, 1.5, 3, 4.5…; a tie goes to the earlier
        assert expected == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22]
    if fps == 24:
        assert expected == list(range(N))  # a frame nearest to two times (k/24) is kept once
    assert [round(centroid_x(f)) for f in v.frames] == [round(square_x(i)) for i in expected]
    assert read_video(clip, fps=fps, max_frames=2).indices == expected[:2]


def test_max_size_scales_frames_and_keeps_the_source_size(clip):
    v = read_video(clip, max_size=32)
    assert v.frames.shape == (N, 24, 32, 3) and v.size == (W, H)
    for i in (0, 10, 23):
        assert abs(centroid_x(v.frames[i]) - square_x(i, 0.5)) < 0.75


def test_a_rotated_stream_reads_upright(tmp_path):
    path = encode(tmp_path / "rot.mp4", n=2, rotation=90)  # 90° counterclockwise, as a phone writes portrait
    v = read_video(path)
    assert v.size == (H, W) and v.frames.shape == (2, W, H, 3)
    expected = np.rot90(picture(0), 1)  # the square, turned a quarter counterclockwise
    assert np.abs(v.frames[0].astype(int) - expected).mean() < 4


@pytest.mark.parametrize(
    ("ext", "codec", "fmt", "pix_fmt"),
    [
        (".avi", "mpeg4", "avi", "yuv420p"),
        (".avi", "mjpeg", "avi", "yuvj420p"),
        (".avi", "libx264", "avi", "yuv420p"),  # B-frames in AVI: FFmpeg's timestamps come out of order there
        (".mkv", "ffv1", "matroska", "yuv420p"),
        (".webm", "libvpx-vp9", "webm", "yuv420p"),
        (".mov", "libx264", "mov", "yuv420p"),
    ],
)
def test_other_containers(tmp_path, ext, codec, fmt, pix_fmt):
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec}")
    path = encode(tmp_path / f"clip{ext}", codec=codec, fmt=fmt, pix_fmt=pix_fmt)
    v = read_video(path, every=2)
    assert v.indices == list(range(0, N, 2)) and v.frame_count == N and v.fps == RATE
    np.testing.assert_allclose(v.times, [i / RATE for i in v.indices], atol=1.5e-3)  # WebM's clock: milliseconds
    assert [round(centroid_x(f)) for f in v.frames] == [round(square_x(i)) for i in v.indices]


@pytest.mark.parametrize("ext", [".mp4", ".mov", ".mkv", ".avi", ".webm"])
def test_written_video_reads_back_with_its_frames_rate_and_size(tmp_path, ext):
    frames = np.stack([picture(i) for i in range(N)])
    rate = Fraction(30000, 1001)
    codec = write_video(tmp_path / f"out{ext}", iter(frames), float(rate))  # a generator: encoded as it comes
    assert codec == ("libvpx-vp9" if ext == ".webm" else "libx264")
    v = read_video(tmp_path / f"out{ext}")
    assert v.frame_count == N and v.size == (W, H)
    assert v.fps == float(rate)  # the float of 30000/1001 became 30000/1001 again, not 2997/100
    assert np.abs(v.frames.astype(int) - frames).mean() < 3
    assert [round(centroid_x(f)) for f in v.frames] == [round(square_x(i)) for i in range(N)]
    assert os.listdir(tmp_path) == [f"out{ext}"]  # no temporary file left


def test_written_rates_and_sizes(tmp_path):
    write_video(tmp_path / "a.mp4", np.stack([picture(i) for i in range(5)]), 12.5, size=(32, 24))
    v = read_video(tmp_path / "a.mp4")
    assert (v.fps, v.size, v.frame_count) == (12.5, (32, 24), 5)
    assert abs(centroid_x(v.frames[4]) - square_x(4, 0.5)) < 0.75
    assert video_rate(30000 / 1001) == Fraction(30000, 1001) and video_rate(Fraction(24000, 1001)).denominator == 1001
    with pytest.raises(UsageError):
        video_rate(0.0)
    with pytest.raises(UsageError, match=r"cannot write a video as '\.gif'"):
        write_video(tmp_path / "a.gif", [picture(0)], 12)


def test_odd_sizes_are_padded_by_repeating_the_edge(tmp_path):
    frames = [picture(i, 63, 47) for i in range(4)]
    for f in frames:
        f[:, -1] = 200  # a distinct last column and last row, to see them repeated
        f[-1, :] = 120
    write_video(tmp_path / "odd.mp4", frames, 12)
    v = read_video(tmp_path / "odd.mp4")
    assert v.size == (64, 48) and v.frame_count == 4
    got = v.frames.astype(int)
    assert np.abs(got[:, :47, :63] - np.stack(frames)).mean() < 3  # nothing cropped
    assert np.abs(got[:, :46, 63] - 200).mean() < 6 and np.abs(got[:, 47, :62] - 120).mean() < 6


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")

    def frames():
        yield picture(0)
        yield picture(1)
        raise RuntimeError("the renderer failed")

    with pytest.raises(RuntimeError):
        write_video(target, frames(), 12)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.mp4"]
    with pytest.raises(ValueError, match="uint8"):
        write_video(target, [picture(0).astype(np.float32)], 12)
    assert os.listdir(tmp_path) == ["out.mp4"]


def one_line_error(path: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        read_video(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_files_that_are_not_videos_fail_with_one_line(tmp_path, clip):
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    one_line_error(tmp_path / "noise.mp4", "cannot decode video: Invalid data")
    data = encode(tmp_path / "long.mp4", n=96).read_bytes()  # the index at the end: a cut loses it
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    one_line_error(tmp_path / "cut.mp4", "cannot decode video")
    write_video(tmp_path / "fast.mp4", [picture(i % N) for i in range(96)], 12)  # faststart: the index first
    data = (tmp_path / "fast.mp4").read_bytes()
    (tmp_path / "cut2.mp4").write_bytes(data[: len(data) * 3 // 4])
    one_line_error(tmp_path / "cut2.mp4", r"cannot decode video: the file ends early \(\d+ of the 96 frames")
    (tmp_path / "empty.mp4").write_bytes(b"")
    one_line_error(tmp_path / "empty.mp4", "empty file")
    (tmp_path / "folder.mp4").mkdir()
    one_line_error(tmp_path / "folder.mp4", "is a folder, not a video")
    one_line_error(tmp_path / "missing.mp4", "file not found")
    with av.open(str(tmp_path / "sound.mp4"), "w") as out:  # audio only
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    one_line_error(tmp_path / "sound.mp4", "no video stream")
    with pytest.raises(InputError, match="over the limit of 3,000 pixels"):
        read_video(clip, max_pixels=3000)


def test_bad_sampling_options_and_a_missing_pyav(clip, monkeypatch):
    with pytest.raises(UsageError, match="pass one of them"):
        read_video(clip, every=2, fps=3)
    for bad in ({"every": 0}, {"fps": 0.0}, {"fps": float("nan")}, {"max_frames": 0}):
        with pytest.raises(UsageError):
            read_video(clip, **bad)
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(UsageError, match=r"reading videos needs PyAV: pip install 'camcli\[video\]'"):
        read_video(clip)


def test_is_video_by_extension():
    assert all(is_video(Path(f"a{e}")) for e in (".mp4", ".MOV", ".avi", ".Mkv", ".webm"))
    assert not any(is_video(Path(f"a{e}")) for e in (".png", ".mp4.txt", ".nii.gz", ""))


def test_only_the_kept_frames_are_held(tmp_path):
    """Frames that are not kept are never converted to arrays: numpy's allocations (which tracemalloc sees) peak
    near the kept frames, not at the whole video."""
    path = encode(tmp_path / "long.mp4", n=120, w=128, h=96)
    frame_bytes = 128 * 96 * 3

    def peak(**kw) -> tuple[int, int]:
        tracemalloc.start()
        try:
            v = read_video(path, **kw)
            return tracemalloc.get_traced_memory()[1], len(v.frames)
        finally:
            tracemalloc.stop()

    kept_peak, kept = peak(every=30)
    assert kept == 4 and kept_peak < (kept + 4) * frame_bytes
    all_peak, n = peak()  # the check can fail: keeping every frame shows up
    assert n == 120 and all_peak > 100 * frame_bytes


def test_mpeg4_where_there_is_no_h264(tmp_path, monkeypatch):
    import camcli.io.video as video

    monkeypatch.setattr(video, "_DEFAULT_ENCODERS", ("no-such-encoder", "mpeg4"))
    frames = [picture(i) for i in range(N)]
    assert write_video(tmp_path / "m.mp4", frames, 30000 / 1001) == "mpeg4"
    v = read_video(tmp_path / "m.mp4")
    assert (v.frame_count, v.fps, v.size) == (N, 30000 / 1001, (W, H))
    assert np.abs(v.frames.astype(int) - np.stack(frames)).mean() < 4
    monkeypatch.setattr(video, "_DEFAULT_ENCODERS", ("no-such-encoder",))
    with pytest.raises(UsageError, match="no no-such-encoder encoder"):
        write_video(tmp_path / "n.mp4", frames, 12)
    assert sorted(os.listdir(tmp_path)) == ["m.mp4"]
