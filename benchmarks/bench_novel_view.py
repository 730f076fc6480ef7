"""Novel-view speed on this machine: a camera change at 512² (re-pose + relight of one frame's crop), a light change at
a fixed new view, the same light change at the filmed view for comparison, and a first view of a new frame (matte,
geometry, source G-buffer, background). Prints a table; stage times of a camera change follow it.

    .venv/bin/python benchmarks/bench_novel_view.py [--views N] [--threads 2]

Runs on the shipped public-domain sample (the engine's crops, so figures are per 512² crop; the full-frame paste is
the pipeline's and is timed by bench_pipeline.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))



def main() -> None:
    import cv2

    from blender_relight.demo import demo_light, sample_path
    from blender_relight.engines import GeometryEngine
    from blender_relight.novel_view.views import offset_label
    from blender_relight.pipeline import ClipSession

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-novel-view-"))
    session = ClipSession(sample_path(), cache_dir=tmp / "cache", engine=GeometryEngine())
    session.analyse()
    engine = session.engine
    track = session.frame_track(0)
    crop = session.crop_linear(0, track)
    n = args.views
    light = demo_light(0.2)
    rows = []

    def timed(fn, count: int) -> str:
        """frames/s of ``fn(i)`` over ``count`` calls, wall and CPU (process time: all threads) per call, and the
        calling thread's share of that CPU (the rest ran on the worker threads beside it: with two free cores the
        wall time is about the larger of the two)."""
        wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
        for i in range(count):
            fn(i)
        wall, cpu = (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count
        own = (time.thread_time() - own) / count
        return (f"{1.0 / wall:.1f} frames/s ({1000 * wall:.0f} ms wall, {1000 * cpu:.0f} ms CPU per call: "
                f"{1000 * own:.0f} calling thread, {1000 * (cpu - own):.0f} other threads)")

    path = engine.novel_view_path()
    start = time.perf_counter()
    engine.relight(0, crop, track, light, offset_label(track.camera, 10.0, 0.0), session.cache)
    rows.append(("first new view of a frame (matte, geometry, source G-buffer, clip texture of a 1-frame clip, "
                 "background)", f"{time.perf_counter() - start:.2f} s"))
    yaws = np.linspace(-30.0, 30.0, n)
    cams = [offset_label(track.camera, float(y), 5.0 * np.sin(i)) for i, y in enumerate(yaws)]
    rows.append(("camera change (rasterise, reproject, blend, fill, surroundings, relight), 512² crop",
                 timed(lambda i: engine.relight(0, crop, track, light, cams[i], session.cache), n)))
    fixed = offset_label(track.camera, 20.0, 0.0)
    engine.relight(0, crop, track, light, fixed, session.cache)
    lights = [demo_light(i / n) for i in range(n)]
    rows.append(("light change at a fixed new view",
                 timed(lambda i: engine.relight(0, crop, track, lights[i], fixed, session.cache), n)))
    engine.relight(0, crop, track, light, None, session.cache)
    rows.append(("light change at the filmed view (the same geometry engine)",
                 timed(lambda i: engine.relight(0, crop, track, lights[i], None, session.cache), n)))

    # Stage times of a camera change (what the rate above is made of), CPU per call over the same cameras.
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.novel_view.path import _bbox

    src = path.source(0, crop, track)
    renderer = path.renderer
    raster = renderer.rasterize
    stages = {"rasterise the head at the new camera (geometry package)": 0.0,
              "reproject + texture + mirror + fill + surroundings": 0.0,
              "shading inputs and source light at the new view": 0.0, "target light at the new view": 0.0}
    names = list(stages)
    for i in range(n):
        t = time.process_time()
        gb = raster(src.geometry, cams[i], 512)
        stages[names[0]] += time.process_time() - t
        t = time.process_time()
        renderer.rasterize = lambda *a, **k: gb  # time the rest without the raster
        nv = renderer.render(src, cams[i])
        renderer.rasterize = raster
        stages[names[1]] += time.process_time() - t
        t = time.process_time()
        path.shade._view_state(nv, src)
        stages[names[2]] += time.process_time() - t
        t = time.process_time()
        path.shade(nv, src, SceneLighting.coerce(light), _bbox(nv.head_alpha > 0))
        stages[names[3]] += time.process_time() - t

    from evaluation.run import _git_commit, machine_description

    print(f"commit {_git_commit()}, {machine_description()}, {args.threads} OpenCV threads, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load {os.getloadavg()[0]:.1f}")
    print("| what | figure |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for name, value in stages.items():
        print(f"| stage: {name} | {1000 * value / n:.0f} ms CPU |")


if __name__ == "__main__":
    main()
