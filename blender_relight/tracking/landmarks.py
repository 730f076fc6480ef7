"""Face landmark backends behind one interface: ``backend.detect(frame_rgb) -> list[FaceLandmarks]``.

Why several: mediapipe's face mesh (bundled in its 0.10.21 wheel, 478 3D points, ~2 ms a frame on a CPU) is the
embedded default; face-alignment's FAN (68 points) is an optional second opinion whose weights download on first use,
which is impossible offline, so its absence is detected and explained instead of blocking anything.

Point convention, every backend: ``points`` (N, 3) float32 in frame pixels, x right, y down, z in pixels pointing
away from the camera (mediapipe: z × frame width; relative depth, origin near the face centre).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from blender_relight.errors import ModelFileError, RelightError

log = logging.getLogger(__name__)

# Mediapipe face-mesh indices used across the tracking package (image-left = the subject's right).
MP_EYE_RIGHT_OUTER, MP_EYE_RIGHT_INNER = 33, 133  # subject's right eye (image left)
MP_EYE_LEFT_INNER, MP_EYE_LEFT_OUTER = 362, 263  # subject's left eye (image right)
MP_MOUTH_RIGHT, MP_MOUTH_LEFT = 61, 291  # mouth corners (image left, image right)
MP_IRIS_RIGHT, MP_IRIS_LEFT = 468, 473  # iris centres (refine_landmarks=True only)
MP_NOSE_TIP = 1
MP_NUM_POINTS = 478


@dataclass
class FaceLandmarks:
    """One detected face: points (N, 3) float32 in frame px, bbox (x0, y0, x1, y1) float32, score in 0..1."""

    points: np.ndarray
    bbox: np.ndarray
    score: float
    source: str = "mesh"  # which path found it: "mesh" (full frame) or "small_face" (detector crop), or a backend

    @staticmethod
    def from_points(points: np.ndarray, score: float, source: str) -> "FaceLandmarks":
        pts = np.asarray(points, dtype=np.float32)
        bbox = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], dtype=np.float32)
        return FaceLandmarks(pts, bbox, float(score), source)

    @property
    def size(self) -> float:
        """Face size in px: the larger side of the landmarks' bounding box."""
        return float(max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2], dtype=np.float32)


class LandmarkBackend(Protocol):
    """Anything that finds faces in an RGB uint8 frame. Backends may keep temporal state (video mode)."""

    name: str
    num_points: int

    def detect(self, frame_rgb: np.ndarray) -> list[FaceLandmarks]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def _square_roi(centre: np.ndarray, side: float) -> tuple[float, float, float]:
    return float(centre[0] - side / 2), float(centre[1] - side / 2), float(side)


def _inside(point: np.ndarray, face: "FaceLandmarks", margin: float = 0.25) -> bool:
    """Whether ``point`` lies in ``face``'s landmark box grown by ``margin`` of its size (same face test)."""
    m = margin * face.size
    return bool(face.bbox[0] - m <= point[0] <= face.bbox[2] + m and face.bbox[1] - m <= point[1] <= face.bbox[3] + m)


