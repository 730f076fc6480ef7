"""The project's one triangle rasteriser: vectorised NumPy, z-buffered, with orthographic and perspective front ends.

Why NumPy and no loop per pixel: the G-buffer of a 512² frame must cost well under 100 ms on one core, and a light
change must not re-rasterise at all (engines cache G-buffers). Every pixel centre in every triangle's bounding box is
one candidate (a ragged ``arange`` built with ``np.repeat``), barycentrics come from per-triangle plane equations and
the nearest candidate per pixel wins through one packed (depth, candidate) key reduced with ``np.minimum.at``.

Two users: :func:`raster_screen` takes vertices already in pixels (``face_geometry.rasterize``, the orthographic
crop-space mesh, calls it); :func:`rasterize` projects a :class:`~blender_relight.geometry.head.HeadGeometry` through
an EG3D camera label and returns a :class:`GBuffer`, perspective-correct.

Pixel convention: OpenCV's (x right, y down, pixel centre of column c at x = c), the crop's convention
(``tracking.align``), so a mesh lifted from crop landmarks and seen from the frame's own ``track.camera`` lands on the
crop pixel for pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blender_relight import camera as cam

#: Side (pixels) of the blocks a triangle's bounding box is tested in (a power of two: shifts and masks split the
#: candidate index).
TILE_BITS = 2
TILE = 1 << TILE_BITS
#: Bounding-box pixels from which a raster is split over two threads (a 512² head has ~575k; a 128² shadow map ~40k).
PARALLEL_CANDIDATES = 200_000

_POOL = None


def take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` along the first axis. ``np.take`` is several times faster than fancy indexing for the
    large index arrays of a raster (NumPy 1.26: 0.3 vs 1.6 ms for 177k rows of 3 floats); the values are the same."""
    return np.take(values, index, axis=0)


