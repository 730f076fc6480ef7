"""The parametric head of the synthetic teacher: a face mesh shaped per identity plus skull, ears, neck, hair shells.

Why parametric: the paper's teacher (a relightable 3D GAN) cannot be had here. A face template shaped by real
tracked landmarks gives real face shapes and expressions; simple analytic shells give the rest of the head so that
side views (±30° yaw) and back lights look like a head, not a mask. Everything is in EG3D world units (y up, face
toward +z, head near the origin) so that the crops match the EG3D camera conventions of ``blender_relight.camera``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from blender_relight import camera as cam
from blender_relight.errors import RelightError
from training.teacher.landmarks import shared_data_dir
from training.teacher.raster import vertex_normals

def _ffhq_placement() -> tuple[float, np.ndarray]:
    """Scale (world units per cm) and offset (cm) that put the canonical face where FFHQ/EG3D alignment puts faces.

    As ``blender_relight.tracking.align``/``pose``: the crop side is 4 × eye-to-eye (or 3.6 × eye-to-mouth), its
    centre is eye_avg + 0.1 · eye→mouth, and the outer-eye-corner midpoint sits at EG3D's pivot depth (z = 0.2).
    The frontal EG3D camera then sees the canonical face exactly as a tracked, aligned real face.
    """
    v, _ = canonical_face()
    eye_l, eye_r = (v[33] + v[133]) / 2, (v[362] + v[263]) / 2
    eye_avg, mouth = (eye_l + eye_r) / 2, (v[61] + v[291]) / 2
    half_cm = max(np.linalg.norm(eye_r - eye_l) * 2.0, np.linalg.norm(mouth - eye_avg) * 1.8)
    pivot_z = float(cam.LOOK_AT[2])
    half_world = (cam.RADIUS - pivot_z) * 0.5 / cam.FOCAL
    scale = half_world / half_cm
    centre = eye_avg + (mouth - eye_avg) * 0.1
    corner_mid_z = (v[33, 2] + v[263, 2]) / 2
    return float(scale), np.array([-centre[0], -centre[1], pivot_z / scale - corner_mid_z])


MATERIAL_FACE, MATERIAL_SKIN, MATERIAL_HAIR = 0, 1, 2
MATERIAL_FACE, MATERIAL_SKIN, MATERIAL_HAIR = 0, 1, 2


@lru_cache(maxsize=1)
def canonical_face(obj_path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's canonical face model (468 vertices in cm, 898 triangles), read from ../shared/data/mediapipe."""
    path = Path(obj_path) if obj_path else shared_data_dir() / "mediapipe" / "canonical_face_model.obj"
    if not path.exists():
        raise RelightError(f"{path}: MediaPipe canonical face model not found; it is needed for the face topology")
    verts, faces = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(t) for t in line.split()[1:4]])
        elif line.startswith("f "):
            faces.append([int(t.split("/")[0]) - 1 for t in line.split()[1:4]])
    v, f = np.array(verts), np.array(faces, np.int64)
    vn = vertex_normals(v, f)
    if vn[4, 2] < 0:  # the nose tip's normal must face the viewer (+z)
        f = f[:, ::-1].copy()
    return v, f


@lru_cache(maxsize=1)
def placement() -> tuple[float, np.ndarray]:
    """(world units per cm, the template's offset in cm), cached."""
    return _ffhq_placement()


def align_to_template(landmarks_px: np.ndarray) -> np.ndarray:
    """Image landmarks (x right, y down, z mediapipe) -> the template frame (cm), by similarity Procrustes."""
    tpl, _ = canonical_face()
    p = np.asarray(landmarks_px, np.float64) * np.array([1.0, -1.0, -1.0])
    mp, mt = p.mean(0), tpl.mean(0)
    a, b = p - mp, tpl - mt
    U, S, Vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (a ** 2).sum()
    return (s * a @ R.T) + mt


