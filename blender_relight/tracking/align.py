"""EG3D/FFHQ-style alignment: a similarity transform frame -> 512² crop, its exact inverse, and a feathered mask.

Why FFHQ's recipe: EG3D's FFHQ crops (the model's training distribution) are aligned from the eye-to-eye and
eye-to-mouth vectors (Karras et al.'s ``recreate_aligned_images``); using the same recipe puts a tracked face where
the model expects it. Why a similarity (not a quad warp): its inverse is exact, so a relit crop pastes back with
``cv2.warpAffine(..., WARP_INVERSE_MAP)`` on the very matrix that made it.

Coordinates: OpenCV pixel coordinates (x right, y down, pixel centres at integers) in both frame and crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from blender_relight.tracking import landmarks as lmk

CROP_SIZE = 512

# Eye-corner midpoints are steadier than iris centres (gaze) or lid contours (blinks); FFHQ's eye means lie on them.
_MP_KEYS = {"eye_l": (lmk.MP_EYE_RIGHT_OUTER, lmk.MP_EYE_RIGHT_INNER), "eye_r": (lmk.MP_EYE_LEFT_INNER,
            lmk.MP_EYE_LEFT_OUTER), "mouth_l": (lmk.MP_MOUTH_RIGHT,), "mouth_r": (lmk.MP_MOUTH_LEFT,),
            "nose": (lmk.MP_NOSE_TIP,)}
# iBUG 68-point layout (face_alignment): eyes 36-41 (image left), 42-47, mouth corners 48 and 54, nose tip 30.
_IBUG_KEYS = {"eye_l": tuple(range(36, 42)), "eye_r": tuple(range(42, 48)), "mouth_l": (48,), "mouth_r": (54,),
              "nose": (30,)}


def keypoints(points: np.ndarray) -> dict[str, np.ndarray]:
    """Eye centres (image left/right), mouth corners and nose tip (x, y) from a 478/468- or 68-point layout."""
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    table = _IBUG_KEYS if len(pts) == 68 else _MP_KEYS
    if len(pts) not in (68, 468, 478):
        raise ValueError(f"unknown landmark layout with {len(pts)} points (expected 478, 468 or 68)")
    return {k: pts[list(idx)].mean(axis=0) for k, idx in table.items()}


def ffhq_frame(points: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """FFHQ's oriented crop square from landmarks: (centre c, half-side vector x), both (2,) in frame px.

    x points along the crop's +x axis and its length is half the crop side; y = rot90(x) points down.
    """
    k = keypoints(points)
    eye_avg = (k["eye_l"] + k["eye_r"]) / 2
    eye_to_eye = k["eye_r"] - k["eye_l"]
    mouth_avg = (k["mouth_l"] + k["mouth_r"]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * np.array([-1.0, 1.0])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) * scale
    c = eye_avg + eye_to_mouth * 0.1
    return c, x


def similarity_from_frame(c: np.ndarray, x: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 frame->crop matrix that maps the square (centre c, half-side vector x) onto the crop [0, size)²."""
    half = float(np.hypot(*x))
    s = size / (2.0 * half)
    cos, sin = x[0] / half, x[1] / half
    R = np.array([[cos, sin], [-sin, cos]]) * s  # rotates x onto +X and scales
    t = np.array([size / 2.0 - 0.5, size / 2.0 - 0.5]) - R @ np.asarray(c, dtype=np.float64)
    return np.hstack([R, t[:, None]])


def invert_affine(M: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(M, dtype=np.float64))


