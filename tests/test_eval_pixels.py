"""No blotch on a real dev frame: relit by the geometry engine under white lights, the face keeps its colour within
the stated bounds (evaluation.pixels), and every output and pass is finite and non-negative."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation import pixels
from real_data import DATA


def test_white_lights_keep_a_real_face_colour():
    clip = DATA / "videos" / "lp_d3.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found: the real-face checks need ../shared/data")
    rows = pixels.check_image(clip, "geometry", 0)
    assert len(rows) == len(pixels.WHITE_LIGHTS), "no face tracked on lp_d3 frame 0"
    for r in rows:
        assert r["nonfinite"] == 0 and r["min"] >= 0.0, r
        assert r["chroma_drift_mean"] <= pixels.MAX_FACE_DRIFT, r
        assert r["chroma_drift_cell_diffuse"] <= pixels.MAX_CELL_DRIFT, r


def test_chroma_drift_ignores_brightness_and_sees_colour():
    rng = np.random.default_rng(0)
    skin = rng.uniform(0.1, 0.6, (400, 3)) * np.array([1.6, 1.0, 0.7])
    shade = rng.uniform(0.3, 3.0, (400, 1))  # uneven brightness change, no colour change
    assert pixels.chroma_drift(skin * shade, skin) < 1e-9
    assert pixels.chroma_drift(skin * np.array([0.8, 1.1, 1.1]), skin) > 0.1  # a green-cyan cast is seen
