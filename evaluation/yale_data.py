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
#: The database's ambient-only photo of a subject (640×480, uncropped: strobes off, the room's light only).
AMBIENT_NAME = "_P00_Ambient.pgm"
#: Where the ambient level is read: face pixels whose normal is within acos(0.7) ≈ 46° of the camera (the frontal
#: strobe's key is then well above the noise and the cosine is known well).
AMBIENT_MIN_COS = 0.7
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
    folder: Path | None = None

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
    return YaleSubject(folder.name, track, photos, folder)


def photo_mask(subject: YaleSubject) -> np.ndarray:
    """Crop pixels that come from the photo itself, not from the repeated edge pixels of :data:`PAD` (the cropped
    photos cut through forehead and cheeks, so the tracked mesh reaches into the padding)."""
    h, w = subject.input.rgb8.shape[:2]
    pad = int(round(PAD * w / (1 + 2 * PAD)))  # read_photo pads each side by PAD of the upscaled photo's width
    inside = np.zeros((h, w), np.float32)
    inside[pad:h - pad, pad:w - pad] = 1.0
    return subject.track.transform.warp(inside, interpolation=cv2.INTER_LINEAR) > 0.999


def face_mask(subject: YaleSubject, erode_px: int = 5) -> np.ndarray:
    """Where a face is scored: the tracked mesh's coverage (eyes and inner mouth out), eroded off the silhouette,
    inside the photo (:func:`photo_mask`)."""
    from blender_relight import face_geometry

    maps = face_geometry.render_face_maps(subject.track.points_crop(), subject.track.crop_size)
    mesh = cv2.erode(maps.mask.astype(np.uint8), np.ones((erode_px, erode_px), np.uint8)) > 0
    return mesh & photo_mask(subject)


@dataclass
class AmbientMeasure:
    """The room's ambient light on a subject's face, from the database's ambient-only photo.

    ``fraction``: ambient irradiance over the frontal strobe's irradiance on a surface facing it (what
    ``evaluation.yale.target_lighting`` takes); ``ambient_dn`` the ambient photo's mean 8-bit value on the face;
    ``how``: "landmarks" (the face found in the ambient photo and aligned by its landmarks, ``align_px`` the RMS
    landmark residual in original photo pixels) or "no face" (too dark to find a face: the ambient frame's median
    around its centre, which is then the measure)."""

    fraction: float
    ambient_dn: float
    how: str
    align_px: float = float("nan")
    crop: np.ndarray | None = field(default=None, repr=False)  # the ambient photo in the subject's EG3D crop


def _detector_view(gray: np.ndarray) -> np.ndarray:
    """An ambient photo made visible to the face detector only (measured values come from the raw photo): the faces
    there sit at 1-20 of 255 under sensor noise, so blur σ 1.5, scale to the 97th percentile and gamma 0.3 (the
    smallest change that let mediapipe find 5 of the 6 development faces; the sixth is black, ``how`` "no face")."""
    b = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.5)
    top = max(float(np.percentile(b, 97)), 1.0)
    return np.repeat(np.clip(255.0 * (b / top) ** 0.3, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def measure_ambient(subject: YaleSubject, folder: str | Path | None = None) -> AmbientMeasure:
    """Measure the ambient level of ``subject``'s photos from its ambient-only photo (:class:`AmbientMeasure`).

    Why measure it: every point-light photo is strobe + the room's ambient, and the ambient sets how dark the far
    side of a side-lit face gets (the relit shadow's floor). Method: track the face in the 640×480 ambient photo,
    fit a similarity from its landmarks to the frontal photo's (both are the same face in the same pose), warp the
    raw ambient values into the subject's EG3D crop, and over face pixels facing the camera (cos ≥
    :data:`AMBIENT_MIN_COS`, from the tracked mesh's normals) take ``Σ ambient·cos / Σ (frontal − ambient)``: the
    frontal photo is ``ρ/π·(E_key·cos + E_amb)``, the ambient photo ``ρ/π·E_amb``, and ρ cancels. Nothing is fitted
    to the relighting scores."""
    from blender_relight import face_geometry
    from blender_relight.tracking.tracker import FaceTracker

    folder = Path(folder or subject.folder)
    path = next(folder.glob(f"*{AMBIENT_NAME}"), None)
    if path is None:
        raise RelightError(f"{folder}: no *{AMBIENT_NAME} photo")
    raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if raw is None:
        raise RelightError(f"{path}: not a readable image")
    tracker = FaceTracker(estimate_sh=False)
    try:
        track = tracker.track(0, _detector_view(raw))
    finally:
        tracker.close()
    frontal = subject.crop_linear(subject.input)[..., 0].astype(np.float64)
    maps = face_geometry.render_face_maps(subject.track.points_crop(), subject.track.crop_size)
    mask = face_mask(subject)
    cos = -maps.normals[..., 2].astype(np.float64)  # normals in camera axes: facing the camera is (0, 0, -1)
    sel = mask & (cos >= AMBIENT_MIN_COS)
    if not track.tracked:
        h, w = raw.shape
        level = float(np.median(raw[h // 4: 3 * h // 4, w // 4: 3 * w // 4])) / 255.0
        key = float(np.mean(frontal[sel] - level))
        return AmbientMeasure(level * float(np.mean(cos[sel])) / max(key, 1e-6), 255.0 * level, "no face")
    src = np.ascontiguousarray(track.points[:, :2], dtype=np.float64)
    dst = np.ascontiguousarray(subject.track.points[:, :2], dtype=np.float64)  # the padded, upscaled photo's frame
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    residual = np.linalg.norm(src @ matrix[:, :2].T + matrix[:, 2] - dst, axis=1)
    shape = subject.input.rgb8.shape
    in_frame = cv2.warpAffine(raw.astype(np.float32), matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR)
    crop = subject.track.transform.warp(in_frame).astype(np.float64) / 255.0
    if TRANSFER == "srgb":
        crop = colour.srgb_to_linear(crop)
    key = frontal - crop
    fraction = float((crop[sel] * cos[sel]).sum() / max(key[sel].sum(), 1e-6))
    return AmbientMeasure(fraction, 255.0 * float(crop[mask].mean()), "landmarks",
                          float(np.sqrt(np.mean(residual ** 2))) / UPSCALE, crop.astype(np.float32))
