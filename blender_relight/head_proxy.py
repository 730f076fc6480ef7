"""Normals for the whole head region of a crop: the tracked face mesh where it covers, an ellipsoid elsewhere.

Why: the face mesh stops at the hairline and the jaw, but the relit region (the feathered head mask) reaches into the
hair and past the cheeks. Zero or grazing normals there made the analytic ratio explode into a bright rim. An
ellipsoid fitted to the mask gives every masked pixel a plausible, smooth normal, and the mesh normals are blended in
over a soft border so there is no seam between the two.
"""
from __future__ import annotations

import cv2
import numpy as np


#: Side of the square GrabCut runs at: enough for a head's outline (upsampled and feathered), ~35 ms a frame.
MATTE_SIZE = 128


def head_labels(crop_srgb: np.ndarray, head_mask: np.ndarray, mesh_coverage: np.ndarray) -> np.ndarray:
    """GrabCut's head-and-hair labels (MATTE_SIZE², bool): the costly part of :func:`head_alpha`, light- and
    camera-independent, so the geometry engine computes it once per frame at analysis and caches it (2 KB packed).

    Seeds: the face mesh (``mesh_coverage``) sure foreground, ``head_mask`` > 0.05 probable foreground, the rest
    sure background; both masks may be of any size (resized to MATTE_SIZE²). All True when GrabCut finds nothing
    usable (the matte is then ``head_mask`` as it was)."""
    s = MATTE_SIZE
    small = cv2.resize(np.asarray(crop_srgb, np.uint8), (s, s), interpolation=cv2.INTER_AREA)
    seeds = np.full((s, s), cv2.GC_BGD, np.uint8)
    seeds[cv2.resize(np.asarray(head_mask, np.float32), (s, s), interpolation=cv2.INTER_LINEAR) > 0.05] = \
        cv2.GC_PR_FGD
    face = cv2.resize(np.asarray(mesh_coverage, np.uint8), (s, s), interpolation=cv2.INTER_NEAREST)
    seeds[cv2.erode(face, np.ones((3, 3), np.uint8)) > 0] = cv2.GC_FGD
    everything = np.ones((s, s), bool)
    if not (seeds == cv2.GC_FGD).any() or not (seeds == cv2.GC_BGD).any():
        return everything
    try:
        # GrabCut seeds its colour models from OpenCV's thread RNG: seeded here, the matte of a frame does not depend
        # on what ran before it (a scrub gave edges up to 67/255 apart).
        cv2.setRNGSeed(0)
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), 3,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return everything
    return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)


def labels_to_alpha(labels: np.ndarray, head_mask: np.ndarray, size: tuple[int, int],
                    feather_px: float = 3.0) -> np.ndarray:
    """(H, W) soft matte from :func:`head_labels`: upsampled, feathered by ``feather_px`` (crop px) and limited to
    ``head_mask`` (resized to ``size`` = (H, W) when it has another size)."""
    h, w = size
    mask = np.asarray(head_mask, np.float32)
    if mask.shape[:2] != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    head = cv2.resize(np.asarray(labels, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return (mask * cv2.GaussianBlur(head, (0, 0), feather_px)).astype(np.float32)


def head_alpha(crop_srgb: np.ndarray, head_mask: np.ndarray, mesh_coverage: np.ndarray,
               feather_px: float = 3.0) -> np.ndarray:
    """Where a crop may be relit: the head and hair inside the tracker's head mask, background left out.

    Why: the head mask is the landmarks' hull plus a forehead band; beside the cheeks, under the jaw and above thin
    hair it takes in background, which the ratio then lit as if it were skin (a halo). GrabCut, seeded with the face
    mesh as sure foreground and everything outside the mask as sure background, separates head and hair from what
    is behind them by colour (:func:`head_labels`). If it finds nothing usable, the mask is returned as it was.
    """
    labels = head_labels(crop_srgb, head_mask, mesh_coverage)
    return labels_to_alpha(labels, head_mask, crop_srgb.shape[:2], feather_px)


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
    side): GrabCut (:func:`head_labels`) inside the head shell's silhouette grown by ``grow`` × its side
    (:func:`matte_region`: hair reaches past any prior shape), seeded with the face mesh as sure foreground; faded
    toward the crop's edges (:func:`edge_fade`). The coverages may be at any resolution (the shell's raster at 128²
    is enough: the region is a soft shape). ``labels``: GrabCut's result cached from an earlier call (then
    ``crop_srgb`` is not needed)."""
    size = int(size or crop_srgb.shape[0])
    region = matte_region(shell_coverage, grow)
    if labels is None:
        labels = head_labels(crop_srgb, region, face_coverage)
    return labels_to_alpha(labels, region, (size, size), feather_px) * edge_fade(size)
