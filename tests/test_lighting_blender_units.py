"""Blender light units -> SH (the measured units in ../shared/design/PAPER.md), blackbody colours, anchor frames."""
from __future__ import annotations

import numpy as np
import pytest

from blender_relight.lighting import blender_lights as bl
from blender_relight.lighting import sh

FACING = np.array([0.0, -1.0, 0.0])  # a surface at the head looking at the viewer (SH frame: -y)
PEAK = bl.DIRECTIONAL_PEAK_FACTOR


def test_band_limit_factor_is_the_truncated_cosine_lobe_peak() -> None:
    assert PEAK == pytest.approx(1.0625, abs=1e-12)
    for d in ([1, 0, 0], [0.3, -0.4, 0.8], [0, 0, -1]):
        assert bl.band_limit_factor(np.array(d, float)) == pytest.approx(PEAK)


def test_sun_strength_is_the_facing_irradiance() -> None:
    sun = bl.LightSpec("SUN", power=3.0, direction=(0.0, 1.0, 0.0))  # shines from the viewer's side onto the face
    coeffs = bl.light_to_sh(sun)
    assert coeffs.shape == (9, 3)
    assert np.allclose(sh.irradiance(FACING, coeffs), 3.0 * PEAK)
    assert np.all(np.abs(sh.irradiance(-FACING, coeffs)) < 0.1 * 3.0)  # the back of the head stays (nearly) dark
    assert bl.light_irradiance(sun) == 3.0


@pytest.mark.parametrize("power,r", [(100.0, 2.0), (1000.0, 0.7)])
def test_point_light_inverse_square(power: float, r: float) -> None:
    spec = bl.LightSpec("POINT", power=power, position=(0.0, -r, 0.0))
    assert bl.light_irradiance(spec) == pytest.approx(power / (4 * np.pi * r * r))
    assert np.allclose(sh.irradiance(FACING, bl.light_to_sh(spec)), power / (4 * np.pi * r * r) * PEAK)


def test_point_light_direction_follows_position() -> None:
    right = bl.light_to_sh(bl.LightSpec("POINT", power=50.0, position=(1.5, 0.0, 0.0)))
    e_right = sh.irradiance(np.array([1.0, 0.0, 0.0]), right)
    e_left = sh.irradiance(np.array([-1.0, 0.0, 0.0]), right)
    assert np.all(e_right > 5 * np.abs(e_left))


def test_spot_is_point_times_smoothstep_cone() -> None:
    r = 2.0
    base = 500.0 / (4 * np.pi * r * r)
    aimed = bl.LightSpec("SPOT", power=500.0, position=(0, -r, 0), direction=(0, 1, 0),
                         spot_size=np.radians(40), spot_blend=0.3)
    assert bl.light_irradiance(aimed) == pytest.approx(base)
    # aim it 25° off the head: outside the 20° half-angle, no light
    off = np.array([np.sin(np.radians(25)), np.cos(np.radians(25)), 0.0])
    missed = bl.LightSpec("SPOT", power=500.0, position=(0, -r, 0), direction=off, spot_size=np.radians(40),
                          spot_blend=0.3)
    assert bl.light_irradiance(missed) == 0.0 and np.allclose(bl.light_to_sh(missed), 0.0)
    # inside the blend band: Blender's smoothstep of (cos θ - cos half) / ((1 - cos half) · blend)
    theta = np.radians(19.0)
    edge = bl.LightSpec("SPOT", power=500.0, position=(0, -r, 0),
                        direction=(np.sin(theta), np.cos(theta), 0.0), spot_size=np.radians(40), spot_blend=0.3)
    cos_half = np.cos(np.radians(20))
    t = (np.cos(theta) - cos_half) / ((1 - cos_half) * 0.3)
    assert 0 < t < 1
    assert bl.light_irradiance(edge) == pytest.approx(base * (3 * t * t - 2 * t**3))


def test_small_area_light_units_and_colour_ratio() -> None:
    r = 2.0
    colour = np.array([1.0, 0.5, 0.25])
    area = bl.LightSpec("AREA", power=60.0, colour=colour, position=(0, -r, 0), direction=(0, 1, 0), size=0.02)
    e = sh.irradiance(FACING, bl.light_to_sh(area))
    assert np.allclose(e, 60.0 / (np.pi * r * r) * colour * PEAK, rtol=1e-4)
    assert np.allclose(e / e[0], colour)  # the colour ratio survives
    # tilted 60°: cos of the emission angle
    tilt = np.radians(60)
    tilted = bl.LightSpec("AREA", power=60.0, position=(0, -r, 0), direction=(np.sin(tilt), np.cos(tilt), 0),
                          size=0.02)
    assert sh.irradiance(FACING, bl.light_to_sh(tilted))[0] == pytest.approx(60.0 / (np.pi * r * r) * 0.5 * PEAK,
                                                                             rel=1e-3)
    # facing away from the head: no light
    away = bl.LightSpec("AREA", power=60.0, position=(0, -r, 0), direction=(0, -1, 0), size=0.02)
    assert np.allclose(bl.light_to_sh(away), 0.0)


