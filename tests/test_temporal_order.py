"""A relit frame is a function of (clip, frame, light, camera), not of the order frames were visited: the neural
engine's temporal window is the frames before it, rebuilt after a jump or a scrub (issue 13, item 1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_relight import camera as cam
from blender_relight.lighting import sh as shmath
from blender_relight.pipeline import ClipSession

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "videos" / "lp_d3.mp4"
FRAMES = 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The first frames of a real clip (keeps the test short)."""
    import cv2

    if not CLIP.is_file():
        pytest.skip(f"{CLIP} absent")
    cap = cv2.VideoCapture(str(CLIP))
    out = tmp_path_factory.mktemp("clip") / "d3_six.avi"
    writer = None
    for _ in range(FRAMES):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    cap.release()
    return out


LIGHT = shmath.directional_light_sh(np.array([0.8, -0.6, 0.3]), np.full(3, 2.5)) + shmath.ambient_sh(np.full(3, 0.1))


def _session(clip: Path, cache: Path) -> ClipSession:
    return ClipSession(clip, cache_dir=cache, engine="neural")


def test_frame_after_a_scrub_equals_the_frame_in_order(clip, tmp_path):
    cache = tmp_path / "cache"
    in_order = _session(clip, cache)
    in_order.analyse()
    novel = cam.make_label(cam.orbit_camera(0.25, 0.05))
    expected = {i: in_order.relight_frame(i, LIGHT).image for i in range(FRAMES)}
    expected_novel = in_order.relight_frame(FRAMES - 1, LIGHT, novel).image
    in_order.close()

    scrubbed = _session(clip, cache)  # a fresh engine: nothing of the ordered run is kept in memory
    for i in (FRAMES - 1, 1, 4, 0, 5, 3, 2):  # jumps forward and back, as a user scrubbing the timeline
        np.testing.assert_array_equal(scrubbed.relight_frame(i, LIGHT).image, expected[i], err_msg=f"frame {i}")
    # New views too: the clip texture the first session built is the one the second loads (its stored form).
    np.testing.assert_array_equal(scrubbed.relight_frame(FRAMES - 1, LIGHT, novel).image, expected_novel)
    scrubbed.close()


def test_window_is_rebuilt_for_frames_never_analysed(clip, tmp_path):
    """Relighting without an analysis first (planes encoded on demand) gives the same frame as with one."""
    analysed = _session(clip, tmp_path / "a")
    analysed.analyse()
    want = analysed.relight_frame(4, LIGHT).image
    analysed.close()
    fresh = _session(clip, tmp_path / "b")
    fresh.track()  # tracking only: no planes in the cache yet
    np.testing.assert_array_equal(fresh.relight_frame(4, LIGHT).image, want)
    fresh.close()