class MediapipeBackend:
    """mediapipe 0.10.21 face mesh (478 points) with a full-range detector fallback for small faces.

    - Full frame: ``FaceMesh(static_image_mode=False, max_num_faces=mesh_faces, refine_landmarks=True)``; video
      mode tracks from the previous frame's landmarks instead of re-detecting, which is both faster and steadier.
      ``mesh_faces`` defaults to 1: with 2, mediapipe re-runs its detector on every frame that shows fewer than two
      faces (a third slower on 512² clips, see docs/tracking.md), and its extra faces can be hallucinated on blurred
      backgrounds; the second face is found by the recheck below instead. ``max_num_faces`` (default 2) bounds the
      faces returned in all, so several faces are always seen. Extra mesh faces (``mesh_faces`` > 1) must be
      confirmed by the full-range detector.
    - Small faces: mediapipe's mesh finds faces with its short-range detector (faces larger than about a fifth of the
      frame, and often only one of several). The full-range detector (``face_detection``, model_selection=1) looks
      for the faces the mesh did not return: on every frame while no face is found, else every ``recheck_every``
      frames. The mesh then runs on a square crop around each new face (``crop_size`` px), points are mapped back,
      and that crop follows its face on later frames until it is lost.
    - ``score``: the solutions API exposes no per-face mesh score; a face it returns has passed mediapipe's presence
      test (``min_tracking_confidence``), so mesh faces score 1.0 and crop-path faces carry the detector's score.
      The tracker adds its own geometric test (PnP residual) for "low_confidence".
    """

    name = "mediapipe"
    num_points = MP_NUM_POINTS

    def __init__(self, max_num_faces: int = 2, static_image_mode: bool = False, small_faces: bool = True,
                 mesh_faces: int = 1,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 crop_size: int = 320, crop_scale: float = 1.9, recheck_every: int = 10,
                 tile_every: int = 6) -> None:
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as exc:  # pragma: no cover - mediapipe is a hard dependency
            raise RelightError(f"mediapipe is not importable ({exc}); install mediapipe==0.10.21") from exc
        if max_num_faces < 1:
            raise ValueError("max_num_faces must be at least 1")
        self._face_mesh = face_mesh
        self._face_detection = face_detection
        self.max_num_faces = max_num_faces
        self.mesh_faces = max(1, min(int(mesh_faces), max_num_faces))
        self.static_image_mode = static_image_mode
        self.small_faces = small_faces
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self.crop_size = crop_size
        self.crop_scale = crop_scale
        self.recheck_every = max(int(recheck_every), 1)
        self.tile_every = max(int(tile_every), 1)
        self._no_face_run = 0
        self._mesh = self._new_mesh(self.mesh_faces, static_image_mode)
        self._detector = None  # created on the first frame that needs it
        self._crop_meshes: list = []  # one static-mode mesh per crop slot
        self._rois: list[tuple[float, float, float]] = []  # crops that follow faces the full-frame mesh missed
        self._frame_no = 0
        self._last_count = 0

    def _new_mesh(self, faces: int, static: bool):
        return self._face_mesh.FaceMesh(static_image_mode=static, max_num_faces=faces, refine_landmarks=True,
                                        min_detection_confidence=self.min_detection_confidence,
                                        min_tracking_confidence=self.min_tracking_confidence)

    # -- helpers ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _to_points(landmarks, width: int, height: int) -> np.ndarray:
        arr = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32)
        arr[:, 0] *= width
        arr[:, 1] *= height
        arr[:, 2] *= width
        return arr

    def _run_mesh(self, mesh, image: np.ndarray) -> list[np.ndarray]:
        image = np.ascontiguousarray(image)
        image.flags.writeable = False
        result = mesh.process(image)
        if not result.multi_face_landmarks:
            return []
        h, w = image.shape[:2]
        return [self._to_points(lm, w, h) for lm in result.multi_face_landmarks]

    def _detect_boxes(self, image: np.ndarray, x0: int = 0, y0: int = 0) -> list[tuple[np.ndarray, float, float]]:
        if self._detector is None:
            self._detector = self._face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self.min_detection_confidence)
        image = np.ascontiguousarray(image)
        image.flags.writeable = False
        result = self._detector.process(image)
        h, w = image.shape[:2]
        boxes = []
        for det in result.detections or []:
            rb = det.location_data.relative_bounding_box
            side = max(rb.width * w, rb.height * h)
            centre = np.array([(rb.xmin + rb.width / 2) * w + x0, (rb.ymin + rb.height / 2) * h + y0])
            boxes.append((centre, side, float(det.score[0]) if det.score else 0.5))
        return boxes

    def _small_face_boxes(self, frame: np.ndarray, limit: int | None = None,
                          tiles: bool = False) -> list[tuple[tuple, float]]:
        """Full-range detector: ((centre, side), score) boxes in frame px, largest first.

        The detector sees the frame at 192²: on a 1080p frame a face under ~60 px vanishes. With ``tiles`` (used
        while no face is found), 2x2 overlapping tiles of 60% of the frame are searched next (1.7x the detail), then,
        on frames of 1280 px or more, 3x3 tiles of 40% (2.5x).
        """
        boxes = self._detect_boxes(frame)
        h, w = frame.shape[:2]
        # Tile grids (n x n tiles of the given fraction, overlapping), finer while nothing is found.
        for n, frac, min_side in ((2, 0.6, 640), (3, 0.4, 1280)):
            if not tiles or boxes or max(h, w) < min_side:
                break
            th, tw = int(frac * h), int(frac * w)
            for ty in np.linspace(0, h - th, n).astype(int):
                for tx in np.linspace(0, w - tw, n).astype(int):
                    for c, side, sc in self._detect_boxes(frame[ty:ty + th, tx:tx + tw], tx, ty):
                        if all(np.linalg.norm(c - b[0]) > 0.5 * max(side, b[1]) for b in boxes):
                            boxes.append((c, side, sc))
        boxes.sort(key=lambda b: -b[1])
        return [((c, s), sc) for c, s, sc in boxes[: limit or self.max_num_faces + 1]]

    def _mesh_on_crop(self, frame: np.ndarray, roi: tuple[float, float, float], slot: int) -> np.ndarray | None:
        x0, y0, side = roi
        k = self.crop_size / side
        M = np.array([[k, 0.0, -k * x0], [0.0, k, -k * y0]])
        crop = cv2.warpAffine(frame, M, (self.crop_size, self.crop_size), flags=cv2.INTER_AREA if k < 1
                              else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        while len(self._crop_meshes) <= slot:
            # Static mode: the crop moves with the face, so each crop is detected afresh (the face fills it).
            self._crop_meshes.append(self._new_mesh(1, True))
        found = self._run_mesh(self._crop_meshes[slot], crop)
        if not found:
            return None
        pts = found[0]
        pts[:, 0] = pts[:, 0] / k + x0
        pts[:, 1] = pts[:, 1] / k + y0
        pts[:, 2] = pts[:, 2] / k
        return pts

    # -- interface -------------------------------------------------------------------------------------------------
    def detect(self, frame_rgb: np.ndarray) -> list[FaceLandmarks]:
        """Faces in ``frame_rgb`` (H, W, 3) uint8 RGB; [] when none."""
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
        faces: list[FaceLandmarks] = []
        # Video mode can return one face twice (its tracked ROI and a fresh detection): keep the larger of a pair.
        for face in sorted((FaceLandmarks.from_points(p, 1.0, "mesh") for p in self._run_mesh(self._mesh, frame)),
                           key=lambda f: -f.size):
            if not any(_inside(face.centre, f, 0.0) for f in faces):
                faces.append(face)
        if len(faces) > 1:  # extra mesh faces must be confirmed by the detector (the mesh can see faces in blur)
            boxes = self._small_face_boxes(frame, limit=8)
            faces = faces[:1] + [f for f in faces[1:] if any(_inside(c, f, 0.0) for (c, _), _ in boxes)]
        if not self.small_faces:
            return faces
        # Follow the faces found through crops on earlier frames (skip any the full-frame mesh now returns).
        rois, self._rois = self._rois, []
        for roi in rois:
            if len(faces) >= self.max_num_faces:
                break
            centre = np.array([roi[0] + roi[2] / 2, roi[1] + roi[2] / 2])
            if any(_inside(centre, f) for f in faces):
                continue
            pts = self._mesh_on_crop(frame, roi, len(self._rois))
            if pts is not None:
                face = FaceLandmarks.from_points(pts, 1.0, "small_face")
                if not any(_inside(face.centre, f) for f in faces):
                    faces.append(face)
                    self._rois.append(_square_roi(face.centre, face.size * self.crop_scale))
        recheck = (not faces or self.static_image_mode or self._frame_no % self.recheck_every == 0
                   or len(faces) < self._last_count)  # a face was lost: look for it with the full-range detector
        self._frame_no += 1
        if recheck and len(faces) < self.max_num_faces:
            # Tiles cost ~14 detector runs: while no face is seen, search them on every ``tile_every``-th frame.
            tiles = not faces and (self.static_image_mode or self._no_face_run % self.tile_every == 0)
            self._no_face_run = 0 if faces else self._no_face_run + 1
            for (centre, side), score in self._small_face_boxes(frame, tiles=tiles):
                if len(faces) >= self.max_num_faces:
                    break
                if any(_inside(centre, f) for f in faces):
                    continue
                pts = self._mesh_on_crop(frame, _square_roi(centre, side * self.crop_scale * 1.2), len(self._rois))
                if pts is None:
                    continue
                face = FaceLandmarks.from_points(pts, score, "small_face")
                if not any(_inside(face.centre, f) for f in faces):
                    faces.append(face)
                    self._rois.append(_square_roi(face.centre, face.size * self.crop_scale))
        self._last_count = len(faces)
        return faces

    def reset(self) -> None:
        """Forget temporal state (call between clips or after a seek)."""
        self._mesh.close()
        self._mesh = self._new_mesh(self.mesh_faces, self.static_image_mode)
        self._rois = []
        self._frame_no = 0
        self._last_count = 0
        self._no_face_run = 0

    def close(self) -> None:
        self._mesh.close()
        for mesh in self._crop_meshes:
            mesh.close()
        self._crop_meshes.clear()
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self) -> "MediapipeBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- face-alignment (optional) ------------------------------------------------------------------------------------
FAN_BASE_URL = "https://www.adrianbulat.com/downloads/python-fan/"
#: face_alignment >= 1.4 picks its FAN files by torch major.minor, falling back to these for versions it does not list.
_FAN_FILES_DEFAULT = {"3DFAN-4": "3DFAN4-4a694010b9.zip", "depth": "depth-6c4283c0e0.zip"}
_FAN_FILES_BY_TORCH = {"1.6": {"3DFAN-4": "3DFAN4_1.6-ec5cf40a1d.zip", "depth": "depth_1.6-2aa3f18772.zip"}}
_SFD_FILE = "s3fd-619a316812.pth"


