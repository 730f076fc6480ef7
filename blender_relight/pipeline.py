"""The way a frame travels, for one clip: decode -> track -> crop -> (encode) -> relight -> uncrop -> write.

``ClipSession`` is what the CLI, the Blender operators and the evaluation call. It streams frames (never a whole video
in memory), caches everything per clip (tracking, encoded planes) so a second run or a scrub never redoes work,
reports progress, can be cancelled between frames (what is finished stays cached), and passes frames without a
tracked face through untouched, saying so.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blender_relight import colour
from blender_relight.engines import RelightEngine, make_engine
from blender_relight.errors import Cancelled, NoFaceError, RelightError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
PASS_NAMES = ("albedo", "normal", "depth", "shading", "alpha")
#: Frames whose engine prepare (encode) may wait behind the tracker during analysis.
PREPARE_AHEAD = 2
#: Decoded frames a ClipSession keeps, in bytes (a scrub back over frames just decoded decodes nothing again), and
#: how many frames before the target a jump back also decodes. A jump back is a seek, which in long-GOP video decodes
#: from the keyframe before the target anyway (130-650 ms CPU on the dev clips, against 1-5 ms a frame read in
#: order), so the frames just before it cost little more and the next steps back of a scrub find them here. Where a
#: seek is cheap (all-intra or short-GOP video: a seek under BACK_READ reads' time), only the target is decoded.
DECODED_BYTES = 64 << 20
BACK_READ = 10


def default_cache_root() -> Path:
    """Per-user cache root (overridable with BLENDER_RELIGHT_CACHE); never inside the installed package."""
    env = os.environ.get("BLENDER_RELIGHT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "blender-relight"


@dataclass
class ClipInfo:
    """The source clip's facts."""

    path: Path
    frame_count: int
    fps: float
    width: int
    height: int


@dataclass
class RelitFrame:
    """A relit full frame (linear RGB float32), its passes at full-frame size (a mapping that pastes each pass into
    the frame when it is first read), and the frame's tracking status."""

    image: np.ndarray
    passes: Mapping[str, np.ndarray]
    status: str


@dataclass
class JobSummary:
    """What a long job did, as lines for a person."""

    title: str
    counts: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        return "\n".join([f"{self.title}: {counts}" if counts else self.title, *self.lines])


def face_switches(tracks) -> list[int]:
    """Frames where the tracked face is far from the previous tracked frame's (more than 0.6 of its size, over at
    most a short gap): where the tracker may have taken another person, e.g. when a segment restarted while the
    followed one was hidden. Said in the summaries, so a switch is never silent."""
    out, prev = [], None
    for t in tracks:
        if t is None or not t.tracked:
            continue
        pts = np.asarray(t.points, dtype=np.float64)[:, :2]
        centre, size = pts.mean(axis=0), float(np.ptp(pts, axis=0).max())
        if prev is not None and t.index - prev[0] <= 64 and np.linalg.norm(centre - prev[1]) > 0.6 * max(prev[2], 1):
            out.append(t.index)
        prev = (t.index, centre, size)
    return out


