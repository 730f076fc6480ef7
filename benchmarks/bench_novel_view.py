"""Novel-view speed on this machine: a camera change at 512² (re-pose + relight of one frame's crop), a light change at
a fixed new view, the same light change at the filmed view for comparison, and a first view of a new frame (matte,
geometry, source G-buffer, background). Prints a table; stage times of a camera change follow it.

    .venv/bin/python benchmarks/bench_novel_view.py [--views N] [--threads 2]

Runs on the shipped public-domain sample (the engine's crops, so figures are per 512² crop; the full-frame paste is
the pipeline's and is timed by bench_pipeline.py).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_pipeline import rate  # noqa: E402  (one timing loop for the benchmarks)


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

    path = engine.novel_view_path()
    start = time.perf_counter()
    engine.relight(0, crop, track, light, offset_label(track.camera, 10.0, 0.0), session.cache)
    rows.append(("first new view of a frame (matte, geometry, source G-buffer, clip texture of a 1-frame clip, "
                 "background)", f"{time.perf_counter() - start:.2f} s"))
    yaws = np.linspace(-30.0, 30.0, n)
    cams = [offset_label(track.camera, float(y), 5.0 * np.sin(i)) for i, y in enumerate(yaws)]
    rows.append(("camera change (rasterise, reproject, blend, fill, surroundings, relight), 512² crop",
                 f"{rate(lambda i: engine.relight(0, crop, track, light, cams[i], session.cache), n):.1f} frames/s"))
    fixed = offset_label(track.camera, 20.0, 0.0)
    engine.relight(0, crop, track, light, fixed, session.cache)
    lights = [demo_light(i / n) for i in range(n)]
    rows.append(("light change at a fixed new view",
                 f"{rate(lambda i: engine.relight(0, crop, track, lights[i], fixed, session.cache), n):.1f} frames/s"))
    engine.relight(0, crop, track, light, None, session.cache)
    rows.append(("light change at the filmed view (the same geometry engine)",
                 f"{rate(lambda i: engine.relight(0, crop, track, lights[i], None, session.cache), n):.1f} frames/s"))

    # Stage times of one camera change (what the rate above is made of).
    src = path.source(0, crop, track)
    stages = {}
    t = time.perf_counter()
    gb = path.renderer.rasterize(src.geometry, cams[3], 512)
    stages["rasterise the head at the new camera (geometry package)"] = time.perf_counter() - t
    t = time.perf_counter()
    path.renderer.rasterize = lambda *a, **k: gb  # time the rest without the raster
    nv = path.renderer.render(src, cams[3])
    stages["reproject + texture + mirror + fill + surroundings"] = time.perf_counter() - t
    from blender_relight.lighting.scene import SceneLighting

    t = time.perf_counter()
    if hasattr(nv, "_shading"):
        del nv._shading
    path.shade(nv, src, SceneLighting.coerce(light))
    stages["shading at the new view (inputs, source light, target light)"] = time.perf_counter() - t

    from evaluation.run import _git_commit, machine_description

    print(f"commit {_git_commit()}, {machine_description()}, {args.threads} OpenCV threads")
    print("| what | figure |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for name, value in stages.items():
        print(f"| stage: {name} | {1000 * value:.0f} ms |")


if __name__ == "__main__":
    main()
