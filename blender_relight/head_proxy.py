"""Normals for the whole head region of a crop: the tracked face mesh where it covers, an ellipsoid elsewhere.

Why: the face mesh stops at the hairline and the jaw, but the relit region (the feathered head mask) reaches into the
hair and past the cheeks. Zero or grazing normals there made the analytic ratio explode into a bright rim. An
ellipsoid fitted to the mask gives every masked pixel a plausible, smooth normal, and the mesh normals are blended in
over a soft border so there is no seam between the two.
"""
from __future__ import annotations

import cv2
import numpy as np


def head_alpha(crop_srgb: np.ndarray, head_mask: np.ndarray, mesh_coverage: np.ndarray,
               feather_px: float = 3.0) -> np.ndarray:
    """Where a crop may be relit: the head and hair inside the caller's head region ``head_mask``, background left
    out.

    Why: a head region (the landmarks' hull plus a forehead band, or the head shell's silhouette grown) takes in
    background beside the cheeks, under the jaw and above thin hair, which the ratio then lit as if it were skin (a
    halo) and a new camera moved as if it were head (a pale balloon). The person matte (``matting.person_matte``,
    a segmentation network) says which of its pixels are the person; the face mesh (feathered by ``feather_px``)
    counts as person whatever the network says (glasses, a hand-shadowed cheek)."""
    from blender_relight.matting import person_matte

    mask = np.asarray(head_mask, np.float32)
    h, w = mask.shape[:2]
    person = person_matte(crop_srgb)
    if person.shape != (h, w):
        person = cv2.resize(person, (w, h), interpolation=cv2.INTER_LINEAR)
    face = cv2.erode(np.asarray(mesh_coverage, np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    face = cv2.GaussianBlur(face, (0, 0), feather_px)
    return (mask * np.maximum(person, face)).astype(np.float32)


def ellipsoid_normals(mask: np.ndarray) -> np.ndarray:
    """Camera-space (OpenCV axes) unit normals of the ellipsoid whose silhouette is the ellipse fitted to ``mask``.

    The normal at the silhouette is tilted back to 70° from the view axis, not 90°, so the rim stays lit by front
    light the way a head's rounded edge is.
    """
    binary = (np.asarray(mask) > 0.5).astype(np.uint8)
    h, w = binary.shape
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 2] = -1.0
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return normals
    contour = max(contours, key=cv2.contourArea)
    if len(contour) < 5:
        return normals
    (cx, cy), (d1, d2), angle = cv2.fitEllipse(contour)
    a, b = max(d1, 1.0) / 2.0, max(d2, 1.0) / 2.0
    t = np.radians(angle)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - cx, ys - cy
    u = (dx * np.cos(t) + dy * np.sin(t)) / a
    v = (-dx * np.sin(t) + dy * np.cos(t)) / b
    r = np.sqrt(u * u + v * v)
    scale = np.minimum(r, 1.0) * np.sin(np.radians(70.0)) / np.maximum(r, 1e-6)
    u, v = u * scale, v * scale
    nx = u * np.cos(t) - v * np.sin(t)
    ny = u * np.sin(t) + v * np.cos(t)
    nz = -np.sqrt(np.maximum(1.0 - nx * nx - ny * ny, 0.0))
    normals[..., 0], normals[..., 1], normals[..., 2] = nx, ny, nz
    return normals


def head_normals(mesh_normals: np.ndarray, mesh_coverage: np.ndarray, head_mask: np.ndarray,
                 border_px: float = 6.0, smooth_px: float = 3.0) -> np.ndarray:
    """Blend the mesh's normals (where it covers, feathered over ``border_px``) into the head ellipsoid's normals."""
    proxy = ellipsoid_normals(head_mask)
    # Mesh normals flip sharply around nostrils and lips, where a second-order light cannot be resolved anyway:
    # smooth them (a few pixels) so the irradiance ratio does not draw lines there.
    mesh_normals = cv2.GaussianBlur(np.asarray(mesh_normals, np.float32), (0, 0), smooth_px)
    cover = cv2.erode(np.asarray(mesh_coverage, np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    weight = cv2.GaussianBlur(cover, (0, 0), border_px) * cover
    blended = weight[..., None] * np.asarray(mesh_normals, np.float32) + (1.0 - weight[..., None]) * proxy
    blended /= np.maximum(np.linalg.norm(blended, axis=2, keepdims=True), 1e-6)
    return blended.astype(np.float32)


#: Fraction of the crop side over which the head matte fades out toward the crop's edges (the bottom: the neck runs
#: on below the crop, and a relit neck ending in a straight line at the crop's edge would be a seam in the frame).
EDGE_FADE = 0.04
BOTTOM_FADE = 0.14


def edge_fade(size: int) -> np.ndarray:
    """(size, size) weights: 1 inside, easing to 0 at the crop's borders (wider at the bottom)."""
    u = (np.arange(size, dtype=np.float32) + 0.5) / size

    def ease(x: np.ndarray, width: float) -> np.ndarray:
        t = np.clip(x / width, 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)

    rows = ease(u, EDGE_FADE) * ease(1.0 - u, BOTTOM_FADE)
    cols = ease(u, EDGE_FADE) * ease(1.0 - u, EDGE_FADE)
    return (rows[:, None] * cols[None, :]).astype(np.float32)


def head_matte(crop_srgb: np.ndarray, shell_coverage: np.ndarray, face_coverage: np.ndarray,
               grow: float = 0.16, feather_px: float = 3.0) -> np.ndarray:
    """The whole head's soft matte (hair, ears, neck included) for the geometry engine: the person matte (``head_alpha``)
    inside the head shell's silhouette grown by ``grow`` × the crop side (hair reaches past any prior shape), seeded
    with the face mesh as sure foreground; faded toward the crop's edges (:func:`edge_fade`)."""
    size = crop_srgb.shape[0]
    cover = np.asarray(shell_coverage, np.uint8)
    radius = max(int(round(grow * size)), 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    region = cv2.GaussianBlur(cv2.dilate(cover, kernel).astype(np.float32), (0, 0), max(radius / 3.0, 1.0))
    return head_alpha(crop_srgb, region, face_coverage, feather_px) * edge_fade(size)
