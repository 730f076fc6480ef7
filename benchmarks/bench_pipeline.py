"""End-to-end pipeline figures on this machine: `info` latency, tracking, analytic relight, and the neural engine's
camera-change and light-only-change rates through ClipSession (crop, model, uncrop included). Prints a table.

    .venv/bin/python benchmarks/bench_pipeline.py [--clip PATH] [--frames N] [--weights DIR]

Without --clip it uses the demo clip built from the shipped sample. The neural rows need weights: the shipped ones,
or any folder from `python -m inference.export` (an untrained export times the same graphs).
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
    from blender_relight.demo import demo_camera, demo_light, make_demo_clip
    from blender_relight.pipeline import ClipSession
    from inference.runtime import find_weights

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=None)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
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
    print(f"machine: {platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, "
          f"Python {platform.python_version()}; clip {clip.name}, {n} frames")
    print("| stage | figure |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
