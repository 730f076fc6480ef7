"""Cameras: EG3D's 25-number camera label, orbit cameras around the head, and Blender <-> EG3D conversions.

EG3D convention (see ../shared/design/PAPER.md): a label is the cam2world 4x4 (OpenCV camera axes: x right, y down,
z forward) row-major, then the normalised 3x3 intrinsics. World is y-up, the face looks toward +z, the camera sits
on a sphere of radius 2.7 around the origin looking at (0, 0, 0.2); rays run from 2.25 to 3.3.

Blender <-> EG3D: with R4 (EG3D world -> Blender world), F = diag(1, -1, -1, 1) (OpenCV camera -> Blender camera
axes) and A the head anchor's matrix_world: ``M_blender = A · R4 · C_eg3d · F`` and ``C_eg3d = R4ᵀ · A⁻¹ · M · F``.
"""
from __future__ import annotations

import numpy as np

RADIUS = 2.7
LOOK_AT = np.array([0.0, 0.0, 0.2])
RAY_NEAR = 2.25
RAY_FAR = 3.3
FOCAL = 4.2647  # normalised focal length (fraction of the image width) of EG3D's FFHQ cameras
SENSOR_WIDTH_MM = 36.0

R4 = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])
F = np.diag([1.0, -1.0, -1.0, 1.0])


def intrinsics(focal: float = FOCAL, cx: float = 0.5, cy: float = 0.5) -> np.ndarray:
    """Normalised 3x3 intrinsics (image width and height are 1)."""
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def make_label(cam2world: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
    """Pack cam2world (4x4) and normalised intrinsics (3x3) into EG3D's 25-float label."""
    K = intrinsics() if K is None else np.asarray(K, dtype=np.float64)
    return np.concatenate([np.asarray(cam2world, dtype=np.float64).reshape(16), K.reshape(9)]).astype(np.float32)


def split_label(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unpack a 25-float label into (cam2world 4x4, intrinsics 3x3)."""
    label = np.asarray(label, dtype=np.float64).reshape(25)
    return label[:16].reshape(4, 4), label[16:].reshape(3, 3)


def look_at(eye: np.ndarray, target: np.ndarray = LOOK_AT, up: np.ndarray = (0.0, 1.0, 0.0)) -> np.ndarray:
    """OpenCV-axes cam2world of a camera at ``eye`` looking at ``target`` with world ``up`` (y-up world)."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))  # x = forward × up; then y = forward × x points down
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, forward, eye
    return m


def orbit_camera(yaw: float, pitch: float, radius: float = RADIUS, target: np.ndarray = LOOK_AT) -> np.ndarray:
    """cam2world of a camera on EG3D's sphere, ``yaw``/``pitch`` in radians away from the frontal view.

    Positive yaw moves the camera toward the subject's left (world +x, image right of a frontal view);
    positive pitch moves it up. Yaw = pitch = 0 gives the frontal camera at (0, 0, radius).
    """
    eye = radius * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    return look_at(eye, target)


def frontal_label() -> np.ndarray:
    """The frontal EG3D camera label (rows [1,0,0,0], [0,-1,0,0], [0,0,-1,2.7], [0,0,0,1])."""
    return make_label(orbit_camera(0.0, 0.0, target=np.zeros(3)))


def blender_to_eg3d(camera_matrix_world: np.ndarray, anchor_matrix_world: np.ndarray | None = None) -> np.ndarray:
    """A Blender camera's matrix_world (relative to the head anchor's) -> EG3D cam2world (OpenCV axes)."""
    A = np.eye(4) if anchor_matrix_world is None else np.asarray(anchor_matrix_world, dtype=np.float64)
    return R4.T @ np.linalg.inv(A) @ np.asarray(camera_matrix_world, dtype=np.float64) @ F


def eg3d_to_blender(cam2world: np.ndarray, anchor_matrix_world: np.ndarray | None = None) -> np.ndarray:
    """EG3D cam2world -> a Blender camera's matrix_world placed relative to the head anchor."""
    A = np.eye(4) if anchor_matrix_world is None else np.asarray(anchor_matrix_world, dtype=np.float64)
    return A @ R4 @ np.asarray(cam2world, dtype=np.float64) @ F


def blender_intrinsics(lens_mm: float, sensor_width_mm: float = SENSOR_WIDTH_MM,
                       shift_x: float = 0.0, shift_y: float = 0.0) -> np.ndarray:
    """Normalised intrinsics of a Blender camera (square render, sensor fit horizontal)."""
    return intrinsics(lens_mm / sensor_width_mm, 0.5 - shift_x, 0.5 + shift_y)


def blender_lens(K: np.ndarray, sensor_width_mm: float = SENSOR_WIDTH_MM) -> tuple[float, float, float]:
    """Inverse of :func:`blender_intrinsics`: (lens_mm, shift_x, shift_y)."""
    K = np.asarray(K, dtype=np.float64)
    return float(K[0, 0] * sensor_width_mm), float(0.5 - K[0, 2]), float(K[1, 2] - 0.5)


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle of the relative rotation between two 3x3 rotations, in degrees (pose error, jitter)."""
    R = np.asarray(R_a)[:3, :3].T @ np.asarray(R_b)[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))
