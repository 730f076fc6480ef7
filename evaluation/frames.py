"""The frames an evaluation run scores: the project's tracker on every frame, then every ``stride``-th tracked
frame's EG3D crop, track and face mask.

Why track every frame even with a stride: the tracker smooths landmarks and pose over time, so skipping frames would
change the crops the systems see. Tracking runs without the per-user cache so its speed is measured, not read back; the
input's lighting (which the engines divide by) is the tracker's own estimate on every frame, chained over frames as in
the product's analysis.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blender_relight import colour
from blender_relight.errors import RelightError
from evaluation import metrics


@dataclass
class EvalFrame:
    """One scored frame: clip index, EG3D 512² crop, its FrameTrack, face mask (bool).

    The crop is kept as the 8-bit sRGB warp of the decoded frame (that is all the information there is) and handed
    out in linear RGB float32: a quarter of the memory on long clips.
    """

    index: int
    crop_srgb8: np.ndarray
    track: object
    mask: np.ndarray

    @property
    def crop(self) -> np.ndarray:
        return colour.uint8_srgb_to_linear(self.crop_srgb8)


@dataclass
class ClipFrames:
    name: str
    path: Path
    stride: int
    pair_gap: int  # frame gap of the pairs the warping error compares (1 when runs of consecutive frames are scored)
    n_frames_total: int
    n_frames_tracked: int
    n_frames_untracked: int
    tracking_seconds: float
    source_sh_seconds: float = 0.0
    frames: list[EvalFrame] = field(default_factory=list)
    pose_errors: list[tuple[float, float]] = field(default_factory=list)  # (deg, EG3D units) where reference exists

    @property
    def frame_indices(self) -> list[int]:
        return [f.index for f in self.frames]


def reference_cameras(path: Path) -> np.ndarray | None:
    """Reference 25-d EG3D cameras for a clip, if a ``<clip>.cameras.npy`` (N, 25) sits next to it."""
    ref = path.with_suffix(".cameras.npy")
    if not ref.is_file():
        return None
    cams = np.load(ref)
    if cams.ndim != 2 or cams.shape[1] != 25:
        raise RelightError(f"{ref}: expected an (N, 25) array of EG3D camera labels, got {cams.shape}")
    return cams


def load_clip_frames(path: str | os.PathLike, stride: int = 1, max_frames: int = 0, run: int = 1) -> ClipFrames:
    """Track ``path`` from its first frame up to the last one needed and return the sampled, tracked frames:
    ``run`` consecutive frames at every ``stride``-th frame (frames with ``index % stride < run``)."""
    from blender_relight.lighting.estimate import estimate_frame_sh
    from blender_relight.tracking.tracker import track_video
    from blender_relight.video import VideoReader

    path = Path(path)
    with VideoReader(path) as reader:
        total = reader.frame_count
    run = max(1, min(run, stride))
    last = total if not max_frames else min(total, stride * (-(-max_frames // run) - 1) + run)
    t0 = time.perf_counter()
    tracks = track_video(path, cache=None, frames=range(last), estimate_sh=False)
    tracking_s = time.perf_counter() - t0
    # The source lighting as the product's analysis makes it: the tracker's estimate on every frame, each pulled
    # toward the previous frame's (estimate.PRIOR_WEIGHT). Estimating the scored frames alone, with no prior, left
    # the engines dividing by a light that jumps from frame to frame: a static target then flickers, and the
    # instability measured was the evaluation's, not the product's. Its cost over the tracking alone is timed.
    t0 = time.perf_counter()
    lit = {t.index: t.source_sh for t in track_video(path, cache=None, frames=range(last), estimate_sh=True)}
    source_s = max(time.perf_counter() - t0 - tracking_s, 0.0)
    sampled = {t.index: t for t in tracks if t.index % stride < run and t.tracked}
    if max_frames:
        sampled = dict(list(sampled.items())[:max_frames])
    clip = ClipFrames(path.stem, path, stride, 1 if run > 1 else stride, total, sum(t.tracked for t in tracks),
                      sum(not t.tracked for t in tracks), tracking_s,
                      source_s * len(sampled) / max(sum(t.tracked for t in tracks), 1))
    with VideoReader(path) as reader:
        for index, frame in reader.frames(0, max(sampled) + 1 if sampled else 0):
            track = sampled.get(index)
            if track is None:
                continue
            crop8 = track.transform.warp(frame)
            track.source_sh = lit.get(index)
            if track.source_sh is None:  # the chained estimate failed on this frame: the frame's own, as a fallback
                track.source_sh = estimate_frame_sh(colour.uint8_srgb_to_linear(crop8), track.points_crop(),
                                                    track.camera_c2w())
            clip.frames.append(EvalFrame(index, crop8, track, track.crop_mask() > 0.5))
    ref = reference_cameras(path)
    if ref is not None:
        clip.pose_errors = [metrics.pose_error(t.camera, ref[t.index]) for t in tracks
                            if t.tracked and t.index < len(ref)]
    return clip
