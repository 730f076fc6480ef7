"""Shadow maps of the head mesh seen from a light, and soft visibility lookups (percentage-closer soft shadows).

Why a shadow map and not a screen-space march: the occluders of a face (nose, brow, jaw, ear, hair, the head itself
for a back light) are in the mesh whether or not the camera sees them, and the same map serves the filmed view and
any new view. A map is one rasterisation of the mesh from the light (``geometry.raster.raster_screen``, the project's
rasteriser): a perspective frustum around the head for point, spot and area lights, an orthographic box for the sun.

Softness: a light of size ``s`` at distance ``d`` casts a penumbra ``s · (d_receiver - d_blocker) / d_blocker`` wide.
The lookup finds the average blocker depth over a small search disc, widens its percentage-closer filter to that
penumbra (at least ~1 texel, which also anti-aliases hard shadows) and averages depth tests over a fixed Poisson disc.
Biases: receivers are pushed along their normal by ~1.5 texels and compared with a constant slack, so a lit surface
does not shadow itself (acne) while a nose still shadows the cheek beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blender_relight.geometry import raster

#: Poisson-like disc (unit radius) of the filter taps: 12 points, evenly spread (golden-angle spiral).
_N_TAPS = 12
_golden = np.pi * (3.0 - np.sqrt(5.0))
_k = np.arange(_N_TAPS) + 0.5
POISSON = np.stack([np.sqrt(_k / _N_TAPS) * np.cos(_k * _golden), np.sqrt(_k / _N_TAPS) * np.sin(_k * _golden)], 1)
_BLOCKER_TAPS = POISSON[::3]  # 4 taps for the blocker search

#: Largest blocker-receiver distance (world units) the blocker search looks for: a nose over a cheek, a jaw over the
#: neck; farther blockers (the head for a back light) are still found by the centre taps.
MAX_GAP = 0.12
#: Default side of a shadow map (texels); the head fills it, so a texel is ~0.6/128 EG3D units (~2 mm).
DEFAULT_RESOLUTION = 128


@dataclass
class ShadowMap:
    """Depth of the nearest surface seen from a light. ``rotation`` rows are the light camera's axes in EG3D world
    (x right, y down, z forward), ``origin`` its position (perspective) or the box centre (orthographic)."""

    depth: np.ndarray  # (S, S) float32, +inf where nothing was drawn
    rotation: np.ndarray  # (3, 3)
    origin: np.ndarray  # (3,)
    focal: float  # texels per unit of x/z (perspective) or per world unit (orthographic)
    orthographic: bool
    texel_world: float  # a texel's width in world units at the head's centre
    centre: np.ndarray | None = None  # (3,) centre of the receivers it was fitted to (or of the mesh)
    radius: float = 0.0  # their bounding radius (twice it bounds a blocker-receiver gap)

    @property
    def size(self) -> int:
        return int(self.depth.shape[0])

    def nearest_within(self, radius: int) -> np.ndarray:
        """The map min-filtered over a (2r+1)² square (kept per radius): the nearest surface any tap within ``radius``
        texels can see, for the lit-for-sure test."""
        cache = self.__dict__.setdefault("_nearest", {})
        if radius not in cache:
            import cv2

            finite = np.where(np.isfinite(self.depth), self.depth, np.float32(1e30)).astype(np.float32)
            cache[radius] = cv2.erode(finite, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8),
                                      borderType=cv2.BORDER_REPLICATE)
        return cache[radius]

    def to_light(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> texel coordinates (N, 2) and depth along the light's axis (N,), float32."""
        p = np.asarray(points, dtype=np.float32)
        o = self.origin.astype(np.float32)
        r = self.rotation.astype(np.float32)
        qx, qy, qz = (p[:, 0] - o[0]), (p[:, 1] - o[1]), (p[:, 2] - o[2])
        x = qx * r[0, 0] + qy * r[0, 1] + qz * r[0, 2]  # explicit: a (N, 3) @ (3, 3) takes numpy's slow path
        y = qx * r[1, 0] + qy * r[1, 1] + qz * r[1, 2]
        z = qx * r[2, 0] + qy * r[2, 1] + qz * r[2, 2]
        c = np.float32(self.size / 2.0 - 0.5)
        f = np.float32(self.focal)
        if self.orthographic:
            return np.stack([x * f + c, y * f + c], 1), z
        inv = f / np.maximum(z, np.float32(1e-6))
        return np.stack([x * inv + c, y * inv + c], 1), z


