"""Where a new view's surface points fall in the filmed crop, and how much to trust the filmed pixel there.

For each pixel the new view's G-buffer covers: its world point is projected into the source camera; it counts as
*seen* when the source depth at the nearest source pixel is not in front of it (within a tolerance), when the source
saw the surface from the front (cosine
between normal and view ray), inside the crop, and on the plate's head matte. Every factor is a smooth ramp, not a
threshold, so as the camera moves the blend toward other sources changes continuously (no popping).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from blender_relight import camera
from blender_relight.geometry import raster

#: Depth test (EG3D world units; the outer eye corners are 0.205 apart): a point up to OCCLUSION_TOL behind the
#: source surface is the surface itself (the head shell sits 0.012 behind the face mesh's border); the trust falls
#: to 0 over a further OCCLUSION_RAMP.
OCCLUSION_TOL = 0.025
OCCLUSION_RAMP = 0.03
#: Cosine between normal and the source's view ray: no trust below COS_LOW (grazing: stretched, mixed with the
#: silhouette), full trust above COS_HIGH. (Was 0.08..0.35: a texel only ever seen at cos 0.2 kept 0.85 of the weight
#: of a square view in a render and brought the grazing streaks the plate rule below rejects back from the texture.)
COS_LOW, COS_HIGH = 0.12, 0.4
#: For a new view: the source must face the point at least a little (cosine ramp to COS_FRONT) ...
COS_FRONT = 0.03
#: ... and the new view may see it at most this many times more squarely (a filmed pixel stretched 2-3.5x blurs).
STRETCH = (2.0, 3.5)
#: Away from the filmed pose, a filmed pixel is also trusted only where the source saw the surface squarely enough
#: (cosine ramp ``GRAZE``): where the source's ray grazes the geometry a filmed pixel spans a long strip of it, so
#: any misfit between the shell and the real hair or cheek there is drawn out along the rays (the hair streaks seen
#: on a turned head's side, which the stretch rule alone let through up to 3.5x); other frames, the mirror image or
#: the fill give that surface instead. Lower than the clip texture's ramp: the plate is the sharpest source, and
#: rejecting it up to cos 0.4 left wide smooth fill on the sides of a still's turned head.
GRAZE = (0.06, 0.25)


def smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    """3t² − 2t³ of t = (x − lo) / (hi − lo) clamped to [0, 1], in float32. Written as in-place steps without
    ``np.clip`` (~4x faster at 512²): a new view takes it on every head pixel several times; the arithmetic, and so
    every value, is that of ``t * t * (3 - 2 t)``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0:
        t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)
    t = np.subtract(x, np.float32(lo))
    t /= np.float32(hi - lo)
    np.maximum(t, np.float32(0.0), out=t)
    np.minimum(t, np.float32(1.0), out=t)
    u = np.multiply(t, np.float32(-2.0))
    u += np.float32(3.0)
    t2 = np.multiply(t, t)
    t2 *= u
    return t2


def min_depth(depth: np.ndarray, radius: int = 0) -> np.ndarray:
    """Depth map with each pixel the nearest depth of its (2r+1)² neighbourhood; empty pixels far away (1e9).

    ``radius`` 0 (the default) keeps the depth as it is: a min filter marks a one-pixel band along every depth edge
    as hidden, which at the filmed camera itself replaced filmed pixels by the fill (a dark line along the jaw)."""
    d = np.asarray(depth, dtype=np.float32)
    big = np.where(np.isfinite(d), d, np.float32(1e9)).astype(np.float32)
    if radius <= 0:
        return big
    return cv2.erode(big, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))


@dataclass
class SourceLookup:
    """For the covered pixels of a new view (``pixels``, flat indices into H·W): where each falls in the source crop
    (``xy``, float32 (N, 2)) and how much the filmed pixel there is trusted (``weight`` (N,) in [0, 1])."""

    pixels: np.ndarray
    xy: np.ndarray
    weight: np.ndarray
    #: whether the source saw the point at all (in front, facing it, inside the crop), stretch aside: where the
    #: source's matte says whether the point is head
    visible: np.ndarray | None = None
    #: whether the point projects inside the source crop (where the source's matte can say whether it is head)
    inside: np.ndarray | None = None


