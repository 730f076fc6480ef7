"""Face-mesh topology (from mediapipe's tesselation), vertex normals and the z-buffer rasteriser."""
from __future__ import annotations

from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest

from blender_relight import face_geometry as fg

from real_data import DATA, real_frame_landmarks


def _directed_edges(tris: np.ndarray) -> list[tuple[int, int]]:
    return [(int(u), int(v)) for a, b, c in tris for u, v in ((a, b), (b, c), (c, a))]


def uv_sphere(centre: np.ndarray, radius: float, rings: int = 48, segments: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A closed UV sphere in image coordinates, wound like the face mesh (front faces have normal z < 0)."""
    verts = [centre + radius * np.array([0.0, -1.0, 0.0])]
    for i in range(1, rings):
        th = np.pi * i / rings
        for j in range(segments):
            ph = 2 * np.pi * j / segments
            verts.append(centre + radius * np.array([np.sin(th) * np.cos(ph), -np.cos(th), np.sin(th) * np.sin(ph)]))
    verts.append(centre + radius * np.array([0.0, 1.0, 0.0]))
    v = np.array(verts)
    tris = []
    ring = lambda i, j: 1 + (i - 1) * segments + (j % segments)  # noqa: E731
    for j in range(segments):
        tris.append((0, ring(1, j), ring(1, j + 1)))
        tris.append((len(v) - 1, ring(rings - 1, j + 1), ring(rings - 1, j)))
    for i in range(1, rings - 1):
        for j in range(segments):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            tris += [(a, c, b), (b, c, d)]
    t = np.array(tris)
    if np.mean(fg.triangle_normals(v, t)[:, 2] * (v[t].mean(1)[:, 2] - centre[2])) < 0:  # make normals point out
        t = t[:, ::-1]
    return v, t


@pytest.fixture(scope="module")
def real_points() -> np.ndarray:
    return real_frame_landmarks("lp_d3.mp4")[: fg.NUM_LANDMARKS].astype(np.float64)


def test_triangles_reproduce_mediapipe_tesselation_exactly() -> None:
    tris = fg.face_triangles()
    from mediapipe.python.solutions import face_mesh_connections as fmc

    assert tris.shape == (852, 3) and tris.min() == 0 and tris.max() == 467
    directed = _directed_edges(tris)
    assert len(set(directed)) == len(directed), "a directed edge is used twice: winding is inconsistent"
    assert set(directed) == set(fmc.FACEMESH_TESSELATION)  # every listed edge, in the listed direction, once
    assert fg.face_triangles() is tris  # cached in memory
    assert not tris.flags.writeable


def test_filled_mesh_is_a_consistently_wound_disk() -> None:
    from mediapipe.python.solutions import face_mesh_connections as fmc

    tris = fg.face_triangles(fill_holes=True)
    assert tris.shape == (898, 3)
    directed = _directed_edges(tris)
    assert len(set(directed)) == len(directed)
    undirected = Counter((min(u, v), max(u, v)) for u, v in directed)
    assert max(undirected.values()) == 2
    boundary = {e for e, k in undirected.items() if k == 1}
    assert boundary == {(min(e), max(e)) for e in fmc.FACEMESH_FACE_OVAL}  # eyes and mouth closed, oval open
    assert len(tris) + 468 - len(undirected) == 1  # Euler characteristic of a disk


def test_triangles_match_canonical_face_model() -> None:
    obj = DATA / "mediapipe" / "canonical_face_model.obj"
    if not obj.exists():
        pytest.skip(f"{obj} not found: needs ../shared/data")
    theirs = [tuple(int(p.split("/")[0]) - 1 for p in line.split()[1:4])
              for line in obj.read_text().splitlines() if line.startswith("f ")]
    ours = fg.face_triangles(fill_holes=True)
    mine = {tuple(sorted(t)) for t in ours.tolist()}
    by_edge = defaultdict(list)
    for i, t in enumerate(theirs):
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])):
            by_edge[(min(a, b), max(a, b))].append(i)

    def found(i: int) -> bool:
        t = theirs[i]
        if tuple(sorted(t)) in mine:
            return True
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])):  # same quad, other diagonal
            for j in by_edge[(min(a, b), max(a, b))]:
                if j != i:
                    c, d = (set(t) - {a, b}).pop(), (set(theirs[j]) - {a, b}).pop()
                    if tuple(sorted((a, c, d))) in mine and tuple(sorted((b, c, d))) in mine:
                        return True
        return False

    share = np.mean([found(i) for i in range(len(theirs))])
    assert share >= 0.95, f"only {share:.1%} of the canonical triangles are covered"

    def canon(t: tuple) -> tuple:
        k = t.index(min(t))
        return tuple(t[k:] + t[:k])

    winding = {canon(tuple(t)) for t in ours.tolist()}
    exact = [t for t in theirs if tuple(sorted(t)) in mine]
    assert len(exact) > 400 and all(canon(t) in winding for t in exact)  # same winding as MediaPipe's model


def test_rasterised_sphere_matches_analytic_normals_depth_and_area() -> None:
    centre, radius = np.array([100.3, 90.7, 50.0]), 60.0
    v, t = uv_sphere(centre, radius)
    for cull in (True, False):  # without culling the z-buffer alone must hide the back half
        maps = fg.rasterize(v, t, (200, 210), cull_backfaces=cull)
        assert maps.normals.shape == (200, 210, 3) and maps.depth.shape == (200, 210)
        area = maps.mask.sum()
        assert abs(area - np.pi * radius**2) / (np.pi * radius**2) < 0.01
        ys, xs = np.nonzero(maps.mask)
        rho2 = ((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / radius**2
        inner = rho2 < 0.9
        expect = np.stack([(xs - centre[0]) / radius, (ys - centre[1]) / radius,
                           -np.sqrt(np.clip(1 - rho2, 0, None))], 1)
        got = maps.normals[ys, xs]
        cos = np.sum(got[inner] * expect[inner], 1)
        assert np.degrees(np.arccos(np.clip(cos.min(), -1, 1))) < 2.0
        z_expect = centre[2] - radius * np.sqrt(np.clip(1 - rho2, 0, None))
        assert np.abs(maps.depth[ys, xs][inner] - z_expect[inner]).max() < 0.5
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    assert np.all(maps.triangle[~maps.mask] == -1) and np.all(maps.normals[~maps.mask] == 0)


def test_zbuffer_keeps_nearest_triangle_whatever_the_order() -> None:
    v = np.array([[0, 0, 5.0], [40, 0, 5.0], [0, 40, 5.0],  # far
                  [5, 5, 1.0], [35, 5, 1.0], [5, 35, 1.0]])  # near, in front of the far one
    for tris in (np.array([[0, 2, 1], [3, 5, 4]]), np.array([[3, 5, 4], [0, 2, 1]])):
        maps = fg.rasterize(v, tris, 48, cull_backfaces=False)
        near = 1 if tris[1, 0] == 3 else 0
        assert maps.triangle[10, 10] == near and maps.depth[10, 10] == pytest.approx(1.0)
        assert maps.triangle[2, 2] == 1 - near and maps.depth[2, 2] == pytest.approx(5.0)


def test_pixel_centres_follow_opencv_convention() -> None:
    # A right triangle with corners on pixel centres covers exactly the lattice points inside it.
    v = np.array([[2.0, 2.0, 0.0], [2.0, 12.0, 0.0], [12.0, 2.0, 0.0]])
    maps = fg.rasterize(v, np.array([[0, 1, 2]]), 16, cull_backfaces=False)
    ys, xs = np.mgrid[0:16, 0:16]
    expect = (xs >= 2) & (ys >= 2) & (xs + ys <= 14)
    assert np.array_equal(maps.mask, expect)


def test_vertex_attributes_interpolate_linearly() -> None:
    v = np.array([[0.0, 0.0, 0.0], [30.0, 0.0, 0.0], [0.0, 30.0, 0.0]])
    attrs = v[:, :2] * 2.0 + 1.0  # an affine function of position is reproduced exactly
    maps = fg.rasterize(v, np.array([[0, 2, 1]]), 32, vertex_attributes=attrs, cull_backfaces=False)
    ys, xs = np.nonzero(maps.mask)
    assert np.allclose(maps.attributes[ys, xs], np.stack([xs, ys], 1) * 2.0 + 1.0, atol=1e-3)


def test_real_face_normals_face_the_camera(real_points: np.ndarray) -> None:
    tris = fg.face_triangles()
    assert np.mean(fg.triangle_normals(real_points, tris)[:, 2] < 0) > 0.9
    vn = fg.vertex_normals(real_points)
    assert vn[1, 2] < -0.8  # nose tip looks at the camera
    maps = fg.render_face_maps(real_points, 512)
    assert maps.normals[maps.mask][:, 2].mean() < -0.6
    # coverage: the landmarks' hull, minus the open eyes and mouth, is what the mesh covers
    hull = np.zeros((512, 512), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.rint(real_points[:, :2]).astype(np.int32)), 1)
    inter = np.logical_and(hull > 0, maps.mask).sum()
    assert inter / hull.sum() > 0.85 and inter / maps.mask.sum() > 0.98
    filled = fg.render_face_maps(real_points, 512, fill_holes=True)
    assert filled.mask.sum() > maps.mask.sum() and np.logical_and(hull > 0, filled.mask).sum() / hull.sum() > 0.9
    # left of the face (image left) turns toward image left: normals' x follows the side
    ys, xs = np.nonzero(maps.mask)
    left, right = xs < np.median(xs) - 40, xs > np.median(xs) + 40
    assert maps.normals[ys[left], xs[left], 0].mean() < -0.2 < 0.2 < maps.normals[ys[right], xs[right], 0].mean()


def test_rejects_wrong_landmark_shape() -> None:
    with pytest.raises(ValueError):
        fg.render_face_maps(np.zeros((68, 3)), 64)
    with pytest.raises(ValueError):
        fg.render_face_maps(np.full((468, 3), np.nan), 64)


def test_face_off_the_crop_renders_empty_maps() -> None:
    pts = np.zeros((468, 3))
    pts[:, 0] = np.linspace(-500, -300, 468)
    pts[:, 1] = np.linspace(10, 50, 468) ** 1.1
    maps = fg.render_face_maps(pts, 64)
    assert not maps.mask.any() and np.all(maps.triangle == -1)
