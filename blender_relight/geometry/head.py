"""A frame's head as one triangle mesh in EG3D world coordinates: the tracked face mesh lifted to 3D, joined to a
head shell (forehead, hair, ears, back of the head, neck) fitted to the plate's head silhouette.

Why this shape:
- **Face**: the 468 tracked landmarks are lifted along the rays of the frame's own camera (``track.camera``) to the
  depth MediaPipe measured (its z, in crop pixels, converted at the face's distance like
  ``tracking.pose.backproject_frontal``). Seen from ``track.camera`` every landmark therefore projects exactly onto
  its crop pixel, whatever the PnP residual: the G-buffer lines up with the plate.
- **Shell**: a closed star-shaped surface around a centre inside the skull, ``c + r(ω)·ω`` over a fixed latitude/
  longitude grid of directions ω (poles up and down, the UV seam at the back of the head, never seen from the front).
  ``r`` is a soft union of an ellipsoid (head with hair) and a vertical cylinder (neck), placed on the face by a
  similarity fitted from the stored face template to this frame's lifted landmarks, scaled per image direction so its
  outline follows the plate's matte, and blended over ~20° into the face mesh's own surface (ray-cast from ``c``), so
  forehead, temples and jaw run into the shell without a crease. Shell triangles behind the face mesh are dropped and
  the few left under its border sit a hair behind it, so the face mesh wins the z-test and there is no gap or seam.
- **Stable UVs**: vertex i is always the same place on a head: face vertex i is landmark i (UV from the template's
  front view, atlas left half), shell vertex (row, col) is always direction (θ, φ) in the head's frame (right half).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from blender_relight import camera as cam
from blender_relight.geometry import raster

#: Latitude rows and longitude columns of the shell grid (poles at +y and -y of the head frame, seam at the back).
SHELL_ROWS = 56
SHELL_COLS = 112
#: Prior head shape in the template's frame (EG3D units, ~0.47 m each): centre, ellipsoid radii (head with hair),
#: neck radius, the neck axis's z and its bottom (below any crop).
HEAD_CENTRE = np.array([0.0, 0.03, 0.06])
HEAD_RADII = np.array([0.19, 0.25, 0.225])
NECK_RADIUS = 0.115
NECK_Z = 0.0
NECK_BOTTOM_Y = -0.8
#: Softness of the head/neck union (an L^p norm of the two radii: larger is a sharper crease under the jaw).
UNION_POWER = 6.0
#: How far (radians, seen from the centre) the shell blends from the face surface into the fitted outer shape.
FACE_BLEND_RAD = 0.5
#: The shell sits this far (world units) behind the face mesh where both exist, so the face wins the z-test.
UNDERLAP = 0.012
#: Smoothing steps of the shell's radius field (removes the kink where the face blends into the outer shape).
SMOOTH_ITERATIONS = 24
#: Azimuthal map of the face seen from the head centre: side (px) and largest angle from the front axis it holds.
_MAP = 160
_MAP_THETA = 1.8
_FACE_UV_SCALE = 1.35
NUM_FACE = 468


@dataclass
class HeadGeometry:
    """One frame's head mesh (contract: /work/coord/GEOMETRY_CONTRACT.md)."""

    vertices: np.ndarray  # (V, 3) float32, EG3D world coordinates of this frame's head
    triangles: np.ndarray  # (T, 3) int32, counter-clockwise seen from outside ((b-a)×(c-a) points outward)
    uv: np.ndarray  # (V, 2) float32 in [0, 1], stable over clips
    part: np.ndarray  # (V,) uint8: 0 tracked face mesh, 1 head shell

    @property
    def num_face(self) -> int:
        return NUM_FACE


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) of an outward-wound mesh; shell vertices that are one place on the
    head (the poles, the seam column) share one normal."""
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    weld = _weld_map(len(v))
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    acc = np.zeros_like(v)
    for k in range(3):
        np.add.at(acc, weld[t[:, k]], fn)
    vn = acc[weld]
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=4)
def _weld_map_cached(n: int) -> np.ndarray:
    weld = np.arange(n)
    shell_n = (SHELL_ROWS + 1) * (SHELL_COLS + 1)
    if n == NUM_FACE + shell_n:
        grid = np.arange(shell_n).reshape(SHELL_ROWS + 1, SHELL_COLS + 1) + NUM_FACE
        target = grid.copy()
        target[:, SHELL_COLS] = grid[:, 0]  # seam column: the same directions as column 0
        target[0, :] = grid[0, 0]  # poles
        target[SHELL_ROWS, :] = grid[SHELL_ROWS, 0]
        weld[NUM_FACE:] = target.reshape(-1)
    weld.setflags(write=False)
    return weld


def _weld_map(n: int) -> np.ndarray:
    return _weld_map_cached(int(n))


# --- the shell grid (fixed over frames) ------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _shell_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit directions (N, 3) in the head frame, triangles (local indices, outward) and UVs of the shell grid."""
    theta = np.linspace(0.0, np.pi, SHELL_ROWS + 1)  # from +y (crown) to -y (under the neck)
    phi = np.linspace(-np.pi, np.pi, SHELL_COLS + 1)  # 0 at the front (+z), ±π at the back
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
    idx = np.arange(dirs.shape[0]).reshape(SHELL_ROWS + 1, SHELL_COLS + 1)
    a, b = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    c, d = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    tris = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    # wind outward on the unit sphere (the grid's orientation decides it once), drop the pole triangles' slivers
    p = dirs
    n = np.cross(p[tris[:, 1]] - p[tris[:, 0]], p[tris[:, 2]] - p[tris[:, 0]])
    area = np.linalg.norm(n, axis=1)
    centroid = p[tris].mean(1)
    flip = np.einsum("ij,ij->i", n, centroid) < 0
    tris[flip] = tris[flip][:, ::-1]
    tris = tris[area > 1e-9]
    uv = np.stack([0.5 + 0.5 * ph / (2 * np.pi) + 0.25, th / np.pi], -1).reshape(-1, 2)
    for arr in (dirs, tris, uv):
        arr.setflags(write=False)
    return dirs, tris.astype(np.int64), uv


