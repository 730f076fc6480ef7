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
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


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


def bench_stability(video: Path, frames: int) -> None:
    from blender_relight.lighting import estimate
    from blender_relight.tracking.tracker import track_video

    t0 = time.perf_counter()
    tracks = track_video(video, frames=range(frames))
    dt = time.perf_counter() - t0
    shs = np.array([t.source_sh for t in tracks if t.tracked and t.source_sh is not None])
    if len(shs) < 2:
        print(f"{video.name}: fewer than 2 frames with an estimate")
        return
    mean = shs.mean(0)
    spread = np.sqrt(np.mean(np.sum((shs - mean) ** 2, axis=(1, 2))))
    gray = np.array([estimate.rgb_sh_to_dpr_gray(s) for s in shs])
    g_spread = np.sqrt(np.mean(np.sum((gray - gray.mean(0)) ** 2, axis=1)))
    band1 = gray[:, [3, 1, 2]]  # (x, y, z) of the dominant direction, from the SH order 1, y, z, x
    unit = band1 / np.linalg.norm(band1, axis=1, keepdims=True)
    mean_dir = unit.mean(0) / np.linalg.norm(unit.mean(0))
    ang = np.degrees(np.arccos(np.clip(unit @ mean_dir, -1, 1)))
    colour_ratio = mean[0] / mean[0].sum()
    print(f"{video.name}: {len(shs)}/{len(tracks)} frames estimated ({dt / len(tracks) * 1e3:.0f} ms/frame incl. "
          f"tracking); RGB spread {spread:.3f} = {spread / np.linalg.norm(mean):.1%} of |mean| {np.linalg.norm(mean):.2f};"
          f" DPR-gray spread {g_spread / np.linalg.norm(gray.mean(0)):.1%}; light direction (x,y,z) "
          f"{np.round(mean_dir, 2)} ± {np.sqrt(np.mean(ang ** 2)):.1f}° RMS; ambient colour rgb {np.round(colour_ratio, 3)}")


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
