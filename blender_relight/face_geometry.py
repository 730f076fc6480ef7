"""Face-mesh geometry for MediaPipe's 468 FaceMesh landmarks: triangles, vertex normals and a z-buffer rasteriser.

Why derived at run time: the topology is MediaPipe's (Apache-2.0), and MediaPipe already ships it in its Python
package as the edge list ``FACEMESH_TESSELATION``; rebuilding the triangles from it means the project ships no copy
of MediaPipe's data and always matches the installed version.

How: the tesselation lists each triangle's three directed edges (a→b, b→c, c→a), so the triangles are the 3-cliques of
the edge graph. Two cliques are not triangles (a vertex inside a triangle of its three neighbours makes the outer
triangle a clique too); they are the only cliques whose three edges each lie in three cliques and are dropped. The
winding is fixed by the directed edges: a consistently wound mesh uses every directed edge of the list exactly once.
The tesselation leaves the eyes and the inner mouth open; :func:`face_triangles` can close them (a strip between the
upper and lower lid or lip) for masks that should cover the whole face.

Note: MediaPipe's canonical_face_model.obj triangulates the same surface but with 209 quad diagonals flipped, so only
about half of its triangles appear verbatim here; every one of its quads is covered (see tests/test_face_geometry.py).

Coordinates: landmarks in crop pixels, x right, y down, z away from the camera in the same unit as x (MediaPipe's
``x·W, y·H, z·W``). Pixel (row r, column c) has its centre at (x, y) = (c, r), OpenCV's convention, so landmarks moved
with the same affine as ``cv2.warpAffine`` land on the right pixels. Projection is orthographic (the landmarks are
already in image space). Normals are in OpenCV camera axes (x right, y down, z forward): facing the camera is
(0, 0, -1).
"""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

NUM_LANDMARKS = 468


def _mediapipe_connections():
    try:
        from mediapipe.python.solutions import face_mesh_connections
    except ImportError as exc:  # pragma: no cover - mediapipe is a core dependency
        from blender_relight.errors import RelightError

        raise RelightError("mediapipe is not installed: install it (pip install mediapipe==0.10.21) "
                           "to get the face-mesh topology") from exc
    return face_mesh_connections


def brow_mask(points_px: np.ndarray, shape: tuple[int, int], grow_px: int = 2) -> np.ndarray:
    """(H, W) bool: the two eyebrows (the convex hull of each brow's mediapipe landmarks, grown by ``grow_px``) of a
    face whose landmarks ``points_px`` (468+, 3) are in the pixels of an image of ``shape``. What a shading fit leaves
    out: brow hair is far darker than skin, on the upper face, where it reads as less light from above."""
    import cv2

    fmc = _mediapipe_connections()
    pts = np.asarray(points_px, dtype=np.float64)
    out = np.zeros(shape, np.uint8)
    for brow in (fmc.FACEMESH_LEFT_EYEBROW, fmc.FACEMESH_RIGHT_EYEBROW):
        idx = sorted({i for edge in brow for i in edge})
        cv2.fillConvexPoly(out, cv2.convexHull(np.round(pts[idx, :2]).astype(np.int32)), 1)
    if grow_px > 0:
        out = cv2.dilate(out, np.ones((2 * grow_px + 1, 2 * grow_px + 1), np.uint8))
    return out > 0


def _orient(triangles: list[tuple[int, int, int]], directed: set[tuple[int, int]]) -> np.ndarray:
    """Wind every triangle consistently: seed from triangles whose winding the directed edge list decides, then
    propagate across shared edges (neighbours traverse a shared edge in opposite directions)."""
    tris = [list(t) for t in triangles]
    n = len(tris)
    edge_tris: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (a, b, c) in enumerate(tris):
        for u, v in ((a, b), (b, c), (c, a)):
            edge_tris[(min(u, v), max(u, v))].append(i)

    def edges(t: list[int]) -> list[tuple[int, int]]:
        return [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])]

    done = [False] * n
    queue: list[int] = []
    for i, t in enumerate(tris):
        fwd = all(e in directed for e in edges(t))
        rev = all((v, u) in directed for u, v in edges(t))
        if fwd != rev:
            if rev:
                tris[i] = t[::-1]
            done[i] = True
            queue.append(i)
    if not queue:  # no triangle decided by the list (cannot happen with MediaPipe's): take the first as it is
        done[0] = True
        queue.append(0)
    while queue:
        i = queue.pop()
        for u, v in edges(tris[i]):
            for j in edge_tris[(min(u, v), max(u, v))]:
                if done[j]:
                    continue
                if (u, v) in edges(tris[j]):  # same direction on the shared edge: flip the neighbour
                    tris[j] = tris[j][::-1]
                done[j] = True
                queue.append(j)
    return np.asarray(tris, dtype=np.int32)


