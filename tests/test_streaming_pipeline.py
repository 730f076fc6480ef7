"""The streaming pipeline under faults (issue 12): tracks that do not depend on where a run started, resume after
Ctrl-C / SIGTERM / kill -9 bit-identical to a clean run, frames without a face passed through, the followed person
kept when hidden, a damaged cache repaired, a full disk, truncated and undecodable clips, PNG alpha, one-pass analysis
with an instant resume, and a plane cache under 1 MB a frame."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from blender_relight import cache as cache_mod
from blender_relight.cache import ClipCache
from blender_relight.cli import main
from blender_relight.errors import Cancelled
from blender_relight.tracking import tracker as tracker_mod
from blender_relight.tracking.tracker import track_video

from clip_faults import faststart, read_frames, retag_avi, truncate, write_clip

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
VIDEOS = DATA / "videos"


def _need(name: str) -> Path:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"{path} absent (../shared/data holds the development data)")
    return path


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    """24 frames of a real portrait at 256² (fast to track), re-encoded as MJPG AVI (exact frames on decode)."""
    frames = [cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA)
              for f in read_frames(_need("lp_d0.mp4"), 0, 24)]
    return write_clip(tmp_path_factory.mktemp("clip") / "small.avi", frames)


@pytest.fixture()
def short_segments(monkeypatch):
    """Segments of 8 frames with a warm-up of 3 so a 24-frame clip crosses several restarts."""
    monkeypatch.setattr(tracker_mod, "SEGMENT", 8)
    monkeypatch.setattr(tracker_mod, "WARMUP", 3)
    monkeypatch.setattr(tracker_mod, "WARMUP_SH", 2)
    monkeypatch.setattr(tracker_mod, "FLUSH_EVERY", 4)


def _same(a, b) -> bool:
    fields = ("points", "crop_matrix", "camera", "source_sh")
    return a.status == b.status and all(
        (getattr(a, f) is None and getattr(b, f) is None) or np.array_equal(getattr(a, f), getattr(b, f))
        for f in fields)


def _tracks(cache_root: Path, clip: Path):
    cache = ClipCache.for_video(clip, cache_root)
    return [cache.get_track(i) for i in range(cache.frame_count)]


# -- tracks that do not depend on where a run started ---------------------------------------------------------
def test_resume_and_partial_runs_are_bit_identical_to_a_clean_run(tmp_path, small_clip, short_segments):
    clean = track_video(small_clip, cache=ClipCache.for_video(small_clip, tmp_path / "clean"))
    assert all(t.tracked for t in clean)
    # Ctrl-C at frame 13 (inside a segment), then resume.
    cache = ClipCache.for_video(small_clip, tmp_path / "resumed")
    seen: list[int] = []
    with pytest.raises(Cancelled):
        track_video(small_clip, cache=cache, progress=lambda d, t: seen.append(d), cancel=lambda: len(seen) >= 13)
    done = ClipCache.for_video(small_clip, tmp_path / "resumed").done_frames()
    assert done == list(range(10))  # 8 of segment 0, then the warm-up 5-7 and frames 8, 9 of segment 1
    track_video(small_clip, cache=ClipCache.for_video(small_clip, tmp_path / "resumed"))
    # Frames asked for out of order and one at a time (a Blender scrub, `relight --frames` on a fresh clip).
    scattered = ClipCache.for_video(small_clip, tmp_path / "scattered")
    for frames in ([17], [5, 6], range(20, 24), range(0, 24)):
        track_video(small_clip, cache=scattered, frames=frames)
    for name in ("resumed", "scattered"):
        other = _tracks(tmp_path / name, small_clip)
        bad = [t.index for t, o in zip(clean, other) if not _same(t, o)]
        assert bad == [], f"{name}: frames {bad} differ from the clean run"


def test_untracked_frames_are_streamed_with_smoothing_not_alone(tmp_path, small_clip, short_segments):
    """ClipSession.frame_track on a never-tracked frame streams its segment with warm-up: same track as a full
    analysis, smoothed (the unsmoothed one-frame tracker is gone)."""
    from blender_relight.pipeline import ClipSession

    full = track_video(small_clip, cache=ClipCache.for_video(small_clip, tmp_path / "full"))
    session = ClipSession(small_clip, cache_dir=tmp_path / "lazy", engine="analytic")
    track = session.frame_track(13)
    assert _same(track, full[13])
    assert session.cache.missing(list(range(8, 16))) == []  # the rest of its segment came in the same pass
    raw = track_video(small_clip, frames=[13], smoothing=0.0)[0]  # what a lone unsmoothed frame would give
    assert not np.array_equal(raw.points, track.points)


def test_frames_without_a_face_pass_through_a_relight(tmp_path):
    frames = [cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in read_frames(_need("lp_d0.mp4"), 0, 8)]
    for i in (3, 4):
        frames[i] = np.full_like(frames[i], 90)
    clip = write_clip(tmp_path / "gap.avi", frames)
    out = tmp_path / "out"
    assert main(["relight", str(clip), "--out", str(out), "--cache", str(tmp_path / "c"),
                 "--engine", "analytic"]) == 0
    assert len(list(out.glob("frame_*.png"))) == 8
    blank = cv2.imread(str(out / "frame_000003.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(blank.astype(np.int64) // 257 - 90).max() <= 1  # passed through untouched


@pytest.fixture(scope="module")
def two_people(tmp_path_factory) -> Path:
    """Two people side by side (the left one larger); the left one is hidden on frames 6-15."""
    a = read_frames(_need("lp_d0.mp4"), 0, 26)
    b = read_frames(_need("lp_d3.mp4"), 0, 26)
    frames = []
    for i in range(26):
        canvas = np.full((512, 1024, 3), 70, np.uint8)
        if not 6 <= i < 16:
            canvas[:, :512] = a[i]
        canvas[56:456, 568:968] = cv2.resize(b[i], (400, 400), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    return write_clip(tmp_path_factory.mktemp("two") / "two.avi", frames)


def test_the_followed_person_is_not_swapped_for_the_other_one(tmp_path, two_people):
    """The followed (larger) person is hidden for 10 frames: those frames are 'other_face' (passed through, said
    in the summary), and the tracker comes back to the first person, never the second."""
    clip = two_people
    tracks = track_video(clip, estimate_sh=False)
    followed = [t for t in tracks if t.tracked]
    assert all(t.points[:, 0].mean() < 512 for t in followed), [(t.index, t.status) for t in tracks]
    assert {t.status for t in tracks[6:16]} == {"other_face"}
    assert all(t.tracked for t in tracks[:6]) and sum(t.tracked for t in tracks[16:]) >= 6
    from blender_relight.pipeline import ClipSession

    summary = ClipSession(clip, cache_dir=tmp_path / "c", engine="analytic").track().text()
    assert "another face" in summary and "other face" in summary


def test_a_switch_at_a_segment_restart_is_said(tmp_path, two_people, short_segments):
    """A restart whose warm-up falls while the followed person is hidden can only see the other one: the summary
    names the frame where the tracked face jumps, so the switch is never silent."""
    from blender_relight.pipeline import ClipSession

    summary = ClipSession(two_people, cache_dir=tmp_path / "c", engine="analytic").track().text()
    assert "jumps to another place at frames 16" in summary, summary


# -- interrupts -----------------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "blender_relight", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_for_done(manifest: Path, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done = json.loads(manifest.read_text()).get("done", 0)
        except (OSError, ValueError):
            done = 0
        if done >= at_least:
            return done
        if proc.poll() is not None:
            out, err = proc.communicate()
            assert proc.returncode == 0, err
            pytest.skip("the run finished before it could be interrupted (a fast machine)")
        time.sleep(0.02)
    raise AssertionError("the tracker never reached the disk")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_sigterm_and_kill_9_then_resume_exactly(tmp_path, small_clip, how):
    clean = track_video(small_clip, cache=ClipCache.for_video(small_clip, tmp_path / "clean"), frames=range(20))
    cache_dir = tmp_path / "run"
    manifest = ClipCache.for_video(small_clip, cache_dir).manifest_path
    proc = _cli("track", str(small_clip), "--cache", str(cache_dir), "--frames", "0:20")
    _wait_for_done(manifest, tracker_mod.FLUSH_EVERY, proc)
    proc.send_signal(getattr(signal, how))
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (a fast machine)")
    if how == "SIGTERM":
        assert proc.returncode == 130 and "cancelled" in err and "Traceback" not in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    kept = ClipCache.for_video(small_clip, cache_dir)
    assert kept.done_frames() == list(range(len(kept.done_frames())))  # a prefix, every entry readable
    assert all(kept.get_track(i) is not None for i in kept.done_frames())
    assert not list(cache_dir.rglob(".*.part*"))  # the killed run's temporary file was removed on opening
    track_video(small_clip, cache=kept, frames=range(20))
    resumed = _tracks(cache_dir, small_clip)[:20]
    assert [t.index for t, r in zip(clean, resumed) if not _same(t, r)] == []


# -- a damaged cache --------------------------------------------------------------------------------------------
def test_truncated_track_chunk_is_retracked_in_the_same_run(tmp_path, small_clip, caplog):
    cache = ClipCache.for_video(small_clip, tmp_path)
    track_video(small_clip, cache=cache, frames=range(10), estimate_sh=False)
    chunk = cache.root / "tracks" / "chunk_00000.npz"
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    fresh = ClipCache.for_video(small_clip, tmp_path)
    tracks = track_video(small_clip, cache=fresh, frames=range(10), estimate_sh=False)
    assert all(t.status != "no_face" for t in tracks), [t.status for t in tracks]
    assert sum("chunk_00000.npz" in r.getMessage() for r in caplog.records) == 1  # said once
    assert "track chunk" in fresh.repair_text()


@pytest.mark.parametrize("damage", ["shape", "missing_key", "nan", "garbage"])
def test_damaged_plane_file_is_encoded_again(tmp_path, damage):
    from blender_relight.pipeline import ClipSession

    sample = REPO / "blender_relight" / "samples" / "astronaut.jpg"
    session = ClipSession(sample, cache_dir=tmp_path, engine="neural")
    session.analyse()
    engine, cache = session.engine, session.cache
    good = cache.get_planes(0, engine.model_id, engine.plane_shapes)
    path = cache._planes_path(0, engine.model_id)
    planes = dict(good)
    if damage == "shape":
        planes["albedo_planes"] = planes["albedo_planes"][:, :64]
    elif damage == "missing_key":
        del planes["shading_planes"]
    elif damage == "nan":
        planes["albedo_planes"] = planes["albedo_planes"].copy()
        planes["albedo_planes"][0, 0, 0] = np.nan
    if damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        with open(path, "wb") as fh:  # written raw: put_planes would refuse nothing, this is what a bug might leave
            np.savez(fh, **{k: v.astype(np.float16) for k, v in planes.items()})
    again = ClipSession(sample, cache_dir=tmp_path, engine=engine)
    assert again.cache.get_planes(0, engine.model_id, engine.plane_shapes) is None  # detected, deleted
    lit = again.relight_frame(0, np.r_[1.0, np.zeros(8)])
    assert np.isfinite(lit.image).all() and lit.status != "not analysed"
    re = again.cache.get_planes(0, engine.model_id, engine.plane_shapes)
    assert re is not None and all(np.isfinite(v).all() for v in re.values())
    assert "plane file" in again.cache.repair_text()


def test_leftover_part_file_is_removed_and_said(tmp_path, small_clip, caplog):
    cache = ClipCache.for_video(small_clip, tmp_path)
    left = cache.root / "planes" / ".frame_000003.abcd.part.npz"
    left.write_bytes(b"half")
    ClipCache.for_video(small_clip, tmp_path)
    assert not left.exists()
    assert any("half-written" in r.getMessage() for r in caplog.records)


def test_full_disk_on_cache_writes_is_one_clear_line(tmp_path, small_clip, monkeypatch, capsys):
    cache = ClipCache.for_video(small_clip, tmp_path / "c")
    track_video(small_clip, cache=cache, frames=range(4), estimate_sh=False)
    before = {p.name: p.read_bytes() for p in (cache.root / "tracks").iterdir()}

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod.np, "savez", full)
    with pytest.raises(cache_mod.CacheWriteError, match="disk is full"):
        track_video(small_clip, cache=ClipCache.for_video(small_clip, tmp_path / "c"), frames=range(12),
                    estimate_sh=False)
    assert {p.name: p.read_bytes() for p in (cache.root / "tracks").iterdir()} == before  # nothing lost
    assert not list((tmp_path / "c").rglob(".*.part*"))
    code = main(["track", str(small_clip), "--cache", str(tmp_path / "c"), "--frames", "0:12"])
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if not line.startswith("track [")]  # minus the progress bar
    assert code == 2 and "Traceback" not in err and len(errors) == 1 and "disk is full" in errors[0], err
    monkeypatch.setattr(cache_mod, "write_bytes_atomic", full)  # the manifest write too
    with pytest.raises(cache_mod.CacheWriteError):
        ClipCache.for_video(small_clip, tmp_path / "c").set_settings({"other": 1})


# -- bad input ----------------------------------------------------------------------------------------------------
def test_truncated_mp4_with_index_in_front(tmp_path, capsys):
    frames = [cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in read_frames(_need("lp_d0.mp4"), 0, 30)]
    whole = write_clip(tmp_path / "whole.mp4", frames)
    clip = truncate(faststart(whole, tmp_path / "cut.mp4"), 0.5)
    assert int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT)) == 30  # the header still says 30
    out = tmp_path / "out"
    code = main(["relight", str(clip), "--out", str(out), "--cache", str(tmp_path / "c"), "--engine", "analytic"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    written = len(list(out.glob("frame_*.png")))
    assert 5 <= written < 30
    assert f"only {written} could be decoded" in captured.out + captured.err
    assert main(["track", str(clip), "--cache", str(tmp_path / "c"), "--frames", "29"]) == 2  # absent: refused
    assert "outside the clip" in capsys.readouterr().err


def test_unsupported_codec_is_named_without_decoder_noise(tmp_path):
    frames = [np.full((64, 64, 3), i * 20, np.uint8) for i in range(6)]
    clip = retag_avi(write_clip(tmp_path / "m.avi", frames), tmp_path / "av1.avi")
    result = subprocess.run([sys.executable, "-m", "blender_relight", "track", str(clip), "--cache",
                             str(tmp_path / "c")], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "AV1" in lines[0] and "H.264" in lines[0] and "cannot decode" in lines[0]


def test_png_alpha_is_said_to_be_dropped(tmp_path):
    from blender_relight.pipeline import ClipSession

    rgb = cv2.imread(str(REPO / "blender_relight" / "samples" / "astronaut.jpg"))
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0
    cv2.imwrite(str(tmp_path / "cut.png"), np.dstack([rgb, alpha]))
    session = ClipSession(tmp_path / "cut.png", cache_dir=tmp_path / "c", engine="analytic")
    assert any("alpha" in n for n in session.notes)
    assert any("alpha" in line for line in session.track().lines)
    cv2.imwrite(str(tmp_path / "opaque.png"), np.dstack([rgb, np.full_like(alpha, 255)]))
    assert ClipSession(tmp_path / "opaque.png", cache_dir=tmp_path / "c", engine="analytic").notes == []


# -- analysis: one pass, instant resume, small planes ----------------------------------------------------------
def test_analyse_decodes_once_resumes_instantly_and_planes_fit_1mb(tmp_path, small_clip, monkeypatch):
    from blender_relight import video
    from blender_relight.pipeline import ClipSession

    decoded: list[int] = []
    real_next = video.VideoReader._next

    def counting(self):
        frame = real_next(self)
        if frame is not None:
            decoded.append(1)
        return frame

    monkeypatch.setattr(video.VideoReader, "_next", counting)
    session = ClipSession(small_clip, cache_dir=tmp_path, engine="neural")
    summary = session.analyse(range(6)).text()
    assert len(decoded) == 6, len(decoded)  # decode -> track -> crop -> light -> encode, once a frame
    sizes = [p.stat().st_size for p in (session.cache.root / "planes").rglob("frame_*.npz")]
    assert len(sizes) == 6 and max(sizes) <= 1_000_000, sizes
    assert "6 frames tracked, 6 prepared" in summary
    decoded.clear()
    start = time.perf_counter()
    again = ClipSession(small_clip, cache_dir=tmp_path, engine=session.engine).analyse(range(6))
    assert time.perf_counter() - start < 2.0 and decoded == []
    assert "6 frames already analysed (cache)" in again.text()
    # Frames tracked before (by `track`) but not encoded: analysis decodes only those, once.
    session.track(range(6, 9))
    decoded.clear()
    third = session.analyse(range(9)).text()
    assert len(decoded) == 3 and "0 frames tracked, 3 prepared" in third


def test_packed_planes_round_trip_within_half_a_code_step():
    rng = np.random.default_rng(1)
    smooth = np.cumsum(np.cumsum(rng.normal(0, 1, (72, 32, 32)), axis=1), axis=2)  # extremes of the 2D coder
    planes = {"albedo_planes": rng.normal(0, 14, (72, 32, 32)).astype(np.float32),
              "shading_planes": smooth.astype(np.float32), "n": np.arange(3),
              "flat": np.full((2, 4, 4), 3.5, np.float32)}
    back = cache_mod.unpack_planes(cache_mod.pack_planes(planes))
    for k in ("albedo_planes", "shading_planes", "flat"):
        v = planes[k]
        step = (v.max(axis=(1, 2)) - v.min(axis=(1, 2))) / ((1 << cache_mod.PLANE_BITS) - 1)
        assert (np.abs(back[k] - v) <= step[:, None, None] * 0.5 + 1e-5 * np.abs(v).max()).all(), k
    np.testing.assert_array_equal(back["n"], planes["n"])


@pytest.mark.slow
def test_relight_of_never_analysed_720p_clip_equals_analyse_then_relight(tmp_path):
    """The README's one-command use on a 720p dev clip gives the same frames as `analyse` then `relight`.

    The tracks and planes are the same on this branch alone; the frames also need a neural output that does not
    depend on what ran before in the process (the temporal window rebuilt from the frames before, GrabCut seeded),
    which comes with ``blender_relight.sequence``'s branch: skipped until both are merged."""
    pytest.importorskip("blender_relight.sequence", reason="needs the order-independent temporal window")
    clip = _need("lp_d13.mp4")
    args = ["--engine", "neural", "--frames", "100:106", "--light-dir", "1,-1,0.3"]
    assert main(["relight", str(clip), "--out", str(tmp_path / "direct"), "--cache", str(tmp_path / "c1"),
                 *args]) == 0
    assert main(["analyse", str(clip), "--cache", str(tmp_path / "c2"), "--engine", "neural",
                 "--frames", "100:106"]) == 0
    assert main(["relight", str(clip), "--out", str(tmp_path / "after"), "--cache", str(tmp_path / "c2"),
                 *args]) == 0
    for i in range(100, 106):
        a = cv2.imread(str(tmp_path / "direct" / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "after" / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert a is not None and np.array_equal(a, b), i
