"""The one conversion between the head's geometry (EG3D world) and Blender's lights (head-anchor frame).

Why one place: geometry (``geometry.head``), G-buffers and shadow maps live in EG3D world coordinates (y up, the face
toward +z); a :class:`~blender_relight.lighting.blender_lights.LightSpec` lives in the head anchor's frame, which is
the SH frame (x right, y into the face, z up), in Blender units relative to the anchor. The rig (``ops/rig.py``,
``camera.eg3d_to_blender``: ``M_blender = A · R4 · C_eg3d · F``) puts EG3D's origin at the anchor and one EG3D unit
on one Blender unit, so a point converts by the axis change ``R4`` alone: **no scale**. Blender, and therefore the
light formulas of ``blender_lights`` (calibrated against Cycles on this rig), take Blender units as metres, so the
falloff a light gives here is the one Blender's own render of the rig gives. Physically an EG3D head is about
0.4 units tall (≈ 0.47 m per unit, ``PHYSICAL_METRES_PER_UNIT``); that figure is for reading the numbers, it enters no
formula.
"""
from __future__ import annotations

import numpy as np

from blender_relight.lighting.sh import EG3D_WORLD_TO_SH

#: Blender units (the lights' "metres") per EG3D unit in the rig: the rig is built in EG3D units.
BLENDER_UNITS_PER_EG3D_UNIT = 1.0
#: What one EG3D unit is on a real head: the face template's chin-to-hairline is 0.38 units, about 18 cm on an adult.
PHYSICAL_METRES_PER_UNIT = 0.47


def eg3d_to_light_frame(points: np.ndarray) -> np.ndarray:
    """EG3D world points (..., 3) -> head-anchor (SH) frame, Blender units (what LightSpec positions are in)."""
    return np.asarray(points, dtype=np.float64) @ EG3D_WORLD_TO_SH.T * BLENDER_UNITS_PER_EG3D_UNIT


def light_frame_to_eg3d(points: np.ndarray) -> np.ndarray:
    """Head-anchor (SH) frame points in Blender units (..., 3) -> EG3D world."""
    return np.asarray(points, dtype=np.float64) @ EG3D_WORLD_TO_SH / BLENDER_UNITS_PER_EG3D_UNIT


def direction_to_eg3d(directions: np.ndarray) -> np.ndarray:
    """Directions (..., 3) in the anchor (SH) frame -> EG3D world (a rotation: no scale)."""
    return np.asarray(directions, dtype=np.float64) @ EG3D_WORLD_TO_SH
