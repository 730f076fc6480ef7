"""Per-clip cache: cancel and resume, corrupt entries redone, settings changes, fp16 planes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blender_relight.cache import CHUNK, ClipCache
from blender_relight.errors import Cancelled
from blender_relight.tracking.tracker import track_video

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "videos" / "lp_d0.mp4"  # 78 frames: two chunks


@pytest.fixture()
def clip() -> Path:
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} absent")
    return CLIP


def test_cancel_halfway_then_resume(tmp_path: Path, clip: Path) -> None:
    cache = ClipCache.for_video(clip, tmp_path)
    calls: list[int] = []
    with pytest.raises(Cancelled, match="resume"):
        track_video(clip, cache=cache, progress=lambda d, t: calls.append(d), cancel=lambda: len(calls) >= 40,
                    estimate_sh=False)
    assert len(calls) == 40
    manifest = json.loads(cache.manifest_path.read_text())
    assert manifest["done"] == 40 and manifest["frames"][:40] == "T" * 40 and set(manifest["frames"][40:]) == {"."}
    first = cache.get_track(10)

    again = ClipCache.for_video(clip, tmp_path)  # a new process: everything comes from disk
    assert again.root == cache.root and again.missing() == list(range(40, 78))
    progress: list[int] = []
    tracks = track_video(clip, cache=again, progress=lambda d, t: progress.append(d), estimate_sh=False)
    # Progress counts this run's work: the resume point's segment (frames 0-63) is tracked again from its start so
    # the state at frame 40 is exactly a clean run's, then segment 1's warm-up (48-63, from memory) and 64-77;
    # frames 0-39 are not rewritten.
    assert progress == list(range(1, 64 + 16 + 14 + 1))
    assert len(tracks) == 78 and all(t.status == "tracked" for t in tracks)
    np.testing.assert_array_equal(tracks[10].points, first.points)
    np.testing.assert_array_equal(tracks[10].camera, first.camera)
    assert again.status_counts()["tracked"] == 78 and again.missing() == []


def test_corrupt_chunk_is_redone(tmp_path: Path, clip: Path) -> None:
    frames = list(range(CHUNK - 4, CHUNK + 4))  # spans two chunks
    cache = ClipCache.for_video(clip, tmp_path)
    track_video(clip, cache=cache, frames=frames, estimate_sh=False)
    assert cache.missing(frames) == []
    chunk_file = cache.root / "tracks" / "chunk_00001.npz"
    chunk_file.write_bytes(b"garbage, not a zip")
    fresh = ClipCache.for_video(clip, tmp_path)
    assert fresh.get_track(CHUNK + 1) is None  # detected, dropped, not a crash
    assert fresh.missing(frames) == list(range(CHUNK, CHUNK + 4)) and not chunk_file.exists()
    assert fresh.get_track(CHUNK - 2) is not None  # the other chunk is intact
    progress: list[int] = []
    tracks = track_video(clip, cache=fresh, frames=frames, progress=lambda d, t: progress.append(d),
                         estimate_sh=False)
    assert len(progress) == 16 + 4 and all(t.tracked for t in tracks)  # warm-up 48-63, then the 4 lost frames


def test_corrupt_manifest_and_settings_change(tmp_path: Path, clip: Path) -> None:
    cache = ClipCache.for_video(clip, tmp_path)
    track_video(clip, cache=cache, frames=range(3), estimate_sh=False)
    cache.manifest_path.write_text("{ not json")
    fresh = ClipCache.for_video(clip, tmp_path)
    assert fresh.done_frames() == []
    track_video(clip, cache=fresh, frames=range(3), estimate_sh=False)
    assert fresh.done_frames() == [0, 1, 2]
    track_video(clip, cache=fresh, frames=range(2), smoothing=0.0, estimate_sh=False)  # other settings
    assert fresh.done_frames() == [0, 1]


def test_planes_round_trip_fp16_and_corruption(tmp_path: Path, clip: Path) -> None:
    cache = ClipCache.for_video(clip, tmp_path)
    rng = np.random.default_rng(0)
    planes = {"albedo": rng.normal(size=(3, 8, 16, 16)).astype(np.float32), "count": np.arange(4)}
    cache.put_planes(5, planes)
    back = cache.get_planes(5)
    assert back["albedo"].dtype == np.float32 and back["count"].dtype == planes["count"].dtype
    np.testing.assert_allclose(back["albedo"], planes["albedo"], rtol=1e-3, atol=1e-3)
    with np.load(cache.root / "planes" / "frame_000005.npz") as z:
        assert z["albedo"].dtype == np.float16
    assert cache.get_planes(6) is None
    (cache.root / "planes" / "frame_000005.npz").write_bytes(b"\x00" * 100)
    assert cache.get_planes(5) is None and not (cache.root / "planes" / "frame_000005.npz").exists()
