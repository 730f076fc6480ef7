"""The rest of the person follows the light: neck, shoulders and chest below and beside the relit head.

Why: the engines relight the head in its crop, and the crop ends at the neck. Under a new key the head turned dark
on one side while the neck below the crop and the chest kept the filmed light, a bright collar under a dark mask
(seen on every dev clip framed to the chest). There is no tracked geometry of the body, so its shape is a proxy:
per image row a vertical cylinder spanning the person's width in that row (the person matte of
``matting.person_matte`` on the frame), normals facing the camera in the middle and turning sideways (to
``EDGE_ANGLE_DEG``) at its edges, smoothed over rows. It is lit as the head is, by the ratio ``E_target / E_source`` of second-order SH
irradiance (the scene's lights projected, the frame's estimated source light; ``lighting.analytic.shading_ratio``,
the same guards), in the head's light frame, so the neck's ratio meets the head's. No cast shadows, no highlights:
the proxy knows no more than the body's outline. Computed at :data:`WORK_WIDTH` (the ratio is smooth) and applied
where the person is and the head's paste is not (``1 − head alpha``), so head and body blend across the crop's fade.
"""
from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from blender_relight import camera
from blender_relight.lighting import analytic
from blender_relight.lighting import sh as shmath

#: Width the body's matte and ratio are computed at (frame pixels are scaled to it).
WORK_WIDTH = 320
#: How far the proxy's normals turn at the body's outline (degrees from the view axis). Less than a real chest's
#: edge: the proxy does not know the body's shape, and outline normals turned toward a side key met a source light
#: that hardly reaches them (ratios up to the clamp: a white glow along the shoulder).
EDGE_ANGLE_DEG = 45.0
#: Largest brightening of the body (the head's engines allow 8): the proxy's shading is a guess.
MAX_RATIO = 2.5
#: Matte values over which a frame pixel goes from background to person: the matte's soft edge at WORK_WIDTH spans
#: several frame pixels of wall, which the ratio must not light.
MATTE_EDGE = (0.4, 0.8)
#: Smoothing of the per-row extents over rows (fraction of the frame height): a jagged outline would draw stripes.
ROW_SMOOTH = 0.03
#: Frames whose person matte is kept (a light drag re-uses it).
KEEP_FRAMES = 4


def row_cylinder_normals(person: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera-space (OpenCV axes) unit normals of a vertical cylinder per row spanning the person there;
    rows with no person face the camera."""
    h, w = person.shape
    inside = person > 0.5
    any_row = inside.any(axis=1)
    cols = np.arange(w, dtype=np.float32)
    left = np.where(any_row, np.argmax(inside, axis=1), 0).astype(np.float32)
    right = np.where(any_row, w - 1 - np.argmax(inside[:, ::-1], axis=1), w - 1).astype(np.float32)
    sigma = max(ROW_SMOOTH * h, 1.0)
    rows_w = any_row.astype(np.float32)
    k = np.exp(-0.5 * (np.arange(-int(3 * sigma), int(3 * sigma) + 1) / sigma) ** 2)
    norm = np.convolve(rows_w, k, mode="same")
    centre = np.convolve((left + right) * 0.5 * rows_w, k, mode="same") / np.maximum(norm, 1e-6)
    half = np.convolve((right - left) * 0.5 * rows_w, k, mode="same") / np.maximum(norm, 1e-6)
    half = np.maximum(half, 1.0)
    u = np.clip((cols[None, :] - centre[:, None]) / half[:, None], -1.0, 1.0) * np.sin(np.radians(EDGE_ANGLE_DEG))
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 0] = u
    normals[..., 2] = -np.sqrt(np.maximum(1.0 - u * u, 0.0))
    normals[~any_row] = (0.0, 0.0, -1.0)
    return normals


def body_ratio(person: np.ndarray, camera_label: np.ndarray, source_sh: np.ndarray,
               target_sh: np.ndarray) -> np.ndarray:
    """(H, W, 3) relight ratio of the body proxy under ``target_sh`` for a frame lit by ``source_sh`` (RGB SH (9, 3),
    the head's light frame), 1 where there is no person."""
    n_cam = row_cylinder_normals(person)
    c2w = camera.split_label(camera_label)[0][:3, :3]
    inside = person > 0.01
    ratio = np.ones(person.shape + (3,), np.float32)
    if not inside.any():
        return ratio
    n_world = n_cam[inside].astype(np.float64) @ c2w.T
    basis = shmath.irradiance_basis(shmath.rotate_eg3d_to_sh(n_world))
    e_src = np.maximum(basis @ shmath.as_rgb(source_sh), 0.0)
    e_tgt = np.maximum(basis @ shmath.as_rgb(target_sh), 0.0)
    ratio[inside] = analytic.shading_ratio(e_src, e_tgt, MAX_RATIO)
    return ratio


class BodyRelight:
    """Relights the person outside the head's paste in full frames; keeps the person matte of the last frames."""

    def __init__(self) -> None:
        self._mattes: OrderedDict[int, np.ndarray] = OrderedDict()

    def _person(self, index: int, frame_srgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        from blender_relight.matting import person_matte

        matte = self._mattes.get(index)
        if matte is None or matte.shape != (size[1], size[0]):
            small = cv2.resize(frame_srgb, size, interpolation=cv2.INTER_AREA)
            matte = person_matte(small)
            self._mattes[index] = matte
            while len(self._mattes) > KEEP_FRAMES:
                self._mattes.popitem(last=False)
        return matte

    def apply(self, index: int, image: np.ndarray, base: np.ndarray, frame_srgb: np.ndarray, transform,
              head_alpha_crop: np.ndarray, camera_label: np.ndarray, source_sh: np.ndarray,
              target_sh: np.ndarray) -> np.ndarray:
        """``image`` (the frame with the head pasted, linear float; modified in place and returned) plus the body's
        change, ``base · w_b · (R_b − 1)`` with ``w_b`` = person × (1 − head weight) and ``base`` the pixels at the
        filmed light (the frame for a ratio paste, the pasted frame for a new view's replace-paste): where the head's
        crop-space weight ``head_alpha_crop`` (pasted through ``transform``) fades, the two ratios blend to
        ``w_h·R_h + (1 − w_h)·R_b`` (two multiplied partial changes left a lighter band there)."""
        h, w = image.shape[:2]
        scale = min(1.0, WORK_WIDTH / w)
        size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
        person = self._person(index, frame_srgb, size)
        m = np.asarray(transform.matrix, np.float64) @ np.diag([1.0 / scale, 1.0 / scale, 1.0])
        head = cv2.warpAffine(np.asarray(head_alpha_crop, np.float32), m, size,
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        t = np.clip((person - MATTE_EDGE[0]) / (MATTE_EDGE[1] - MATTE_EDGE[0]), 0.0, 1.0)
        weight = np.clip(t * t * (3.0 - 2.0 * t) * (1.0 - np.clip(head, 0.0, 1.0)), 0.0, 1.0)
        if float(weight.max()) < 1e-3:
            return image
        ratio = body_ratio(person, camera_label, source_sh, target_sh)
        change = cv2.resize(weight[..., None] * (ratio - 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
        image += np.asarray(base, np.float32) * change
        np.maximum(image, 0.0, out=image)
        return image
