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

    @property
    def size(self) -> int:
        return int(self.depth.shape[0])

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
        sm = ShadowMap(np.empty((s, s), np.float32), rot, origin, focal, True, 1.0 / focal)
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
        sm = ShadowMap(np.empty((s, s), np.float32), rot, pos, focal, False, dist / focal)
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
    whatever the shadow says).
    """
    p = np.asarray(points, dtype=np.float32)
    n = np.asarray(normals, dtype=np.float32)
    if len(p) == 0:
        return np.zeros(0, np.float32)
    _, d0 = sm.to_light(p)
    texel = (np.full(len(p), sm.texel_world, np.float32) if sm.orthographic
             else np.maximum(d0, 1e-6) / np.float32(sm.focal))  # a texel's width where the receiver is
    # normal offset (~1.5 texels) and receiver-plane depth: each tap is compared with the depth the receiver's own
    # tangent plane has under that tap (a lit slope seen obliquely rises across the filter and must not shadow itself)
    xy, d = sm.to_light(p + n * (1.5 * texel)[:, None])
    r = sm.rotation.astype(np.float32)
    ncx = n @ r[0]
    ncy = n @ r[1]
    ncz = np.minimum(n @ r[2], -0.25)  # facing the light: negative; grazing slopes clamped (|gradient| ≤ ~4)
    grad = np.stack([-ncx / ncz, -ncy / ncz], 1) * texel[:, None]  # depth per texel along the map's x and y
    slack = texel * 1.5
    dist = d if light_distance is None else np.broadcast_to(np.asarray(light_distance, np.float32), d.shape)
    texels_per_world = 1.0 / np.maximum(texel, 1e-9)
    # blocker search over the penumbra of blockers up to MAX_GAP in front (a nose over a cheek, a jaw over the neck)
    search = np.clip(light_size * MAX_GAP / np.maximum(dist, 1e-3) * texels_per_world, 1.0, 8.0).astype(np.float32)
    offsets = search[:, None, None] * _BLOCKER_TAPS[None].astype(np.float32)
    bd = _gather(sm.depth, xy[:, None, :] + offsets)
    plane = d[:, None] + np.einsum("nkc,nc->nk", offsets, grad)
    blocked = bd < plane - slack[:, None]
    count = blocked.sum(1)
    vis = np.ones(len(p), np.float32)
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
    plane = d_s[:, None] + np.einsum("nkc,nc->nk", offsets, grad[some])
    lit = _gather(sm.depth, xy[some][:, None, :] + offsets) >= plane - slack[some][:, None]
    vis[some] = lit.mean(1)
    return vis
