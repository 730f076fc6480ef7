"""Filling what no source saw: a push-pull fill of the head (smooth, weighted, fast) and the background behind a
moved head (Telea's inpainting: :func:`inpainted_background`).

Why push-pull: the last fallback must be smooth and free of seams whatever the hole's shape; a weighted image pyramid
(pull: average down with weights, push: fill each level's gaps from the coarser one) does that in a few ms at 512²,
and blends continuously into the known pixels, so the weights that feed it may change smoothly with the camera.
"""
from __future__ import annotations

import cv2
import numpy as np


def push_pull(colour: np.ndarray, weight: np.ndarray, levels: int = 8) -> np.ndarray:
    """Fill ``colour`` (H, W, C) where ``weight`` (H, W) is low from where it is high: the result equals
    ``colour`` where weight is 1 and is a smooth weighted extrapolation where it is 0."""
    c = np.asarray(colour, dtype=np.float32)
    w = np.clip(np.asarray(weight, dtype=np.float32), 0.0, 1.0)
    pyramid = []
    cw, ww = c * w[..., None], w
    for _ in range(levels):
        pyramid.append((cw, ww))
        if min(ww.shape[:2]) <= 2:
            break
        cw = cv2.pyrDown(cw)
        ww = cv2.pyrDown(ww)
        if cw.ndim == 2:
            cw = cw[..., None]
    cw, ww = pyramid[-1]
    filled = cw / np.maximum(ww, 1e-6)[..., None]
    for cw, ww in reversed(pyramid[:-1]):
        up = cv2.resize(filled, (ww.shape[1], ww.shape[0]), interpolation=cv2.INTER_LINEAR)
        if up.ndim == 2:
            up = up[..., None]
        known = cw / np.maximum(ww, 1e-6)[..., None]
        a = np.clip(ww * 4.0, 0.0, 1.0)[..., None]  # trust a level's own average once it holds a quarter weight
        filled = a * known + (1.0 - a) * up
    return filled.astype(np.float32)


def inpainted_background(crop: np.ndarray, hole: np.ndarray, work_size: int = 256) -> np.ndarray:
    """The crop with ``hole`` (H, W) [0, 1] (the filmed head grown by a margin, so hair wisps and the matte's soft
    edge do not bleed in) painted over from its surroundings: what was behind the head, as far as one frame can tell.

    Telea's inpainting (``cv2.inpaint``) at ``work_size``, in sRGB 8-bit, carries the wall's colours in from the
    hole's own border, so the strip a turned head uncovers continues the wall beside it. (A push-pull wash, used
    while the matte was GrabCut's, averaged the whole background: a pale band beside every turned head; Telea had
    been dropped then because hair left outside that matte streaked into the hole as a ghost head. The person
    matte keeps the hair inside the hole.) Outside the hole the crop is untouched."""
    from blender_relight import colour

    img = np.asarray(crop, dtype=np.float32)
    h, w = img.shape[:2]
    a = np.clip(np.asarray(hole, np.float32), 0.0, 1.0)
    small = colour.linear_to_uint8_srgb(cv2.resize(img, (work_size, work_size), interpolation=cv2.INTER_AREA))
    unknown = cv2.resize(a, (work_size, work_size), interpolation=cv2.INTER_AREA) > 0.01
    painted = cv2.inpaint(small, unknown.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    painted = cv2.resize(colour.uint8_srgb_to_linear(painted), (w, h), interpolation=cv2.INTER_LINEAR)
    return (img * (1.0 - a[..., None]) + painted * a[..., None]).astype(np.float32)