def _basis(forward: np.ndarray) -> np.ndarray:
    f = forward / np.linalg.norm(forward)
    helper = np.array([0.0, 1.0, 0.0]) if abs(f[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(f, helper)
    x /= np.linalg.norm(x)
    y = np.cross(f, x)
    return np.stack([x, y, f])


def bounding_sphere(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and radius of a sphere around the mesh (box centre, farthest vertex)."""
    v = np.asarray(vertices, dtype=np.float64)
    centre = 0.5 * (v.min(0) + v.max(0))
    return centre, float(np.sqrt(((v - centre) ** 2).sum(1).max()))


def build_shadow_map(geometry, light_position: np.ndarray | None = None, light_direction: np.ndarray | None = None,
                     resolution: int = DEFAULT_RESOLUTION, receivers: np.ndarray | None = None) -> ShadowMap:
    """Rasterise ``geometry`` (HeadGeometry, EG3D world) from a light at ``light_position`` (point, spot, area) or
    along ``light_direction`` (sun: where the light travels), both EG3D world.

    ``receivers``: the points that will be looked up (a G-buffer's visible surface). The map is fitted to them: any
    blocker of a receiver lies between it and the light, so inside their footprint seen from the light, and the
    texels are spent on what the camera sees (the whole head with its neck would make them ~2.5× coarser).
    """
    verts = np.asarray(geometry.vertices, dtype=np.float64)
    target = verts if receivers is None or len(receivers) == 0 else np.asarray(receivers, dtype=np.float64)
    centre, radius = bounding_sphere(target)
    s = int(resolution)
    margin = 1.0 + 4.0 / s  # a few texels of border for the filter taps
    if light_position is None:
        if light_direction is None:
            raise ValueError("a shadow map needs a light position or a direction")
        rot = _basis(np.asarray(light_direction, dtype=np.float64))
        q = (target - centre) @ rot.T
        half = float(np.abs(q[:, :2]).max()) * margin
        _, far = bounding_sphere(verts)
        origin = centre - rot[2] * (far * 2.0 + float(np.linalg.norm(bounding_sphere(verts)[0] - centre)))
        focal = (s / 2.0) / max(half, 1e-6)
        sm = ShadowMap(np.empty((s, s), np.float32), rot, origin, focal, True, 1.0 / focal, centre, radius)
    else:
        pos = np.asarray(light_position, dtype=np.float64).reshape(3)
        to_head = centre - pos
        dist = float(np.linalg.norm(to_head))
        rot = _basis(to_head)
        q = (target - pos) @ rot.T
        ahead = q[:, 2] > 1e-6
        if ahead.all():
            tan_half = float(np.abs(q[:, :2] / q[:, 2:3]).max()) * margin
            tan_half = min(tan_half, np.tan(np.radians(80.0)))
        else:  # receivers beside or behind the light (a light inside the hair): the widest map
            tan_half = np.tan(np.radians(80.0))
        focal = (s / 2.0) / tan_half
        sm = ShadowMap(np.empty((s, s), np.float32), rot, pos, focal, False, dist / focal, centre, radius)
    xy, z = sm.to_light(verts)
    depth = np.full(s * s, np.inf, np.float32)
    if sm.orthographic or np.all(z > 1e-6):
        # front faces only (seen from the light): the nearest surface of a closed head, half the triangles
        hits = raster.raster_screen(xy, z, geometry.triangles, (s, s), cull="back",
                                    interpolate_inverse_z=not sm.orthographic)
    else:  # a light among the vertices (inside the hair): draw what is in front of it
        front = np.all(z[geometry.triangles] > 1e-6, axis=1)
        hits = raster.raster_screen(xy, np.where(z > 1e-6, z, 1e-6), geometry.triangles[front], (s, s),
                                    cull="none", interpolate_inverse_z=True)
    depth[hits.pixel] = hits.z
    sm.depth[...] = depth.reshape(s, s)
    return sm


def shadow_shift(sm: ShadowMap, light_position: np.ndarray | None = None,
                 light_direction: np.ndarray | None = None) -> float:
    """How far (texels) the shadows of map ``sm`` would move on its receivers if its light were at
    ``light_position`` (or travelled along ``light_direction`` for a sun) instead: a blocker at gap ``g`` in front of
    a receiver throws its shadow ``|Δp| · g / (D - g)`` further for a light moved by ``Δp`` at distance ``D`` (a sun
    turned by ``Δθ``: ``g · Δθ``); the gap is bounded by the receivers' diameter (a blocker and the receiver it
    shadows are both on the head). What decides whether a map can be kept while its light moves a little."""
    g = 2.0 * float(sm.radius)
    if sm.orthographic:
        if light_direction is None:
            return np.inf
        d = np.asarray(light_direction, np.float64).reshape(3)
        d = d / max(np.linalg.norm(d), 1e-12)
        angle = float(np.arccos(np.clip(d @ sm.rotation[2], -1.0, 1.0)))
        return g * angle / sm.texel_world
    if light_position is None or sm.centre is None:
        return np.inf
    move = float(np.linalg.norm(np.asarray(light_position, np.float64).reshape(3) - sm.origin))
    dist = float(np.linalg.norm(sm.origin - sm.centre))
    if dist <= g:  # a light among the receivers: any move changes what it sees
        return np.inf if move > 0 else 0.0
    return move * g / (dist - g) / sm.texel_world


def _gather_xy(depth: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``depth`` at the nearest texel of each (x, y) (clamped to the map)."""
    s = depth.shape[0]
    ix = np.clip(np.rint(x), 0, s - 1).astype(np.int32)
    iy = np.clip(np.rint(y), 0, s - 1).astype(np.int32)
    return depth.reshape(-1)[iy * s + ix]


def _gather(depth: np.ndarray, xy: np.ndarray) -> np.ndarray:
    s = depth.shape[0]
    ix = np.clip(np.rint(xy[..., 0]).astype(np.int32), 0, s - 1)
    iy = np.clip(np.rint(xy[..., 1]).astype(np.int32), 0, s - 1)
    return depth.reshape(-1)[iy * s + ix]


def visibility(sm: ShadowMap, points: np.ndarray, normals: np.ndarray, light_size: float = 0.0,
               light_distance: np.ndarray | float | None = None) -> np.ndarray:
    """Fraction (N,) in [0, 1] of a light of ``light_size`` (world units; 0: a point) that each point sees.

    ``points``/``normals``: EG3D world (N, 3), normals unit. ``light_distance``: from each point to the light (for
    the penumbra); the map's own depth when None. Call it for points that face the light (the others get no light
    whatever the shadow says). :func:`visibility_columns` on the transposed arrays.
    """
    p = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3).T)
    n = np.ascontiguousarray(np.asarray(normals, dtype=np.float32).reshape(-1, 3).T)
    return visibility_columns(sm, p, n, light_size, light_distance)


def visibility_columns(sm: ShadowMap, points_t: np.ndarray, normals_t: np.ndarray, light_size: float = 0.0,
                       light_distance: np.ndarray | float | None = None) -> np.ndarray:
    """:func:`visibility` of points and normals given as float32 columns (3, N) (what ``shading.shade`` keeps).

    Steps: project each receiver (pushed ~1.5 texels along its normal) into the map; where even the nearest depth
    within the widest filter (a min-filtered map) is behind the receiver's tangent plane, it is lit (most of a face:
    one lookup); the rest get the blocker search and the percentage-closer filter."""
    px, py, pz = (np.asarray(c, np.float32) for c in points_t)
    nx, ny, nz = (np.asarray(c, np.float32) for c in normals_t)
    if px.size == 0:
        return np.zeros(0, np.float32)
    r = [[float(v) for v in row] for row in sm.rotation]
    ox, oy, oz = (float(v) for v in sm.origin)
    qx, qy, qz = px - ox, py - oy, pz - oz
    cz = qx * r[2][0] + qy * r[2][1] + qz * r[2][2]  # the receiver's depth along the light's axis
    mx = nx * r[0][0] + ny * r[0][1] + nz * r[0][2]  # its normal in the light's axes
    my = nx * r[1][0] + ny * r[1][1] + nz * r[1][2]
    mz = nx * r[2][0] + ny * r[2][1] + nz * r[2][2]
    focal = float(sm.focal)
    texel = (np.full(px.shape, sm.texel_world, np.float32) if sm.orthographic
             else np.maximum(cz, np.float32(1e-6)) * np.float32(1.0 / focal))  # a texel's width at the receiver
    # normal offset (~1.5 texels) and receiver-plane depth: each tap is compared with the depth the receiver's own
    # tangent plane has under that tap (a lit slope seen obliquely rises across the filter and must not shadow itself)
    push = texel * np.float32(1.5)
    cx = qx * r[0][0] + qy * r[0][1] + qz * r[0][2] + mx * push
    cy = qx * r[1][0] + qy * r[1][1] + qz * r[1][2] + my * push
    d = cz + mz * push
    centre = sm.size / 2.0 - 0.5
    scale = np.float32(focal) if sm.orthographic else np.float32(focal) / np.maximum(d, np.float32(1e-6))
    tx, ty = cx * scale + np.float32(centre), cy * scale + np.float32(centre)
    inv_mz = -1.0 / np.minimum(mz, np.float32(-0.25))  # facing the light: negative; grazing slopes clamped (≤ ~4)
    gx, gy = mx * inv_mz * texel, my * inv_mz * texel  # depth per texel along the map's x and y
    slack = push  # 1.5 texels
    dist = d if light_distance is None else np.broadcast_to(np.asarray(light_distance, np.float32), d.shape)
    texels_per_world = 1.0 / np.maximum(texel, np.float32(1e-9))
    # blocker search over the penumbra of blockers up to MAX_GAP in front (a nose over a cheek, a jaw over the neck)
    search = np.clip(np.float32(light_size * MAX_GAP) / np.maximum(dist, np.float32(1e-3)) * texels_per_world,
                     1.0, 8.0)
    # Most of a face is plainly lit: where even the nearest depth within the widest filter is behind the receiver's
    # plane, no tap can be blocked (one lookup in a min-filtered map instead of 16 taps).
    reach = float(np.ceil(min(max(float(search.max()), 1.0), 8.0)))
    nearest = sm.nearest_within(int(reach))
    slope = (np.abs(gx) + np.abs(gy)) * np.float32(reach)
    clear = _gather_xy(nearest, tx, ty) >= d - slack - slope
    vis = np.ones(px.shape, np.float32)
    todo = np.flatnonzero(~clear)
    if todo.size == 0:
        return vis
    xy = np.stack([tx[todo], ty[todo]], 1)
    grad = np.stack([gx[todo], gy[todo]], 1)
    d, slack, dist, texels_per_world, search = (d[todo], slack[todo], np.broadcast_to(dist, vis.shape)[todo],
                                                texels_per_world[todo], search[todo])
    offsets = search[:, None, None] * _BLOCKER_TAPS[None].astype(np.float32)
    bd = _gather(sm.depth, xy[:, None, :] + offsets)
    plane = d[:, None] + offsets[..., 0] * grad[:, None, 0] + offsets[..., 1] * grad[:, None, 1]
    blocked = bd < plane - slack[:, None]
    count = blocked.sum(1)
    part = np.ones(len(todo), np.float32)
    some = np.flatnonzero(count > 0)
    if some.size == 0:
        return vis
    # penumbra from the mean blocker's depth, then a percentage-closer filter that wide (≥ 1 texel: anti-aliasing)
    bd_s, blocked_s, d_s = bd[some], blocked[some], d[some]
    mean_blocker = np.where(blocked_s, bd_s, 0.0).sum(1) / count[some]
    gap = np.maximum(d_s - mean_blocker, 0.0)
    dist_s = dist[some]
    penumbra = light_size * gap / np.maximum(dist_s - gap, 1e-3)
    radius = np.clip(penumbra * texels_per_world[some], 1.0, 8.0).astype(np.float32)
    offsets = radius[:, None, None] * POISSON[None].astype(np.float32)
    g = grad[some]
    plane = d_s[:, None] + offsets[..., 0] * g[:, None, 0] + offsets[..., 1] * g[:, None, 1]
    lit = _gather(sm.depth, xy[some][:, None, :] + offsets) >= plane - slack[some][:, None]
    part[some] = lit.mean(1)
    vis[todo] = part
    return vis
