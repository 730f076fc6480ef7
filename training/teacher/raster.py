"""A vectorised z-buffer triangle rasteriser in numpy, for the synthetic teacher.

Why our own: the teacher needs triangle ids and perspective-correct barycentrics per pixel (to interpolate any
attribute, and to get the exact correspondence of a surface point between two frames for the temporal loss), with
no GPU and no extra dependency. Every (triangle, pixel-in-its-box) candidate is tested at once; the nearest wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Fragments:
    """Per-pixel result: triangle id (-1 = empty), perspective-correct barycentrics and camera depth."""

    tri: np.ndarray  # (H, W) int64
    bary: np.ndarray  # (H, W, 3) float32
    depth: np.ndarray  # (H, W) float32, camera-space z (inf where empty)

    @property
    def mask(self) -> np.ndarray:
        return self.tri >= 0

    def interpolate(self, tris: np.ndarray, attr: np.ndarray) -> np.ndarray:
        """Interpolate per-vertex ``attr`` (V, C) to the pixels; zero where empty."""
        H, W = self.tri.shape
        out = np.zeros((H, W, attr.shape[1]), np.float32)
        m = self.mask
        corners = attr[tris[self.tri[m]]]  # (n, 3, C)
        out[m] = np.einsum("nk,nkc->nc", self.bary[m], corners)
        return out


def rasterize(screen: np.ndarray, tris: np.ndarray, height: int, width: int, near: float = 1e-3) -> Fragments:
    """Rasterise triangles given vertices in screen space: ``screen[:, :2]`` pixels (x right, y down), ``[:, 2]`` depth.

    Pixel (i, j) samples at (j + 0.5, i + 0.5). Barycentrics are corrected for perspective with the vertex depths.
    """
    v = screen[tris].astype(np.float64)  # (T, 3, 3)
    ok = (v[:, :, 2] > near).all(1)
    lo = np.floor(v[:, :, :2].min(1) - 0.5).astype(np.int64) + 1
    hi = np.floor(v[:, :, :2].max(1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi[:, 0] = np.minimum(hi[:, 0], width - 1)
    hi[:, 1] = np.minimum(hi[:, 1], height - 1)
    ok &= (hi >= lo).all(1)
    area = (v[:, 1, 0] - v[:, 0, 0]) * (v[:, 2, 1] - v[:, 0, 1]) - (v[:, 2, 0] - v[:, 0, 0]) * (v[:, 1, 1] - v[:, 0, 1])
    ok &= np.abs(area) > 1e-12
    ids = np.nonzero(ok)[0]
    tri_out = np.full(height * width, -1, np.int64)
    bary_out = np.zeros((height * width, 3), np.float32)
    depth_out = np.full(height * width, np.inf, np.float32)
    if ids.size:
        bw = hi[ids, 0] - lo[ids, 0] + 1
        bh = hi[ids, 1] - lo[ids, 1] + 1
        counts = bw * bh
        cand = np.repeat(ids, counts)
        start = np.repeat(np.cumsum(counts) - counts, counts)
        local = np.arange(cand.size) - start
        bwr = np.repeat(bw, counts)
        px = np.repeat(lo[ids, 0], counts) + local % bwr
        py = np.repeat(lo[ids, 1], counts) + local // bwr
        x, y = px + 0.5, py + 0.5
        a, b, c = v[cand, 0], v[cand, 1], v[cand, 2]
        ar = area[cand]
        w0 = ((b[:, 0] - x) * (c[:, 1] - y) - (c[:, 0] - x) * (b[:, 1] - y)) / ar
        w1 = ((c[:, 0] - x) * (a[:, 1] - y) - (a[:, 0] - x) * (c[:, 1] - y)) / ar
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-7) & (w1 >= -1e-7) & (w2 >= -1e-7)
        cand, px, py = cand[inside], px[inside], py[inside]
        w = np.stack([w0[inside], w1[inside], w2[inside]], 1)
        zinv = w / v[cand, :, 2]
        s = zinv.sum(1)
        z = 1.0 / s
        pix = py * width + px
        zbuf = np.full(height * width, np.inf)
        np.minimum.at(zbuf, pix, z)
        win = z <= zbuf[pix]
        pix, cand, z, bary = pix[win], cand[win], z[win], zinv[win] / s[win, None]
        tri_out[pix] = cand
        bary_out[pix] = bary
        depth_out[pix] = z
    return Fragments(tri_out.reshape(height, width), bary_out.reshape(height, width, 3),
                     depth_out.reshape(height, width))


def vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unit), following the triangles' winding."""
    fn = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, tris[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