def _strip(chain_a: list[int], chain_b: list[int]) -> list[tuple[int, int, int]]:
    """Triangulate the polygon between two vertex chains that share their end points (a lid pair, a lip pair)."""
    out: list[tuple[int, int, int]] = []
    i, j = 0, 0
    while i < len(chain_a) - 1 or j < len(chain_b) - 1:
        # advance along the chain that is proportionally behind, so triangles stay well shaped
        if j >= len(chain_b) - 1 or (i < len(chain_a) - 1 and (i + 1) / len(chain_a) <= (j + 1) / len(chain_b)):
            tri = (chain_a[i], chain_a[i + 1], chain_b[j])
            i += 1
        else:
            tri = (chain_a[i], chain_b[j + 1], chain_b[j])
            j += 1
        if len(set(tri)) == 3:
            out.append(tri)
    return out


def _chains(edge_set: frozenset, boundary: set[tuple[int, int]]) -> tuple[list[int], list[int]] | None:
    """The two directed chains of a MediaPipe contour (they start at one corner and end at the other), keeping only
    the contour whose edges are all holes of the tesselation (the inner lips, not the outer ones)."""
    edges = [e for e in edge_set if (min(e), max(e)) in boundary]
    nxt: dict[int, list[int]] = defaultdict(list)
    indeg: dict[int, int] = defaultdict(int)
    for a, b in edges:
        nxt[a].append(b)
        indeg[b] += 1
    starts = [v for v, outs in nxt.items() if len(outs) == 2 and indeg[v] == 0]
    if len(starts) != 1:
        return None
    chains = []
    for first in nxt[starts[0]]:
        chain = [starts[0], first]
        while len(nxt.get(chain[-1], [])) == 1:
            chain.append(nxt[chain[-1]][0])
        chains.append(chain)
    if chains[0][-1] != chains[1][-1]:
        return None
    return chains[0], chains[1]


@functools.lru_cache(maxsize=2)
def face_triangles(fill_holes: bool = False) -> np.ndarray:
    """Triangles ``(F, 3)`` int32 of the 468-landmark face mesh, consistently wound so that
    :func:`triangle_normals` faces the camera on a tracked face. Cached in memory.

    ``fill_holes`` adds strips over both eyes and the inner mouth (for masks); leave it off for lighting estimation,
    where eyes and teeth do not follow the skin's shading.
    """
    fmc = _mediapipe_connections()
    directed = set(fmc.FACEMESH_TESSELATION)
    adj: dict[int, set[int]] = defaultdict(set)
    for a, b in directed:
        adj[a].add(b)
        adj[b].add(a)
    cliques = sorted({tuple(sorted((a, b, c))) for a in adj for b in adj[a] if b > a for c in adj[a] & adj[b]})
    edge_count: dict[tuple[int, int], int] = defaultdict(int)
    for a, b, c in cliques:
        for e in ((a, b), (b, c), (a, c)):
            edge_count[e] += 1
    triangles = [t for t in cliques
                 if not all(edge_count[e] > 2 for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))]
    tris = _orient(triangles, directed)
    if fill_holes:
        count: dict[tuple[int, int], int] = defaultdict(int)
        for a, b, c in tris:
            for u, v in ((a, b), (b, c), (c, a)):
                count[(min(u, v), max(u, v))] += 1
        boundary = {e for e, k in count.items() if k == 1}
        extra: list[tuple[int, int, int]] = []
        for contour in (fmc.FACEMESH_LEFT_EYE, fmc.FACEMESH_RIGHT_EYE, fmc.FACEMESH_LIPS):
            chains = _chains(contour, boundary)
            if chains is not None:
                extra += _strip(*chains)
        # orient the fills against the mesh: each hole edge must be crossed opposite to its mesh triangle
        mesh_dir = {(int(u), int(v)) for a, b, c in tris for u, v in ((a, b), (b, c), (c, a))}
        fill_dir = {(v, u) for u, v in mesh_dir}
        all_tris = [tuple(int(x) for x in t) for t in tris] + extra
        tris = _orient(all_tris, mesh_dir | {e for e in fill_dir if (min(e), max(e)) in boundary})
    tris.setflags(write=False)
    return tris


