"""Lighting benchmarks: rasteriser speed, SH estimation speed, and estimate stability on real clips.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lighting.py [--frames 120] [--clips lp_d3 lp_d10 lp_d0]``

Prints:
- face-map rasterisation at 512² (maps/s, one core), open mesh and hole-filled mesh;
- ``estimate_sh`` and ``estimate_frame_sh`` (rasterise + estimate) in ms per frame;
- on real clips whose lighting does not change, the spread over frames of the per-frame estimate (tracked with
  ``blender_relight.tracking``): RMS distance to the mean estimate relative to the mean's norm (RGB, all 9
  coefficients), the same for DPR gray, and for the dominant direction (band 1) its angular spread in degrees.
Figures go into docs/lighting.md by hand, with the machine they came from.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _timeit(fn, repeat: int) -> float:
    """Seconds of this process's CPU time per call (wall time is meaningless on a machine shared with other jobs;
    everything here is single-threaded, so CPU time is the one-core figure)."""
    fn()
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat


def first_face(video: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop (linear), crop-space landmarks and cam2world of a clip's first tracked frame."""
    from blender_relight.tracking.tracker import track_video
    from blender_relight import colour
    from blender_relight.video import VideoReader

    track = next(t for t in track_video(video, frames=range(0, 5), estimate_sh=False) if t.tracked)
    with VideoReader(video) as reader:
        frame = next(f for i, f in reader.frames(track.index, track.index + 1))
    crop = colour.uint8_srgb_to_linear(track.transform.warp(frame))
    return crop, track.points_crop(), track.camera_c2w()


def bench_speed(video: Path, repeat: int) -> None:
    from blender_relight import face_geometry as fg
    from blender_relight.lighting import estimate, sh

    crop, pts, c2w = first_face(video)
    fg.face_triangles(), fg.face_triangles(True)
    t_open = _timeit(lambda: fg.render_face_maps(pts, 512), repeat)
    t_fill = _timeit(lambda: fg.render_face_maps(pts, 512, fill_holes=True), repeat)
    maps = fg.render_face_maps(pts, 512)
    print(f"rasterise 512² ({video.name}, {int(maps.mask.sum())} face px): open mesh {1 / t_open:.1f} maps/s "
          f"({t_open * 1e3:.1f} ms), filled {1 / t_fill:.1f} maps/s ({t_fill * 1e3:.1f} ms)")
    n_sh = sh.rotate_eg3d_to_sh(maps.normals.reshape(-1, 3) @ c2w[:3, :3].T).reshape(maps.normals.shape)
    t_est = _timeit(lambda: estimate.estimate_sh(crop, n_sh, maps.mask), repeat)
    t_frame = _timeit(lambda: estimate.estimate_frame_sh(crop, pts, c2w), repeat)
    print(f"estimate_sh {t_est * 1e3:.1f} ms/frame; estimate_frame_sh (rasterise + rotate + estimate) "
          f"{t_frame * 1e3:.1f} ms/frame")


def _spread(shs: np.ndarray) -> tuple[float, float, float]:
    """(RMS distance to the mean, RMS frame-to-frame step, |mean|); the first two relative to |mean|."""
    mean = shs.mean(0)
    norm = float(np.linalg.norm(mean))
    spread = float(np.sqrt(np.mean(np.sum((shs - mean) ** 2, axis=tuple(range(1, shs.ndim))))))
    step = float(np.sqrt(np.mean(np.sum(np.diff(shs, axis=0) ** 2, axis=tuple(range(1, shs.ndim))))))
    return spread / norm, step / norm, norm


def bench_stability(video: Path, frames: int) -> None:
    """Track the clip, then estimate every frame twice: independently, and with the previous estimate as prior."""
    from blender_relight import colour
    from blender_relight.lighting import estimate, sh
    from blender_relight.tracking.tracker import track_video
    from blender_relight.video import VideoReader

    tracks = {t.index: t for t in track_video(video, frames=range(frames), estimate_sh=False) if t.tracked}
    free, chained, prev, cpu = [], [], None, 0.0
    with VideoReader(video) as reader:
        for index, frame in reader.frames(0, frames):
            t = tracks.get(index)
            if t is None:
                continue
            crop = colour.uint8_srgb_to_linear(t.transform.warp(frame))
            pts, c2w = t.points_crop(), t.camera_c2w()
            t0 = time.process_time()
            free.append(estimate.estimate_frame_sh(crop, pts, c2w))
            cpu += time.process_time() - t0
            prev = estimate.estimate_frame_sh(crop, pts, c2w, prior=prev)
            chained.append(prev)
    if len(free) < 2:
        print(f"{video.name}: fewer than 2 tracked frames")
        return
    for label, seq in (("independent", np.array(free)), ("prior=previous", np.array(chained))):
        spread, step, norm = _spread(seq)
        g_spread, g_step, _ = _spread(np.array([estimate.rgb_sh_to_dpr_gray(s) for s in seq]))
        mean = seq.mean(0)
        e_front = sh.irradiance(np.array([0.0, -1.0, 0.0]), mean)
        print(f"{video.name} [{label}] {len(seq)} frames: RGB spread {spread:.1%} (step {step:.1%}) of |mean| "
              f"{norm:.2f}; DPR-gray spread {g_spread:.1%} (step {g_step:.1%}); mean irradiance facing the camera "
              f"rgb {np.round(e_front, 2)}")
    print(f"{video.name}: estimate_frame_sh {cpu / len(free) * 1e3:.0f} ms CPU per frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120, help="frames per clip for the stability figures")
    ap.add_argument("--repeat", type=int, default=30, help="timing repetitions")
    ap.add_argument("--clips", nargs="+", default=["lp_d3", "lp_d10", "lp_d0"])
    args = ap.parse_args()
    videos = DATA / "videos"
    if not videos.is_dir():
        raise SystemExit(f"{videos} not found: the lighting benchmark needs ../shared/data/videos")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    bench_speed(videos / f"{args.clips[0]}.mp4", args.repeat)
    for name in args.clips:
        bench_stability(videos / f"{name}.mp4", args.frames)


if __name__ == "__main__":
    main()