def torch_hub_checkpoints() -> Path:
    """Where torch.hub (and so face_alignment) keeps downloaded weights, computed without importing torch."""
    if os.environ.get("TORCH_HOME"):
        home = Path(os.environ["TORCH_HOME"])
    else:
        home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return home / "hub" / "checkpoints"


def fan_weight_files() -> list[str]:
    """File names face_alignment (3D landmarks, SFD detector) will look for in the torch hub cache."""
    try:
        version = ".".join(metadata.version("torch").split(".")[:2])
    except metadata.PackageNotFoundError:
        version = ""
    files = _FAN_FILES_BY_TORCH.get(version, _FAN_FILES_DEFAULT)
    return [files["3DFAN-4"], files["depth"], _SFD_FILE]


def _fan_status() -> tuple[bool, str]:
    if importlib.util.find_spec("face_alignment") is None:
        return False, "face_alignment is not installed (pip install 'blender-relight[face-alignment]')"
    if importlib.util.find_spec("torch") is None:
        return False, "face_alignment needs torch, which is not installed"
    folder = torch_hub_checkpoints()
    missing = [name for name in fan_weight_files() if not (folder / name).is_file()]
    if missing:
        return False, ("FAN weights missing: download " + ", ".join(FAN_BASE_URL + m for m in missing)
                       + f" into {folder}/")
    return True, f"face_alignment with weights in {folder}"


