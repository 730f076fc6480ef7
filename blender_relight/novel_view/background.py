"""The clip's clean plate: the background behind the person, seen in other frames of a static-camera clip.

Why: a new camera shows a sliver of background the filmed head hid in that frame. When the camera is fixed and the
head moves (a talking head, an interview), other frames of the clip saw that background; one frame can only
inpaint it. The clean plate is the per-pixel mean of the frame where no frame's person matte covered it, in frame
coordinates, over frames spread evenly over the clip; a pixel is trusted only where at least two frames saw it and
they agree (their spread in sRGB is small): a moving camera, a passer-by or a lighting change make the pixels
disagree and the plate steps aside there, leaving the inpainting (``fill.inpainted_background``).

Stored as ``<clip cache>/novel_view/background-<key>.npz`` (float16, at most ``MAX_WIDTH`` wide); the key holds
the frames and this module's code.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from blender_relight import colour
from blender_relight.novel_view import stored

log = logging.getLogger(__name__)

#: Frames sampled over the clip (evenly) and the plate's largest width (the background behind a head is seen out of
#: focus, and only its sliver beside the head is used).
MAX_FRAMES = 24
MAX_WIDTH = 640
#: Person matte above which a pixel is person in a frame, and how far (fraction of the width) the person is grown
#: before the rest counts as background (hair wisps and the matte's soft edge stay out).
PERSON_THRESHOLD = 0.05
GROW = 0.015
#: Spread (sRGB, 0..1) of the frames' colours over which a pixel goes from trusted to not: agreeing frames are the
#: same static background; disagreeing ones a moving camera or a changing scene.
SPREAD = (0.02, 0.05)
FORMAT_VERSION = 1


@dataclass
class CleanPlate:
    """``image`` (h, w, 3) linear RGB and ``weight`` (h, w) in [0, 1] at ``scale`` × the frame's size."""

    image: np.ndarray
    weight: np.ndarray
    scale: float
    frames: list[int]

    def crop(self, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(background (size, size, 3), weight (size, size)) in the crop that ``matrix`` (2×3, frame → crop) cuts."""
        inv_scale = np.diag([1.0 / self.scale, 1.0 / self.scale, 1.0])
        m = (np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]]) @ inv_scale)[:2]
        both = np.concatenate([self.image, self.weight[..., None]], axis=2).astype(np.float32)
        out = cv2.warpAffine(both, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return np.ascontiguousarray(out[..., :3]), np.ascontiguousarray(out[..., 3])

    def save(self, path: Path) -> None:
        stored.save_arrays(path, FORMAT_VERSION, {"image": self.image, "weight": self.weight,
                                                  "scale": np.float64(self.scale),
                                                  "frames": np.asarray(self.frames, np.int64)})

    @staticmethod
    def load(path: Path) -> "CleanPlate | None":
        """The stored plate, or None when absent or unreadable (it is then rebuilt)."""
        data = stored.load_arrays(path, FORMAT_VERSION, ("image", "weight", "scale", "frames"), "clean plate")
        if data is None:
            return None
        plate = CleanPlate(data["image"], data["weight"], float(data["scale"]), [int(i) for i in data["frames"]])
        if plate.image.ndim != 3 or plate.image.shape[:2] != plate.weight.shape or not np.isfinite(plate.image).all():
            return None
        return plate


def pick_frames(tracked: list[int], max_frames: int = MAX_FRAMES) -> list[int]:
    """Frames spread evenly over the clip (where the head was, it moved away in others)."""
    if len(tracked) <= max_frames:
        return sorted(tracked)
    keep = np.linspace(0, len(tracked) - 1, max_frames).round().astype(int)
    return sorted({sorted(tracked)[i] for i in keep})


def build_clean_plate(video: Path, frames: list[int],
                      progress: Callable[[int, int], None] | None = None) -> CleanPlate | None:
    """Stream ``video``'s ``frames`` (decoded in order, one at a time) into a clean plate; None without frames."""
    from blender_relight.matting import person_matte
    from blender_relight.video import VideoReader

    wanted = set(frames)
    if not wanted:
        return None
    total = s1 = s2 = None
    scale = 1.0
    done = 0
    with VideoReader(video) as reader:
        for index, frame in reader.frames(min(wanted), max(wanted) + 1):
            if index not in wanted:
                continue
            h, w = frame.shape[:2]
            scale = min(1.0, MAX_WIDTH / w)
            small = cv2.resize(frame, (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)),
                               interpolation=cv2.INTER_AREA) if scale < 1.0 else frame
            person = person_matte(small) > PERSON_THRESHOLD
            k = 2 * max(int(round(GROW * small.shape[1])), 1) + 1
            person = cv2.dilate(person.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
            seen = (person == 0).astype(np.float32)
            srgb = small.astype(np.float32) / 255.0
            if total is None:
                total, s1, s2 = np.zeros(seen.shape, np.float32), np.zeros_like(srgb), np.zeros_like(srgb)
            total += seen
            s1 += srgb * seen[..., None]
            s2 += srgb * srgb * seen[..., None]
            done += 1
            if progress is not None:
                progress(done, len(wanted))
    if total is None:
        return None
    n = np.maximum(total, 1.0)[..., None]
    mean = s1 / n
    spread = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0)).max(axis=2)
    t = np.clip((spread - SPREAD[0]) / (SPREAD[1] - SPREAD[0]), 0.0, 1.0)
    agree = 1.0 - t * t * (3.0 - 2.0 * t)
    weight = (agree * np.clip(total - 1.0, 0.0, 1.0)).astype(np.float32)  # two frames at least
    image = colour.uint8_srgb_to_linear(np.clip(mean * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return CleanPlate(image.astype(np.float32), weight, float(scale), sorted(wanted))


def plate_key(frames: list[int], extra: str = "") -> str:
    """What a stored plate depends on: its frames, this module's and the matte's code, and ``extra``."""
    from blender_relight import matting

    h = hashlib.sha1(Path(__file__).read_bytes())
    h.update(Path(matting.__file__).read_bytes())
    h.update(f"{FORMAT_VERSION}|{list(frames)}|{extra}".encode())
    return h.hexdigest()[:16]


class CleanPlates:
    """Clean plates by cache folder: loaded from disk, else built from the clip's frames (said in the log)."""

    def __init__(self) -> None:
        self._plates: dict[str, CleanPlate | None] = {}

    def get(self, cache) -> CleanPlate | None:
        """The plate of the clip in ``cache`` (a ClipCache); None for a single image or a clip without tracks."""
        if cache is None:
            return None
        root = str(cache.root)
        if root not in self._plates:
            self._plates[root] = self._load_or_build(cache)
        return self._plates[root]

    @staticmethod
    def _load_or_build(cache) -> CleanPlate | None:
        if cache.frame_count < 2:
            return None  # a still: nothing behind the head was ever seen
        tracked = [i for i in range(cache.frame_count)
                   if (t := cache.get_track(i)) is not None and t.tracked]
        frames = pick_frames(tracked)
        if len(frames) < 2:
            return None
        path = Path(cache.root) / "novel_view" / f"background-{plate_key(frames)}.npz"
        plate = CleanPlate.load(path)
        if plate is not None:
            return plate
        log.info("building the clean plate of %s from %d frames (once per clip)", Path(cache.root).name, len(frames))
        plate = build_clean_plate(Path(cache.source["path"]), frames)
        if plate is not None:
            # used in its stored (float16) form by this session too: a frame's new view must not depend on whether
            # this session built the plate or read it
            plate.image = plate.image.astype(np.float16).astype(np.float32)
            plate.weight = plate.weight.astype(np.float16).astype(np.float32)
            stored.keep(path, plate.save, "clean plate")
        return plate