def triangle_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unnormalised face normals ``(F, 3)`` (length = twice the area), pointing toward the camera for a tracked face
    (OpenCV axes: negative z)."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    return np.cross(b - a, c - a)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray | None = None) -> np.ndarray:
    """Area-weighted unit vertex normals ``(N, 3)`` (OpenCV axes, toward the camera = negative z)."""
    tris = face_triangles() if triangles is None else triangles
    v = np.asarray(vertices, dtype=np.float64)[:, :3]
    fn = triangle_normals(v, tris)
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, tris[:, k], fn)
    length = np.linalg.norm(vn, axis=1, keepdims=True)
    return vn / np.maximum(length, 1e-12)


@dataclass
class FaceMaps:
    """Per-pixel maps of a rendered mesh. ``normals`` are unit vectors in OpenCV camera axes (zero outside),
    ``depth`` is the interpolated z (0 outside), ``mask`` is pixel coverage, ``triangle`` the visible triangle's
    index (-1 outside) and ``attributes`` the interpolated extra per-vertex values, if any were given."""

    normals: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    triangle: np.ndarray
    attributes: np.ndarray | None = None


def rasterize(vertices: np.ndarray, triangles: np.ndarray, size: tuple[int, int] | int,
              vertex_attributes: np.ndarray | None = None, cull_backfaces: bool = True) -> FaceMaps:
    """Z-buffer rasterisation of a triangle mesh given in image coordinates (x right, y down, z away).

    The raster itself is the project's one rasteriser (``geometry.raster.raster_screen``: every bounding-box pixel
    of every triangle a candidate, nearest wins); here the orthographic crop-space front end: normals are the
    barycentric interpolation of the area-weighted vertex normals, renormalised (smooth shading).
    """
    from blender_relight.geometry.raster import raster_screen

    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    v = np.asarray(vertices, dtype=np.float64)[:, :3]
    tris = np.asarray(triangles, dtype=np.int64)
    vn = vertex_normals(v, tris)
    normals = np.zeros((h, w, 3), np.float32)
    depth = np.zeros((h, w), np.float32)
    tri_map = np.full((h, w), -1, np.int32)
    extra = None
    if vertex_attributes is not None:
        attrs = np.asarray(vertex_attributes, dtype=np.float64).reshape(len(v), -1)
        extra = np.zeros((h, w, attrs.shape[1]), np.float32)
    hits = raster_screen(v[:, :2], v[:, 2], tris, (h, w), cull="back" if cull_backfaces else "none")
    if hits.pixel.size == 0:
        return FaceMaps(normals, depth, np.zeros((h, w), bool), tri_map, extra)
    t = tris[hits.triangle]
    b = hits.bary
    tri_vn = vn.astype(np.float32)
    n = b[:, 0:1] * tri_vn[t[:, 0]] + b[:, 1:2] * tri_vn[t[:, 1]] + b[:, 2:3] * tri_vn[t[:, 2]]
    n *= 1.0 / np.sqrt(np.maximum(np.einsum("ij,ij->i", n, n), 1e-20))[:, None]
    normals.reshape(-1, 3)[hits.pixel] = n
    depth.reshape(-1)[hits.pixel] = hits.z
    tri_map.reshape(-1)[hits.pixel] = hits.triangle
    if extra is not None:
        extra.reshape(-1, extra.shape[2])[hits.pixel] = (b[:, 0:1] * attrs[t[:, 0]] + b[:, 1:2] * attrs[t[:, 1]]
                                                        + b[:, 2:3] * attrs[t[:, 2]])
    mask = tri_map >= 0
    return FaceMaps(normals, depth, mask, tri_map, extra)


def render_face_maps(points_crop: np.ndarray, size: tuple[int, int] | int = 512, fill_holes: bool = False,
                     vertex_attributes: np.ndarray | None = None) -> FaceMaps:
    """Normal, depth and coverage maps of the tracked face mesh in the crop.

    ``points_crop``: ``(468, 3)`` or ``(478, 3)`` landmarks in crop pixels (iris points, if present, are ignored).
    """
    pts = np.asarray(points_crop, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < NUM_LANDMARKS or pts.shape[1] != 3:
        raise ValueError(f"expected (468, 3) or (478, 3) face landmarks, got shape {pts.shape}")
    pts = pts[:NUM_LANDMARKS]
    if not np.all(np.isfinite(pts)):
        raise ValueError("face landmarks contain NaN or infinite values")
    if vertex_attributes is not None:
        vertex_attributes = np.asarray(vertex_attributes)[:NUM_LANDMARKS]
    return rasterize(pts, face_triangles(fill_holes), size, vertex_attributes)
