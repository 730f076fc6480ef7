"""The clean plate: the background other frames of a static-camera clip saw behind the person."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from blender_relight import colour
from blender_relight.matting import person_matte
from blender_relight.novel_view.background import CleanPlate, build_clean_plate
from blender_relight.video import VideoWriter
from tests.real_data import real_frame_bgr


def _clip(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    with VideoWriter(path, 24.0, (w, h)) as writer:
        for f in frames:
            writer.write(f)
    return path


def _frames(shift_px: int) -> list[np.ndarray]:
    """Eight real frames of a dev clip; with ``shift_px`` the camera pans that far between frames."""
    out = []
    for k in range(8):
        rgb = cv2.cvtColor(real_frame_bgr("lp_d9.mp4", 10 * k), cv2.COLOR_BGR2RGB)
        out.append(np.roll(rgb, shift_px * k, axis=1) if shift_px else rgb)
    return out


def test_static_camera_plate_is_the_background_and_leaves_the_person_out(tmp_path: Path) -> None:
    frames = _frames(0)
    plate = build_clean_plate(_clip(tmp_path / "static.mp4", frames), list(range(8)))
    assert plate is not None and plate.image.shape[:2] == frames[0].shape[:2]
    background = person_matte(frames[0]) < 0.01
    trusted = plate.weight > 0.9
    assert (trusted & background).sum() > 0.8 * background.sum()  # the wall is known
    srgb = colour.linear_to_uint8_srgb(plate.image).astype(np.float32)
    err = np.abs(srgb - frames[0].astype(np.float32)).max(axis=2)[trusted & background]
    assert np.percentile(err, 95) < 8.0  # it is that wall, within video coding noise (8-bit levels)
    always_person = np.all([person_matte(f) > 0.5 for f in frames], axis=0)
    assert plate.weight[always_person].max() < 1e-6  # nothing is made up where no frame saw behind the person
    # stored and read back; cut into a crop like a frame is
    plate.save(tmp_path / "plate.npz")
    again = CleanPlate.load(tmp_path / "plate.npz")
    assert again is not None and np.abs(again.image - plate.image).max() < 2e-3
    matrix = np.array([[0.5, 0.0, 10.0], [0.0, 0.5, 20.0]])
    crop, weight = again.crop(matrix, 128)
    assert crop.shape == (128, 128, 3) and weight.shape == (128, 128)
    np.testing.assert_allclose(crop[40, 40], plate.image[40 * 2 - 40, 40 * 2 - 20], atol=0.02)


def test_a_panning_camera_gives_no_trusted_plate_where_the_frames_disagree(tmp_path: Path) -> None:
    frames = _frames(12)
    plate = build_clean_plate(_clip(tmp_path / "pan.mp4", frames), list(range(8)))
    edges = cv2.Canny(cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY), 50, 150) > 0
    background = person_matte(frames[0]) < 0.01
    assert plate.weight[edges & background].mean() < 0.2  # the background's edges moved: not trusted there
