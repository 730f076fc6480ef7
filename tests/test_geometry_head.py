"""The head mesh and its G-buffer on real dev frames: the raster lines up with the crop, faces the camera, resolves
occlusion like a ray caster, covers the plate's head matte, and keeps one topology and UV layout over frames."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from blender_relight import camera as cam
from blender_relight.geometry import HeadGeometry, head_geometry, project, rasterize
from blender_relight.geometry import raster
from tests.real_data import real_frame_bgr


@functools.lru_cache(maxsize=4)
def _tracked(clip: str, frame: int):
    from blender_relight.tracking.tracker import FaceTracker

    image = real_frame_bgr(clip, frame)
    tracker = FaceTracker(estimate_sh=False)
    track = tracker.track(frame, cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    tracker.close()
    assert track.tracked
    crop = track.transform.warp(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return track, crop


def _matte(track, crop):
    from blender_relight import colour, engines

    return engines._face_maps_and_matte(colour.uint8_srgb_to_linear(crop), track)


def test_landmarks_and_face_raster_line_up_with_the_crop():
    track, crop = _tracked("lp_d3.mp4", 30)
    geo = head_geometry(track)
    xy, depth = project(geo.vertices[:468], track.camera)
    lm = track.points_crop()[:468, :2]
    assert np.abs(xy - lm).max() < 0.05  # lifted along the crop camera's rays: exact up to float32
    assert np.all(depth > 2.0) and np.all(depth < 3.0)
    gb = rasterize(geo, track.camera, 512)
    maps, _ = _matte(track, crop)
    face_px = gb.mask & (gb.part == 0)
    iou = (face_px & maps.mask).sum() / (face_px | maps.mask).sum()
    assert iou > 0.95, iou  # the face part covers the same pixels as the crop-space face raster
    # the pixel under each inner landmark shows that landmark's surface (depth within 1 % of its own)
    inner = np.array([1, 4, 6, 168, 197, 33, 263, 61, 291, 199])
    r, c = np.rint(lm[inner, 1]).astype(int), np.rint(lm[inner, 0]).astype(int)
    assert gb.mask[r, c].all()
    np.testing.assert_allclose(gb.depth[r, c], depth[inner], rtol=0.01)


def test_normals_face_the_camera_and_shell_is_outward():
    track, _ = _tracked("lp_d9.mp4", 10)
    geo = head_geometry(track)
    gb = rasterize(geo, track.camera, 512)
    centre = cam.split_label(track.camera)[0][:3, 3]
    to_cam = centre - gb.position[gb.mask]
    facing = np.einsum("ij,ij->i", gb.normal[gb.mask], to_cam) > 0
    assert facing.mean() > 0.999
    np.testing.assert_allclose(np.linalg.norm(gb.normal[gb.mask], axis=1), 1.0, atol=1e-3)
    from blender_relight.geometry.head import vertex_normals

    vn = vertex_normals(geo.vertices, geo.triangles)
    shell = geo.part == 1
    middle = geo.vertices[shell].mean(0)
    used = np.zeros(len(geo.vertices), bool)
    used[geo.triangles.reshape(-1)] = True
    out = np.einsum("ij,ij->i", vn[shell & used], geo.vertices[shell & used] - middle) > 0
    assert out.mean() > 0.97


def _ray_cast_depth(geo: HeadGeometry, label: np.ndarray, pixels: np.ndarray, size: int) -> np.ndarray:
    """Nearest hit (camera-space depth) of each pixel's ray against every triangle (Möller-Trumbore), +inf if none."""
    cam_pts = raster.to_camera(geo.vertices, label)
    _, K = cam.split_label(label)
    d = np.stack([(pixels[:, 0] - (K[0, 2] * size - 0.5)) / (K[0, 0] * size),
                  (pixels[:, 1] - (K[1, 2] * size - 0.5)) / (K[1, 1] * size), np.ones(len(pixels))], 1)
    t = geo.triangles
    v0, v1, v2 = cam_pts[t[:, 0]], cam_pts[t[:, 1]], cam_pts[t[:, 2]]
    e1, e2 = v1 - v0, v2 - v0
    out = np.full(len(pixels), np.inf)
    for i, ray in enumerate(d):
        p = np.cross(ray, e2)
        det = np.einsum("ij,ij->i", e1, p)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = -v0
        u = np.einsum("ij,ij->i", s, p) * inv
        q = np.cross(s, e1)
        v = (q @ ray) * inv
        tt = np.einsum("ij,ij->i", e2, q) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (tt > 0)
        if hit.any():
            out[i] = (tt[hit] * ray[2]).min()
    return out


