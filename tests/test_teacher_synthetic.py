"""The synthetic teacher's ground truth is self-consistent and follows the project's camera and SH conventions."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not (DATA / "videos").is_dir() or not (DATA / "mediapipe" / "canonical_face_model.obj").exists():
    pytest.skip(f"shared data not found at {DATA} (videos and mediapipe/canonical_face_model.obj are needed)",
                allow_module_level=True)

from blender_relight import camera as cam  # noqa: E402
from blender_relight.lighting import sh as shm  # noqa: E402
from training.teacher import head as hd  # noqa: E402
from training.teacher.raster import rasterize  # noqa: E402
from training.teacher.synthetic import SyntheticHeads, project  # noqa: E402


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> SyntheticHeads:
    return SyntheticHeads(resolution=96, supersample=1, cache_dir=tmp_path_factory.mktemp("teacher"), per_clip=2)


@pytest.fixture(scope="module")
def sample(teacher):
    return teacher.sample(np.random.default_rng(3))


def test_image_is_albedo_times_shading(sample):
    for v in sample.views:
        assert v.mask.sum() > 500, "the head must cover part of the image"
        np.testing.assert_allclose(v.image, v.albedo * v.shading, atol=1e-6)
        assert np.all(v.image[v.mask == 0] == 0)
        assert v.shading.min() >= 0


def test_shading_is_sh_irradiance_of_normals(sample):
    v = sample.views[0]
    m = v.mask > 0.5
    expect = np.maximum(shm.irradiance(shm.rotate_eg3d_to_sh(v.normals[m]), sample.sh_tgt), 0)
    np.testing.assert_allclose(v.shading[m], expect, rtol=1e-4, atol=1e-4)


def test_normals_unit_and_facing_the_camera(sample):
    v = sample.views[0]
    m = v.mask > 0.5
    np.testing.assert_allclose(np.linalg.norm(v.normals[m], axis=1), 1.0, atol=1e-4)
    c2w, _ = cam.split_label(v.camera)
    eye = c2w[:3, 3]
    # most visible normals face the camera (dot with the direction to the camera > 0)
    assert (v.normals[m] @ (eye / np.linalg.norm(eye)) > 0).mean() > 0.9


def test_camera_matches_projection_of_a_known_point(teacher):
    ident = teacher.identity(np.random.default_rng(0))
    label = cam.make_label(cam.orbit_camera(np.radians(20), np.radians(-10)))
    g = teacher.gbuffer(ident, ident.shape_cm, label)
    nose = g["mesh"].verts[4]  # mediapipe's nose tip, in front of everything from this camera
    c2w, K = cam.split_label(label)
    w2c = np.linalg.inv(c2w)
    rvec, _ = cv2.Rodrigues(w2c[:3, :3])
    Kpx = K.copy()
    Kpx[:2] *= teacher.resolution
    px, _ = cv2.projectPoints(nose[None], rvec, w2c[:3, 3], Kpx, None)  # OpenCV, independent of our projection
    u, v = px[0, 0]
    np.testing.assert_allclose(project(label, nose[None], teacher.resolution)[0, :2], [u, v], atol=1e-6)
    j, i = int(u), int(v)
    assert g["mask"][i, j] > 0
    np.testing.assert_allclose(g["depth"][i, j], np.linalg.norm(nose - c2w[:3, 3]), atol=5e-3)


def test_frontal_face_lands_where_ffhq_alignment_puts_it(teacher):
    """Eyes and mouth of the canonical face in the frontal render follow FFHQ's crop recipe (tracking.align)."""
    v, _ = hd.canonical_face()
    scale, offset = hd.placement()
    world = (v + offset) * scale
    px = project(cam.frontal_label(), world, 512)[:, :2]
    from blender_relight.tracking import align

    c, x = align.ffhq_frame(px)
    np.testing.assert_allclose(c, [256, 256], atol=1.0)
    np.testing.assert_allclose(np.hypot(*x), 256, atol=1.5)


def test_exact_flow_aligns_consecutive_frames(sample):
    """Warping the previous frame's target albedo with the teacher's flow reproduces the current one where visible."""
    cur, prev = sample.views[0], sample.prev_views[0]
    flow, vis = sample.flow_prev[0], sample.visible_prev[0] > 0.5
    H, W = vis.shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    warped = cv2.remap(prev.albedo, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR)
    assert vis.sum() > 200
    err = np.abs(warped - cur.albedo)[vis].mean()
    naive = np.abs(prev.albedo - cur.albedo)[vis].mean()
    assert err < 0.02 and err <= naive + 1e-6


def test_rasteriser_depth_order():
    """Two overlapping triangles: the nearer wins wherever they overlap."""
    screen = np.array([[2, 2, 5.0], [30, 2, 5.0], [2, 30, 5.0], [2, 2, 2.0], [30, 2, 2.0], [30, 30, 2.0]])
    frag = rasterize(screen, np.array([[0, 1, 2], [3, 4, 5]]), 32, 32)
    assert frag.tri[5, 20] == 1 and frag.tri[20, 5] == 0 and frag.tri[31, 31] == -1
    np.testing.assert_allclose(frag.bary.sum(-1)[frag.mask], 1.0, atol=1e-6)
