"""Landmarks of real frames for the synthetic teacher: mediapipe FaceMesh on the shared clips and photos, cached.

Why: each synthetic identity takes its face shape (468 landmarks, aligned to the template frame) and its albedo
texture (the frame itself, UV = the landmark's pixel position) from a real person. Clips listed in
:data:`HELD_OUT_CLIPS` never feed training; they feed the held-out synthetic identities and the real dev clips.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blender_relight.errors import RelightError

#: Real clips kept out of training (validation only).
HELD_OUT_CLIPS = ("lp_d13", "lp_d18")
#: Photos without a usable human face.
SKIP_IMAGES = ("lp_s33_dog",)


def shared_data_dir() -> Path:
    """../shared/data relative to the repository root."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass
class FaceSource:
    """One real frame: its name, RGB image (linear float32, downscaled) and 468 landmarks in its pixels (x, y, z)."""

    name: str
    clip: str
    image: np.ndarray
    landmarks: np.ndarray


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _face_mesh():
    try:
        import mediapipe as mp
    except ImportError as exc:  # pragma: no cover - mediapipe is a dev dependency
        raise RelightError("mediapipe is not installed; install the project's dev extras to build the teacher") from exc
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)


def _frames(path: Path, every: int, limit: int) -> list[np.ndarray]:
    import cv2

    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise RelightError(f"{path}: cannot read image; check the file")
        return [img[:, :, ::-1]]
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while len(out) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == 0:
            out.append(frame[:, :, ::-1])
        i += 1
    cap.release()
    return out


def _crop_face(rgb: np.ndarray, lm_px: np.ndarray, size: int = 384) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around the face (1.6x the landmark box), resized to ``size``; returns (crop, landmarks in it)."""
    import cv2

    lo, hi = lm_px[:, :2].min(0), lm_px[:, :2].max(0)
    c, half = (lo + hi) / 2.0, 0.8 * float((hi - lo).max())
    scale = size / (2 * half)
    M = np.array([[scale, 0, size / 2 - scale * c[0]], [0, scale, size / 2 - scale * c[1]]])
    crop = cv2.warpAffine(rgb, M, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    lm = lm_px.copy()
    lm[:, :2] = lm[:, :2] * scale + M[:, 2]
    lm[:, 2] *= scale
    return crop, lm


def collect_sources(data_dir: Path | None = None, every: int = 12, per_clip: int = 24,
                    held_out: bool = False) -> list[FaceSource]:
    """Track faces on sampled frames of the clips and on the photos; ``held_out`` selects the held-out clips only."""
    data_dir = shared_data_dir() if data_dir is None else Path(data_dir)
    if not (data_dir / "videos").is_dir():
        raise RelightError(f"{data_dir}: shared data not found; the teacher needs ../shared/data/videos and images")
    paths = sorted((data_dir / "videos").glob("*.mp4"))
    if not held_out:
        paths += sorted(p for p in (data_dir / "images").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    mesh = _face_mesh()
    out: list[FaceSource] = []
    for p in paths:
        clip = p.stem
        if (clip in HELD_OUT_CLIPS) != held_out or clip in SKIP_IMAGES:
            continue
        for k, rgb in enumerate(_frames(p, every, per_clip)):
            rgb = np.ascontiguousarray(rgb)
            res = mesh.process(rgb)
            if not res.multi_face_landmarks:
                continue
            h, w = rgb.shape[:2]
            lm = np.array([[q.x * w, q.y * h, q.z * w] for q in res.multi_face_landmarks[0].landmark], np.float32)
            crop, lm = _crop_face(rgb, lm)
            out.append(FaceSource(f"{clip}#{k}", clip, _srgb_to_linear(crop.astype(np.float32) / 255.0), lm))
    mesh.close()
    if not out:
        raise RelightError(f"{data_dir}: no face found in the shared clips; check the data")
    return out


def load_sources(cache: Path, held_out: bool = False, **kw) -> list[FaceSource]:
    """Cached :func:`collect_sources` (an .npz beside the run; rebuilt when absent)."""
    cache = Path(cache)
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return [FaceSource(m["name"], m["clip"], z[f"img{i}"], z[f"lm{i}"]) for i, m in enumerate(meta)]
    srcs = collect_sources(held_out=held_out, **kw)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"img{i}": s.image.astype(np.float16) for i, s in enumerate(srcs)}
    arrays.update({f"lm{i}": s.landmarks for i, s in enumerate(srcs)})
    meta = json.dumps([{"name": s.name, "clip": s.clip} for s in srcs])
    from blender_relight.io_utils import atomic_path

    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(meta), **arrays)
    return [FaceSource(s.name, s.clip, s.image.astype(np.float16), s.landmarks) for s in srcs]
