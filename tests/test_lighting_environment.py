"""HDRI (equirectangular) -> SH: solid-angle projection, Blender's mapping, anchor rotation, file reading."""
from __future__ import annotations

import os

import numpy as np
import pytest

from blender_relight.errors import RelightError
from blender_relight.lighting import blender_lights as bl
from blender_relight.lighting import environment as env
from blender_relight.lighting import sh


def _spot_map(direction_world: np.ndarray, h: int = 128, w: int = 256, cos_min: float = 0.995) -> np.ndarray:
    """A black map with a small bright disc around a world direction (a sun in the HDRI)."""
    dirs, _ = env.equirect_directions(h, w)
    d = np.asarray(direction_world, float) / np.linalg.norm(direction_world)
    img = np.zeros((h, w, 3), np.float32)
    img[dirs @ d > cos_min] = (100.0, 80.0, 60.0)
    return img


def test_constant_map_is_ambient() -> None:
    img = np.ones((64, 128, 3), np.float32) * np.array([0.2, 0.5, 1.0], np.float32)
    coeffs = env.hdri_to_sh(img, strength=2.0)
    expect = sh.ambient_sh([0.4, 1.0, 2.0])
    assert np.allclose(coeffs, expect, atol=3e-4 * np.linalg.norm(expect))  # midpoint quadrature of the 3z²-1 term
    assert np.allclose(coeffs, bl.world_colour_sh([0.2, 0.5, 1.0], 2.0), atol=3e-4 * np.linalg.norm(expect))


def test_solid_angles_cover_the_sphere() -> None:
    dirs, solid = env.equirect_directions(90, 180)
    assert solid.sum() == pytest.approx(4 * np.pi, rel=1e-12)
    assert np.allclose(np.linalg.norm(dirs, axis=-1), 1.0)


def test_blender_equirect_mapping() -> None:
    # Checked against Cycles (bpy 4.2): the image centre looks along +X, u = 0.25 along +Y, u = 0.75 along -Y,
    # and the top row is +Z.
    dirs, _ = env.equirect_directions(64, 128)
    assert np.allclose(dirs[32, 64], [1, 0, 0], atol=0.05)
    assert np.allclose(dirs[32, 32], [0, 1, 0], atol=0.05)
    assert np.allclose(dirs[32, 96], [0, -1, 0], atol=0.05)
    assert dirs[0, 10, 2] > 0.99 and dirs[-1, 10, 2] < -0.99


def test_small_bright_region_projects_like_a_directional_light() -> None:
    d = np.array([0.3, -0.8, 0.5])
    img = _spot_map(d)
    coeffs = env.hdri_to_sh(img)
    dirs, solid = env.equirect_directions(*img.shape[:2])
    e = (img * solid[..., None]).reshape(-1, 3).sum(0)  # ∫ L dω = the irradiance it gives a facing surface
    expect = sh.directional_light_sh(d, e)
    assert np.linalg.norm(coeffs - expect) / np.linalg.norm(expect) < 0.03


def test_anchor_rotation_moves_the_light_into_the_anchor_frame() -> None:
    # the HDRI's sun sits at world +X; an anchor turned +90° about Z has its own -Y axis pointing at world +X
    img = _spot_map(np.array([1.0, 0.0, 0.0]))
    rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    coeffs = env.hdri_to_sh(img, rotation=rz * 2.0)  # scale is ignored
    e_front = sh.irradiance(np.array([0.0, -1.0, 0.0]), coeffs)
    e_back = sh.irradiance(np.array([0.0, 1.0, 0.0]), coeffs)
    assert np.all(e_front > 10 * np.abs(e_back))
    # a Mapping-node rotation of the texture moves it too: rotating the texture by rzᵀ undoes the anchor turn
    undone = env.hdri_to_sh(img, rotation=rz, world_rotation=rz.T)
    assert np.allclose(undone, env.hdri_to_sh(img), atol=1e-6 * np.abs(undone).max())


def test_large_maps_are_reduced_without_changing_the_integral() -> None:
    rng = np.random.default_rng(0)
    small = rng.random((64, 128, 3)).astype(np.float32)
    import cv2

    big = cv2.resize(small, (1024, 512), interpolation=cv2.INTER_NEAREST)
    assert np.allclose(env.hdri_to_sh(big), env.hdri_to_sh(small), rtol=0.02, atol=0.01)


@pytest.mark.parametrize("suffix", [".hdr", ".exr"])
def test_read_hdri_round_trip_and_path_input(tmp_path, suffix: str) -> None:
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    rng = np.random.default_rng(1)
    rgb = (rng.random((32, 64, 3)) * 4.0).astype(np.float32)
    path = tmp_path / f"sky{suffix}"
    assert cv2.imwrite(str(path), rgb[..., ::-1].copy())
    back = env.read_hdri(path)
    assert back.dtype == np.float32 and back.shape == (32, 64, 3)
    assert np.allclose(back, rgb, rtol=0.02, atol=0.02)  # RGBE keeps ~1 % precision
    assert np.allclose(env.hdri_to_sh(str(path), strength=1.5), 1.5 * env.hdri_to_sh(back))


def test_read_hdri_errors_are_clear(tmp_path) -> None:
    with pytest.raises(RelightError, match="not found"):
        env.read_hdri(tmp_path / "missing.hdr")
    bad = tmp_path / "broken.exr"
    bad.write_bytes(b"not an exr")
    with pytest.raises(RelightError, match="could not be decoded"):
        env.read_hdri(bad)
    png = tmp_path / "sky.png"
    png.write_bytes(b"x")
    with pytest.raises(RelightError, match=".hdr or .exr"):
        env.read_hdri(png)