def test_occlusion_matches_a_ray_caster_from_a_turned_camera():
    track, crop = _tracked("lp_d3.mp4", 30)
    _, matte = _matte(track, crop)
    geo = head_geometry(track, matte)
    c2w = cam.orbit_camera(0.45, 0.15)  # a camera well to the side: the nose hides part of the far cheek
    label = cam.make_label(c2w)
    size = 128
    gb = rasterize(geo, label, size)
    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(gb.mask)
    pick = rng.choice(len(ys), 150, replace=False)
    pixels = np.stack([xs[pick], ys[pick]], 1).astype(np.float64)
    truth = _ray_cast_depth(geo, label, pixels, size)
    got = gb.depth[ys[pick], xs[pick]]
    close = np.abs(got - truth) < 2e-3
    assert close.mean() > 0.97, (got - truth)[~close]


def test_shell_covers_the_plate_matte_and_topology_is_stable():
    geos = []
    for clip, frame in (("lp_d3.mp4", 30), ("lp_d9.mp4", 10)):
        track, crop = _tracked(clip, frame)
        _, matte = _matte(track, crop)
        geo = head_geometry(track, matte)
        gb = rasterize(geo, track.camera, 512)
        assert gb.mask[matte > 0.5].mean() > 0.93
        assert gb.mask.sum() < 1.6 * (matte > 0.5).sum() + 0.1 * 512 * 512
        geos.append(geo)
    a, b = geos
    assert a.vertices.shape == b.vertices.shape
    np.testing.assert_array_equal(a.uv, b.uv)
    np.testing.assert_array_equal(a.part, b.part)
    assert a.uv.min() >= 0 and a.uv.max() <= 1
    assert a.triangles.dtype == np.int32 and a.vertices.dtype == np.float32


def test_raster_resolves_two_planes_and_culls_back_faces():
    # two squares facing the frontal camera (toward +z), the nearer one offset: it must win where they overlap
    def quad(z: float, dx: float):
        v = np.array([[-0.1 + dx, -0.1, z], [0.1 + dx, -0.1, z], [0.1 + dx, 0.1, z], [-0.1 + dx, 0.1, z]])
        return v, np.array([[0, 1, 2], [0, 2, 3]])

    va, ta = quad(0.0, 0.0)
    vb, tb = quad(0.2, 0.05)
    verts = np.concatenate([va, vb]).astype(np.float32)
    tris = np.concatenate([ta, tb + 4]).astype(np.int32)
    geo = HeadGeometry(verts, tris, np.zeros((8, 2), np.float32), np.array([0] * 4 + [1] * 4, np.uint8))
    label = cam.frontal_label()
    gb = rasterize(geo, label, 64)
    cx, cy = project(np.array([[0.02, 0.0, 0.0]]), label, 64)[0][0]
    assert gb.part[int(round(cy)), int(round(cx))] == 1  # the nearer plane (z = 0.2 is toward the camera)
    np.testing.assert_allclose(gb.depth[int(round(cy)), int(round(cx))], 2.7 - 0.2, atol=1e-4)
    back = HeadGeometry(verts, tris[:, ::-1].copy(), geo.uv, geo.part)
    assert not rasterize(back, label, 64).mask.any()


