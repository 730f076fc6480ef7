"""Stream a clip into per-frame ``FrameTrack`` records: landmarks, EG3D crop, camera label, source lighting, status.

Why one streaming pass: decoding dominates on long clips, and the landmark backend (mediapipe in video mode), the
One-Euro filters and the source-lighting prior all want frames in order. Frames already in the cache are skipped (a
rerun resumes where a cancel stopped).

Why segments: a track depends on the frames before it (filters, video-mode landmarks, the lighting prior). So that a
frame's track never depends on where a run started (a resume after Ctrl-C or kill -9, ``relight`` on a range of a
never-analysed clip, a scrub in Blender), the tracker restarts at every multiple of :data:`SEGMENT` frames, after a
warm-up over the :data:`WARMUP` frames before it (tracked, not stored). A clean run, a resumed one and one that starts
mid-clip give bit-identical tracks; the restart costs WARMUP/SEGMENT more landmark runs and no decode (the warm-up
frames of the next segment are kept from the stream).

Status per frame: ``tracked``; ``several_faces`` (the same person is followed: the one nearest the previous track,
the largest face on the first frame); ``low_confidence`` (tiny face, weak detection or landmarks a rigid face does
not explain); ``no_face`` (nothing to relight: the frame is passed through untouched later); ``other_face`` (the
followed person is hidden and another face is visible: that face is not relit in their place, the frame passes
through). A frame never raises.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from blender_relight import camera, colour
from blender_relight.errors import Cancelled
from blender_relight.lighting.estimate import SOURCE_LIGHT_CONVENTION, estimate_frame_sh, white_balance
from blender_relight.tracking import align, pose
from blender_relight.tracking import landmarks as lmk
from blender_relight.tracking import smoothing as sm

log = logging.getLogger(__name__)

STATUSES = ("tracked", "no_face", "several_faces", "low_confidence", "other_face")
#: Statuses with no face of the followed person to relight.
UNTRACKED = ("no_face", "other_face")
_STATUS_INDEX = {s: i for i, s in enumerate(STATUSES)}

#: A face whose rigid points reproject worse than this (crop px, RMS) is not explained by a rigid head.
MAX_REPROJ_PX = 9.0
#: Faces smaller than this (landmark box, frame px) give crops upsampled beyond what the model can use.
MIN_FACE_PX = 48.0
MIN_SCORE = 0.5
#: The tracker restarts (after a warm-up) at every multiple of SEGMENT frames, so tracks do not depend on where a run
#: started; WARMUP frames before a restart are tracked and not stored (the One-Euro filter keeps ~12 % of its state
#: after 16 frames at rest, so the restart shows no step above the landmark jitter).
SEGMENT = 64
WARMUP = 16
#: The source-lighting prior is warmed up on the last frames of the warm-up only (it converges in a few frames).
WARMUP_SH = 6
#: New tracks reach the disk every FLUSH_EVERY frames (kill -9 loses at most that many).
FLUSH_EVERY = 8
#: After a gap, a face counts as the followed person when its centre is within this many face sizes of where the
#: person was last seen (plus GAP_GROWTH per missing frame) and its size within SIZE_RATIO of theirs.
REIDENTIFY_SIZES = 0.6
GAP_GROWTH = 0.02
SIZE_RATIO = 1.5
#: The source light is fitted on the crop reduced to this side (area mean in linear light): on 30 frames each of
#: lp_s18, lp_d3 and lp_d13 it took 54/42/60 ms CPU a frame instead of 71/60/80 at the estimate's own 256², with SH
#: within 0.5/0.5/1.3 % of the 256² fit's norm and front-hemisphere irradiance within 0.3/0.2/0.8 % (the 256² fit's
#: own frame-to-frame step: 0.7/2.2/0.8 %). Nothing was tuned on these clips: 128 is the next power of two down.
SOURCE_FIT_SIZE = 128
ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


@dataclass
class FrameTrack:
    """Tracking of one frame. ``points`` are smoothed landmarks in frame px; ``crop_matrix`` maps frame -> crop."""

    index: int
    status: str
    points: np.ndarray | None = None  # (478, 3) float32
    crop_matrix: np.ndarray | None = None  # (2, 3) float64
    camera: np.ndarray | None = None  # (25,) float32 EG3D label
    source_sh: np.ndarray | None = None  # (9, 3) radiance SH (DPR convention) or None
    score: float = 0.0
    reproj_px: float = float("nan")
    crop_size: int = align.CROP_SIZE
    _mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def tracked(self) -> bool:
        """True when the frame has a face to relight (any status but no_face and other_face)."""
        return self.status not in UNTRACKED and self.points is not None

    @property
    def transform(self) -> align.CropTransform:
        return align.CropTransform(np.asarray(self.crop_matrix, dtype=np.float64), self.crop_size)

    def points_crop(self) -> np.ndarray:
        """Landmarks in crop px (z scaled like x and y)."""
        return self.transform.to_crop(self.points)

    def camera_c2w(self) -> np.ndarray:
        return camera.split_label(self.camera)[0]

    def crop_mask(self) -> np.ndarray:
        """Feathered head/face mask in crop space (computed once per track)."""
        if self._mask is None:
            self._mask = align.face_mask(self.points_crop(), self.crop_size)
        return self._mask

    # -- array form for the cache ----------------------------------------------------------------------------------
    @staticmethod
    def stack_arrays(tracks: list["FrameTrack"]) -> dict[str, np.ndarray]:
        n = len(tracks)
        npts = next((len(t.points) for t in tracks if t.points is not None), lmk.MP_NUM_POINTS)
        out = {"index": np.array([t.index for t in tracks], dtype=np.int64),
               "status": np.array([_STATUS_INDEX[t.status] for t in tracks], dtype=np.int8),
               "points": np.full((n, npts, 3), np.nan, dtype=np.float32),
               "crop_matrix": np.full((n, 2, 3), np.nan, dtype=np.float64),
               "camera": np.full((n, 25), np.nan, dtype=np.float32),
               "source_sh": np.full((n, 9, 3), np.nan, dtype=np.float32),
               "score": np.array([t.score for t in tracks], dtype=np.float32),
               "reproj_px": np.array([t.reproj_px for t in tracks], dtype=np.float32),
               "crop_size": np.array([t.crop_size for t in tracks], dtype=np.int32)}
        for i, t in enumerate(tracks):
            for name in ("points", "crop_matrix", "camera", "source_sh"):
                value = getattr(t, name)
                if value is not None:
                    out[name][i] = value
        return out

    @staticmethod
    def check_arrays(arrays: dict[str, np.ndarray]) -> None:
        """Raise ValueError unless ``arrays`` is a well-formed chunk (shapes agree, statuses known)."""
        n = len(arrays["index"])
        shapes = {"status": (n,), "crop_matrix": (n, 2, 3), "camera": (n, 25), "source_sh": (n, 9, 3),
                  "score": (n,), "reproj_px": (n,), "crop_size": (n,)}
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise ValueError(f"{name} has shape {arrays[name].shape}, expected {shape}")
        if arrays["points"].ndim != 3 or arrays["points"].shape[0] != n or arrays["points"].shape[2] != 3:
            raise ValueError(f"points has shape {arrays['points'].shape}")
        if n and (arrays["status"].min() < 0 or arrays["status"].max() >= len(STATUSES)):
            raise ValueError("unknown status code")

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], row: int) -> "FrameTrack":
        status = STATUSES[int(arrays["status"][row])]

        def opt(name: str, dtype: type) -> np.ndarray | None:
            value = arrays[name][row]
            return None if np.isnan(value).any() else np.array(value, dtype=dtype)

        return FrameTrack(int(arrays["index"][row]), status, opt("points", np.float32),
                          opt("crop_matrix", np.float64), opt("camera", np.float32), opt("source_sh", np.float64),
                          float(arrays["score"][row]), float(arrays["reproj_px"][row]), int(arrays["crop_size"][row]))


class FaceTracker:
    """Frame-by-frame tracker with smoothing and same-person following. Feed frames in order; ``reset`` on a jump."""

    def __init__(self, backend: lmk.LandmarkBackend | None = None, fps: float = 30.0,
                 smoothing: float | None = None, estimate_sh: bool = True) -> None:
        self.backend = backend or lmk.MediapipeBackend()
        self._own_backend = backend is None
        self.strength = sm.DEFAULT_STRENGTH if smoothing is None else float(smoothing)
        self.fps = fps
        self._points_filter = sm.OneEuroFilter(sm.LANDMARK_PX, fps, self.strength)
        self._pose_filter = sm.OneEuroFilter(sm.POSE_RAD, fps, self.strength)
        self._template = pose.load_template()
        self._estimate_sh = estimate_sh
        self._sh_warned = False
        self.last_crop_linear: tuple[int, np.ndarray] | None = None  # the crop the source-light estimate used
        self.reset()

    def reset(self) -> None:
        """Forget the previous frames (a seek, a cut, a segment restart), the followed person included."""
        self.backend.reset()
        self._forget()
        self._anchor: lmk.FaceLandmarks | None = None  # the followed person where last seen (survives gaps)
        self._gap = 0

    def _forget(self) -> None:
        self._points_filter.reset()
        self._pose_filter.reset()
        self._prev_face: lmk.FaceLandmarks | None = None
        self._prev_pnp: tuple[np.ndarray, np.ndarray] | None = None
        self._prev_sh: np.ndarray | None = None

    def close(self) -> None:
        if self._own_backend:
            self.backend.close()

    @staticmethod
    def _distance(face: lmk.FaceLandmarks, ref: lmk.FaceLandmarks) -> float:
        return float(np.linalg.norm(face.centre - ref.centre)) / max(ref.size, 1.0) \
            + abs(np.log(max(face.size, 1.0) / max(ref.size, 1.0)))

    def _choose(self, faces: list[lmk.FaceLandmarks]) -> lmk.FaceLandmarks | None:
        """The followed person's face, or None when every face is someone else (the person is hidden).

        Without a person yet: the largest face. Right after a tracked frame: the nearest face (the person moves
        little in a frame). After a gap (the person was hidden or not found): only a face near where the person was
        last seen, of a similar size; the other person standing beside them is not taken in their place."""
        ref = self._prev_face or self._anchor
        if ref is None:
            return max(faces, key=lambda f: f.size)
        best = min(faces, key=lambda f: self._distance(f, ref))
        jump = float(np.linalg.norm(best.centre - ref.centre))
        if self._prev_face is not None and jump <= 0.5 * max(ref.size, 1.0):
            return best
        radius = (REIDENTIFY_SIZES + GAP_GROWTH * self._gap) * max(ref.size, 1.0)
        ratio = max(best.size, 1.0) / max(ref.size, 1.0)
        if jump <= radius and 1 / SIZE_RATIO <= ratio <= SIZE_RATIO:
            return best
        return None

    def track(self, index: int, frame_rgb: np.ndarray) -> FrameTrack:
        """Track one RGB uint8 frame; never raises for a frame without (usable) face."""
        faces = self.backend.detect(frame_rgb)
        face = self._choose(faces) if faces else None
        if face is None:
            self._forget()
            self._gap += 1
            return FrameTrack(index, "other_face" if faces else "no_face")
        self._gap = 0
        self._anchor = face
        prev = self._prev_face
        if prev is not None and (np.linalg.norm(face.centre - prev.centre) > 0.5 * prev.size
                                 or len(face.points) != len(prev.points)):
            self._forget()  # a cut or a different person: do not smooth across it
        self._prev_face = face
        unit = max(face.size, 1.0) / 200.0  # speeds measured in "200-px face" units
        points = self._points_filter(face.points, unit=unit).astype(np.float32)
        transform = align.CropTransform.from_landmarks(points)
        points_crop = transform.to_crop(points)
        reproj = float("nan")
        label = None
        if len(points) == lmk.MP_NUM_POINTS:
            rvec, tvec, reproj = pose.solve_pnp(points_crop, self._template, self._prev_pnp)
            self._prev_pnp = (rvec, tvec)
            view = self._pose_filter(pose.view_params(rvec, tvec))
            c2w = pose.cam2world_from_view(view)
            label = camera.make_label(c2w)
        else:  # other layouts (face_alignment's 68 points) have no template: frontal camera, flagged below
            c2w = camera.split_label(camera.frontal_label())[0]
            label = camera.frontal_label()
        low = (face.score < MIN_SCORE or face.size < MIN_FACE_PX or not np.isfinite(reproj)
               or reproj > MAX_REPROJ_PX)
        status = "low_confidence" if low else ("several_faces" if len(faces) > 1 else "tracked")
        track = FrameTrack(index, status, points, transform.matrix, label, None, face.score, reproj)
        if self._estimate_sh:
            track.source_sh = self._source_sh(track, frame_rgb, points_crop, c2w)
        return track

    def _source_sh(self, track: FrameTrack, frame_rgb: np.ndarray, points_crop: np.ndarray,
                   c2w: np.ndarray) -> np.ndarray | None:
        crop_linear = colour.uint8_srgb_to_linear(track.transform.warp(frame_rgb))
        self.last_crop_linear = (track.index, crop_linear)  # analysis hands it to the engine: no second warp
        import cv2

        side = SOURCE_FIT_SIZE
        scale = side / crop_linear.shape[1]
        fit_crop = cv2.resize(crop_linear, (side, side), interpolation=cv2.INTER_AREA)
        fit_points = np.asarray(points_crop, dtype=np.float64).copy()
        fit_points[:, :2] = (fit_points[:, :2] + 0.5) * scale - 0.5  # pixel centres stay centres
        fit_points[:, 2] *= scale
        try:
            # The previous frame's SH as prior removes most frame-to-frame lighting jitter (docs/lighting.md). The
            # prior and the fit live in the plain per-channel space; what is stored is white-balanced
            # (lighting.estimate.white_balance). A balanced prior would pull each new raw fit toward other channel
            # gains, and the estimate would drift for frames (measured: steps of 17-47 % of its norm on lp_d3).
            sh = np.asarray(estimate_frame_sh(fit_crop, fit_points, c2w, prior=self._prev_sh,
                                              white_balanced=False), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - a failed estimate must not lose the track; said once
            (log.debug if self._sh_warned else log.warning)(
                "source lighting estimate failed on frame %d (%s); later frames keep trying", track.index, exc)
            self._sh_warned = True
            return None
        if sh.shape != (9, 3) or not np.isfinite(sh).all():
            log.warning("source lighting estimate of frame %d has shape %s or non-finite values; dropped",
                        track.index, sh.shape)
            return None
        self._prev_sh = sh
        return white_balance(sh)


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs [start, stop) of sorted indices."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def segment_plan(todo: list[int]) -> list[tuple[int, int]]:
    """For sorted frames still to track: (segment start, stop) pairs, one per segment with work, in order.

    Each is tracked from ``max(0, start - WARMUP)`` (the warm-up) to ``stop``; frames of [start, stop) already cached
    are tracked again (the state needs them) but not stored."""
    plan: dict[int, int] = {}
    for i in todo:
        start = (i // SEGMENT) * SEGMENT
        plan[start] = max(plan.get(start, 0), i + 1)
    return sorted(plan.items())


FrameFn = Callable[[FrameTrack, np.ndarray, "FaceTracker | None"], None]


def track_video(path: str | os.PathLike, cache=None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None, smoothing: float | None = None,
                frames: Iterable[int] | None = None, backend: lmk.LandmarkBackend | None = None,
                estimate_sh: bool = True, on_frame: FrameFn | None = None,
                visit: Iterable[int] = (), reader=None) -> list[FrameTrack]:
    """Track ``frames`` (default: all) of the clip at ``path``, streaming; returns their FrameTracks in order.

    With a ``cache`` (``blender_relight.cache.ClipCache``), frames already there are read back, new ones are stored
    every :data:`FLUSH_EVERY` frames, and ``cancel()`` returning True raises ``Cancelled`` after what is finished has
    been saved. ``progress(done, total)`` is called after each frame of work.

    ``on_frame(track, frame_rgb, tracker)`` is called, in the same pass, for each newly tracked frame and for each
    frame of ``visit`` (already tracked frames that need their decoded pixels, e.g. for the engine's per-frame
    encode): analysis is one decode. ``tracker.last_crop_linear`` holds the frame's linear crop when it was made.
    """
    from blender_relight.video import VideoReader  # noqa: PLC0415

    own_reader = reader is None
    reader = VideoReader(path) if own_reader else reader
    try:
        count = reader.frame_count if cache is None else min(reader.frame_count, cache.frame_count)
        wanted = sorted(set(range(count) if frames is None else (int(i) for i in frames)))
        wanted = [i for i in wanted if 0 <= i < count]
        if cache is not None:
            cache.set_settings(tracking_settings(smoothing, getattr(backend, "name", "mediapipe")))
            cache.verify_tracks(wanted)  # a truncated or corrupt chunk is found now, and its frames redone below
            todo = cache.missing(wanted)
        else:
            todo = wanted
        wanted_set = set(wanted)
        visit_set = {int(i) for i in visit if 0 <= int(i) < count} - set(todo)
        plan = segment_plan(todo)
        # Progress counts every frame this pass tracks or visits: warm-ups and the frames a segment needs before the
        # first missing one (a resume re-tracks its segment from the start, for the exact state) included.
        total = sum(stop - max(0, start - WARMUP) for start, stop in plan) + len(visit_set)
        state = {"done": 0, "new": 0}
        results: dict[int, FrameTrack] = {}
        todo_set = set(todo)

        def check_cancel(index: int) -> None:
            if cancel is not None and cancel():
                if cache is not None:
                    cache.flush()
                raise Cancelled(f"{Path(path).name}: stopped at frame {index}; {state['done']} of {total} frames "
                                "were done" + (" and are cached; run again to resume" if cache is not None else ""))

        def store(track: FrameTrack) -> None:
            if cache is not None:
                cache.put_track(track)
                state["new"] += 1
                if state["new"] % FLUSH_EVERY == 0:
                    cache.flush()
            else:
                results[track.index] = track

        def tick() -> None:
            state["done"] += 1
            if progress is not None:
                progress(state["done"], total)

        tracker = FaceTracker(backend, reader.fps, smoothing, estimate_sh) if todo else None
        try:
            ring: list[tuple[int, np.ndarray]] = []  # the last WARMUP decoded frames: the next segment's warm-up
            for seg_start, stop in plan:
                warm = max(0, seg_start - WARMUP)
                tracker.reset()
                replay = [(i, f) for i, f in ring if warm <= i < seg_start]
                if replay and replay[0][0] == warm and ring[-1][0] == seg_start - 1:
                    source_start = seg_start  # the reader is there already: no seek, no decode twice
                else:
                    replay, source_start = [], warm
                last = source_start - 1

                def frames_in_order():
                    yield from replay
                    yield from reader.frames(source_start, stop)

                for index, frame in frames_in_order():
                    check_cancel(index)
                    tracker._estimate_sh = estimate_sh and (index >= seg_start - WARMUP_SH)
                    track = tracker.track(index, frame)
                    tick()
                    if index > last:
                        last = index
                        ring.append((index, frame))
                        del ring[:-WARMUP]
                    if index < seg_start:
                        continue  # warm-up
                    if index in todo_set:
                        store(track)
                        if on_frame is not None:
                            on_frame(track, frame, tracker)
                    elif cache is not None and not cache.is_done(index):
                        store(track)  # tracked for the state anyway: kept, so a later ask finds it
                    elif index in visit_set:
                        visit_set.discard(index)
                        total -= 1  # visited within the tracking pass: no separate visit
                        if on_frame is not None:
                            on_frame(cache.get_track(index), frame, None)
                    if cache is None and index in wanted_set:
                        results.setdefault(index, track)
                for index in range(max(last + 1, seg_start), stop):  # the container promised frames that do not decode
                    if index in todo_set:
                        store(FrameTrack(index, "no_face"))
                for _ in range(last + 1, stop):
                    tick()
            ring.clear()
            for start, stop in _runs(sorted(visit_set)):  # tracked frames that still need their pixels
                for index, frame in reader.frames(start, stop):
                    check_cancel(index)
                    if on_frame is not None:
                        on_frame(cache.get_track(index), frame, None)
                    tick()
        finally:
            if tracker is not None:
                tracker.close()
            if cache is not None:
                cache.flush()
    finally:
        if own_reader:
            reader.close()
    if cache is None:
        return [results.get(i, FrameTrack(i, "no_face")) for i in wanted]
    return [t if t is not None else FrameTrack(i, "no_face") for i, t in ((i, cache.get_track(i)) for i in wanted)]


def tracking_settings(smoothing: float | None, backend_name: str = "mediapipe") -> dict:
    """What the cached tracks depend on (a change invalidates them)."""
    return {"backend": backend_name, "smoothing": sm.DEFAULT_STRENGTH if smoothing is None else float(smoothing),
            "crop_size": align.CROP_SIZE, "template": pose.load_template().provenance.get("built", ""),
            "source_light": SOURCE_LIGHT_CONVENTION,  # the colour assumption of the cached source SH
            "source_fit": SOURCE_FIT_SIZE,
            # tracks made another way (the old per-frame path, other segments) are not these: redone
            "stream": f"segments {SEGMENT}, warm-up {WARMUP}, sh warm-up {WARMUP_SH}"}