class ClipSession:
    """One portrait clip with its cache and a relight engine."""

    def __init__(self, video_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 engine: str | RelightEngine = "auto", provider: str = "auto",
                 weights_dir: str | os.PathLike | None = None, smoothing: float | None = None,
                 landmarks: str = "mediapipe") -> None:
        from blender_relight.cache import ClipCache
        from blender_relight.video import VideoReader

        path = Path(video_path)
        if not path.exists():
            raise RelightError(f"{path}: file not found; check the path (was the video moved or deleted?)")
        with VideoReader(path) as reader:
            # A truncated file's header promises frames that never decode: count them once (kept in the cache).
            self.cache = ClipCache.for_video(path, Path(cache_dir) if cache_dir else default_cache_root(),
                                             frame_count=reader.frame_count, count_decodable=reader.count_decodable)
            self.info = ClipInfo(path, self.cache.frame_count, reader.fps, reader.width, reader.height)
            #: Facts about the input a person must hear (a truncated file, a dropped alpha): in every summary; the CLI
            #: prints them when the clip opens, the Blender UI should show them.
            self.notes: list[str] = []
            if self.cache.frame_count < reader.frame_count:
                note = (f"{path.name}: its header promises {reader.frame_count} frames but only "
                        f"{self.cache.frame_count} could be decoded (a truncated file?); frames "
                        f"{self.cache.frame_count}-{reader.frame_count - 1} are treated as absent")
                log.info("%s", note)
                self.notes.append(note)
            if reader.alpha_dropped:
                note = f"{path.name}: its alpha channel is not relit; the output frames are opaque RGB"
                log.info("%s", note)
                self.notes.append(note)
        self.engine: RelightEngine = make_engine(engine, provider, weights_dir) if isinstance(engine, str) else engine
        if hasattr(self.engine, "frame_source"):  # the neural engine rebuilds its temporal window from earlier frames
            self.engine.frame_source = self._window_frame
        self.smoothing = smoothing
        self.landmarks = landmarks
        if landmarks != "mediapipe":
            from blender_relight.tracking.landmarks import check_backend

            check_backend(landmarks)  # an unavailable optional backend is explained now, not mid-job
        self._reader = None
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()  # the last decoded frames (DECODED_BYTES)
        self._last_read = -1
        self._seek_s: float | None = None  # the last jump back's seek and first decode (s)
        self._step_s: float | None = None  # the last frame read in order (s)
        self._linear_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        from blender_relight.body import BodyRelight

        self._body = BodyRelight()

    # -- frames ------------------------------------------------------------------------------------------------
    def _frame(self, index: int) -> np.ndarray:
        """Decoded RGB uint8 frame ``index``. The last frames decoded are kept (up to :data:`DECODED_BYTES`): a light
        change decodes nothing, and a jump back also decodes the :data:`BACK_READ` frames before the target (the
        seek decodes from the keyframe before them anyway), so a scrub back finds its next frames here."""
        from blender_relight.video import VideoReader

        frame = self._decoded.get(index)
        if frame is not None:
            self._decoded.move_to_end(index)
            return frame
        if not 0 <= index < self.info.frame_count:
            raise RelightError(f"{self.info.path}: frame {index} is out of range (0..{self.info.frame_count - 1})")
        if self._reader is None:
            self._reader = VideoReader(self.info.path)
        import time

        back = 0
        if index < self._last_read and (self._seek_s is None or self._step_s is None
                                        or self._seek_s > BACK_READ * self._step_s):
            # a jump back where seeks are dear: as many frames before it as the budget keeps
            back = max(min(BACK_READ, DECODED_BYTES // max(3 * self.info.width * self.info.height, 1) - 1, index), 0)
        t0 = time.perf_counter()
        for i, decoded in self._reader.frames(index - back, index + 1):
            if i == index - back:
                took = time.perf_counter() - t0
                if index < self._last_read:
                    self._seek_s = took
                elif index == self._last_read + 1:
                    self._step_s = took
            self._keep_decoded(i, decoded)
        frame = self._decoded.get(index)
        if frame is None:
            raise RelightError(f"{self.info.path}: frame {index} cannot be decoded (truncated clip?); re-export it")
        self._last_read = index
        return frame

    def _keep_decoded(self, index: int, frame: np.ndarray) -> np.ndarray:
        self._decoded[index] = frame
        self._decoded.move_to_end(index)
        while len(self._decoded) > 1 and sum(f.nbytes for f in self._decoded.values()) > DECODED_BYTES:
            self._decoded.popitem(last=False)
        return frame

    def close(self) -> None:
        """Release the video handle (the cache stays on disk)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- analysis ----------------------------------------------------------------------------------------------
    def _track_video(self, frames, progress=None, cancel=None, **kwargs):
        from blender_relight.tracking.landmarks import make_backend
        from blender_relight.tracking.tracker import track_video

        backend = None if self.landmarks == "mediapipe" else make_backend(self.landmarks)
        try:
            return track_video(self.info.path, cache=self.cache, frames=frames, progress=progress, cancel=cancel,
                               smoothing=self.smoothing, backend=backend, **kwargs)
        finally:
            if backend is not None:
                backend.close()

    def track(self, frames: Iterable[int] | None = None, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None) -> JobSummary:
        """Track faces on ``frames`` (default: all), resuming from the cache; NoFaceError if none has a face."""
        tracks = self._track_video(frames, progress, cancel)
        if tracks and not any(t.tracked for t in tracks):
            what = "the image" if self.info.frame_count == 1 else f"any of the {len(tracks)} frames asked for"
            raise NoFaceError(f"{self.info.path}: no face found in {what}; use a portrait where the face is "
                              "visible, or choose other frames")
        return self._status_summary(f"tracked {self.info.path.name}", tracks)

    def ensure_tracked(self, frames: Iterable[int], progress: ProgressFn | None = None,
                       cancel: CancelFn | None = None) -> int:
        """Track whichever of ``frames`` the cache lacks, in one streaming pass (segment warm-ups included), so
        they get the same tracks an `analyse` of the whole clip gives; returns how many were tracked. Frames
        without a face are recorded as such: this never raises for them."""
        frames = list(frames)
        self.cache.verify_tracks(frames)
        missing = self.cache.missing(frames)
        if missing:
            self._track_video(missing, progress, cancel)
        return len(missing)

    def analyse(self, frames: Iterable[int] | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> JobSummary:
        """Track and let the engine prepare (encode) every tracked frame, in one streaming pass: each frame is
        decoded and warped once. Frames already done come from the cache; a clip analysed before returns at once
        and says so."""
        from blender_relight import colour as _colour

        frames = sorted(set(range(self.info.frame_count) if frames is None else
                            (int(i) for i in frames if 0 <= int(i) < self.info.frame_count)))
        needs = getattr(self.engine, "needs_prepare", None)

        def needs_prepare(index: int) -> bool:
            """Whether an already tracked frame still needs the engine's prepare (an engine that cannot say gets
            it on newly tracked frames only, so a re-analysis stays instant)."""
            return bool(needs(index, self.cache)) if needs is not None else False

        self.cache.verify_tracks(frames)
        missing = set(self.cache.missing(frames))
        visit = []
        for i in frames:
            if i in missing or not needs_prepare(i):
                continue
            track = self.cache.get_track(i)
            if track is None:
                missing.add(i)
            elif track.tracked:
                visit.append(i)
        title = f"analysed {self.info.path.name} with the {self.engine.name} engine"
        if cancel is not None and cancel():
            raise Cancelled(f"analysis of {self.info.path.name} stopped before it started; a rerun resumes")
        if not missing and not visit:
            if progress:
                progress(len(frames), len(frames))
            summary = self._status_summary(title, [self.cache.get_track(i) for i in frames])
            summary.lines.insert(0, f"{len(frames)} frames already analysed (cache): nothing to do")
            return summary
        prepared = [0]
        # The engine's encode (ONNX Runtime, which releases the GIL) runs on one worker thread while the next frame
        # is decoded and tracked; at most PREPARE_AHEAD frames wait, so memory stays bounded, and an error of the
        # encode surfaces in this thread.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relight-prepare")
        in_flight: deque = deque()

        def on_frame(track, frame, tracker) -> None:
            # Newly tracked frames (tracker given) always; visited frames were chosen because they need it.
            if track is None or not track.tracked:
                return
            made = getattr(tracker, "last_crop_linear", None)
            crop = made[1] if made is not None and made[0] == track.index else \
                _colour.uint8_srgb_to_linear(track.transform.warp(frame))
            in_flight.append(pool.submit(self.engine.prepare, track.index, crop, track, self.cache))
            while len(in_flight) > PREPARE_AHEAD:
                in_flight.popleft().result()
            prepared[0] += 1

        try:
            tracks = self._track_video(frames, progress, cancel, on_frame=on_frame, visit=visit)
        finally:
            try:
                while in_flight:  # a cancel or an error still keeps the frames already being encoded
                    in_flight.popleft().result()
            finally:
                pool.shutdown(wait=True)
        summary = self._status_summary(title, tracks)
        done_before = len(frames) - len(missing)
        summary.lines.insert(0, f"{len(missing)} frames tracked, {prepared[0]} prepared for the engine, "
                                f"{done_before} tracked before (cache)")
        return summary

    def _status_summary(self, title: str, tracks) -> JobSummary:
        counts: dict[str, int] = {}
        missing, others = [], []
        for t in tracks:
            status = "not analysed" if t is None else t.status
            counts[status] = counts.get(status, 0) + 1
            if t is not None and not t.tracked:
                (others if t.status == "other_face" else missing).append(t.index)
        summary = JobSummary(title, {k.replace("_", " "): v for k, v in counts.items()})

        def shown(items: list[int]) -> str:
            return ", ".join(map(str, items[:12])) + (" ..." if len(items) > 12 else "")

        if missing:
            summary.lines.append(f"frames passed through untouched (no usable face): {shown(missing)}")
        if others:
            summary.lines.append(f"frames where the followed person is hidden and another face shows (passed "
                                 f"through, the other face is not relit in their place): {shown(others)}")
        switches = face_switches(tracks)
        if switches:
            summary.lines.append(f"the followed face jumps to another place at frames {shown(switches)} (another "
                                 "person, or a cut): check those frames")
        summary.lines.extend(self.notes)
        repaired = self.cache.repair_text()
        if repaired:
            summary.lines.append(repaired)
        summary.lines.append(f"cache: {self.cache.root}")
        return summary

    def frame_track(self, index: int):
        """The cached tracking of frame ``index``; if the cache lacks it, the rest of its segment is tracked now,
        streaming, with the same warm-up, smoothing and lighting prior as an analysis (never one frame alone)."""
        from blender_relight.tracking.tracker import SEGMENT

        track = self.cache.get_track(index)
        if track is None and 0 <= index < self.info.frame_count:
            stop = min((index // SEGMENT + 1) * SEGMENT, self.info.frame_count)
            self.ensure_tracked(range(index, stop))
            track = self.cache.get_track(index)
        return track

    def frame_status(self, index: int) -> str:
        track = self.cache.get_track(index)
        return "not analysed" if track is None else track.status

    def source_camera(self, index: int) -> np.ndarray | None:
        """The frame's EG3D camera label (head fixed at the origin, camera moving), or None without a face."""
        track = self.frame_track(index)
        return None if track is None or not track.tracked else np.asarray(track.camera, dtype=np.float64)

    def head_pose(self, index: int) -> np.ndarray | None:
        """The head's pose relative to the source camera as a 4x4 (EG3D world -> camera, OpenCV axes), or None.

        Equivalent view of the same fact as :meth:`source_camera`: the inverse of cam2world. Blender places its
        head anchor with it relative to the scene camera.
        """
        label = self.source_camera(index)
        if label is None:
            return None
        from blender_relight import camera

        return np.linalg.inv(camera.split_label(label)[0])

    def _window_frame(self, index: int):
        """(crop, track) of an earlier frame for the neural engine's temporal window; None without a face."""
        track = self.cache.get_track(index)
        if track is None or not track.tracked:
            return None
        return self.crop_linear(index, track), track

    def crop_linear(self, index: int, track=None) -> np.ndarray:
        """The frame's EG3D 512² crop in linear RGB."""
        track = self.frame_track(index) if track is None else track
        return colour.uint8_srgb_to_linear(track.transform.warp(self._frame(index)))

    # -- relighting --------------------------------------------------------------------------------------------
    def relight_frame(self, index: int, lighting: "SceneLighting | np.ndarray",
                      camera_label: np.ndarray | None = None, with_passes: bool = False) -> RelitFrame:
        """Relight frame ``index`` under ``lighting`` (a SceneLighting, or RGB SH (9, 3); gray (9,) accepted), seen
        from ``camera_label`` or the source.

        A frame with no tracked face comes back unchanged with its status, never an exception.
        """
        from blender_relight.lighting.scene import SceneLighting

        lighting = SceneLighting.coerce(lighting)
        track = self.frame_track(index)
        if track is None or not track.tracked:
            frame_linear = colour.uint8_srgb_to_linear(self._frame(index))
            status = "not analysed" if track is None else track.status
            return RelitFrame(frame_linear, self._empty_passes(frame_linear) if with_passes else {}, status)
        frame_linear, crop = self._linear_frame_and_crop(index, track)
        relit = self.engine.relight(index, crop, track, lighting, camera_label, self.cache)
        # Source view: paste only the change, so the frame keeps its full-resolution detail; a new view replaces.
        from blender_relight.novel_view.views import is_filmed_view

        filmed = camera_label is None or is_filmed_view(track.camera, camera_label)
        reference = crop if filmed or not self.engine.supports_novel_view else None
        image = track.transform.unwarp(relit.image, frame_linear, relit.alpha, reference=reference)
        if track.source_sh is not None:  # neck, shoulders and chest follow the light too (``body``)
            # how much of each pixel the head's relight changed, and what the body's change multiplies: at the
            # filmed view the engines' images are already blended by their alpha and the ratio paste blends by it
            # again, over the frame; a new view replaces the crop (moved head and surroundings) and relights only
            # the head within it
            if reference is not None:
                head, base = relit.alpha * relit.alpha, frame_linear
            else:
                reach = relit.alpha if relit.relight_alpha is None else relit.relight_alpha
                head, base = relit.alpha * reach, image  # body.apply reads base before it adds
            image = self._body.apply(index, image, base, self._frame(index), track.transform, head,
                                     track.camera, track.source_sh, lighting.total_sh())
        passes: Mapping[str, np.ndarray] = {}
        if with_passes:
            from blender_relight.engines import LazyPasses

            def uncropped(name: str) -> np.ndarray:
                crop_pass = relit.passes[name]
                channels = crop_pass.shape[2] if crop_pass.ndim == 3 else 1
                return track.transform.unwarp(crop_pass, np.zeros(frame_linear.shape[:2] + (channels,), np.float32),
                                              relit.alpha, in_place=True)

            # The standard passes, then whatever else the engine gives (the geometry engine's per-light
            # light_<name>_diffuse / _specular / _shadow and its specular), which the multilayer EXR carries; each
            # is pasted into the frame when first read (a PNG sequence with passes reads the standard five only).
            names = [*(n for n in PASS_NAMES if n in relit.passes), *(n for n in relit.passes if n not in PASS_NAMES)]
            passes = LazyPasses({}, {name: (lambda name=name: uncropped(name)) for name in names})
        return RelitFrame(image.astype(np.float32, copy=False), passes, track.status)

    def _linear_frame_and_crop(self, index: int, track) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index`` and its crop in linear RGB, kept for the last frame: a light change or a camera move on
        the same frame decodes, linearises and warps nothing again."""
        if self._linear_cache is not None and self._linear_cache[0] == index:
            return self._linear_cache[1], self._linear_cache[2]
        frame_linear = colour.uint8_srgb_to_linear(self._frame(index))
        crop = self.crop_linear(index, track)
        self._linear_cache = (index, frame_linear, crop)
        return frame_linear, crop

    @staticmethod
    def _empty_passes(frame: np.ndarray) -> dict[str, np.ndarray]:
        h, w = frame.shape[:2]
        return {"albedo": np.zeros((h, w, 3), np.float32), "normal": np.zeros((h, w, 3), np.float32),
                "depth": np.zeros((h, w, 1), np.float32), "shading": np.zeros((h, w, 3), np.float32),
                "alpha": np.zeros((h, w, 1), np.float32)}

    def render_sequence(self, out_dir: Path, frames: Iterable[int] | None = None,
                        light: Callable[[int], np.ndarray] | None = None,
                        camera: Callable[[int], np.ndarray | None] | None = None, passes: bool = False,
                        image_format: str = "png", progress: ProgressFn | None = None,
                        cancel: CancelFn | None = None) -> JobSummary:
        """Relight ``frames`` into ``out_dir`` as ``frame_000000.png`` (+ passes), resuming a finished job's frames:
        ``blender_relight.sequence.render_sequence`` (naming, formats, resume, stale frames) for this clip."""
        from blender_relight.sequence import render_sequence

        return render_sequence(self, out_dir, frames, light=light, camera=camera, passes=passes,
                               image_format=image_format, progress=progress, cancel=cancel)