@dataclass
class CropTransform:
    """Frame -> crop similarity (2x3 ``matrix``), with the warps and the paste-back that use it."""

    matrix: np.ndarray
    size: int = CROP_SIZE

    @staticmethod
    def from_landmarks(points: np.ndarray, size: int = CROP_SIZE, scale: float = 1.0) -> "CropTransform":
        c, x = ffhq_frame(points, scale)
        return CropTransform(similarity_from_frame(c, x, size), size)

    @property
    def inverse(self) -> np.ndarray:
        """2x3 crop -> frame matrix."""
        return invert_affine(self.matrix)

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Frame points (N, 2) or (N, 3) -> crop; z (if present) scales with the crop."""
        return _apply(self.matrix, points, self.scale)

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Crop points (N, 2) or (N, 3) -> frame."""
        return _apply(self.inverse, points, 1.0 / self.scale)

    def warp(self, frame: np.ndarray, interpolation: int | None = None) -> np.ndarray:
        """The size² crop of ``frame`` (any dtype, any channel count); borders reflect, as FFHQ pads by mirroring."""
        if interpolation is None:
            interpolation = cv2.INTER_AREA if self.scale < 0.5 else cv2.INTER_LINEAR
        if interpolation == cv2.INTER_AREA:  # warpAffine has no area filter: pre-shrink, then warp the rest
            factor = int(np.floor(1.0 / self.scale))
            if factor >= 2:
                small = cv2.resize(frame, None, fx=1.0 / factor, fy=1.0 / factor, interpolation=cv2.INTER_AREA)
                S = np.array([[factor, 0.0, (factor - 1) / 2.0], [0.0, factor, (factor - 1) / 2.0], [0, 0, 1]])
                M = np.vstack([self.matrix, [0, 0, 1]]) @ S
                return cv2.warpAffine(small, M[:2], (self.size, self.size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT_101)
            interpolation = cv2.INTER_LINEAR
        return cv2.warpAffine(frame, self.matrix, (self.size, self.size), flags=interpolation,
                              borderMode=cv2.BORDER_REFLECT_101)

    def frame_roi(self, frame_shape: tuple[int, ...], mask: np.ndarray | None = None,
                  box: tuple[int, int, int, int] | None = None) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the frame region the crop (or the mask's non-zero part, or the crop-space ``box``
        (x0, y0, x1, y1) inclusive) covers, clipped."""
        h, w = frame_shape[:2]
        if box is None and mask is not None:
            bx, by, bw, bh = cv2.boundingRect((np.asarray(mask) > 1e-4).astype(np.uint8))
            if bw == 0 or bh == 0:
                return 0, 0, 0, 0
            box = (bx, by, bx + bw - 1, by + bh - 1)
        if box is not None:
            xa, ya, xb, yb = box
            corners = np.array([[xa, ya], [xb, ya], [xa, yb], [xb, yb]], dtype=np.float64)
        else:
            e = self.size - 1
            corners = np.array([[0, 0], [e, 0], [0, e], [e, e]], dtype=np.float64)
        pts = self.to_frame(corners)
        x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
        return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)

    def unwarp(self, crop: np.ndarray, frame: np.ndarray, mask: np.ndarray,
               reference: np.ndarray | None = None, in_place: bool = False) -> np.ndarray:
        """Paste ``crop`` back into a copy of ``frame`` (``frame`` itself with ``in_place``, for a frame made only to be
        pasted into) through the inverse warp, blended by the crop-space ``mask``.

        - ``reference`` None: the frame takes the crop's pixels where the mask is 1 (feathered at its edge).
        - ``reference`` = the unmodified crop (``warp(frame)``): the *ratio* ``crop / reference`` (a smooth shading
          change, clamped to [0, :data:`MAX_PASTE_RATIO`]) multiplies the frame, so the frame keeps its own
          full-resolution detail, an unchanged crop returns the frame exactly, and the result is never negative (a
          pasted difference went below 0 wherever the frame was darker than the crop's resampling of it).
        Only the mask's bounding box is used: the crop's part of it (with a pixel of border for the interpolation)
        is turned into a ratio and resampled onto the frame region it covers, so a light drag pastes a head, not a
        512² crop, and a 4K frame costs no more than its face. Mask values below 1e-4 count as 0. Works on float or
        integer frames. For a float32 frame with ``reference`` (the preview's path) the factor
        ``1 + mask · (ratio - 1)`` is made at crop resolution and resampled once (1 outside the crop): one warp and
        one multiply instead of two warps and four passes; against resampling mask and ratio apart it moves at most
        one 8-bit sRGB level on 0.1-0.3 % of the values (lp_d3, lp_d13 frame 30 under three lights).
        """
        out = frame if in_place else np.array(frame, copy=True)
        m8 = (np.asarray(mask) > 1e-4).astype(np.uint8)
        bx, by, bw, bh = cv2.boundingRect(m8)
        if bw == 0 or bh == 0:
            return out
        x0, y0, x1, y1 = self.frame_roi(frame.shape, mask, box=(bx, by, bx + bw - 1, by + bh - 1))
        if x1 <= x0 or y1 <= y0:
            return out
        # the crop's part under the mask, one pixel of border for the bilinear taps
        size_y, size_x = np.shape(mask)[:2]
        cx0, cy0 = max(bx - 1, 0), max(by - 1, 0)
        cx1, cy1 = min(bx + bw + 1, size_x), min(by + bh + 1, size_y)
        # Inverse map restricted to the ROI: dst (x, y) in the ROI samples the crop at matrix @ (x + x0, y + y0),
        # i.e. the sub-crop at that point minus its corner.
        M = self.matrix.copy()
        M[:, 2] += M[:, :2] @ np.array([x0, y0], dtype=np.float64) - np.array([cx0, cy0], dtype=np.float64)
        dsize = (x1 - x0, y1 - y0)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        sub_mask = np.where(m8[cy0:cy1, cx0:cx1] > 0, np.asarray(mask, np.float32)[cy0:cy1, cx0:cx1], np.float32(0))
        src = np.asarray(crop)[cy0:cy1, cx0:cx1].astype(np.float32, copy=False)
        if reference is not None:  # in place on the sub-crop: (max(crop, 0) + eps) / (max(reference, 0) + eps)
            ref = np.asarray(reference)[cy0:cy1, cx0:cx1]
            eps = np.float32(PASTE_EPS * (1.0 if np.issubdtype(ref.dtype, np.floating) else 255.0))
            src = np.maximum(src, np.float32(0.0))
            src += eps
            den = np.maximum(ref.astype(np.float32, copy=False), np.float32(0.0))
            den += eps
            src /= den
            np.minimum(src, np.float32(MAX_PASTE_RATIO), out=src)  # >= 0 already
            if out.dtype == np.float32:
                # The preview's path: the frame's factor 1 + mask·(ratio - 1) made at crop resolution and resampled
                # once (outside the crop: 1, no change), then one in-place multiply of the frame region.
                src -= np.float32(1.0)
                # the mask repeated per channel (cv2.merge): NumPy's (h, w, 1) broadcast is ~10x slower
                src *= cv2.merge([sub_mask] * src.shape[2]) if src.ndim == 3 and src.shape[2] > 1 else \
                    sub_mask.reshape(src.shape)
                src += np.float32(1.0)
                factor = cv2.warpAffine(src, M, dsize, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                        borderValue=(1.0, 1.0, 1.0, 1.0))
                out[y0:y1, x0:x1] *= factor[..., None] if factor.ndim == 2 and out.ndim == 3 else factor
                return out
        m = cv2.warpAffine(sub_mask, M, dsize, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        pasted = cv2.warpAffine(src, M, dsize, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        if pasted.ndim == 2 and out.ndim == 3:
            pasted = pasted[..., None]
        # the mask repeated per channel (cv2.merge) rather than broadcast from (h, w, 1): ~10x faster in NumPy
        mm = (cv2.merge([m] * out.shape[2]) if out.shape[2] > 1 else m[..., None]) if out.ndim == 3 else m
        region = out[y0:y1, x0:x1].astype(np.float32, copy=False)
        if reference is not None:
            blended = region * (1.0 + mm * (pasted - 1.0))
        else:
            blended = region + mm * (pasted - region)
        if np.issubdtype(out.dtype, np.integer):
            info = np.iinfo(out.dtype)
            blended = np.clip(np.rint(blended), info.min, info.max)
        out[y0:y1, x0:x1] = blended
        return out


#: Largest brightening the ratio paste applies (the engines' own ratio limit).
MAX_PASTE_RATIO = 8.0
#: Added to both sides of the paste's ratio (linear units of a float crop): near-black crop pixels get a ratio near 1
#: instead of a noisy, unbounded one.
PASTE_EPS = 1e-3


def _apply(M: np.ndarray, points: np.ndarray, z_scale: float) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    xy = pts[:, :2] @ M[:, :2].T + M[:, 2]
    if pts.shape[1] > 2:
        return np.concatenate([xy, pts[:, 2:] * z_scale], axis=1).astype(np.float32)
    return xy.astype(np.float32)


def face_mask(points_crop: np.ndarray, size: int = CROP_SIZE, forehead: float = 0.6, grow: float = 0.03,
              feather: float = 0.02) -> np.ndarray:
    """Feathered head/face mask (size, size) float32 in 0..1 from crop-space landmarks.

    The landmarks' convex hull stops at the brows, so the upper half of the face oval is copied upward by
    ``forehead`` × the eye-to-mouth distance to take in the forehead and the hairline; the hull is then grown by
    ``grow`` × size and blurred by a Gaussian of sigma ``feather`` × size placed *outside* it, so the mask is 1 on the
    whole face and falls to 0 over a few sigma: the paste has no seam.
    """
    pts = np.asarray(points_crop, dtype=np.float64)[:, :2]
    k = keypoints(points_crop)
    eye_avg = (k["eye_l"] + k["eye_r"]) / 2
    mouth_avg = (k["mouth_l"] + k["mouth_r"]) / 2
    down = mouth_avg - eye_avg
    lift = np.linalg.norm(down)
    down_unit = down / max(lift, 1e-6)
    upper = pts[(pts - eye_avg) @ down_unit < 0.0]  # points above the eye line
    lifted = upper - down_unit * lift * forehead
    hull = cv2.convexHull(np.concatenate([pts, lifted]).astype(np.float32))
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillConvexPoly(mask, np.rint(hull[:, 0]).astype(np.int32), 255, lineType=cv2.LINE_AA)
    sigma = max(feather * size, 0.5)
    radius = int(round(grow * size + 2.0 * sigma))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel)
    out = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma)
    return np.clip(out, 0.0, 1.0)