class FaceAlignmentBackend:
    """face-alignment's 3D FAN (68 points) with its SFD detector; optional, never needed by the default path."""

    name = "face_alignment"
    num_points = 68

    def __init__(self, device: str = "cpu") -> None:
        ok, reason = _fan_status()
        if not ok:
            raise ModelFileError(f"face_alignment backend unavailable: {reason}")
        import face_alignment  # noqa: PLC0415 - optional, heavy (torch)

        kind = getattr(face_alignment.LandmarksType, "THREE_D", None) or getattr(face_alignment.LandmarksType, "_3D")
        self._fa = face_alignment.FaceAlignment(kind, device=device, flip_input=False)

    def detect(self, frame_rgb: np.ndarray) -> list[FaceLandmarks]:
        result = self._fa.get_landmarks_from_image(np.asarray(frame_rgb), return_bboxes=True)
        preds, _, boxes = result if isinstance(result, tuple) else (result, None, None)
        faces = []
        for i, pts in enumerate(preds or []):
            pts = np.asarray(pts, dtype=np.float32)
            if pts.shape[1] == 2:
                pts = np.concatenate([pts, np.zeros((len(pts), 1), np.float32)], axis=1)
            # FAN's z grows toward the camera; flip it so z points away from the camera like mediapipe's.
            pts[:, 2] = -pts[:, 2]
            score = float(boxes[i][4]) if boxes is not None and len(boxes[i]) > 4 else 1.0
            faces.append(FaceLandmarks.from_points(pts, min(max(score, 0.0), 1.0), self.name))
        return faces

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def available_backends() -> dict[str, tuple[bool, str]]:
    """{backend name: (available, reason)}; fast (no model loading, no heavy imports)."""
    mp_ok = importlib.util.find_spec("mediapipe") is not None
    out = {"mediapipe": (mp_ok, "mediapipe face mesh (bundled models)" if mp_ok
                         else "mediapipe is not installed (pip install mediapipe==0.10.21)")}
    out["face_alignment"] = _fan_status()
    return out


def check_backend(name: str) -> None:
    """Raise a RelightError that says what to install or download when backend ``name`` cannot run here."""
    known = available_backends()
    if name not in known:
        raise RelightError(f"unknown landmark backend {name!r}; choose one of {', '.join(known)}")
    ok, reason = known[name]
    if not ok:
        raise ModelFileError(f"landmark backend {name} unavailable: {reason}; or use the bundled mediapipe backend")


def make_backend(name: str = "mediapipe", **kwargs: object) -> LandmarkBackend:
    """A landmark backend by name (``mediapipe`` or ``face_alignment``; ``--landmarks`` on the command line)."""
    if name == "mediapipe":
        return MediapipeBackend(**kwargs)  # type: ignore[arg-type]
    if name == "face_alignment":
        return FaceAlignmentBackend(**kwargs)  # type: ignore[arg-type]
    raise RelightError(f"unknown landmark backend {name!r}; choose one of {', '.join(available_backends())}")