def face_boundary(tris: np.ndarray) -> np.ndarray:
    """Boundary edges (edges used by one triangle) of a mesh, (E, 2) in the triangles' winding."""
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    key = np.sort(e, 1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return e[cnt[inv.reshape(-1)] == 1]


def _ring_weight(tris: np.ndarray, n: int) -> np.ndarray:
    """Per-vertex 0 on the face outline rising to 1 at ``n`` rings inside (blends the texture into the skin)."""
    V = tris.max() + 1
    w = np.full(V, np.inf)
    frontier = np.unique(face_boundary(tris))
    w[frontier] = 0
    adj = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    adj = np.concatenate([adj, adj[:, ::-1]])
    for k in range(1, n + 1):
        nxt = np.unique(adj[np.isin(adj[:, 0], frontier), 1])
        nxt = nxt[np.isinf(w[nxt])]
        w[nxt] = k
        frontier = nxt
    return np.clip(w / n, 0, 1)


def ellipsoid(center, radii, n_lat: int = 24, n_lon: int = 36) -> tuple[np.ndarray, np.ndarray]:
    """A UV-sphere mesh scaled to an ellipsoid, outward winding; returns (verts, tris)."""
    th = np.linspace(0, np.pi, n_lat + 1)
    ph = np.linspace(0, 2 * np.pi, n_lon + 1)[:-1]
    T, P = np.meshgrid(th, ph, indexing="ij")
    d = np.stack([np.sin(T) * np.sin(P), np.cos(T), np.sin(T) * np.cos(P)], -1).reshape(-1, 3)
    verts = np.asarray(center) + d * np.asarray(radii)
    tris = []
    for i in range(n_lat):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, e = a + n_lon, b + n_lon
            tris += [[a, c, b], [b, c, e]]
    tris = np.array(tris, np.int64)
    fn = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    cen = verts[tris].mean(1) - np.asarray(center)
    keep = np.linalg.norm(fn, axis=1) > 1e-12
    flip = (fn * cen).sum(1) < 0
    tris[flip] = tris[flip][:, ::-1]
    return verts, tris[keep]


@dataclass
class HeadParams:
    """The random, per-identity parameters of the shells (cm, template frame)."""

    skull_radii: np.ndarray = field(default_factory=lambda: np.array([8.3, 10.8, 9.8]))
    skull_center: np.ndarray = field(default_factory=lambda: np.array([0.0, 2.2, -5.6]))
    hair: str = "short"  # none | short | long
    hair_front: float = 0.42  # hairline height on the forehead (normalised skull coordinate)
    hair_back: float = -0.5  # how low the hair reaches at the back
    hair_thickness: float = 1.08
    neck_radius: float = 5.3


def sample_head_params(rng: np.random.Generator, face_cm: np.ndarray) -> HeadParams:
    """Shells fitted to the identity's face width and height, with random variation."""
    width = face_cm[454, 0] - face_cm[234, 0]
    top = face_cm[10]
    rx = 0.55 * width * rng.uniform(1.02, 1.12)
    ry = rx * rng.uniform(1.22, 1.38)
    rz = rx * rng.uniform(1.1, 1.25)
    cz = top[2] - 0.8 - rz * np.sqrt(max(1e-3, 1.0 - 0.35 ** 2))
    cy = top[1] + rng.uniform(3.0, 5.5) - ry
    hair = rng.choice(["none", "short", "long"], p=[0.1, 0.55, 0.35])
    return HeadParams(np.array([rx, ry, rz]), np.array([0.0, cy, cz]), str(hair), rng.uniform(0.3, 0.5),
                      rng.uniform(-0.95, -0.75) if hair == "long" else rng.uniform(-0.45, -0.1),
                      rng.uniform(1.05, 1.13), rx * rng.uniform(0.6, 0.72))


def _project_to_ellipsoid(points: np.ndarray, center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    d = (points - center) / radii
    return center + d / np.linalg.norm(d, axis=1, keepdims=True) * radii


@dataclass
class HeadMesh:
    """One posed head: vertices (world), triangles, per-vertex normals, UVs, material, texture weight, part."""

    verts: np.ndarray
    tris: np.ndarray
    normals: np.ndarray
    uv: np.ndarray  # face texture coordinates in the texture's pixels (face vertices only)
    material: np.ndarray  # per-vertex material id
    tex_weight: np.ndarray  # 1 = face texture, 0 = skin colour
    n_face: int = 468


def build_head(face_cm: np.ndarray, params: HeadParams, uv: np.ndarray) -> HeadMesh:
    """Assemble face + skirt + skull + ears + neck + hair (in cm), then move to EG3D world units."""
    _, ftris = canonical_face()
    parts_v, parts_t, parts_n, mats, uvs, tw = [], [], [], [], [], []
    base = 0

    def add(v, t, mat, uv_=None, w=None):
        nonlocal base
        parts_n.append(vertex_normals(v, t))
        parts_v.append(v)
        parts_t.append(t + base)
        mats.append(np.full(len(v), mat))
        uvs.append(uv_ if uv_ is not None else np.zeros((len(v), 2)))
        tw.append(w if w is not None else np.zeros(len(v)))
        base += len(v)

    add(face_cm, ftris, MATERIAL_FACE, uv, _ring_weight(ftris, 3))
    # skirt: each outline edge extruded onto the skull, closing the gap between face and skull
    edges = face_boundary(ftris)
    ids = np.unique(edges)
    proj = _project_to_ellipsoid(face_cm[ids], params.skull_center, params.skull_radii * 1.0)
    remap = {int(k): i for i, k in enumerate(ids)}
    n = len(ids)
    sv = np.concatenate([face_cm[ids], proj])
    st = []
    for a, b in edges:
        ia, ib = remap[int(a)], remap[int(b)]
        st += [[ib, ia, ia + n], [ib, ia + n, ib + n]]
    add(sv, np.array(st, np.int64), MATERIAL_SKIN)
    out = (sv - params.skull_center) * parts_n[-1]
    parts_n[-1][out.sum(1) < 0] *= -1.0  # skirt normals point away from the skull centre
    add(*ellipsoid(params.skull_center, params.skull_radii * 0.995), MATERIAL_SKIN)
    ear_y = 0.5 * (face_cm[234, 1] + face_cm[454, 1]) - 0.5
    for sx in (-1.0, 1.0):
        c = params.skull_center + np.array([sx * params.skull_radii[0] * 0.93, 0.0, 0.0])
        c[1], c[2] = ear_y, params.skull_center[2] + 0.25 * params.skull_radii[2]
        add(*ellipsoid(c, [0.8, 2.6, 1.6], 10, 14), MATERIAL_SKIN)
    nv, nt = ellipsoid([0.0, params.skull_center[1] - params.skull_radii[1] - 3.0, params.skull_center[2] + 0.8],
                       [params.neck_radius, 12.0, params.neck_radius * 0.95], 16, 24)
    add(nv, nt, MATERIAL_SKIN)
    tv, tt = ellipsoid([0.0, params.skull_center[1] - params.skull_radii[1] - 16.0, params.skull_center[2]],
                       [19.0, 7.0, 10.0], 12, 24)
    add(tv, tt, MATERIAL_SKIN)
    if params.hair != "none":
        hv, ht = ellipsoid(params.skull_center, params.skull_radii * params.hair_thickness, 56, 72)
        d = (hv - params.skull_center) / (params.skull_radii * params.hair_thickness)
        front = np.clip(d[:, 2], 0, 1)
        thr = params.hair_front * front + params.hair_back * (1 - front)
        keep_v = d[:, 1] > thr
        keep = keep_v[ht].all(1)
        add(hv, ht[keep], MATERIAL_HAIR)
    verts = np.concatenate(parts_v)
    tris = np.concatenate(parts_t)
    normals = np.concatenate(parts_n)
    scale, offset = placement()
    world = (verts + offset) * scale
    return HeadMesh(world, tris, normals, np.concatenate(uvs), np.concatenate(mats), np.concatenate(tw))