def _reference_raster(xy: np.ndarray, z: np.ndarray, tris: np.ndarray, size: tuple[int, int], inverse_z: bool):
    """Brute force over every (pixel, triangle) pair with the plain bounding-box walk's arithmetic (plane
    coefficients rounded to float32, the same eps, depth quantised over all fragments, ties to the lower triangle):
    what the blocked, two-threaded ``raster_screen`` must give exactly."""
    h, w = size
    p0, p1, p2 = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    d = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p2[:, 0] - p0[:, 0]) * (p1[:, 1] - p0[:, 1])
    keep = np.abs(d) > 1e-9
    if inverse_z:
        keep &= np.all(z[tris] > 1e-6, axis=1)
    kept = np.flatnonzero(keep)
    p0, p1, p2, d = p0[kept], p1[kept], p2[kept], d[kept]
    zk = 1.0 / z[tris[kept]] if inverse_z else z[tris[kept]]
    inv = 1.0 / d
    a1, b1 = (p2[:, 1] - p0[:, 1]) * inv, -(p2[:, 0] - p0[:, 0]) * inv
    a2, b2 = -(p1[:, 1] - p0[:, 1]) * inv, (p1[:, 0] - p0[:, 0]) * inv
    c1, c2 = -(a1 * p0[:, 0] + b1 * p0[:, 1]), -(a2 * p0[:, 0] + b2 * p0[:, 1])
    dz1, dz2 = zk[:, 1] - zk[:, 0], zk[:, 2] - zk[:, 0]
    az, bz, cz = a1 * dz1 + a2 * dz2, b1 * dz1 + b2 * dz2, zk[:, 0] + c1 * dz1 + c2 * dz2
    xs, ys = np.stack([p0[:, 0], p1[:, 0], p2[:, 0]], 1), np.stack([p0[:, 1], p1[:, 1], p2[:, 1]], 1)
    x0, x1 = np.clip(np.ceil(xs.min(1)), 0, w), np.clip(np.floor(xs.max(1)), -1, w - 1)
    y0, y1 = np.clip(np.ceil(ys.min(1)), 0, h), np.clip(np.floor(ys.max(1)), -1, h - 1)
    py, px = np.divmod(np.arange(h * w, dtype=np.float64), w)
    f = lambda v: v.astype(np.float32).astype(np.float64)[None, :]  # noqa: E731
    l1 = f(a1) * px[:, None] + f(b1) * py[:, None] + f(c1)
    l2 = f(a2) * px[:, None] + f(b2) * py[:, None] + f(c2)
    eps = np.float32(-1e-5)
    inside = (l1 >= eps) & (l2 >= eps) & (l1 + l2 <= 1.0 - eps)
    inside &= (px[:, None] >= x0) & (px[:, None] <= x1) & (py[:, None] >= y0) & (py[:, None] <= y1)
    pix, tri = np.nonzero(inside)
    zval = az[tri] * px[pix] + bz[tri] * py[pix] + cz[tri]
    test = -zval if inverse_z else zval
    zq = ((test - test.min()) * ((2**30) / max(test.max() - test.min(), 1e-12))).astype(np.int64)
    order = np.lexsort((tri, zq, pix))  # per pixel: nearest, then the earlier triangle
    first = order[np.r_[True, pix[order][1:] != pix[order][:-1]]]
    return pix[first], kept[tri[first]], l1[pix[first], tri[first]], l2[pix[first], tri[first]]


@pytest.mark.parametrize("case", ["sphere", "random"])
def test_raster_screen_equals_a_brute_force_z_buffer(case):
    """The blocked rasteriser (edge tests per 4×4 block, culled blocks, two threads) covers the same pixels with the
    same triangles and barycentrics as a brute-force test of every pixel against every triangle."""
    rng = np.random.default_rng(3)
    size = (72, 88)
    if case == "sphere":
        th, ph = np.meshgrid(np.linspace(0, np.pi, 17), np.linspace(-np.pi, np.pi, 33), indexing="ij")
        pts = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
        idx = np.arange(len(pts)).reshape(17, 33)
        a, b, c, dd = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        tris = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, dd], 1)])
        z = 3.0 - pts[:, 2]  # the camera on +z looking at the sphere
        xy = np.stack([44 + 60 * pts[:, 0] / z, 36 - 60 * pts[:, 1] / z], 1)
        cases = [(xy, z, tris, "back", True), (xy, z, tris, "none", True)]
    else:
        xy = rng.uniform(-20, 100, (120, 2))
        xy[:6] = xy[6:12] + rng.normal(0, 1e-4, (6, 2))  # slivers
        z = rng.uniform(0.5, 3.0, 120)
        tris = rng.integers(0, 120, (300, 3))
        cases = [(xy, z, tris, "none", False), (xy, z, tris, "back", True)]
    for xy_, z_, tris_, cull, inverse in cases:
        hits = raster.raster_screen(xy_, z_, tris_, size, cull=cull, interpolate_inverse_z=inverse)
        keep = np.ones(len(tris_), bool)
        if cull == "back":
            p = xy_[tris_]
            keep = ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1])
                    - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])) < 0
        sub = np.flatnonzero(keep)
        pix, tri, l1, l2 = _reference_raster(xy_, z_, tris_[sub], size, inverse)
        assert pix.size > 200
        np.testing.assert_array_equal(hits.pixel, pix)
        np.testing.assert_array_equal(hits.triangle, sub[tri])
        np.testing.assert_array_equal(hits.bary[:, 1:], np.stack([l1, l2], 1).astype(np.float32))
    # the two-thread split (large rasters) gives the one-thread result
    saved = raster.PARALLEL_CANDIDATES
    try:
        raster.PARALLEL_CANDIDATES = 1
        split = raster.raster_screen(xy_, z_, tris_, size, cull="none", interpolate_inverse_z=inverse)
        raster.PARALLEL_CANDIDATES = 10**12
        whole = raster.raster_screen(xy_, z_, tris_, size, cull="none", interpolate_inverse_z=inverse)
    finally:
        raster.PARALLEL_CANDIDATES = saved
    for field in ("pixel", "triangle", "bary", "z"):
        np.testing.assert_array_equal(getattr(split, field), getattr(whole, field))