def test_large_disk_area_light_tends_to_the_exact_disk_integral() -> None:
    # On-axis irradiance of a Lambertian disk of radius R at distance d: P / (π (d² + R²)) (P = π L · π R²).
    d, radius, power = 1.0, 0.5, 100.0
    disk = bl.LightSpec("AREA", power=power, position=(0, -d, 0), direction=(0, 1, 0), size=2 * radius, shape="DISK")
    got = sh.irradiance(FACING, bl.light_to_sh(disk))[0] / PEAK  # irradiance the SH lobe gives head-on
    exact = power / (np.pi * (d * d + radius * radius))
    small = power / (np.pi * d * d)
    assert abs(got - exact) < 0.1 * exact and got < 0.9 * small


def test_zero_size_area_light_uses_the_small_light_formula() -> None:
    spec = bl.LightSpec("AREA", power=60.0, position=(0, -2.0, 0), direction=(0, 1, 0), size=0.0, size_y=0.0)
    assert sh.irradiance(FACING, bl.light_to_sh(spec))[0] == pytest.approx(60.0 / (np.pi * 4.0) * PEAK)


def test_world_colour_gives_pi_lw_everywhere() -> None:
    coeffs = bl.world_colour_sh([0.2, 0.3, 0.4], strength=2.0)
    for n in ([0, -1, 0], [1, 0, 0], [0, 0.6, 0.8]):
        assert np.allclose(sh.irradiance(np.array(n, float), coeffs), np.pi * np.array([0.4, 0.6, 0.8]))


def test_scene_sums_lights_and_world() -> None:
    a = bl.LightSpec("SUN", power=2.0, direction=(0, 1, 0), colour=(1, 0.9, 0.8))
    b = bl.LightSpec("POINT", power=100.0, position=(1, -1, 0.5))
    world = bl.world_colour_sh([0.05, 0.05, 0.05])
    assert np.allclose(bl.scene_sh([a, b], world), bl.light_to_sh(a) + bl.light_to_sh(b) + world)
    assert np.allclose(bl.scene_sh([]), 0.0)


def test_temperature_and_exposure_modulate_colour() -> None:
    base = bl.LightSpec("SUN", power=1.0, direction=(0, 1, 0))
    warm = bl.LightSpec("SUN", power=1.0, direction=(0, 1, 0), temperature=3000.0, exposure=1.0)
    ratio = sh.irradiance(FACING, bl.light_to_sh(warm)) / sh.irradiance(FACING, bl.light_to_sh(base))
    assert np.allclose(ratio, 2.0 * bl.blackbody_rgb(3000.0))


def test_blackbody_is_normalised_and_ordered() -> None:
    luma = np.array([0.2126, 0.7152, 0.0722])
    temps = [1500, 2700, 4000, 5500, 6500, 8000, 12000]
    cols = np.array([bl.blackbody_rgb(t) for t in temps])
    assert np.allclose(cols @ luma, 1.0)
    assert np.all(np.diff(cols[:, 0]) < 0) and np.all(np.diff(cols[:, 2]) > 0)  # red falls, blue rises with T
    white = bl.blackbody_rgb(6500)
    assert np.all(np.abs(white - 1.0) < 0.06)  # close to D65 white
    tungsten = bl.blackbody_rgb(2700)
    assert tungsten[0] > 1.7 and tungsten[2] < 0.3
    with pytest.raises(ValueError):
        bl.blackbody_rgb(0.0)


def test_relative_to_anchor_removes_anchor_pose_and_scale() -> None:
    # anchor rotated 90° about Z, scaled ×3, at (1, 2, 0); the light 2 m in front of it (anchor -Y), pointing back
    rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    anchor = np.eye(4)
    anchor[:3, :3] = rz * 3.0
    anchor[:3, 3] = [1.0, 2.0, 0.0]
    light = np.eye(4)
    light[:3, 3] = anchor[:3, 3] + rz @ np.array([0.0, -2.0, 0.0])
    # light's -Z must point along anchor +Y (toward the head): local Z = anchor -Y in world
    z_axis = rz @ np.array([0.0, -1.0, 0.0])
    x_axis = rz @ np.array([1.0, 0.0, 0.0])
    light[:3, 0], light[:3, 1], light[:3, 2] = x_axis, np.cross(z_axis, x_axis), z_axis
    pos, direction, ax = bl.relative_to_anchor(light, anchor)
    assert np.allclose(pos, [0, -2, 0]) and np.allclose(direction, [0, 1, 0]) and np.allclose(ax, [1, 0, 0])


def test_bad_specs_are_rejected() -> None:
    with pytest.raises(ValueError):
        bl.LightSpec("LAMP")
    with pytest.raises(ValueError):
        bl.light_to_sh(bl.LightSpec("POINT", position=(0, 0, 0)))
