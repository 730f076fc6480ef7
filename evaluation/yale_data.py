"""Extended Yale Face Database B photos (``../shared/data/yale_dev``): real faces under known point lights.

Why a module of its own: the lighting estimate's validation (tests, docs/lighting.md) and the relighting evaluation
(``evaluation.yale``) both need the same three facts: which direction each photo was lit from, how the 168×192 gray
photo becomes something the tracker and the engines take, and the tracked face of a subject.

Light convention (``SOURCES.md``): ``yaleBNN_P00A±AAAE±EE.pgm``, azimuth A and elevation E in degrees from the camera
axis; positive azimuth lights the image-left half of the photo (the subject's right, our SH frame's −x), positive
elevation lights from above (+z). The light is toward the camera side, so the SH-frame direction (x image-right,
y into the face, z up) is ``(−sin A cos E, −cos A cos E, sin E)``.

Photos: 8-bit gray, made RGB by copying the channel, upscaled ×3 (bicubic) and padded so mediapipe finds the face.
Their values are read as *linear* (:data:`TRANSFER`): the database was made for illumination-cone / photometric
studies that treat pixel values as proportional to radiance, and it measures so here: with the sRGB decode every
other input gets, the estimate's light directions come out 1.3-1.5× too far to the side (docs/lighting.md). All
photos of a subject share one pose and one crop (the database's cropped set is aligned), so the subject is tracked
once, on its frontally lit photo A+000E+00, and that track serves every photo of the subject: a face half in shadow
would track worse, and the tracked geometry must be the same for the input and every target.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from blender_relight import colour
from blender_relight.errors import RelightError

#: File name of a photo under a point light: azimuth and elevation in degrees.
NAME = re.compile(r"_P00A([+-]\d{3})E([+-]\d{2})\.pgm$")
#: Upscale factor that takes a 168×192 photo to a size mediapipe tracks reliably.
UPSCALE = 3
#: Margin added around the photo (edge pixels repeated), as a fraction of its width: without it mediapipe misses
#: four of the six development faces (measured), the crop being tight on the face.
PAD = 0.25
#: Light bins (both angles within the first bound: frontal; within the second: mid; else side).
BINS = (("frontal", 25.0), ("mid", 60.0), ("side", 180.0))
INPUT_NAME = "A+000E+00"
#: How 8-bit values map to linear light: "linear" (value / 255) or "srgb" (module docstring).
TRANSFER = "linear"


def light_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit SH-frame direction from the face toward a Yale light (module docstring: the sign convention)."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([-np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])


def light_bin(azimuth_deg: float, elevation_deg: float) -> str:
    worst = max(abs(azimuth_deg), abs(elevation_deg))
    return next(name for name, bound in BINS if worst <= bound)


@dataclass
class YalePhoto:
    name: str  # e.g. "A+035E+15"
    azimuth: float
    elevation: float
    rgb8: np.ndarray  # upscaled (H, W, 3) uint8, sRGB

    @property
    def direction(self) -> np.ndarray:
        return light_direction(self.azimuth, self.elevation)

    @property
    def bin(self) -> str:
        return light_bin(self.azimuth, self.elevation)


@dataclass
class YaleSubject:
    name: str
    track: object  # FrameTrack of the A+000E+00 photo
    photos: list[YalePhoto] = field(default_factory=list)

    @property
    def input(self) -> YalePhoto:
        return next(p for p in self.photos if p.name == INPUT_NAME)

    def crop_linear(self, photo: YalePhoto, transfer: str | None = None) -> np.ndarray:
        """The photo's EG3D 512² crop (through the subject's one track), linear RGB float32."""
        crop8 = self.track.transform.warp(photo.rgb8)
        if (transfer or TRANSFER) == "srgb":
            return colour.uint8_srgb_to_linear(crop8)
        return crop8.astype(np.float32) / 255.0


def read_photo(path: Path) -> np.ndarray:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise RelightError(f"{path}: not a readable image")
    big = cv2.resize(gray, (gray.shape[1] * UPSCALE, gray.shape[0] * UPSCALE), interpolation=cv2.INTER_CUBIC)
    pad = int(round(PAD * big.shape[1]))  # the cropped photos end at the chin: mediapipe's detector wants margin
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return np.repeat(big[..., None], 3, axis=2)


def subject_folders(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise RelightError(f"{root}: no such folder; pass the yale_dev folder (../shared/data/yale_dev)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob(f"*_P00{INPUT_NAME}.pgm")))
    if not folders:
        raise RelightError(f"{root}: no subject folders with a *_P00{INPUT_NAME}.pgm photo")
    return folders


def load_subject(folder: str | Path, max_photos: int = 0, names: tuple[str, ...] | None = None) -> YaleSubject:
    """Read a subject's point-light photos and track its frontally lit one (``max_photos`` > 0: an evenly spread
    subset of the others, for quick runs; ``names``: only these, e.g. ``("A+035E+15",)``)."""
    from blender_relight.tracking.tracker import FaceTracker

    folder = Path(folder)
    entries = []
    for path in sorted(folder.glob("*.pgm")):
        m = NAME.search(path.name)
        if m:
            entries.append((f"A{m.group(1)}E{m.group(2)}", float(m.group(1)), float(m.group(2)), path))
    inputs = [e for e in entries if e[0] == INPUT_NAME]
    if not inputs:
        raise RelightError(f"{folder}: no {INPUT_NAME} photo")
    others = [e for e in entries if e[0] != INPUT_NAME and (names is None or e[0] in names)]
    if max_photos and len(others) > max_photos:
        others = [others[int(round(i))] for i in np.linspace(0, len(others) - 1, max_photos)]
    photos = [YalePhoto(name, az, el, read_photo(p)) for name, az, el, p in inputs + others]
    tracker = FaceTracker(estimate_sh=False)
    try:
        track = tracker.track(0, photos[0].rgb8)
    finally:
        tracker.close()
    if not track.tracked:
        raise RelightError(f"{folder}: no face found on the {INPUT_NAME} photo")
    return YaleSubject(folder.name, track, photos)


def face_mask(subject: YaleSubject, erode_px: int = 5) -> np.ndarray:
    """Where a face is scored: the tracked mesh's coverage (eyes and inner mouth out), eroded off the silhouette."""
    from blender_relight import face_geometry

    maps = face_geometry.render_face_maps(subject.track.points_crop(), subject.track.crop_size)
    return cv2.erode(maps.mask.astype(np.uint8), np.ones((erode_px, erode_px), np.uint8)) > 0
