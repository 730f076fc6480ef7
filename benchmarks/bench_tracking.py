"""Tracking front end figures: throughput, jitter, lag, detection rate, memory on 4K. Prints; never asserts.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tracking.py [--quick]``
(reads ../shared/data; writes a synthetic 4K clip to /tmp). docs/tracking.md records what it printed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blender_relight import camera  # noqa: E402
from blender_relight.tracking import smoothing as sm  # noqa: E402
from blender_relight.tracking.landmarks import MediapipeBackend  # noqa: E402
from blender_relight.tracking.tracker import FaceTracker, track_video  # noqa: E402
from blender_relight.video import VideoReader, VideoWriter, read_image  # noqa: E402
from evaluation.memory import current_rss_mib, peak_rss_mib  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def jitter_figures(tracks) -> tuple[float, float]:
    """Frame-to-frame RMS of camera rotation (deg) and crop centre (frame px) over consecutive tracked frames."""
    rot, cen = [], []
    for a, b in zip(tracks[:-1], tracks[1:]):
        if a.tracked and b.tracked and b.index == a.index + 1:
            rot.append(camera.rotation_angle_deg(a.camera_c2w(), b.camera_c2w()))
            ca = a.transform.inverse @ np.array([255.5, 255.5, 1.0])
            cb = b.transform.inverse @ np.array([255.5, 255.5, 1.0])
            cen.append(float(np.linalg.norm(cb - ca)))
    return float(np.sqrt(np.mean(np.square(rot)))), float(np.sqrt(np.mean(np.square(cen))))


def track_frames(frames, strength: float):
    tracker = FaceTracker(MediapipeBackend(), smoothing=strength, estimate_sh=False)
    try:
        return [tracker.track(i, f) for i, f in enumerate(frames)]
    finally:
        tracker.backend.close()


def bench_throughput(quick: bool) -> None:
    print("\n## Throughput: landmarks + smoothing + crop + pose (no lighting estimate), frames already decoded")
    n = 60 if quick else 150
    with VideoReader(DATA / "videos" / "lp_d3.mp4") as r:  # 512x512
        f512 = [f for _, f in r.frames(0, n)]
    with VideoReader(DATA / "videos" / "lp_s18.mp4") as r:  # 1280x720 -> 1920x1080
        f1080 = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR) for _, f in r.frames(0, n // 2)]
    for name, frames in (("512x512", f512), ("1920x1080", f1080)):
        for faces in (1, 2):
            tracker = FaceTracker(MediapipeBackend(mesh_faces=faces), estimate_sh=False)
            tracker.track(0, frames[0])
            t0 = time.perf_counter()
            for i, f in enumerate(frames[1:], 1):
                tracker.track(i, f)
            dt_s = time.perf_counter() - t0
            tracker.backend.close()
            print(f"{name}: {len(frames) - 1} frames, mesh_faces={faces}: {(len(frames) - 1) / dt_s:.1f} frames/s "
                  f"({1000 * dt_s / (len(frames) - 1):.1f} ms/frame)")
    # Decode alone, and the lighting estimate alone, for the whole picture.
    t0 = time.perf_counter()
    with VideoReader(DATA / "videos" / "lp_s18.mp4") as r:
        k = sum(1 for _ in r.frames(0, n))
    print(f"decode 1280x720 mp4: {k / (time.perf_counter() - t0):.0f} frames/s")
    try:
        from blender_relight.lighting.estimate import estimate_frame_sh
        from blender_relight import colour

        tracks = track_frames(f512[:10], 1.0)
        t0 = time.perf_counter()
        for t, f in zip(tracks, f512[:10]):
            estimate_frame_sh(colour.uint8_srgb_to_linear(t.transform.warp(f)), t.points_crop(), t.camera_c2w())
        print(f"source lighting estimate (lighting.estimate, not this module): "
              f"{1000 * (time.perf_counter() - t0) / 10:.0f} ms/frame")
    except ImportError:
        print("source lighting estimate: module absent")


def bench_jitter_still() -> None:
    print("\n## Jitter on a still face with sensor noise (no true motion): frame-to-frame RMS")
    still = read_image(DATA / "images" / "dpr_obama.jpg").astype(np.float32)
    rng = np.random.default_rng(0)
    for sigma in (2.0, 4.0):
        frames = [np.clip(still + rng.normal(0, sigma, still.shape), 0, 255).astype(np.uint8) for _ in range(60)]
        for strength in (0.0, 0.5, 1.0, 2.0):
            rot, cen = jitter_figures(track_frames(frames, strength))
            print(f"noise sigma {sigma:.0f}/255, strength {strength}: rotation {rot:.3f} deg, crop centre {cen:.3f} px")


def _steady(tracks, rot_thresh: float = 1.0, cen_thresh: float = 2.0):
    """Frames in steady segments: the track moved less than the thresholds over a 9-frame window."""
    c2w = [t.camera_c2w() if t.tracked else None for t in tracks]
    cen = [t.transform.inverse @ np.array([255.5, 255.5, 1.0]) if t.tracked else None for t in tracks]
    steady = []
    for i in range(4, len(tracks) - 4):
        if any(c2w[j] is None for j in range(i - 4, i + 5)):
            continue
        if (camera.rotation_angle_deg(c2w[i - 4], c2w[i + 4]) < rot_thresh
                and np.linalg.norm(cen[i + 4] - cen[i - 4]) < cen_thresh):
            steady.append(i)
    return steady


def bench_clips(quick: bool) -> None:
    print("\n## Every dev clip: detection, status counts, jitter (default smoothing)")
    print("jitter = frame-to-frame RMS; 'steady' = frames whose 9-frame window moved < 1 deg and < 2 px "
          "(true motion included, so an upper bound); high-pass = RMS of x[t] - (x[t-1]+x[t+1])/2 scaled to f2f")
    for clip in sorted((DATA / "videos").glob("*.mp4")):
        t0 = time.perf_counter()
        frames = range(0, 90) if quick else None
        tracks = track_video(clip, frames=frames, estimate_sh=False)
        dt_s = time.perf_counter() - t0
        counts = {s: sum(t.status == s for t in tracks) for s in ("tracked", "several_faces", "low_confidence",
                                                                   "no_face")}
        found = sum(t.tracked for t in tracks)
        rot, cen = jitter_figures(tracks)
        steady = _steady(tracks)
        s_rot = [camera.rotation_angle_deg(tracks[i].camera_c2w(), tracks[i + 1].camera_c2w()) for i in steady]
        s_cen = [float(np.linalg.norm(tracks[i + 1].transform.inverse @ [255.5, 255.5, 1]
                                      - tracks[i].transform.inverse @ [255.5, 255.5, 1])) for i in steady]
        cents = np.array([t.transform.inverse @ [255.5, 255.5, 1] for t in tracks if t.tracked])
        # White jitter of variance s^2 gives x[t] - (x[t-1] + x[t+1]) / 2 a variance of 1.5 s^2, a f2f one of 2 s^2.
        hp = np.linalg.norm(cents[1:-1] - (cents[:-2] + cents[2:]) / 2, axis=1) * np.sqrt(2.0 / 1.5)
        steady_txt = (f"steady {len(steady)} frames: rotation {np.sqrt(np.mean(np.square(s_rot))):.3f} deg, "
                      f"centre {np.sqrt(np.mean(np.square(s_cen))):.2f} px" if steady else "no steady segment")
        print(f"{clip.name}: {found}/{len(tracks)} frames with a face ({100 * found / len(tracks):.1f}%), {counts}, "
              f"{len(tracks) / dt_s:.0f} fps incl. decode; all frames: rotation {rot:.3f} deg, centre {cen:.2f} px; "
              f"{steady_txt}; centre high-pass {np.sqrt(np.mean(hp ** 2)):.2f} px")


def bench_lag() -> None:
    print("\n## Lag")
    speed = np.radians(180.0) / 30.0
    x = np.r_[np.zeros(30), np.arange(1, 31) * speed]
    y = sm.smooth_sequence(x[:, None], sm.POSE_RAD, 30.0)[:, 0]
    print(f"pose filter, 180 deg/s yaw ramp: {np.mean((x[40:] - y[40:]) / speed):.2f} frames behind")
    step = np.r_[np.zeros(20), np.full(40, np.radians(25.0))]
    ys = sm.smooth_sequence(step[:, None], sm.POSE_RAD, 30.0)[:, 0]
    print(f"pose filter, 25 deg step: mean delay {np.sum(1 - ys[20:] / step[-1]):.2f} frames")
    # End to end: a still portrait sweeping across a 1080p canvas at 15 px/frame (450 px/s), then stopping.
    photo = cv2.resize(read_image(DATA / "images" / "dpr_obama.jpg"), None, fx=0.5, fy=0.5)
    h, w = photo.shape[:2]
    xs = np.r_[np.full(15, 100.0), 100.0 + 15.0 * np.arange(1, 61), np.full(15, 100.0 + 15.0 * 60)]
    frames = []
    for x0 in xs:
        canvas = np.full((1080, 1920, 3), 70, np.uint8)
        M = np.array([[1.0, 0.0, x0], [0.0, 1.0, 300.0]])
        frames.append(cv2.warpAffine(photo, M, (1920, 1080), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT))
    raw = track_frames(frames, 0.0)
    smooth = track_frames(frames, sm.DEFAULT_STRENGTH)
    cr = np.array([t.transform.inverse @ [255.5, 255.5, 1] for t in raw])[:, 0]
    cs = np.array([t.transform.inverse @ [255.5, 255.5, 1] for t in smooth])[:, 0]
    moving = slice(20, 75)
    lag = np.mean((cr[moving] - cs[moving]) / 15.0)
    print(f"tracker, face sweeping at 450 px/s: crop centre {lag:.2f} frames behind the unsmoothed track; "
          f"after stopping, within 1 px of it after {int(np.argmax(np.abs(cs[75:] - cr[75:]) < 1.0))} frames")


def bench_small_faces() -> None:
    print("\n## Small faces: a portrait shrunk into a grey 1920x1080 frame (3 frames each)")
    photo = read_image(DATA / "images" / "lp_d8.jpg")
    for scale in (0.5, 0.3, 0.2, 0.15, 0.12, 0.1):
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.full((1080, 1920, 3), 90, np.uint8)
        canvas[500:500 + small.shape[0], 1200:1200 + small.shape[1]] = small
        with MediapipeBackend() as backend:
            found = [backend.detect(canvas) for _ in range(3)]
        sizes = [f"{faces[0].size:.0f} px ({faces[0].source})" if faces else "none" for faces in found]
        print(f"photo x{scale}: " + ", ".join(sizes))


def bench_4k(quick: bool) -> None:
    print("\n## 4K clip (synthetic, 3840x2160): memory while tracking")
    path = Path("/tmp/bench_tracking_4k.mp4")
    n = 40 if quick else 120
    photo = read_image(DATA / "images" / "lp_d8.jpg")
    with VideoWriter(path, 30, (3840, 2160)) as w:
        for i in range(n):
            canvas = np.full((2160, 3840, 3), 80, np.uint8)
            x0 = 1200 + 4 * i
            canvas[500:500 + photo.shape[0], x0:x0 + photo.shape[1]] = photo
            w.write(canvas)
    samples: list[tuple[int, float]] = []
    base = current_rss_mib()
    t0 = time.perf_counter()
    tracks = track_video(path, estimate_sh=False,
                         progress=lambda d, t: samples.append((d, current_rss_mib())) if d % 10 == 0 else None)
    dt_s = time.perf_counter() - t0
    found = sum(t.tracked for t in tracks)
    print(f"{n} frames, {found} with a face, {n / dt_s:.1f} fps incl. decode; RSS before {base:.0f} MB, during: "
          + ", ".join(f"frame {d}: {m:.0f} MB" for d, m in samples) + f"; peak (ru_maxrss) {peak_rss_mib():.0f} MB")
    path.unlink(missing_ok=True)


def bench_analyse(quick: bool) -> None:
    """What Blender's Analyse does (``ClipSession.analyse``, default engine) on a 720p clip: decode, landmarks,
    smoothing, crop, pose, source-light estimate, the engine's per-frame prepare and the cache writes."""
    import shutil
    import tempfile

    from blender_relight.pipeline import ClipSession

    clip = DATA / "videos" / "lp_s18.mp4"  # 1280x720
    n = 96 if quick else None
    root = Path(tempfile.mkdtemp(prefix="bench-analyse-"))
    try:
        warm = ClipSession(clip, cache_dir=root / "warm")  # imports and mediapipe's first graph, not timed
        warm.analyse(range(1))
        session = ClipSession(clip, cache_dir=root / "cache")
        frames = range(session.info.frame_count if n is None else min(n, session.info.frame_count))
        t0, c0 = time.perf_counter(), time.process_time()
        session.analyse(frames)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        files = [f for f in session.cache.root.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        print(f"\n## Analysis ({session.engine.name} engine), {clip.name} {session.info.width}x{session.info.height}, "
              f"{len(frames)} frames: {len(frames) / wall:.2f} frames/s wall, {1000 * cpu / len(frames):.0f} ms CPU a "
              f"frame (all threads), load average {os.getloadavg()[0]:.1f}; cache {size / len(frames) / 1024:.1f} KB a "
              f"frame ({len(files)} files)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames")
    parser.add_argument("--only", nargs="*", default=None, help="throughput jitter small clips lag 4k analyse")
    args = parser.parse_args()
    if not (DATA / "videos").is_dir():
        print(f"{DATA} absent: nothing to measure")
        return 1
    print(f"# bench_tracking {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or ''} "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, python {platform.python_version()}, "
          f"opencv {cv2.__version__}")
    parts = {"throughput": lambda: bench_throughput(args.quick), "jitter": bench_jitter_still,
             "small": bench_small_faces,
             "clips": lambda: bench_clips(args.quick), "lag": bench_lag, "4k": lambda: bench_4k(args.quick),
             "analyse": lambda: bench_analyse(args.quick)}
    for name, fn in parts.items():
        if args.only is None or name in args.only:
            fn()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
