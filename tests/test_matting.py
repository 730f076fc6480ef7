"""The person matte (mediapipe's bundled selfie segmentation) on real portraits: face and hair in, wall out."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from blender_relight import face_geometry, head_proxy
from blender_relight.demo import sample_path
from blender_relight.errors import RelightError
from blender_relight.matting import person_matte
from blender_relight.tracking import align
from blender_relight.tracking.landmarks import MediapipeBackend
from blender_relight.video import read_image
from tests.real_data import real_frame_bgr


def _crop_and_points(rgb: np.ndarray):
    with MediapipeBackend(max_num_faces=1, static_image_mode=True, small_faces=False) as backend:
        face = backend.detect(rgb)[0]
    t = align.CropTransform.from_landmarks(face.points)
    crop = t.warp(rgb)
    return crop, t.to_crop(face.points)


def _regions(points: np.ndarray, size: int):
    """Face (the mesh, eroded), a hair band just above the forehead landmarks, and the crop's two top corners."""
    face = face_geometry.render_face_maps(points, (size, size), fill_holes=True).mask
    face = cv2.erode(face.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    top = int(points[:, 1].min())
    xs = points[:, 0]
    cx, half = int(xs.mean()), int((xs.max() - xs.min()) * 0.25)
    hair = np.zeros((size, size), bool)
    hair[max(top - 30, 0):max(top - 8, 1), cx - half:cx + half] = True
    corner = size // 10
    wall = np.zeros((size, size), bool)
    wall[:corner, :corner] = wall[:corner, -corner:] = True
    return face, hair, wall


@pytest.mark.parametrize("source", ["sample", "lp_d9.mp4"])
def test_person_matte_keeps_face_and_hair_and_drops_the_wall(source: str) -> None:
    rgb = read_image(sample_path()) if source == "sample" else cv2.cvtColor(real_frame_bgr(source, 30),
                                                                           cv2.COLOR_BGR2RGB)
    crop, points = _crop_and_points(rgb)
    matte = person_matte(crop)
    assert matte.shape == crop.shape[:2] and matte.dtype == np.float32
    assert 0.0 <= matte.min() and matte.max() <= 1.0
    face, hair, wall = _regions(points, crop.shape[0])
    assert matte[face].mean() > 0.95
    assert matte[hair].mean() > 0.8
    assert matte[wall].mean() < 0.05


def test_head_alpha_is_the_person_inside_the_region_and_the_face_whatever_the_network_says() -> None:
    crop, points = _crop_and_points(read_image(sample_path()))
    size = crop.shape[0]
    face = face_geometry.render_face_maps(points, (size, size), fill_holes=True).mask
    region = np.zeros((size, size), np.float32)
    region[: size // 2] = 1.0  # the upper half only: nothing below it may be relit
    alpha = head_proxy.head_alpha(crop, region, face)
    assert alpha[size // 2 + 1:].max() == 0.0
    person = person_matte(crop)
    upper = np.zeros((size, size), bool)
    upper[: size // 2 - 8] = True
    k = np.ones((17, 17), np.uint8)
    sure_person = cv2.erode((person > 0.99).astype(np.uint8), k) > 0
    sure_wall = (cv2.erode((person < 0.01).astype(np.uint8), k) > 0) & ~(cv2.dilate(face.astype(np.uint8), k) > 0)
    assert alpha[upper & sure_person].min() > 0.95  # the matte is kept at 128² and feathered: away from its edge
    assert alpha[upper & sure_wall].max() < 0.05
    inner = cv2.erode(face.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    assert alpha[inner & upper].min() > 0.95  # the face mesh counts as head even where the network hesitated


def test_person_matte_refuses_what_is_not_an_image() -> None:
    with pytest.raises(RelightError):
        person_matte(np.zeros((4, 4, 3), np.uint8))