def lookup(position: np.ndarray, normal: np.ndarray, pixels: np.ndarray, source_label: np.ndarray,
           source_depth_min: np.ndarray, source_matte: np.ndarray | None, project,
           target_label: np.ndarray | None = None, graze: float = 0.0) -> SourceLookup:
    """Project the new view's world points ``position[pixels]`` into the source camera and weigh them.

    ``project`` is the geometry package's ``project(points, label, size) -> (xy, depth)`` so the depth test uses the
    same camera model as the raster that made ``source_depth_min``. Facing: with ``target_label`` the trust falls
    where the new view sees the surface much more squarely than the source did (the filmed pixel would be
    stretched: ratio of the two cosines between ``STRETCH`` bounds), so the filmed camera itself trusts every pixel
    it sees, silhouettes included; without it (the clip texture, which has no one target) it falls with the
    source's own grazing angle (``COS_LOW``..``COS_HIGH``). ``graze`` (0..1, with ``target_label``): how far the
    source's grazing rule (``GRAZE``) applies besides the stretch rule; the caller fades it in as the view leaves the
    filmed pose (0 there: the filmed camera gives back every pixel it saw).
    """
    size = source_depth_min.shape[0]
    # points and normals as contiguous columns (planar): every step below is a plain 1-D loop
    pts = np.take(np.asarray(position, np.float32).reshape(-1, 3), pixels, axis=0)
    px, py, pz = np.ascontiguousarray(pts.T)
    nx, ny, nz = np.ascontiguousarray(np.take(np.asarray(normal, np.float32).reshape(-1, 3), pixels, axis=0).T)
    if project is raster.project:  # the same camera model, in float32 on columns (every head pixel of a view)
        rot, centre, (fx, fy, cx, cy) = raster._camera(source_label, size)
        rot, t = rot.astype(np.float32), centre.astype(np.float32)
        dx, dy, dz = px - t[0], py - t[1], pz - t[2]
        z = dx * rot[0, 2] + dy * rot[1, 2] + dz * rot[2, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.float32(1.0) / z
            x = (dx * rot[0, 0] + dy * rot[1, 0] + dz * rot[2, 0]) * inv * np.float32(fx) + np.float32(cx)
            y = (dx * rot[0, 1] + dy * rot[1, 1] + dz * rot[2, 1]) * inv * np.float32(fy) + np.float32(cy)
        xy = np.stack([x, y], 1)
    else:
        xy, z = project(pts, source_label, size)
        xy = np.asarray(xy, dtype=np.float32)
        x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    inside = (x >= 0) & (x <= size - 1) & (y >= 0) & (y <= size - 1)
    top = np.float32(size - 1)
    xi = np.minimum(np.maximum(np.rint(x), np.float32(0.0)), top).astype(np.int64)
    yi = np.minimum(np.maximum(np.rint(y), np.float32(0.0)), top).astype(np.int64)
    nearest = yi * size + xi
    front = np.take(source_depth_min.reshape(-1), nearest)
    behind = np.asarray(z, dtype=np.float32) - front
    visible = 1.0 - smoothstep(OCCLUSION_TOL, OCCLUSION_TOL + OCCLUSION_RAMP, behind)
    centre = camera.split_label(source_label)[0][:3, 3]

    def cosine_to(eye: np.ndarray) -> np.ndarray:  # cosine between the normal and the ray to ``eye`` (float32)
        ex, ey, ez = (np.float32(v) for v in eye)
        rx, ry, rz = ex - px, ey - py, ez - pz
        length = np.sqrt(rx * rx + ry * ry + rz * rz)
        return (nx * rx + ny * ry + nz * rz) / np.maximum(length, 1e-9)

    cos = cosine_to(centre)
    if target_label is None:
        facing = smoothstep(COS_LOW, COS_HIGH, cos)
    else:
        cos_t = cosine_to(camera.split_label(target_label)[0][:3, 3])
        stretch = np.maximum(cos_t, 0.0) / np.maximum(cos, 1e-3)
        facing = smoothstep(0.0, COS_FRONT, cos) * (1.0 - smoothstep(STRETCH[0], STRETCH[1], stretch))
        if graze > 0.0:
            facing = facing * (1.0 - np.float32(graze) * (1.0 - smoothstep(GRAZE[0], GRAZE[1], cos)))
    seen = (visible * smoothstep(0.0, COS_FRONT, cos) * inside).astype(np.float32)
    weight = visible * facing * inside
    if target_label is None:
        seen = (visible * facing * inside).astype(np.float32)
    if source_matte is not None:
        weight = weight * np.take(np.asarray(source_matte, dtype=np.float32).reshape(-1), nearest)
    return SourceLookup(pixels, xy, weight.astype(np.float32), seen, inside)


def sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples (N, C) of ``image`` at float pixel positions ``xy`` (N, 2) (OpenCV centres), replicated
    border. One cv2.remap over an (N, 1) map: no resampling beyond the bilinear tap."""
    img = np.asarray(image, dtype=np.float32)
    n = len(xy)
    cols = 1024  # remap maps must stay below 32767 on each side: fold the N points into rows of 1024
    rows = max(1, -(-n // cols))
    pad = np.zeros((rows * cols, 2), np.float32)
    pad[:n] = xy
    mx = np.ascontiguousarray(pad[:, 0].reshape(rows, cols))
    my = np.ascontiguousarray(pad[:, 1].reshape(rows, cols))
    out = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(rows * cols, -1)[:n]
