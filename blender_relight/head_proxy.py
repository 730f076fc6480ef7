"""Normals for the whole head region of a crop: the tracked face mesh where it covers, an ellipsoid elsewhere.

Why: the face mesh stops at the hairline and the jaw, but the relit region (the feathered head mask) reaches into the
hair and past the cheeks. Zero or grazing normals there made the analytic ratio explode into a bright rim. An
ellipsoid fitted to the mask gives every masked pixel a plausible, smooth normal, and the mesh normals are blended in
over a soft border so there is no seam between the two.
"""
from __future__ import annotations

import cv2
import numpy as np


#: Side of the square the head matte is kept at (cached per frame at analysis; upsampled and feathered when used).
MATTE_SIZE = 128
#: Side the person-segmentation network is given the crop at (its own input is 256²).
SEGMENT_SIZE = 256


def head_labels(crop_srgb: np.ndarray, mesh_coverage: np.ndarray) -> np.ndarray:
    """The head-and-hair matte at MATTE_SIZE² (uint8, 0..255): the person matte (``matting.person_matte``, a
    segmentation network) united with the face mesh's coverage (``mesh_coverage``, any size), which counts as person
    whatever the network says (glasses, a hand-shadowed cheek). Light- and camera-independent: the geometry engine
    makes it once per frame at analysis and caches it (a few KB deflated).

    Why a network and not GrabCut (which this replaced): skin, a warm wall and brown hair share colours; GrabCut took
    in wall beside the jaw and a picture frame beside the hair and left hair out, which a new light lit as skin and a
    new camera moved as head (a pale balloon beside a turned head)."""
    from blender_relight.matting import person_matte

    s = MATTE_SIZE
    img = np.asarray(crop_srgb, np.uint8)
    if img.shape[0] > SEGMENT_SIZE:
        img = cv2.resize(img, (SEGMENT_SIZE, SEGMENT_SIZE), interpolation=cv2.INTER_AREA)
    person = cv2.resize(person_matte(img), (s, s), interpolation=cv2.INTER_AREA)
    face = cv2.resize(np.asarray(mesh_coverage, np.uint8), (s, s), interpolation=cv2.INTER_NEAREST)
    face = cv2.erode(face, np.ones((3, 3), np.uint8)).astype(np.float32)
    return np.round(255.0 * np.clip(np.maximum(person, face), 0.0, 1.0)).astype(np.uint8)


def labels_to_alpha(labels: np.ndarray, head_mask: np.ndarray, size: tuple[int, int],
                    feather_px: float = 3.0) -> np.ndarray:
    """(H, W) soft matte from :func:`head_labels`: upsampled, feathered by ``feather_px`` (crop px) and limited to
    ``head_mask`` (resized to ``size`` = (H, W) when it has another size)."""
    h, w = size
    mask = np.asarray(head_mask, np.float32)
    if mask.shape[:2] != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    head = cv2.resize(np.asarray(labels, np.float32) / 255.0, (w, h), interpolation=cv2.INTER_LINEAR)
    return (mask * cv2.GaussianBlur(head, (0, 0), feather_px)).astype(np.float32)


def head_alpha(crop_srgb: np.ndarray, head_mask: np.ndarray, mesh_coverage: np.ndarray,
               feather_px: float = 3.0) -> np.ndarray:
    """Where a crop may be relit: the head and hair (:func:`head_labels`) inside the caller's head region
    ``head_mask`` (the landmarks' hull plus a forehead band, or the head shell's silhouette grown), background left
    out: a region alone takes in background beside the cheeks, under the jaw and above thin hair, which the ratio then
    lit as if it were skin (a halo)."""
    return labels_to_alpha(head_labels(crop_srgb, mesh_coverage), head_mask, crop_srgb.shape[:2], feather_px)


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


def matte_region(shell_coverage: np.ndarray, grow: float = 0.16) -> np.ndarray:
    """Where hair may be: the head shell's silhouette grown by ``grow`` × its side and softened (float32, the size of
    ``shell_coverage``). Grown by a distance transform, so any radius costs the same (a 165² dilation kernel at 512²
    took 130 ms a frame; at the shell raster's 128² this is under 1 ms)."""
    cover = np.asarray(shell_coverage, np.uint8)
    radius = max(grow * cover.shape[0], 1.0)
    dist = cv2.distanceTransform((cover == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return cv2.GaussianBlur((dist <= radius).astype(np.float32), (0, 0), max(radius / 3.0, 1.0))


def head_matte(crop_srgb: np.ndarray | None, shell_coverage: np.ndarray, face_coverage: np.ndarray | None,
               grow: float = 0.16, feather_px: float = 3.0, size: int | None = None,
               labels: np.ndarray | None = None) -> np.ndarray:
    """The whole head's soft matte (hair, ears, neck included) for the geometry engine, ``size``² (default the crop's
    side): the head-and-hair matte (:func:`head_labels`: the person matte with the face mesh) inside the head shell's
    silhouette grown by ``grow`` × its side (:func:`matte_region`: hair reaches past any prior shape), faded toward
    the crop's edges (:func:`edge_fade`). The coverages may be at any resolution (the shell's raster at 128² is
    enough: the region is a soft shape). ``labels``: :func:`head_labels` cached from an earlier call (then
    ``crop_srgb`` and ``face_coverage`` are not needed)."""
    size = int(size or crop_srgb.shape[0])
    region = matte_region(shell_coverage, grow)
    if labels is None:
        labels = head_labels(crop_srgb, face_coverage)
    return labels_to_alpha(labels, region, (size, size), feather_px) * edge_fade(size)
