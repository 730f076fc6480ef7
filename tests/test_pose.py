"""Head-pose bias: the template is left/right symmetric, level against an upright face model, and a mirrored photo
gives the mirrored pose (yaw and roll change sign, pitch stays) within a degree."""
from __future__ import annotations

import numpy as np
import pytest

from blender_relight.tracking import align, pose
from blender_relight.tracking.landmarks import MediapipeBackend
from blender_relight.video import read_image
from tests.real_data import DATA

CANONICAL = DATA / "mediapipe" / "canonical_face_model.obj"


def _need(path):
    if not path.exists():
        pytest.skip(f"{path} absent (../shared/data is the project's dev data)")
    return path


def test_template_is_its_own_mirror_image() -> None:
    t = pose.load_template().points
    twin = pose.mirror_permutation(t)
    assert (twin[twin] == np.arange(len(t))).all()  # an involution: each point's twin has it as twin
    np.testing.assert_allclose(t[twin] * np.array([-1.0, 1.0, 1.0]), t, atol=2e-6)


def test_mirror_map_agrees_with_mediapipes_canonical_model() -> None:
    canonical = pose.read_obj_vertices(_need(CANONICAL))
    assert (pose.mirror_permutation(canonical) == pose.mirror_permutation(pose.load_template().points)[:468]).all()


def test_upright_face_model_seen_frontally_gives_the_frontal_pose() -> None:
    """The bias against mediapipe's canonical (upright) face: below 0.05° on every axis after --upright."""
    ypr = pose.reference_pose_deg(pose.load_template().points, pose.read_obj_vertices(_need(CANONICAL)))
    assert np.abs(ypr).max() < 0.05, ypr


def test_upright_template_removes_a_turned_template_s_bias() -> None:
    """A template turned by 4° in pitch and skewed left/right is brought back level and symmetric."""
    canonical = pose.read_obj_vertices(_need(CANONICAL))
    good = pose.load_template()
    bad = pose._rotate_about_pivot(good.points, np.radians(4.0)) + np.array([0.004, 0.0, 0.0]) * (
        good.points[:, :1] > 0)
    assert abs(pose.reference_pose_deg(bad, canonical)[1]) > 2.0
    fixed, figures = pose.upright_template(pose.Template(bad, {}), canonical)
    assert np.abs(pose.reference_pose_deg(fixed.points, canonical)).max() < 0.05
    assert "upright" in fixed.provenance and abs(figures["turned_pitch_deg"]) > 2.0


@pytest.mark.parametrize("name", ["skimage_astronaut.png", "lp_d30.jpg", "lp_s12.jpg"])
def test_mirrored_photo_gives_the_mirrored_pose(name: str) -> None:
    image = read_image(_need(DATA / "images" / name))
    views = []
    with MediapipeBackend(max_num_faces=1, static_image_mode=True) as backend:
        for img in (image, np.ascontiguousarray(image[:, ::-1])):
            face = backend.detect(img)[0]
            pc = align.CropTransform.from_landmarks(face.points).to_crop(face.points)
            hp = pose.head_pose(pc)
            views.append(np.degrees(pose.view_params(hp.rvec, hp.tvec)))
    a, b = views
    assert abs(a[0] + b[0]) < 2.0 and abs(a[2] + b[2]) < 2.0 and abs(a[1] - b[1]) < 2.0, (a, b)
