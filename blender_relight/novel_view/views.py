"""The range of new views around the filmed pose, and the clamp beyond it.

Why a range: a frame shows one side of a head; beyond about 30° of yaw and 20° of pitch from where it was filmed, most
of what a new camera sees was never filmed in that frame (and a talking-head clip rarely shows it in others), so the
view is clamped to the range and the caller is told. Angles are measured as the direction of the camera centre seen
from :data:`PIVOT`, the head's centre, yaw about world y and pitch toward world y (up).

Why the head's centre and not EG3D's look-at point (0, 0, 0.2, on the face): a camera carried about a point on the
face swings the rest of the head sideways in the image (0.14 units of the head lie behind that point: at 30° of yaw
the silhouette moved by ~12 % of the crop), uncovering a strip of background the frame never saw, which could only
be inpainted (a pale band beside every turned head). Carried about the head's centre, a turntable, the head's
outline stays nearly where it was filmed and the face turns within it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blender_relight import camera
from blender_relight.geometry.head import HEAD_CENTRE

MAX_YAW_DEG = 30.0
#: The point new views turn about: the prior head shape's centre in EG3D world, where the tracker's cameras put the
#: template head.
PIVOT = np.asarray(HEAD_CENTRE, dtype=np.float64)
MAX_PITCH_DEG = 20.0


def direction_angles(cam2world: np.ndarray, pivot: np.ndarray = PIVOT) -> tuple[float, float]:
    """(yaw, pitch) in radians of a camera centre seen from ``pivot`` (EG3D orbit axes)."""
    d = np.asarray(cam2world, dtype=np.float64)[:3, 3] - pivot
    d = d / max(np.linalg.norm(d), 1e-12)
    return float(np.arctan2(d[0], d[2])), float(np.arcsin(np.clip(d[1], -1.0, 1.0)))


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def orbit_rotation(yaw_from: float, pitch_from: float, yaw_to: float, pitch_to: float) -> np.ndarray:
    """The rotation about the pivot that moves a camera from one (yaw, pitch) to another (direction d(yaw, pitch)
    = R_y(yaw) R_x(-pitch) e_z)."""
    return _rot_y(yaw_to) @ _rot_x(-pitch_to) @ _rot_x(pitch_from) @ _rot_y(-yaw_from)


def move_camera(cam2world: np.ndarray, rotation: np.ndarray, pivot: np.ndarray = PIVOT) -> np.ndarray:
    """``cam2world`` carried rigidly by ``rotation`` about ``pivot`` (distance, roll and framing kept)."""
    m = np.array(cam2world, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = rotation @ m[:3, :3]
    out[:3, 3] = pivot + rotation @ (m[:3, 3] - pivot)
    return out


@dataclass
class ViewRequest:
    """A requested new view after the range check: the label to render and what was done to it."""

    label: np.ndarray  # (25,) float32, the camera rendered (clamped if needed)
    yaw_deg: float  # offset from the filmed pose, after the clamp
    pitch_deg: float
    clamped: bool
    asked_yaw_deg: float
    asked_pitch_deg: float

    def describe(self) -> str:
        return (f"new view asked at yaw {self.asked_yaw_deg:+.1f}°, pitch {self.asked_pitch_deg:+.1f}° from the "
                f"filmed pose; clamped to {self.yaw_deg:+.1f}°, {self.pitch_deg:+.1f}° (range ±{MAX_YAW_DEG:.0f}° "
                f"yaw, ±{MAX_PITCH_DEG:.0f}° pitch)")


def clamp_view(source_label: np.ndarray, target_label: np.ndarray, max_yaw_deg: float = MAX_YAW_DEG,
               max_pitch_deg: float = MAX_PITCH_DEG) -> ViewRequest:
    """Keep ``target_label`` within ±max_yaw/±max_pitch of ``source_label`` around the pivot; beyond that the
    camera is turned back onto the edge of the range (its distance, roll, lens and framing are kept)."""
    src, _ = camera.split_label(source_label)
    tgt, K = camera.split_label(target_label)
    ys, ps = direction_angles(src)
    yt, pt = direction_angles(tgt)
    dyaw = float(np.degrees((yt - ys + np.pi) % (2 * np.pi) - np.pi))
    dpitch = float(np.degrees(pt - ps))
    cy = float(np.clip(dyaw, -max_yaw_deg, max_yaw_deg))
    cp = float(np.clip(dpitch, -max_pitch_deg, max_pitch_deg))
    clamped = not (np.isclose(cy, dyaw) and np.isclose(cp, dpitch))
    label = np.asarray(target_label, dtype=np.float32)
    if clamped:
        rot = orbit_rotation(yt, pt, ys + np.radians(cy), ps + np.radians(cp))
        label = camera.make_label(move_camera(tgt, rot), K)
    return ViewRequest(label, cy, cp, clamped, dyaw, dpitch)


def offset_label(source_label: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """The source camera carried about the pivot by (yaw, pitch) degrees: a new view relative to the filmed one
    (what the evaluation and the CLI's --yaw/--pitch mean)."""
    src, K = camera.split_label(source_label)
    ys, ps = direction_angles(src)
    rot = orbit_rotation(ys, ps, ys + np.radians(yaw_deg), ps + np.radians(pitch_deg))
    return camera.make_label(move_camera(src, rot), K)


#: Largest difference between two camera labels (cam2world entries in EG3D units, normalised intrinsics) that is
#: still the same camera: a label passed through float32 and back, or through Blender's matrices.
SAME_CAMERA_TOL = 1e-5


def is_filmed_view(source_label: np.ndarray, target_label: np.ndarray) -> bool:
    """Whether ``target_label`` is the frame's own camera: an engine then gives its filmed view itself (the same
    pixels as no camera at all), not the re-posed plate."""
    a = np.asarray(source_label, dtype=np.float64).reshape(-1)
    b = np.asarray(target_label, dtype=np.float64).reshape(-1)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= SAME_CAMERA_TOL))
