"""End-to-end pipeline figures on this machine: `info` latency, tracking, analytic relight, and the neural engine's
camera-change and light-only-change rates through ClipSession (crop, model, uncrop included); then the streaming
analysis of a 720p dev clip (frames/s, an instant re-analysis, plane cache bytes a frame, what the 8-bit plane cache
changes in the relit frames, the landmark step a segment restart leaves) and, with --verify, that `relight` on a
never-analysed clip writes the same frames as `analyse` then `relight`. Prints tables.

    .venv/bin/python benchmarks/bench_pipeline.py [--clip PATH] [--frames N] [--weights DIR]
        [--analysis-clip PATH] [--analysis-frames N] [--verify] [--skip-basic]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pipeline.py --light-drag [CLIP ...]

``--light-drag``: only what a light drag in Blender costs at the filmed view with the geometry engine (the default):
``ClipSession.relight_frame`` on a kept frame (0, 1 and 3 shadowed lights moving 5 cm a redraw), split into the
engine's relight and the paste into the full frame, CPU and wall time.

Without --clip it uses the demo clip built from the shipped sample; --analysis-clip defaults to
../shared/data/videos/lp_d13.mp4 (720x1280) when present. The neural rows need weights: the shipped ones, or any
folder from `python -m inference.export` (an untrained export times the same graphs).
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=None)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--analysis-clip", default=str(REPO.parent / "shared" / "data" / "videos" / "lp_d13.mp4"))
    parser.add_argument("--analysis-frames", type=int, default=32)
    parser.add_argument("--verify", action="store_true",
                        help="check relight on a never-analysed clip == analyse then relight (6 frames)")
    parser.add_argument("--skip-basic", action="store_true", help="only the streaming-analysis figures")
    parser.add_argument("--light-drag", nargs="*", default=None, metavar="CLIP",
                        help="only the geometry engine's light drag at the filmed view through "
                        "ClipSession.relight_frame (default clips: ../shared/data/videos/lp_d3.mp4 and lp_d13.mp4)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    if args.light_drag is not None:
        clips = args.light_drag or [str(REPO.parent / "shared" / "data" / "videos" / name)
                                    for name in ("lp_d3.mp4", "lp_d13.mp4")]
        for clip in clips:
            light_drag(Path(clip), tmp)
        return
    if not args.skip_basic:
        basic(args, tmp)
    if Path(args.analysis_clip).is_file():
        streaming(args, tmp)
    else:
        print(f"streaming analysis skipped: {args.analysis_clip} absent")


def basic(args, tmp: Path) -> None:
    from blender_relight.demo import demo_camera, demo_light, make_demo_clip
    from blender_relight.pipeline import ClipSession
    from inference.runtime import find_weights

    clip = Path(args.clip) if args.clip else make_demo_clip(tmp / "demo.mp4", frames=args.frames)
    rows = []
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "blender_relight", "info"], cwd=REPO, check=True, capture_output=True)
    rows.append(("`blender-relight info` (whole process)", f"{time.perf_counter() - start:.2f} s"))

    session = ClipSession(clip, cache_dir=tmp / "cache", engine="analytic")
    n = min(args.frames, session.info.frame_count)
    start = time.perf_counter()
    session.track(range(n))
    rows.append((f"track (landmarks, smoothing, crop, pose, source SH), {session.info.width}x{session.info.height}",
                 f"{n / (time.perf_counter() - start):.1f} frames/s"))
    rows.append(("analytic relight, full frame", f"{rate(lambda i: session.relight_frame(i, demo_light(i / n)), n):.1f} frames/s"))
    weights = Path(args.weights) if args.weights else find_weights()
    if weights is not None:
        neural = ClipSession(clip, cache_dir=tmp / "cache", engine="neural", weights_dir=weights)
        start = time.perf_counter()
        neural.analyse(range(n))
        rows.append(("neural analyse (track cached + encode)", f"{n / (time.perf_counter() - start):.1f} frames/s"))
        rows.append(("neural, camera + light change per frame (temporal, render, shade, uncrop)",
                     f"{rate(lambda i: neural.relight_frame(i, demo_light(i / n), demo_camera(i / n)), n):.1f} frames/s"))
        fixed = demo_camera(0.3)
        neural.relight_frame(0, demo_light(0.0), fixed)
        rows.append(("neural, new view, light-only change on one frame (shade, uncrop)",
                     f"{rate(lambda i: neural.relight_frame(0, demo_light(i / n), fixed), n):.1f} frames/s"))
        rows.append(("neural, filmed view, light change per frame (temporal, render, head matte, 2× shade, ratio, "
                     "paste)", f"{rate(lambda i: neural.relight_frame(i, demo_light(i / n)), n):.1f} frames/s"))
        rows.append(("neural, filmed view, light-only change on one frame (shade, ratio, paste)",
                     f"{rate(lambda i: neural.relight_frame(n - 1, demo_light(i / n)), n):.1f} frames/s"))
    else:
        rows.append(("neural engine", "skipped: no weights (pass --weights DIR)"))
    print(f"machine: {machine()}; clip {clip.name}, {n} frames")
    table(rows)


def drag_lighting(n_lights: int, i: int):
    """Redraw ``i`` of a light drag: the first ``n_lights`` of a key point, a 0.5 m area fill and a rim spot (the
    shading benchmark's), each 5 cm further along x than the redraw before (every shadow map is rebuilt), over a
    little ambient."""
    from dataclasses import replace

    from blender_relight.lighting import sh as shmath
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting

    specs = (LightSpec("POINT", power=60.0, position=(-1.1, -1.0, 0.3), name="key"),
             LightSpec("AREA", power=30.0, position=(1.2, -0.9, 0.2), direction=(-1.2, 0.9, -0.2), size=0.5,
                       name="fill"),
             LightSpec("SPOT", power=80.0, position=(0.3, 1.2, 1.0), direction=(-0.3, -1.2, -1.0), spot_size=0.8,
                       name="rim"))
    lights = tuple(replace(s, position=tuple(np.asarray(s.position) + (0.05 * (i % 20), 0.0, 0.0)))
                   for s in specs[:n_lights])
    return SceneLighting(sh=shmath.ambient_sh(np.full(3, 0.05)), lights=lights)


def _cpu_wall(fn, n: int) -> tuple[float, float]:
    """Mean CPU and wall milliseconds of ``fn(i)`` over ``n`` calls."""
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    return 1e3 * (time.process_time() - c0) / n, 1e3 * (time.perf_counter() - w0) / n


def light_drag(clip: Path, tmp: Path, n: int = 30) -> None:
    """What a light drag in Blender costs at the filmed view with the geometry engine (the default): the core path
    of a redraw, ``ClipSession.relight_frame`` on one kept frame without passes (the preview reads the image only),
    split into the engine's relight and the paste into the full frame; then with every pass read (an export)."""
    import os

    from blender_relight.pipeline import ClipSession

    session = ClipSession(clip, cache_dir=tmp / f"drag-{clip.stem}", engine="geometry")
    index = 30
    session.ensure_tracked(range(index, index + 1))
    track = session.cache.get_track(index)
    session.relight_frame(index, drag_lighting(3, 0))  # the frame's geometry, matte and source light: once
    frame, crop = session._linear_frame_and_crop(index, track)
    rows = []
    for lights in (0, 1, 3):
        total = _cpu_wall(lambda i: session.relight_frame(index, drag_lighting(lights, i + 1)), n)
        engine = _cpu_wall(lambda i: session.engine.relight(index, crop, track, drag_lighting(lights, i + 1), None,
                                                            session.cache), n)
        relit = session.engine.relight(index, crop, track, drag_lighting(lights, 1), None, session.cache)
        paste = _cpu_wall(lambda i: track.transform.unwarp(relit.image, frame, relit.alpha, reference=crop), n)
        rows.append((f"{lights} shadowed lights moving: relight_frame (no passes)",
                     f"{total[1]:.1f} ms wall ({1e3 / total[1]:.1f} frames/s), {total[0]:.1f} ms CPU; of which "
                     f"engine.relight {engine[0]:.1f} ms CPU, paste into the frame {paste[0]:.1f} ms CPU"))
    def export(i: int) -> None:
        relit = session.relight_frame(index, drag_lighting(3, i + 1), with_passes=True)
        for name in relit.passes:  # every pass read, as the multilayer EXR does
            relit.passes[name]

    every = _cpu_wall(export, max(n // 3, 3))
    rows.append(("3 shadowed lights moving: relight_frame with every pass read (a multilayer EXR)",
                 f"{every[1]:.1f} ms wall, {every[0]:.1f} ms CPU"))
    print(f"machine: {machine()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; geometry engine, "
          f"{clip.name} {session.info.width}x{session.info.height}, frame {index}, {n} redraws each")
    table(rows)


def machine() -> str:
    import os

    return (f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
            f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}")


def table(rows) -> None:
    print("| stage | figure |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


class _ExactPlanes:
    """A cache stand-in that keeps planes in memory, exactly as encoded (float32: the reference for the 8-bit plane
    cache) or through ``store`` (float16: the cache before)."""

    def __init__(self, tracks, store=None) -> None:
        self.planes: dict[int, dict] = {}
        self.store = store or (lambda v: v)
        self.get_track = tracks.get_track  # the clip's tracks (the temporal window reads them)

    def get_planes(self, index, model_id="", expected=None):
        return self.planes.get(index)

    def put_planes(self, index, planes, model_id=""):
        self.planes[index] = {k: self.store(np.array(v, dtype=np.float32)) for k, v in planes.items()}
        return self.planes[index]

    def has_planes(self, index, model_id=""):
        return index in self.planes


def streaming(args, tmp: Path) -> None:
    """Analysis of a real 720p clip in one streaming pass, its resume, and the plane cache's size and loss."""
    from blender_relight import colour
    from blender_relight.engines import NeuralEngine
    from blender_relight.lighting import sh as shmath
    from blender_relight.pipeline import ClipSession
    from blender_relight.tracking import tracker as tracker_mod
    from blender_relight.tracking.tracker import track_video
    from inference.runtime import find_weights

    clip = Path(args.analysis_clip)
    n = args.analysis_frames
    rows = []
    weights = Path(args.weights) if args.weights else find_weights()
    engines = (["neural"] if weights is not None else []) + ["analytic"]
    for engine in engines:
        session = ClipSession(clip, cache_dir=tmp / f"stream-{engine}", engine=engine, weights_dir=weights
                              if engine == "neural" else None)
        session.analyse(range(1))  # graphs and mediapipe loaded, outside the timing
        start = time.perf_counter()
        session.analyse(range(1, n + 1))
        fps = n / (time.perf_counter() - start)
        rows.append((f"analyse ({engine} engine), {session.info.width}x{session.info.height}, one pass: decode, track, "
                     "crop, source light" + (", encode, plane cache" if engine == "neural" else ""),
                     f"{fps:.2f} frames/s"))
        start = time.perf_counter()
        again = ClipSession(clip, cache_dir=tmp / f"stream-{engine}", engine=session.engine)
        text = again.analyse(range(n + 1)).text().splitlines()[1]
        rows.append((f"re-analyse the same {n + 1} frames ({engine}; new session, engine reused)",
                     f"{time.perf_counter() - start:.2f} s: \"{text}\""))
        if engine == "neural":
            sizes = [p.stat().st_size for p in (session.cache.root / "planes").rglob("frame_*.npz")]
            rows.append(("plane cache a frame (8-bit per channel, delta rows, deflate 1)",
                         f"mean {np.mean(sizes) / 1e6:.2f} MB, max {max(sizes) / 1e6:.2f} MB "
                         "(float16 before: 4.72 MB)"))
            # What the 8-bit planes change in the relit crop: the same frames with exact float32 planes.
            light = shmath.directional_light_sh(np.array([1.0, -1.0, 0.4]), np.full(3, 2.5)) + \
                shmath.ambient_sh(np.full(3, 0.05))
            from blender_relight import camera as cam

            view = cam.make_label(cam.orbit_camera(np.radians(15.0), np.radians(5.0)))
            fp16 = _ExactPlanes(session.cache, lambda v: v.astype(np.float16).astype(np.float32))
            for label, camera_label in (("filmed view", None), ("15° yaw view", view)):
                relit: dict[str, list] = {"exact": [], "cache": [], "fp16": []}
                for name, store in (("exact", _ExactPlanes(session.cache)), ("cache", session.cache), ("fp16", fp16)):
                    engine = NeuralEngine(weights)  # a fresh temporal memory for each
                    if hasattr(engine, "frame_source"):  # the temporal window rebuilt from the frames before
                        engine.frame_source = session._window_frame
                    for i in range(1, min(n, 12) + 1):
                        track = session.cache.get_track(i)
                        if track.tracked:
                            image = engine.relight(i, session.crop_linear(i, track), track, light, camera_label,
                                                   store).image
                            relit[name].append(colour.linear_to_uint8_srgb(image).astype(int))
                exact = np.stack(relit["exact"])
                for name, what in (("cache", "8-bit plane cache (now)"), ("fp16", "float16 planes (the cache before)")):
                    d = np.abs(np.stack(relit[name]) - exact)
                    rows.append((f"relit crop, {what} vs exact float32 planes, {label} ({len(exact)} frames, 8-bit "
                                 "sRGB)", f"max {d.max()} levels, mean {d.mean():.4f}, "
                                 f"{(d > 1).mean() * 100:.3f} % of values off by more than 1"))
    # The step a segment restart leaves: segmented tracks vs one continuous tracker, at the restart frame.
    saved = tracker_mod.SEGMENT
    span = range(saved - 8, saved + 8)
    seg = track_video(clip, frames=span, estimate_sh=False)
    try:
        tracker_mod.SEGMENT = 10 ** 9
        cont = track_video(clip, frames=range(0, saved + 8), estimate_sh=False)[saved - 8:]
    finally:
        tracker_mod.SEGMENT = saved
    gap = [float(np.abs(a.points[:, :2] - b.points[:, :2]).mean()) for a, b in zip(seg, cont)]
    rows.append((f"segment restart (every {saved} frames, {tracker_mod.WARMUP}-frame warm-up) vs one continuous "
                 "tracker: mean landmark difference at the restart frame, and at most over the next 7",
                 f"{gap[8]:.3f} px, {max(gap[8:]):.3f} px (frames before the restart: {max(gap[:8]):.3f} px)"))
    if args.verify:
        import cv2

        from blender_relight.cli import main as cli

        frames, common = "100:106", ["--engine", engines[0], "--light-dir", "1,-1,0.3"]
        start = time.perf_counter()
        assert cli(["relight", str(clip), "--out", str(tmp / "direct"), "--cache", str(tmp / "v1"), "--frames",
                    frames, *common]) == 0
        direct_s = time.perf_counter() - start
        assert cli(["analyse", str(clip), "--cache", str(tmp / "v2"), "--engine", engines[0], "--frames",
                    frames]) == 0
        assert cli(["relight", str(clip), "--out", str(tmp / "after"), "--cache", str(tmp / "v2"), "--frames",
                    frames, *common]) == 0
        same = all(np.array_equal(cv2.imread(str(tmp / "direct" / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED),
                                  cv2.imread(str(tmp / "after" / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED))
                   for i in range(100, 106))
        rows.append((f"`relight --frames {frames}` on the never-analysed clip vs `analyse` then `relight` "
                     f"({engines[0]})", f"{'identical' if same else 'DIFFERENT'} frames ({direct_s:.1f} s)"))
    print(f"machine: {machine()}; clip {clip.name}, {n} frames")
    table(rows)


if __name__ == "__main__":
    np.seterr(all="ignore")
    if "--light-drag" in sys.argv:
        import cv2

        cv2.setNumThreads(1)  # one OpenCV thread, as bench_shading: the figures are one core's
    main()
