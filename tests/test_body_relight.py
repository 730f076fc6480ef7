"""The person below and beside the relit head follows the light (``blender_relight.body``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from blender_relight import colour
from blender_relight.body import EDGE_ANGLE_DEG, row_cylinder_normals
from blender_relight.lighting import sh
from blender_relight.lighting.blender_lights import LightSpec
from blender_relight.lighting.scene import SceneLighting
from blender_relight.matting import person_matte
from tests.real_data import DATA


def test_row_cylinder_normals_face_the_camera_in_the_middle_and_turn_at_the_outline() -> None:
    person = np.zeros((40, 100), np.float32)
    person[10:, 20:81] = 1.0
    n = row_cylinder_normals(person)
    np.testing.assert_allclose(np.linalg.norm(n, axis=2), 1.0, atol=1e-5)
    assert n[30, 50, 2] < -0.999  # the middle faces the camera (OpenCV axes: -z)
    edge = np.degrees(np.arccos(-n[30, 20, 2]))
    assert abs(edge - EDGE_ANGLE_DEG) < 3.0 and n[30, 20, 0] < 0 < n[30, 80, 0]
    assert np.all(n[0:5, :, 2] == -1.0)  # rows without a person face the camera


import pytest


@pytest.mark.parametrize("yaw", [0.0, 20.0])
def test_a_side_key_lights_one_side_of_the_chest_and_leaves_the_room_alone(tmp_path: Path, yaw: float) -> None:
    """At the filmed view and at a new camera (which moves the head but relights only the head: the torso it carries
    along in the crop is the body's too)."""

    clip = DATA / "videos" / "lp_s18.mp4"
    if not clip.exists():
        pytest.skip("needs ../shared/data")
    from blender_relight.pipeline import ClipSession

    session = ClipSession(clip, cache_dir=tmp_path / "cache")
    session.analyse(frames=[20])
    key = LightSpec("SUN", colour=(1, 1, 1), power=2.5, direction=(-0.9, -0.1, -0.4), name="key")  # travels to image left: from image right
    light = SceneLighting(sh=sh.ambient_sh(np.full(3, 0.08)), lights=(key,))
    from blender_relight.novel_view.views import offset_label

    camera = None if yaw == 0.0 else offset_label(session.source_camera(20), yaw, 0.0)
    out = session.relight_frame(20, light, camera).image
    frame = session._frame(20)
    before = colour.uint8_srgb_to_linear(frame)
    lum = lambda x: x @ np.array([0.2126, 0.7152, 0.0722], np.float32)  # noqa: E731
    ratio = (lum(out) + 1e-3) / (lum(before) + 1e-3)
    person = person_matte(frame)
    h, w = person.shape
    chest = np.zeros((h, w), bool)
    chest[int(0.85 * h):] = True
    chest &= person > 0.9
    xs = np.nonzero(chest.any(axis=0))[0]
    mid = (xs.min() + xs.max()) // 2
    left, right = chest.copy(), chest.copy()
    left[:, mid:] = False
    right[:, :mid] = False
    assert np.median(ratio[right]) > 1.3 * np.median(ratio[left])  # the key's side is the lighter
    room = person_matte(frame) < 0.01
    room[: int(0.2 * h)] = False  # (the head's crop may reach the top rows)
    far = room & (np.abs(np.arange(w) - mid)[None, :] > 0.45 * w)
    np.testing.assert_allclose(out[far], before[far], atol=1e-6)
    # the torso the crop holds (a new view pastes the whole crop back) follows the light as the torso below it does
    track = session.frame_track(20)
    corners = track.transform.to_frame(np.array([[0.0, 511.0], [511.0, 511.0]]))
    bottom = int(round(corners[:, 1].max()))
    if bottom < h - 40:
        chest_x = slice(mid - 40, mid + 40)
        above = ratio[bottom - 30:bottom - 10, chest_x][person[bottom - 30:bottom - 10, chest_x] > 0.9]
        below = ratio[bottom + 10:bottom + 30, chest_x][person[bottom + 10:bottom + 30, chest_x] > 0.9]
        assert abs(np.median(above) - np.median(below)) < 0.1, (np.median(above), np.median(below))
    if yaw:
        return  # at a new camera the head and neck moved: a ratio to the filmed frame says nothing about a band
    # no band where the head's paste fades into the body's: down the neck the ratio changes smoothly
    chin = track.points[152]  # mediapipe's chin landmark (frame px)
    rows = []
    for y in range(int(chin[1]) - 40, int(chin[1]) + 160, 8):
        band = (person[y:y + 8] > 0.9) & (ratio[y:y + 8] > 0)
        rows.append(float(np.median(ratio[y:y + 8][band])))
    assert np.max(np.abs(np.diff(rows))) < 0.08, rows