def scatter(target: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    """``target[index] = values`` for rows of a C-contiguous (N, C) ``target``, each row moved as one opaque item
    (about twice as fast as a fancy-index assignment of rows; the same result)."""
    rows = np.ascontiguousarray(values, dtype=target.dtype)
    if target.ndim == 1:
        target[index] = rows
        return
    item = np.dtype((np.void, target.dtype.itemsize * int(np.prod(target.shape[1:]))))
    target.view(item).reshape(-1)[index] = rows.view(item).reshape(-1)


def _pool():
    """One worker thread for the second half of a large raster (NumPy releases the GIL in its loops)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raster")
    return _POOL


@dataclass
class ScreenHits:
    """Visible fragments of a screen-space raster: one row per covered pixel.

    ``pixel``: flat pixel index (row·W + col); ``triangle``: index into the triangles given; ``bary``: (N, 3)
    screen-space barycentrics of the pixel centre; ``z``: the depth value that won the z-test."""

    pixel: np.ndarray
    triangle: np.ndarray
    bary: np.ndarray
    z: np.ndarray


def raster_screen(xy: np.ndarray, z: np.ndarray, triangles: np.ndarray, size: tuple[int, int],
                  cull: str = "back", interpolate_inverse_z: bool = False) -> ScreenHits:
    """Z-buffer of triangles whose vertices are at pixel positions ``xy`` (V, 2) with depth ``z`` (V,) (smaller is
    nearer).

    ``cull``: ``"back"`` drops triangles whose screen winding is clockwise in (x right, y down) coordinates, i.e.
    whose outward normal ((b-a)×(c-a)) points away from the viewer; ``"none"`` keeps both sides.
    ``interpolate_inverse_z``: the depth test interpolates 1/z (exact under perspective) instead of z (orthographic).
    """
    h, w = int(size[0]), int(size[1])
    xy = np.asarray(xy, dtype=np.float64)
    zv = np.asarray(z, dtype=np.float64)
    tris = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    empty = ScreenHits(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.float32),
                       np.zeros(0, np.float64))
    if tris.size == 0:
        return empty
    p0, p1, p2 = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    d = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p2[:, 0] - p0[:, 0]) * (p1[:, 1] - p0[:, 1])
    zt = zv[tris]
    keep = np.abs(d) > 1e-9  # NaN areas (points behind a perspective camera) fail this too
    if interpolate_inverse_z:
        keep &= np.all(zt > 1e-6, axis=1)  # a triangle behind the camera or through its plane is not drawn
    if cull == "back":
        keep &= d < 0.0
    elif cull != "none":
        raise ValueError(f"cull must be 'back' or 'none', got {cull!r}")
    kept = np.flatnonzero(keep)
    if kept.size == 0:
        return empty
    p0, p1, p2, d = p0[kept], p1[kept], p2[kept], d[kept]
    zk = zt[kept]
    if interpolate_inverse_z:
        zk = 1.0 / zk
    xs = np.stack([p0[:, 0], p1[:, 0], p2[:, 0]], 1)
    ys = np.stack([p0[:, 1], p1[:, 1], p2[:, 1]], 1)
    x0 = np.clip(np.ceil(xs.min(1)), 0, w).astype(np.int64)
    x1 = np.clip(np.floor(xs.max(1)), -1, w - 1).astype(np.int64)
    y0 = np.clip(np.ceil(ys.min(1)), 0, h).astype(np.int64)
    y1 = np.clip(np.floor(ys.max(1)), -1, h - 1).astype(np.int64)
    bw = np.maximum(x1 - x0 + 1, 0)
    bh = np.maximum(y1 - y0 + 1, 0)
    counts = bw * bh
    total = int(counts.sum())
    if total == 0:
        return empty

    # Plane equations: barycentric l1, l2 and the depth value as affine functions of the pixel centre.
    inv = 1.0 / d
    a1, b1 = (p2[:, 1] - p0[:, 1]) * inv, -(p2[:, 0] - p0[:, 0]) * inv
    a2, b2 = -(p1[:, 1] - p0[:, 1]) * inv, (p1[:, 0] - p0[:, 0]) * inv
    c1 = -(a1 * p0[:, 0] + b1 * p0[:, 1])
    c2 = -(a2 * p0[:, 0] + b2 * p0[:, 1])
    dz1, dz2 = zk[:, 1] - zk[:, 0], zk[:, 2] - zk[:, 0]
    az, bz = a1 * dz1 + a2 * dz2, b1 * dz1 + b2 * dz2
    cz = zk[:, 0] + c1 * dz1 + c2 * dz2

    # Candidates: every pixel centre of every triangle's bounding box, walked in TILE×TILE blocks so that the edge
    # tests are broadcasts over (tiles, TILE, TILE) with per-tile constants (no per-candidate gather, no divmod);
    # blocks no edge of the triangle can reach are dropped before any pixel of them is tested. The arithmetic per
    # pixel is the one of a plain bounding-box walk (``a·x + b·y + c`` with the coefficients rounded to float32), so
    # labels and barycentrics do not depend on the blocking; ties in depth go to the earlier triangle, as in a walk in
    # triangle order.
    def fragments(nz: np.ndarray):
        """(l1, l2, kept triangle, depth value, pixel) of the pixels inside triangles ``nz`` (kept indices)."""
        tx = (bw[nz] + (TILE - 1)) // TILE
        ty = (bh[nz] + (TILE - 1)) // TILE
        ntile = tx * ty
        tile_of = np.repeat(np.arange(nz.size), ntile)  # position in nz of each tile's triangle
        tstart = np.cumsum(ntile) - ntile
        tlocal = np.arange(int(ntile.sum())) - np.repeat(tstart, ntile)
        trow, tcol = np.divmod(tlocal, take(tx, tile_of))
        tri_of = take(nz, tile_of)  # index into the kept triangles
        ox = take(x0, tri_of) + tcol * TILE  # block origin (pixels)
        oy = take(y0, tri_of) + trow * TILE

        def coefficient(v: np.ndarray) -> np.ndarray:  # a plane coefficient as the per-pixel test takes it
            return take(v.astype(np.float32).astype(np.float64), tri_of)

        A1, B1, C1 = coefficient(a1), coefficient(b1), coefficient(c1)
        A2, B2, C2 = coefficient(a2), coefficient(b2), coefficient(c2)
        oxf, oyf = ox.astype(np.float64), oy.astype(np.float64)
        eps = np.float32(-1e-5)
        # Block culling (conservative, float64): an edge function is affine, so its largest value over the block is at
        # one of its corners; a block where any of l1, l2, 1 - l1 - l2 stays below eps there has no pixel inside. The
        # margin covers the float32 rounding of the per-pixel test (relative to the terms' size).
        span = np.float64(TILE - 1)

        def reachable(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
            at, bt, cv = take(a, tri_of), take(b, tri_of), take(c, tri_of)
            top = (cv + at * ox + bt * oy) + np.maximum(at, 0.0) * span + np.maximum(bt, 0.0) * span
            slack = 1e-3 + 1e-6 * (np.abs(at) * (np.abs(ox) + span) + np.abs(bt) * (np.abs(oy) + span) + np.abs(cv))
            return top >= -slack

        ok = reachable(a1, b1, c1) & reachable(a2, b2, c2) & reachable(-(a1 + a2), -(b1 + b2), 1.0 - (c1 + c2))
        live = np.flatnonzero(ok)
        if live.size == 0:
            return None
        tri_of, ox, oy, oxf, oyf = (take(v, live) for v in (tri_of, ox, oy, oxf, oyf))
        A1, B1, C1, A2, B2, C2 = (take(v, live) for v in (A1, B1, C1, A2, B2, C2))
        steps = np.arange(TILE, dtype=np.float64)
        pxf = oxf[:, None, None] + steps[None, None, :]  # (n, 1, TILE)
        pyf = oyf[:, None, None] + steps[None, :, None]  # (n, TILE, 1)

        def plane(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:  # (a·x + b·y) + c, in that order
            out = np.add(a[:, None, None] * pxf, b[:, None, None] * pyf)
            out += c[:, None, None]
            return out

        l1, l2 = plane(A1, B1, C1), plane(A2, B2, C2)
        inside = (l1 >= eps) & (l2 >= eps) & (l1 + l2 <= 1.0 - eps)
        inside &= pxf <= take(x1, tri_of)[:, None, None]  # the block's part beyond the bounding box
        inside &= pyf <= take(y1, tri_of)[:, None, None]
        idx = np.flatnonzero(inside)
        if idx.size == 0:
            return None
        block, within = idx >> (2 * TILE_BITS), idx & (TILE * TILE - 1)  # divmod by TILE², TILE: shifts and masks
        r, c = within >> TILE_BITS, within & (TILE - 1)
        l1, l2 = take(l1.reshape(-1), idx), take(l2.reshape(-1), idx)
        ct = take(tri_of, block)
        pxi = take(ox, block) + c
        pyi = take(oy, block) + r
        pxf, pyf = pxi.astype(np.float64), pyi.astype(np.float64)
        zval = take(az, ct) * pxf + take(bz, ct) * pyf + take(cz, ct)
        return l1, l2, ct, zval, pyi * w + pxi

    # Two halves of the triangles (in order) on two threads when there is enough to do: the fragments come out as
    # one walk in triangle order, whatever the split.
    nz = np.flatnonzero(counts)
    if total >= PARALLEL_CANDIDATES and nz.size > 1:
        cut = int(np.searchsorted(np.cumsum(counts[nz]), total // 2)) + 1
        later = _pool().submit(fragments, nz[cut:])
        parts = [fragments(nz[:cut]), later.result()]
    else:
        parts = [fragments(nz)]
    parts = [part for part in parts if part is not None]
    if not parts:
        return empty
    l1, l2, ct, zval, pix = (np.concatenate(c) if len(parts) > 1 else c[0] for c in zip(*parts))

    # Z-buffer without sorting: (quantised depth, fragment) packed into one int64; the smallest key per pixel is the
    # nearest fragment. With 1/z interpolated the nearest has the largest value, so the key uses its negation.
    test = -zval if interpolate_inverse_z else zval
    zmin, zmax = float(test.min()), float(test.max())
    zq = ((test - zmin) * ((2**30) / max(zmax - zmin, 1e-12))).astype(np.int64)
    key = (zq << 32) | np.arange(zval.size, dtype=np.int64)  # blocks go triangle by triangle: ties as in a walk
    none = np.iinfo(np.int64).max
    best = np.full(h * w, none, np.int64)
    np.minimum.at(best, pix, key)
    hit = np.flatnonzero(best != none)
    win = take(best, hit) & 0xFFFFFFFF
    wl1, wl2 = take(l1, win), take(l2, win)
    bary = np.empty((win.size, 3), np.float32)
    bary[:, 1] = wl1
    bary[:, 2] = wl2
    bary[:, 0] = 1.0 - wl1 - wl2
    zw = take(zval, win)
    if interpolate_inverse_z:
        zw = 1.0 / np.maximum(zw, 1e-12)
    return ScreenHits(hit, take(kept, take(ct, win)), bary, zw)


@dataclass
class GBuffer:
    """Per-pixel surface of a rendered head (contract: /work/coord/GEOMETRY_CONTRACT.md)."""

    mask: np.ndarray  # (H, W) bool, covered pixels
    depth: np.ndarray  # (H, W) float32, camera-space z, +inf where empty
    position: np.ndarray  # (H, W, 3) float32, EG3D world position
    normal: np.ndarray  # (H, W, 3) float32, unit world normal (interpolated vertex normals)
    uv: np.ndarray  # (H, W, 2) float32
    triangle: np.ndarray  # (H, W) int32, -1 where empty
    part: np.ndarray  # (H, W) uint8
    camera: np.ndarray | None = None  # (25,) the label it was rendered from (shading's view direction)


def _camera(camera_label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World->camera rotation, camera centre and pixel intrinsics (fx, fy, cx, cy) of a label at ``size``²."""
    c2w, K = cam.split_label(camera_label)
    R = c2w[:3, :3]
    t = c2w[:3, 3]
    intr = np.array([K[0, 0] * size, K[1, 1] * size, K[0, 2] * size - 0.5, K[1, 2] * size - 0.5])
    return R, t, intr


def to_camera(points_world: np.ndarray, camera_label: np.ndarray) -> np.ndarray:
    """(N, 3) EG3D world points -> OpenCV camera coordinates of the label's camera."""
    c2w, _ = cam.split_label(camera_label)
    return (np.asarray(points_world, dtype=np.float64) - c2w[:3, 3]) @ c2w[:3, :3]


def project(points_world: np.ndarray, camera_label: np.ndarray, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) pixel coordinates (x right, y down, pixel centres at integers) and (N,) camera-space depth."""
    R, t, (fx, fy, cx, cy) = _camera(camera_label, size)
    pc = (np.asarray(points_world, dtype=np.float64).reshape(-1, 3) - t) @ R
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = fx * pc[:, 0] / z + cx
        y = fy * pc[:, 1] / z + cy
    return np.stack([x, y], 1), z


def unproject(pixels: np.ndarray, depth: np.ndarray, camera_label: np.ndarray, size: int = 512) -> np.ndarray:
    """Inverse of :func:`project`: (N, 2) pixels at camera-space depths (N,) -> (N, 3) EG3D world points."""
    R, t, (fx, fy, cx, cy) = _camera(camera_label, size)
    px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(depth, dtype=np.float64).reshape(-1)
    pc = np.stack([(px[:, 0] - cx) * z / fx, (px[:, 1] - cy) * z / fy, z], 1)
    return pc @ R.T + t


def rasterize(geometry, camera_label: np.ndarray, size: int = 512, vertex_normals: np.ndarray | None = None
              ) -> GBuffer:
    """Z-buffered, perspective-correct raster of ``geometry`` (a HeadGeometry) seen from an EG3D camera label.

    With a frame's own ``track.camera`` the G-buffer lines up with that frame's 512² crop pixel for pixel.
    ``vertex_normals``: world unit normals per vertex when the caller has them already (else computed here).
    """
    from blender_relight.geometry.head import vertex_normals as _vertex_normals

    verts = np.asarray(geometry.vertices, dtype=np.float64)
    tris = np.asarray(geometry.triangles, dtype=np.int64)
    xy, z = project(verts, camera_label, size)
    hits = raster_screen(xy, z, tris, (size, size), cull="back", interpolate_inverse_z=True)
    mask = np.zeros((size, size), bool)
    depth = np.full((size, size), np.inf, np.float32)
    position = np.zeros((size, size, 3), np.float32)
    normal = np.zeros((size, size, 3), np.float32)
    uv = np.zeros((size, size, 2), np.float32)
    triangle = np.full((size, size), -1, np.int32)
    part = np.zeros((size, size), np.uint8)
    if hits.pixel.size:
        # Planar (channel, pixel) arrays: every step below is a contiguous 1-D loop (about half the time of the
        # same arithmetic on (pixel, channel) rows; the values are the same).
        corners = np.ascontiguousarray(tris.T)
        t = [np.take(corners[k], hits.triangle) for k in range(3)]  # each pixel's corner vertices, per corner
        # perspective-correct weights: screen barycentrics over each vertex's depth, renormalised
        z32 = z.astype(np.float32)
        wz = [hits.bary[:, k] / np.take(z32, t[k]) for k in range(3)]
        total = wz[0] + wz[1]
        total += wz[2]
        for w_k in wz:
            w_k /= total
        vn = _vertex_normals(verts, tris) if vertex_normals is None else np.asarray(vertex_normals, np.float64)
        # position, normal and UV interpolated together: one gather per corner
        attrs = np.ascontiguousarray(np.concatenate([verts.astype(np.float32), vn.astype(np.float32),
                                                     np.asarray(geometry.uv, np.float32)], axis=1).T)
        values = np.take(attrs, t[0], axis=1) * wz[0]
        values += np.take(attrs, t[1], axis=1) * wz[1]
        values += np.take(attrs, t[2], axis=1) * wz[2]
        n = values[3:6]
        n /= np.sqrt(np.maximum(n[0] * n[0] + n[1] * n[1] + n[2] * n[2], 1e-20))
        flat = hits.pixel
        mask.reshape(-1)[flat] = True
        depth.reshape(-1)[flat] = hits.z
        for image, first in ((position, 0), (normal, 3), (uv, 6)):  # channel by channel from the planar rows
            rows = image.reshape(-1, image.shape[-1])
            for j in range(image.shape[-1]):
                rows[:, j][flat] = values[first + j]
        triangle.reshape(-1)[flat] = hits.triangle
        part.reshape(-1)[flat] = np.take(np.asarray(geometry.part), t[0])
    return GBuffer(mask, depth, position, normal, uv, triangle, part, np.asarray(camera_label, np.float32))


def feather_seam(gbuffer: GBuffer, radius_px: float | None = None) -> GBuffer:
    """The G-buffer with its normals blended smoothly across the face-mesh/shell border (in place, returned).

    Why: the face mesh and the shell are two surfaces that meet at the face oval; their vertex normals agree only
    roughly there, and a light that grazes the forehead shows the difference as a line. Within ``radius_px``
    (default 3 % of the image side) of that border the normal is mixed with a local average of both sides, weighted
    by closeness to it, so shading runs across without a seam; everywhere else it is left as rasterised.
    """
    import cv2

    h, w = gbuffer.mask.shape
    r = float(radius_px) if radius_px is not None else 0.03 * max(h, w)
    if r < 1 or not gbuffer.mask.any():
        return gbuffer
    face = (gbuffer.mask & (gbuffer.part == 0)).astype(np.uint8)
    shell = (gbuffer.mask & (gbuffer.part != 0)).astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    border = (cv2.dilate(face, k) & cv2.dilate(shell, k)).astype(bool)
    if not border.any():
        return gbuffer
    # Everything below changes pixels within r of the border only; it is done on the border's box grown by r plus
    # the blur's reach (OpenCV's Gaussian kernel spans 4 sigma for float images), so the result is the whole
    # image's and costs the box's area.
    sigma = r / 2.0
    grow = int(np.ceil(r)) + int(np.ceil(4.0 * sigma)) + 2
    ys, xs = np.nonzero(border)
    rows = slice(max(int(ys.min()) - grow, 0), min(int(ys.max()) + grow + 1, h))
    cols = slice(max(int(xs.min()) - grow, 0), min(int(xs.max()) + grow + 1, w))
    mask = gbuffer.mask[rows, cols]
    normal = gbuffer.normal[rows, cols]
    dist = cv2.distanceTransform((~border[rows, cols]).astype(np.uint8), cv2.DIST_L2, 5)
    t = np.clip(1.0 - dist / r, 0.0, 1.0)
    weight = (t * t * (3.0 - 2.0 * t)) * mask
    m = mask.astype(np.float32)
    avg = cv2.GaussianBlur(normal * m[..., None], (0, 0), sigma)
    avg /= np.maximum(cv2.GaussianBlur(m, (0, 0), sigma), 1e-6)[..., None]
    n = normal + weight[..., None] * (avg - normal)
    n /= np.maximum(np.sqrt(n[..., 0] * n[..., 0] + n[..., 1] * n[..., 1] + n[..., 2] * n[..., 2]), 1e-6)[..., None]
    out = np.array(gbuffer.normal, np.float32, copy=True)
    out[rows, cols] = np.where(mask[..., None], n, 0.0)
    out[~gbuffer.mask] = 0.0
    gbuffer.normal = out
    return gbuffer
