"""Pure maths of the imported rig: a fixed scene camera and a head anchor that moves with the tracked head.

Why this split: the real camera stood still while the head moved, so the Blender camera is placed once (from the
first tracked frame's EG3D camera, anchor at the origin) and the anchor is keyed per frame so that the camera seen
from the anchor reproduces each frame's EG3D camera exactly: with ``M = A·R4·C·F`` (blender_relight.camera),
``A_i = M·F·C_i⁻¹·R4ᵀ``. Moving the camera away from that pose then gives a novel view of the same head.
"""
from __future__ import annotations

import numpy as np

from blender_relight import camera

#: Relative rotation (degrees) and translation (EG3D units) below which the scene camera is the source camera.
SAME_VIEW_DEG = 0.05
SAME_VIEW_DIST = 1e-3


def camera_world(first_label: np.ndarray) -> np.ndarray:
    """Blender matrix_world of the scene camera: the first tracked frame's camera, anchor at the origin."""
    c2w, _ = camera.split_label(first_label)
    return camera.eg3d_to_blender(c2w)


def anchor_world(camera_matrix: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Head anchor matrix_world at a frame whose EG3D camera is ``label``, the scene camera being ``camera_matrix``."""
    c2w, _ = camera.split_label(label)
    return np.asarray(camera_matrix, dtype=np.float64) @ camera.F @ np.linalg.inv(c2w) @ camera.R4.T


def rigid(matrix: np.ndarray) -> np.ndarray:
    """Rotation + translation of a 4x4 (scale and shear removed), so scaling the anchor never rescales the camera."""
    m = np.asarray(matrix, dtype=np.float64).copy()
    u, _, vt = np.linalg.svd(m[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    m[:3, :3] = r
    m[3] = (0.0, 0.0, 0.0, 1.0)
    return m


def scene_camera_label(camera_matrix: np.ndarray, anchor_matrix: np.ndarray, lens_mm: float,
                       sensor_width_mm: float, shift_x: float = 0.0, shift_y: float = 0.0) -> np.ndarray:
    """EG3D 25-float label of a Blender camera seen from the head anchor."""
    c2w = camera.blender_to_eg3d(rigid(camera_matrix), rigid(anchor_matrix))
    K = camera.blender_intrinsics(lens_mm, sensor_width_mm, shift_x, shift_y)
    return camera.make_label(c2w, K)


def same_view(label_a: np.ndarray, label_b: np.ndarray) -> bool:
    """True when two labels are the same viewpoint and lens (then the source frame's own render is reused)."""
    ca, ka = camera.split_label(label_a)
    cb, kb = camera.split_label(label_b)
    return (camera.rotation_angle_deg(ca, cb) < SAME_VIEW_DEG
            and float(np.linalg.norm(ca[:3, 3] - cb[:3, 3])) < SAME_VIEW_DIST
            and bool(np.allclose(ka, kb, atol=1e-3)))
