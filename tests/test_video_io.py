"""Streaming decode/encode, colour conversions, image output and bad input (blender_relight.video, .colour)."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from blender_relight import colour
from blender_relight.errors import RelightError
from blender_relight.video import VideoReader, VideoWriter, read_image, write_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _pattern(i: int, w: int = 96, h: int = 64) -> np.ndarray:
    """A frame whose bright bar position encodes its index (robust to mp4v compression)."""
    f = np.full((h, w, 3), 40, np.uint8)
    x = 4 + 8 * (i % 10)
    f[:, x:x + 6] = (230, 200, 20)
    f[: 8, : 8] = (255, 255, 255)  # top-left marker, for rotation
    return f


def _bar_x(frame: np.ndarray) -> int:
    col = frame[16:, :, 0].astype(float).mean(axis=0)
    return int(np.argmax(np.convolve(col, np.ones(6), "valid")))


def _write_clip(path: Path, n: int = 20) -> None:
    with VideoWriter(path, 25, (96, 64)) as w:
        for i in range(n):
            w.write(_pattern(i))


def test_srgb_linear_exact_formulas() -> None:
    v = np.linspace(0, 1, 1001, dtype=np.float32)
    lin = colour.srgb_to_linear(v)
    assert lin.dtype == np.float32
    assert colour.srgb_to_linear(np.float32(0.04045)) == pytest.approx(0.04045 / 12.92, rel=1e-6)
    assert float(colour.srgb_to_linear(np.float32(0.5))) == pytest.approx(((0.5 + 0.055) / 1.055) ** 2.4, rel=1e-6)
    np.testing.assert_allclose(colour.linear_to_srgb(lin), v, atol=2e-6)
    u8 = np.arange(256, dtype=np.uint8)
    assert np.array_equal(colour.linear_to_uint8_srgb(colour.uint8_srgb_to_linear(u8)), u8)
    u16 = np.arange(0, 65536, 257, dtype=np.uint16)
    assert np.array_equal(colour.linear_to_uint16_srgb(colour.srgb_to_linear(colour.to_float(u16))), u16)


def test_writer_reader_round_trip_and_random_access(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_clip(path)
    assert path.is_file() and not list(tmp_path.glob(".*part*"))
    with VideoReader(path) as r:
        assert (r.width, r.height, r.frame_count, r.rotation) == (96, 64, 20, 0)
        assert r.fps == pytest.approx(25.0)
        seen = [(i, _bar_x(f)) for i, f in r]
        assert [i for i, _ in seen] == list(range(20))
        assert [x for _, x in seen] == [_bar_x(_pattern(i)) for i in range(20)]
        for i in (13, 2, 19, 0, 7):  # seeks backwards and forwards
            assert _bar_x(r.read(i)) == _bar_x(_pattern(i))
        with pytest.raises(IndexError):
            r.read(20)


def test_writer_removes_partial_file_on_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    with pytest.raises(ValueError):
        with VideoWriter(path, 25, (96, 64)) as w:
            w.write(_pattern(0))
            w.write(np.zeros((10, 10, 3), np.uint8))  # wrong size
    assert list(tmp_path.iterdir()) == []


def test_rotation_metadata_gives_upright_frames(tmp_path: Path) -> None:
    """A phone-style 90° rotation tag (tkhd display matrix) is applied: the top-left marker ends top-right."""
    src = tmp_path / "flat.mp4"
    _write_clip(src, 3)
    data = bytearray(src.read_bytes())
    tkhd = data.find(b"tkhd")
    assert tkhd > 0 and data[tkhd + 4] == 0  # version-0 track header
    matrix_at = tkhd + 4 + 40
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    rotated = tmp_path / "rot90.mp4"
    rotated.write_bytes(bytes(data))
    with VideoReader(rotated) as r:
        frame = r.read(0)
        assert r.rotation == 90 and (r.width, r.height) == (64, 96) and frame.shape == (96, 64, 3)
    ys, xs = np.nonzero(frame[..., 0] > 245)
    assert ys.mean() < 8 and xs.mean() > 64 - 8  # white marker now top-right


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage" * 5000], ids=["empty", "random"])
def test_corrupt_video_raises_relight_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    rng = np.random.default_rng(0)
    path.write_bytes(content if content == b"" else rng.bytes(200_000))
    with pytest.raises(RelightError, match="bad.mp4"):
        VideoReader(path)


def test_clip_without_frames(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    writer.release()  # a valid container header and no frame
    assert empty.stat().st_size > 0
    with pytest.raises(RelightError, match="empty.mp4"):
        VideoReader(empty)
    with pytest.raises(RelightError, match="no frame"):
        with VideoWriter(tmp_path / "none.mp4", 25, (64, 48)):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4"]


def test_missing_and_corrupt_image(tmp_path: Path) -> None:
    with pytest.raises(RelightError, match="not found"):
        VideoReader(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(RelightError, match="bad.png"):
        read_image(bad)


def test_still_image_is_a_one_frame_clip() -> None:
    path = DATA / "images" / "lp_d8.jpg"
    if not path.is_file():
        pytest.skip("../shared/data/images/lp_d8.jpg absent")
    with VideoReader(path) as r:
        frames = list(r)
        assert r.is_still and r.frame_count == 1 and len(frames) == 1
        assert frames[0][1].shape == (r.height, r.width, 3) and frames[0][1].dtype == np.uint8


def test_write_image_formats(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb8 = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(read_image(write_image(tmp_path / "a.png", rgb8)), rgb8)
    rgb16 = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    back16 = cv2.cvtColor(cv2.imread(str(write_image(tmp_path / "b.png", rgb16)), cv2.IMREAD_UNCHANGED),
                          cv2.COLOR_BGR2RGB)
    assert back16.dtype == np.uint16 and np.array_equal(back16, rgb16)
    linear = rng.random((20, 30, 3), dtype=np.float32) * 2.0  # HDR values survive in EXR
    try:
        write_image(tmp_path / "c.exr", linear)
    except RelightError as exc:
        pytest.skip(f"EXR unavailable in this OpenCV: {exc}")
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "c.exr"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(back, linear, rtol=1e-6)
    assert not list(tmp_path.glob(".*part*"))


def test_clip_session_frames_scrubbed_back_and_forth_are_the_frames_in_order(tmp_path: Path, monkeypatch) -> None:
    """ClipSession._frame over a scrub (forward jumps read through, a jump back also decodes the frames before it,
    kept within the byte budget) gives exactly the frames of reading in order; a step back after a jump back
    decodes nothing."""
    from blender_relight import pipeline

    path = tmp_path / "clip.mp4"
    _write_clip(path)
    session = pipeline.ClipSession(path, cache_dir=tmp_path / "cache", engine="analytic")
    with VideoReader(path) as r:
        in_order = [f for _, f in r]
    for i in (3, 8, 12, 19, 15, 10, 5, 9, 0, 17):
        assert np.array_equal(session._frame(i), in_order[i]), i
    session._frame(16)  # a jump back from 17: frames 6..15 decoded too
    reader = session._reader
    position = reader._pos
    assert np.array_equal(session._frame(11), in_order[11]) and reader._pos == position  # from memory
    session.close()
    # a budget of 4 frames: at most 4 kept, a jump back decodes 3 before its target, the frames stay right
    monkeypatch.setattr(pipeline, "DECODED_BYTES", 4 * in_order[0].nbytes)
    small = pipeline.ClipSession(path, cache_dir=tmp_path / "cache", engine="analytic")
    for i in (19, 12, 11, 10, 9, 4, 16, 2):
        assert np.array_equal(small._frame(i), in_order[i]), i
        assert len(small._decoded) <= 4
    assert sorted(small._decoded) == [2, 3, 4, 16]  # 4 read with 1-3 before it, 16, then 2 from memory
    small._seek_s, small._step_s = 0.002, 0.001  # where a seek costs about two frames read in order (all-intra)
    assert np.array_equal(small._frame(14), in_order[14])
    assert sorted(small._decoded) == [2, 4, 14, 16]  # a jump back decodes its target only
    small.close()