@functools.lru_cache(maxsize=1)
def _face_topology() -> np.ndarray:
    from blender_relight import face_geometry

    return np.asarray(face_geometry.face_triangles(fill_holes=True), dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _face_uv() -> np.ndarray:
    """Landmark UVs from the template's front view (atlas left half): the same for every frame and clip."""
    from blender_relight.tracking import pose

    p = pose.load_template().points[:NUM_FACE]
    uv = np.stack([0.25 + p[:, 0] * _FACE_UV_SCALE, 0.5 - (p[:, 1] + 0.05) * _FACE_UV_SCALE], 1)
    uv = np.clip(uv, 0.0, 1.0).astype(np.float32)
    uv.setflags(write=False)
    return uv


# --- lifting the tracked face ----------------------------------------------------------------------------------
def lift_face(points_crop: np.ndarray, camera_label: np.ndarray, size: int) -> np.ndarray:
    """Crop landmarks (N ≥ 468, 3: px, px, MediaPipe z in crop px) -> (468, 3) EG3D world points on the rays of
    ``camera_label``, so they project back onto their crop pixels exactly.

    The depth of the outer-eye-corner midpoint is the template's (the camera looks at the template's head); the
    others differ by MediaPipe's z converted at that distance (a pixel there spans depth/f world units).
    """
    from blender_relight.tracking import landmarks as lmk
    from blender_relight.tracking import pose

    p = np.asarray(points_crop, dtype=np.float64)[:NUM_FACE]
    template = pose.load_template().points
    eye_ref = 0.5 * (template[lmk.MP_EYE_RIGHT_OUTER] + template[lmk.MP_EYE_LEFT_OUTER])
    d_ref = float(raster.to_camera(eye_ref[None], camera_label)[0, 2])
    _, K = cam.split_label(camera_label)
    f = K[0, 0] * size
    z_ref = 0.5 * (p[lmk.MP_EYE_RIGHT_OUTER, 2] + p[lmk.MP_EYE_LEFT_OUTER, 2])
    depth = d_ref + (p[:, 2] - z_ref) * d_ref / f
    return raster.unproject(p[:, :2], depth, camera_label, size)


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: scale s, rotation R, translation t with dst ≈ s·R·src + t."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (a**2).sum(1).mean())
    return s, R, mu_d - s * R @ mu_s


# --- the outer shape -------------------------------------------------------------------------------------------
def _outer_radius(dirs: np.ndarray) -> np.ndarray:
    """Distance from the head centre to the prior head-with-neck surface along unit directions (head frame)."""
    r_head = 1.0 / np.sqrt(((dirs / HEAD_RADII) ** 2).sum(1))
    off_z = NECK_Z - HEAD_CENTRE[2]
    # ray c + r·d against the vertical cylinder x² + (z - off_z)² = R², for the part going down
    a = dirs[:, 0] ** 2 + dirs[:, 2] ** 2
    bq = -2.0 * dirs[:, 2] * off_z
    cq = off_z**2 - NECK_RADIUS**2
    disc = np.maximum(bq * bq - 4 * a * cq, 0.0)
    r_side = (-bq + np.sqrt(disc)) / np.maximum(2 * a, 1e-9)
    down = dirs[:, 1] < -1e-6
    r_cap = np.where(down, (NECK_BOTTOM_Y - HEAD_CENTRE[1]) / np.where(down, dirs[:, 1], -1.0), 0.0)
    r_neck = np.where(down, np.minimum(r_side, r_cap), 0.0)
    # fade the neck in only below the centre (the cylinder's top is the head's middle, hidden inside the head)
    r_neck *= np.clip(-dirs[:, 1] / 0.25, 0.0, 1.0)
    return (r_head**UNION_POWER + r_neck**UNION_POWER) ** (1.0 / UNION_POWER)


def _azimuthal(dirs: np.ndarray) -> np.ndarray:
    """Head-frame unit directions -> pixel coordinates of the azimuthal-equidistant map centred on the front (+z)."""
    theta = np.arccos(np.clip(dirs[:, 2], -1.0, 1.0))
    planar = np.linalg.norm(dirs[:, :2], axis=1)
    scale = np.where(planar > 1e-9, theta / np.maximum(planar, 1e-9), 1.0)
    k = (_MAP / 2) / _MAP_THETA
    return np.stack([_MAP / 2 - 0.5 + dirs[:, 0] * scale * k, _MAP / 2 - 0.5 - dirs[:, 1] * scale * k], 1)


def _face_radius_map(face_head: np.ndarray, centre: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Azimuthal maps seen from the centre: distance to the face mesh (extrapolated beyond it), the blend weight
    (1 on the face, 0 from FACE_BLEND_RAD outside it), the face's coverage eroded by two texels, and its coverage."""
    rel = face_head - centre
    r = np.linalg.norm(rel, axis=1)
    xy = _azimuthal(rel / r[:, None])
    hits = raster.raster_screen(xy, r, _face_topology(), (_MAP, _MAP), cull="none")
    cover = np.zeros(_MAP * _MAP, np.float32)
    rmap = np.zeros(_MAP * _MAP, np.float32)
    t = _face_topology()[hits.triangle]
    cover[hits.pixel] = 1.0
    rmap[hits.pixel] = (hits.bary * r[t]).sum(1)
    cover = cover.reshape(_MAP, _MAP)
    rmap = rmap.reshape(_MAP, _MAP)
    filled = rmap.copy()
    for sigma in (2.0, 6.0, 18.0):  # normalised convolution: each pass fills further out from the face's edge
        num = cv2.GaussianBlur(filled * (filled > 0), (0, 0), sigma)
        den = cv2.GaussianBlur((filled > 0).astype(np.float32), (0, 0), sigma)
        filled = np.where(filled > 0, filled, np.where(den > 1e-3, num / np.maximum(den, 1e-6), 0.0))
    outside = cv2.distanceTransform((cover < 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    dist_rad = outside * (_MAP_THETA / (_MAP / 2))
    t_blend = np.clip(1.0 - dist_rad / FACE_BLEND_RAD, 0.0, 1.0)
    weight = t_blend * t_blend * (3.0 - 2.0 * t_blend)
    inner = cv2.erode(cover, np.ones((5, 5), np.uint8))
    return filled.astype(np.float32), weight.astype(np.float32), inner.astype(np.float32), cover


def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    m = cv2.remap(image, xy[:, 0].astype(np.float32).reshape(1, -1), xy[:, 1].astype(np.float32).reshape(1, -1),
                  cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return m.reshape(-1)


#: Half-width (in the 90 direction bins) of the max filter that makes the fitted outline an envelope of the matte's.
ENVELOPE_BINS = 3


def _silhouette_scale(points_world: np.ndarray, centre_world: np.ndarray, matte: np.ndarray,
                      camera_label: np.ndarray, bins: int = 90) -> np.ndarray:
    """Per-point radial scale that moves the projected outline of ``points_world`` onto the matte's outline.

    Per image direction around the projected centre: the matte's farthest pixel over the points' farthest
    projection. Where the matte runs off the crop, it only says "at least this far" (the scale is never below 1);
    directions the matte does not reach keep the prior. Scales are smoothed over neighbouring directions.
    """
    size = matte.shape[0]
    xy, _ = raster.project(points_world, camera_label, size)
    pc, _ = raster.project(centre_world[None], camera_label, size)
    pc = pc[0]
    ang = np.arctan2(xy[:, 1] - pc[1], xy[:, 0] - pc[0])
    rho = np.hypot(xy[:, 1] - pc[1], xy[:, 0] - pc[0])
    b = ((ang + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
    prior = np.zeros(bins)
    np.maximum.at(prior, b, rho)
    binary = (matte > 0.5).astype(np.uint8)
    if cv2.countNonZero(binary) < 100:
        return np.ones(len(points_world))
    # the farthest matte pixel of each direction lies on its outer outline: the outline's pixels are enough
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = np.concatenate([c.reshape(-1, 2) for c in contours], axis=0)
    xs, ys = outline[:, 0].astype(np.float64), outline[:, 1].astype(np.float64)
    mang = np.arctan2(ys - pc[1], xs - pc[0])
    mrho = np.hypot(ys - pc[1], xs - pc[0])
    mb = ((mang + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
    extent = np.zeros(bins)
    np.maximum.at(extent, mb, mrho)
    edge = (xs <= 1) | (ys <= 1) | (xs >= size - 2) | (ys >= size - 2)
    clipped = np.zeros(bins, bool)
    clipped[np.unique(mb[edge])] = True
    scale = np.where(prior > 1, extent / np.maximum(prior, 1e-6), 1.0)
    scale = np.where(extent > 0, scale, 1.0)
    scale = np.where(clipped, np.maximum(scale, 1.0), scale)
    scale = np.clip(scale, 0.75, 1.8)
    # the envelope of the outline (a circular max over ±ENVELOPE_BINS), then circular smoothing over ~4 bins: the
    # shell reaches the tips of wavy hair instead of cutting through them; a new view's coverage is carved back to
    # the matte's own outline (``novel_view.render``: the filmed silhouette bounds the head)
    scale = np.max(np.stack([np.roll(scale, k) for k in range(-ENVELOPE_BINS, ENVELOPE_BINS + 1)]), axis=0)
    k = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    k /= k.sum()
    scale = np.convolve(np.concatenate([scale[-6:], scale, scale[:6]]), k, mode="same")[6:-6]
    # interpolate per point between bin centres
    pos = (ang + np.pi) / (2 * np.pi) * bins - 0.5
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    return (1 - frac) * scale[i0 % bins] + frac * scale[(i0 + 1) % bins]


def _relax(radius: np.ndarray, fixed: np.ndarray, iterations: int = SMOOTH_ITERATIONS) -> np.ndarray:
    """Smooth the shell's radius over its grid (Jacobi steps of the 4-neighbour mean) with the directions under the
    face held: the slope runs on from the face's edge into the outer shape instead of kinking there (a kink shows
    as a line in the shading)."""
    r = radius.reshape(SHELL_ROWS + 1, SHELL_COLS + 1).copy()
    hold = fixed.reshape(r.shape)
    keep = r.copy()
    for _ in range(iterations):
        core = r[:, :-1]  # the seam column repeats column 0
        left, right = np.roll(core, 1, axis=1), np.roll(core, -1, axis=1)
        up = np.vstack([core[:1], core[:-1]])
        down = np.vstack([core[1:], core[-1:]])
        core = 0.25 * (left + right + up + down)
        r[:, :-1] = core
        r[:, -1] = core[:, 0]
        r[0, :] = r[0, :-1].mean()  # poles are one point each
        r[-1, :] = r[-1, :-1].mean()
        r = np.where(hold, keep, r)
    return r.reshape(-1)


#: Carving the shell to the filmed matte's visual hull: a shell point counts as inside where the matte at its
#: projection is at least CARVE_MATTE (the carved surface projects onto the matte's outline, so this is where a new
#: view's coverage, ``novel_view.render.MATTE_ALPHA``, is already nearly full: carved to the matte's half-way point
#: it was drawn half see-through); points are pulled toward the head's centre down to CARVE_MIN of their radius
#: (searched in CARVE_STEPS steps, then refined by bisection).
CARVE_MATTE = 0.75
CARVE_MIN = 0.45
CARVE_STEPS = 24
#: Shell directions (head frame, y up) carved: fully from CARVE_FROM_Y + 0.3 up (crown, back-top), none below
#: CARVE_FROM_Y (the sides and the neck keep the prior shape, see-through where it passes the matte).
CARVE_FROM_Y = 0.4


def _carve_to_hull(points: np.ndarray, centre: np.ndarray, matte: np.ndarray, camera_label: np.ndarray,
                   weight: np.ndarray | None = None) -> np.ndarray:
    """``points`` (shell vertices, world) pulled along their ray from ``centre`` until they project into ``matte``
    seen from ``camera_label``: the shell cut to the filmed silhouette's visual hull.

    Why: the shell's outline is fitted to an envelope of the matte and its hidden back and top follow the prior
    shape, so at a new view part of it (the back-top above a head seen from above, the side of a turned head)
    projects outside the filmed matte. A new view's coverage is the matte at each point's projection, so that part
    was drawn see-through: a notch in the hair at the shell's back-top, with the background showing through. Cut
    to the hull, the surface a new ray meets first is inside the matte. A point projecting outside the crop is
    tested at the crop's edge (the matte running off the crop says "at least this far"): the head may go on there,
    background at the edge says it does not. ``weight`` (per point, 0..1): how far each point is carved (1: all
    the way to the hull, 0: kept)."""
    size = matte.shape[0]
    m = np.ascontiguousarray(matte, dtype=np.float32)
    rel = np.asarray(points, np.float64) - centre

    def inside(lam: np.ndarray, which: np.ndarray | slice = slice(None)) -> np.ndarray:
        xy, _ = raster.project(centre + rel[which] * lam[:, None], camera_label, size)
        xy = np.clip(xy, 0.0, size - 1.0)
        return _sample(m, xy) >= CARVE_MATTE

    n = len(rel)
    best = np.full(n, CARVE_MIN)
    found = np.zeros(n, bool)
    for lam in np.linspace(1.0, CARVE_MIN, CARVE_STEPS):  # outermost inside step first
        todo = np.flatnonzero(~found)
        if todo.size == 0:
            break
        ok = np.zeros(n, bool)
        ok[todo] = inside(np.full(todo.size, lam), todo)
        best[ok] = lam
        found |= ok
    step = (1.0 - CARVE_MIN) / (CARVE_STEPS - 1)
    lo, hi = best.copy(), np.minimum(best + step, 1.0)
    refine = found & (best < 1.0)
    for _ in range(4):  # bisect between the last inside and the first outside step
        mid = 0.5 * (lo + hi)
        ok = inside(mid)
        lo = np.where(refine & ok, mid, lo)
        hi = np.where(refine & ~ok, mid, hi)
    lam = np.where(found, lo, CARVE_MIN)
    if weight is not None:
        lam = 1.0 - np.asarray(weight, np.float64) * (1.0 - lam)
    return centre + rel * lam[:, None]


def head_geometry(track, matte: np.ndarray | None = None, carve: bool = False) -> HeadGeometry:
    """From a FrameTrack (tracking/tracker.py) and optionally the plate's head matte (crop size, [0, 1]) to this
    frame's head mesh in EG3D world coordinates (see the module docstring). ``carve`` (with a matte): the shell cut
    to the matte's visual hull from the filmed camera (:func:`_carve_to_hull`), the shape a new view moves; the
    filmed view's shading keeps the smooth uncut shell."""
    from blender_relight.tracking import pose

    if track.points is None or track.camera is None:
        raise ValueError(f"frame {track.index}: no tracked face to build a head from")
    size = int(track.crop_size)
    label = np.asarray(track.camera, dtype=np.float64)
    face_world = lift_face(track.points_crop(), label, size)
    template = pose.load_template().points[:NUM_FACE]
    s, R, t = _similarity(template, face_world)  # head (template) frame -> world

    def to_world(p: np.ndarray) -> np.ndarray:
        return s * p @ R.T + t

    face_head = (face_world - t) @ R / s
    dirs, shell_tris, shell_uv = _shell_grid()
    r_outer = _outer_radius(dirs)
    centre_world = to_world(HEAD_CENTRE[None])[0]
    if matte is not None:
        m = np.asarray(matte, dtype=np.float32)
        m = m[..., 0] if m.ndim == 3 else m
        if m.shape != (size, size):
            raise ValueError(f"matte has shape {m.shape}, expected the crop's ({size}, {size})")
        for _ in range(2):
            pts = to_world(HEAD_CENTRE + dirs * r_outer[:, None])
            r_outer = r_outer * _silhouette_scale(pts, centre_world, m, label)
    rmap, wmap, inner, cover = _face_radius_map(face_head, HEAD_CENTRE)
    mxy = _azimuthal(dirs)
    front = dirs[:, 2] > np.cos(_MAP_THETA)  # the map holds these directions
    r_face = np.where(front, _sample(rmap, mxy), 0.0)
    w = np.where(front, _sample(wmap, mxy), 0.0)
    w = np.where(r_face > 0, w, 0.0)
    radius = w * (r_face - UNDERLAP) + (1.0 - w) * r_outer
    covered = np.where(front, _sample(cover, mxy), 0.0) > 0.5
    radius = _relax(radius, fixed=covered)
    shell_head = HEAD_CENTRE + dirs * radius[:, None]
    # drop shell triangles wholly under the face mesh
    under = np.where(front, _sample(inner, mxy), 0.0) > 0.99
    shell_tris = shell_tris[~np.all(under[shell_tris], axis=1)]
    shell_world = to_world(shell_head)
    if carve and matte is not None:
        # Only the upper head (crown, back-top, temples) is cut: below, the hull of one view is a wall under the chin
        # and beside the jaw (the neck and the head's side seen by no camera), which a new view would draw opaque
        # with fill colours where the prior shell and the matte's see-through coverage show the torso and wall.
        up = np.clip((dirs[:, 1] - CARVE_FROM_Y) / 0.3, 0.0, 1.0)
        shell_world = _carve_to_hull(shell_world, centre_world, m, label, up * up * (3.0 - 2.0 * up))
    vertices = np.concatenate([face_world, shell_world]).astype(np.float32)
    triangles = np.concatenate([_face_topology(), shell_tris + NUM_FACE]).astype(np.int32)
    uv = np.concatenate([_face_uv(), shell_uv]).astype(np.float32)
    part = np.concatenate([np.zeros(NUM_FACE, np.uint8), np.ones(len(dirs), np.uint8)])
    return HeadGeometry(vertices, triangles, uv, part)


def atlas_triangles(num_vertices: int) -> np.ndarray | None:
    """Every triangle a frame's head can have (the face mesh and the whole shell grid, none dropped under the face),
    for a mesh of ``num_vertices`` of this layout; None for any other mesh. What UV-space work lays out: a frame's
    own triangles drop the shell under its face, which differs from frame to frame."""
    shell_n = (SHELL_ROWS + 1) * (SHELL_COLS + 1)
    if int(num_vertices) != NUM_FACE + shell_n:
        return None
    return np.concatenate([_face_topology(), _shell_grid()[1] + NUM_FACE]).astype(np.int32)


def shadow_caster(geometry: HeadGeometry) -> HeadGeometry:
    """The same head with its shell at half the grid resolution: what a shadow map draws (a light change redraws
    every map, and a 3° shell is as good an occluder as a 1.6° one: its chord error is ~0.3 mm)."""
    verts = np.asarray(geometry.vertices)
    shell_n = (SHELL_ROWS + 1) * (SHELL_COLS + 1)
    if len(verts) != NUM_FACE + shell_n:
        return geometry
    grid = np.arange(shell_n).reshape(SHELL_ROWS + 1, SHELL_COLS + 1) + NUM_FACE
    used = np.zeros(len(verts), bool)
    used[np.asarray(geometry.triangles).reshape(-1)] = True
    coarse = grid[::2, ::2]
    a, b = coarse[:-1, :-1].reshape(-1), coarse[:-1, 1:].reshape(-1)
    c, d = coarse[1:, :-1].reshape(-1), coarse[1:, 1:].reshape(-1)
    quads = np.stack([a, b, c, d], 1)
    # keep the quads the fine shell kept (not wholly under the face); wind like the fine grid (a, c, b), (b, c, d)
    keep = used[quads].any(1)
    quads = quads[keep]
    tris = np.concatenate([quads[:, [0, 2, 1]], quads[:, [1, 2, 3]]])
    dirs = _shell_grid()[0]  # wind outward exactly as the fine grid is: decided on the unit sphere
    u = dirs[tris - NUM_FACE]
    n = np.cross(u[:, 1] - u[:, 0], u[:, 2] - u[:, 0])
    flip = np.einsum("ij,ij->i", n, u.mean(1)) < 0
    tris[flip] = tris[flip][:, ::-1]
    tris = tris[np.linalg.norm(n, axis=1) > 1e-9]
    face = np.asarray(geometry.triangles)[np.all(np.asarray(geometry.triangles) < NUM_FACE, axis=1)]
    return HeadGeometry(geometry.vertices, np.concatenate([face, tris]).astype(np.int32), geometry.uv, geometry.part)
