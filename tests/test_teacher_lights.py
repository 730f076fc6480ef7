"""The teacher's lights use the project's one DPR conversion (``sh.dpr_to_rgb_sh``) and stay physical."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_relight.lighting import sh as shm
from training.teacher.lights import dpr_lights, sample_sh

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_dpr_lights_go_through_the_one_conversion() -> None:
    folder = DATA / "dpr" / "example_light"
    if not folder.is_dir():
        pytest.skip(f"DPR example lights not found at {folder}")
    lights = dpr_lights(DATA)
    assert len(lights) == 7
    for path, rgb in zip(sorted(folder.glob("rotate_light_0*.txt")), lights):
        gray = shm.load_dpr_light(str(path), 0.7)
        assert rgb.shape == (9, 3)
        assert np.allclose(rgb, shm.dpr_to_rgb_sh(gray))
        assert np.allclose(shm.rgb_to_dpr_sh(rgb), gray)  # back to DPR's file (×0.7) exactly
        # the old π·gray differed from the measured per-band gains: this is not that
        assert not np.allclose(rgb, np.pi * shm.as_rgb(gray))


def test_sampled_lights_light_the_front_of_a_face() -> None:
    rng = np.random.default_rng(0)
    front = shm.fibonacci_sphere(64)
    front = front[front[:, 1] < -0.2]
    for _ in range(50):
        e = shm.irradiance(front, sample_sh(rng))
        assert np.all(np.isfinite(e)) and e.max() > 0
