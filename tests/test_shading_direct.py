"""Per-light shading of G-buffers: Blender's units at each pixel, cast shadows (hard and soft), the specular lobe, the
SH remainder, and the one conversion between EG3D geometry and the lights' frame."""
from __future__ import annotations

import numpy as np
import pytest

from blender_relight import camera as cam
from blender_relight.geometry import HeadGeometry, rasterize
from blender_relight.lighting import sh as shlib
from blender_relight.lighting.blender_lights import LightSpec, irradiance_at, light_irradiance
from blender_relight.lighting.scene import SceneLighting
from blender_relight.shading import frames, shade
from blender_relight.shading.shade import sh_key_light, source_shading


def _quad(x0, x1, y0, y1, z, n=8):
    """A grid of triangles in the plane z = const facing +z (toward the frontal camera), EG3D world."""
    xs, ys = np.linspace(x0, x1, n + 1), np.linspace(y0, y1, n + 1)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    v = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)], 1)
    idx = np.arange(v.shape[0]).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    t = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return v, t


def _wall_with_blockers(wall: tuple[float, float, float, float], blockers: list[tuple[float, float, float, float, float]],
                        size: int):
    """A wall (x0, x1, y0, y1) at z = 0 and small square blockers (x0, x1, y0, y1, gap in front of it), seen from
    the frontal camera at ``size``²: (geometry, G-buffer)."""
    v, t = _quad(*wall, 0.0, 16)
    parts = [np.zeros(len(v), np.uint8)]
    for x0, x1, y0, y1, gap in blockers:
        vb, tb = _quad(x0, x1, y0, y1, gap, 2)
        t = np.concatenate([t, tb + len(v)])
        v = np.concatenate([v, vb])
        parts.append(np.ones(len(vb), np.uint8))
    geo = HeadGeometry(v.astype(np.float32), t.astype(np.int32), np.zeros((len(v), 2), np.float32),
                       np.concatenate(parts))
    return geo, rasterize(geo, cam.frontal_label(), size)


def _scene(with_blocker: bool = True):
    """A wall at z = 0 and, 0.1 in front of it, a small square blocker: seen from the frontal camera."""
    return _wall_with_blockers((-0.3, 0.3, -0.3, 0.3), [(-0.05, 0.05, -0.05, 0.05, 0.1)] if with_blocker else [], 96)


def test_frames_conversion_is_the_rig_axis_change():
    p = np.array([[0.1, 0.2, 0.3]])
    q = frames.eg3d_to_light_frame(p)
    np.testing.assert_allclose(q, [[0.1, -0.3, 0.2]])  # EG3D (x, y up, z to viewer) -> anchor (x, -z, y)
    np.testing.assert_allclose(frames.light_frame_to_eg3d(q), p)
    np.testing.assert_allclose(frames.direction_to_eg3d(shlib.rotate_eg3d_to_sh(p)), p)
    # the EG3D camera sits at -y in the anchor frame, as the Blender rig's camera does
    eye = cam.split_label(cam.frontal_label())[0][:3, 3]
    assert frames.eg3d_to_light_frame(eye[None])[0, 1] < -2.0


def test_irradiance_at_is_light_irradiance_at_the_head_centre():
    for spec in (LightSpec("POINT", power=80, position=(0.5, -1.0, 0.3)),
                 LightSpec("SPOT", power=80, position=(0.0, -1.5, 0.0), direction=(0, 1, 0), spot_size=0.6),
                 LightSpec("AREA", power=50, position=(-1.0, -1.0, 0.5), direction=(1, 1, -0.5)),
                 LightSpec("SUN", power=3.0, direction=(0.3, 1.0, -0.2))):
        e, to_light = irradiance_at(spec, np.zeros((1, 3)))
        assert e[0] == pytest.approx(light_irradiance(spec))
        np.testing.assert_allclose(np.linalg.norm(to_light, axis=1), 1.0)


def test_point_light_falloff_and_cosine_on_a_wall():
    geo, gb = _scene(with_blocker=False)
    light = LightSpec("POINT", power=100.0, position=(0.0, -0.8, 0.0), name="p")  # 0.8 in front of the wall
    result = shade(gb, SceneLighting(lights=(light,)), geo)
    pos = frames.eg3d_to_light_frame(gb.position[gb.mask])
    offset = np.asarray(light.position) - pos
    r = np.sqrt((offset**2).sum(1))
    # the wall's normal is EG3D +z = anchor -y (toward the camera and the light)
    expected = 100.0 / (4 * np.pi * r**2) * np.maximum(-offset[:, 1] / r, 0.0)
    np.testing.assert_allclose(result.diffuse[gb.mask][:, 0], expected, rtol=2e-3, atol=1e-4)
    assert result.per_light["p"].shadow[gb.mask].min() > 0.99  # nothing blocks


def test_blocker_casts_a_shadow_and_an_area_light_softens_it():
    geo, gb = _scene()
    wall = gb.mask & (gb.part == 0)
    # off the camera's axis, so the shadow falls beside the blocker's image (x > 0 light: shadow toward -x)
    point = LightSpec("POINT", power=100.0, position=(0.4, -0.8, 0.0), name="k")
    hard = shade(gb, SceneLighting(lights=(point,)), geo).per_light["k"].shadow[..., 0]
    assert (wall & (hard < 0.5)).sum() > 20  # a visible shadow on the wall
    xs = np.broadcast_to(np.arange(96), hard.shape)
    shadowed = wall & (hard < 0.5)
    assert xs[shadowed].mean() < 47.5  # on the side away from the light
    far = wall.copy()
    far[24:72, 10:72] = False
    assert hard[far].min() > 0.99  # the rest of the wall is lit
    area = LightSpec("AREA", power=100.0, position=(0.4, -0.8, 0.0), direction=(-0.4, 0.8, 0), size=0.4, name="k")
    soft = shade(gb, SceneLighting(lights=(area,)), geo).per_light["k"].shadow[..., 0]
    partial = lambda s: int((wall & (s > 0.1) & (s < 0.9)).sum())  # noqa: E731
    umbra = lambda s: int((wall & (s <= 0.1)).sum())  # noqa: E731
    assert partial(soft) > 1.3 * max(partial(hard), 1)  # a wider penumbra ...
    assert umbra(soft) < umbra(hard)  # ... eating into the umbra
    assert abs(float((1 - soft)[wall].sum()) - float((1 - hard)[wall].sum())) < 0.5 * float((1 - hard)[wall].sum())


def test_specular_peaks_at_the_mirror_direction_and_vanishes_behind():
    geo, gb = _scene(with_blocker=False)
    eye = cam.split_label(cam.frontal_label())[0][:3, 3]
    light = LightSpec("POINT", power=100.0, position=tuple(frames.eg3d_to_light_frame(eye[None])[0] * 0.4), name="s")
    res = shade(gb, SceneLighting(lights=(light,)), None)
    spec = res.specular[..., 0]
    r, c = np.unravel_index(np.argmax(spec), spec.shape)
    assert abs(r - 47.5) < 4 and abs(c - 47.5) < 4  # light beside the camera: the highlight faces it
    behind = LightSpec("POINT", power=100.0, position=(0.0, 0.8, 0.0), name="b")  # behind the wall
    res_b = shade(gb, SceneLighting(lights=(behind,)), None)
    assert res_b.specular.max() == 0.0 and res_b.diffuse.max() == 0.0


def test_the_source_light_as_target_gives_ratio_one_and_its_key_highlight():
    """The plate's own light as the target changes nothing (its SH irradiance on both sides), and what the plate's
    highlights came from is its key's: a sun along the SH's first band with the band's irradiance."""
    from blender_relight.shading import prepare

    geo, gb = _scene(with_blocker=False)
    sh = shlib.directional_light_sh(np.array([0.3, -1.0, 0.2]), np.full(3, 2.0)) + shlib.ambient_sh(np.full(3, 0.1))
    inputs = prepare(gb, gb.camera)
    diffuse, specular = source_shading(sh, geo, inputs)
    target = shade(None, SceneLighting(sh=sh), geo, inputs=inputs, per_light=False, images=False)
    np.testing.assert_allclose(target.diffuse_values, diffuse, rtol=1e-6)
    n_sh = shlib.rotate_eg3d_to_sh(gb.normal.reshape(-1, 3)[inputs.index])
    np.testing.assert_allclose(diffuse, np.maximum(shlib.irradiance(n_sh, sh), 0), rtol=1e-4, atol=1e-5)
    key = sh_key_light(sh)
    np.testing.assert_allclose(-np.asarray(key.direction), np.array([0.3, -1.0, 0.2]) / np.linalg.norm([0.3, -1, .2]),
                               atol=1e-9)
    assert key.power == pytest.approx(2.0)
    sun = shade(None, SceneLighting(lights=(key,)), geo, inputs=inputs, per_light=False, images=False)
    np.testing.assert_allclose(specular, sun.specular_values, rtol=1e-6)
    assert specular.max() > 0.0 and target.specular_values.max() == 0.0  # an SH light adds no highlight


def test_real_head_side_light_shadows_the_far_cheek_only():
    from tests.test_geometry_head import _matte, _tracked
    from blender_relight.geometry import head_geometry
    from blender_relight.geometry.head import shadow_caster

    track, crop = _tracked("lp_d3.mp4", 30)
    geo = head_geometry(track, _matte(track, crop)[1])
    gb = rasterize(geo, track.camera, 256)
    key = LightSpec("POINT", power=60.0, position=(-1.0, -1.0, 0.3), name="key")  # 45° to the image left
    res = shade(gb, SceneLighting(lights=(key,)), shadow_caster(geo))
    for a in (res.diffuse, res.specular, res.per_light["key"].shadow):
        assert np.isfinite(a).all() and a.min() >= 0.0
    vis = res.per_light["key"].shadow[..., 0]
    nose = track.points_crop()[4, :2] / 2.0  # landmark 4 (below the nose tip) in shading pixels
    r, c = int(nose[1]), int(nose[0])
    right = vis[r - 4:r + 12, c + 6:c + 24]  # beside the nose on the far (image-right) side
    left = vis[r - 4:r + 12, c - 24:c - 6]
    assert right.min() < 0.3, "the nose casts a shadow onto the far cheek"
    assert left.min() > 0.9, "nothing shadows the near cheek"
    lit = res.diffuse[..., 0]
    assert lit[r, c - 30] > 2.0 * lit[r, c + 30]  # the near cheek is brighter than the far one


def test_a_small_area_light_is_one_patch_within_the_measured_bound(monkeypatch):
    import importlib

    shade_mod = importlib.import_module("blender_relight.shading.shade")
    geo, gb = _scene(with_blocker=False)
    inputs = shade_mod.prepare(gb, cam.frontal_label())
    small = LightSpec("AREA", power=50.0, position=(0.3, -0.9, 0.2), direction=(-0.3, 0.9, -0.2), size=0.08, name="a")
    large = LightSpec("AREA", power=50.0, position=(0.3, -0.9, 0.2), direction=(-0.3, 0.9, -0.2), size=0.4, name="a")
    assert len(shade_mod._samples(small, inputs.receivers)) == 1
    assert len(shade_mod._samples(large, inputs.receivers)) == shade_mod.AREA_GRID ** 2
    fast = shade(None, SceneLighting(lights=(small,)), None, inputs=inputs)
    monkeypatch.setattr(shade_mod, "AREA_GRID", 16)  # the reference: a 16×16 integral over the light
    monkeypatch.setattr(shade_mod, "SMALL_AREA_FRACTION", 0.0)
    ref = shade(None, SceneLighting(lights=(small,)), None, inputs=inputs)
    assert np.abs(fast.diffuse - ref.diffuse).max() <= 0.015 * ref.diffuse.max()
    assert np.abs(fast.specular - ref.specular).max() <= 0.05 * ref.specular.max()


def test_shadow_maps_are_kept_for_a_power_change_and_a_move_below_half_a_texel():
    from dataclasses import replace

    from blender_relight.shading import ShadowCache, prepare, shadow

    geo, gb = _scene()
    inputs = prepare(gb, cam.frontal_label())
    cache = ShadowCache()
    key = LightSpec("SPOT", power=100.0, position=(0.8, -1.6, 0.0), direction=(-0.8, 1.6, 0.0), name="k")
    first = shade(None, SceneLighting(lights=(key,)), geo, inputs=inputs, shadows=cache).per_light["k"].shadow
    assert cache.built == 1
    shade(None, SceneLighting(lights=(replace(key, power=300.0, spot_size=1.2, direction=(-0.3, 0.8, 0.1)),)), geo,
          inputs=inputs, shadows=cache)
    assert cache.built == 1  # power, cone and aim do not change what the light sees
    sm = cache.get(geo, key, shadow.DEFAULT_RESOLUTION, inputs.receivers)
    step = 0.2 * sm.texel_world  # far below the half-texel shift the cache allows for this light
    assert shadow.shadow_shift(sm, light_position=frames.light_frame_to_eg3d(np.add(key.position, (step, 0, 0)))) < 0.5
    nudged = shade(None, SceneLighting(lights=(replace(key, position=(0.8 + step, -1.6, 0.0)),)), geo, inputs=inputs,
                   shadows=cache).per_light["k"].shadow
    assert cache.built == 1
    np.testing.assert_allclose(nudged, first, atol=0.02)
    assert (first < 0.5).sum() > 10  # there is a shadow to keep
    shade(None, SceneLighting(lights=(replace(key, position=(0.7, -1.6, 0.1)),)), geo, inputs=inputs, shadows=cache)
    assert cache.built == 2  # a real move rebuilds
    sun = LightSpec("SUN", power=3.0, direction=(-0.3, 1.0, 0.0), name="s")
    shade(None, SceneLighting(lights=(sun,)), geo, inputs=inputs, shadows=cache)
    shade(None, SceneLighting(lights=(replace(sun, power=1.0),)), geo, inputs=inputs, shadows=cache)
    assert cache.built == 3


def test_pixels_split_over_two_workers_give_the_serial_result(monkeypatch):
    import importlib

    shade_mod = importlib.import_module("blender_relight.shading.shade")
    geo, gb = _scene()
    lights = (LightSpec("POINT", power=100.0, position=(0.4, -0.8, 0.0), name="p"),
              LightSpec("AREA", power=60.0, position=(-0.5, -0.7, 0.3), direction=(0.5, 0.7, -0.3), size=0.3, name="a"))
    monkeypatch.setattr(shade_mod, "WORKERS", 2)
    monkeypatch.setattr(shade_mod, "SPLIT_PIXELS", 1)
    split = shade(gb, SceneLighting(lights=lights), geo)
    monkeypatch.setattr(shade_mod, "WORKERS", 1)
    whole = shade(gb, SceneLighting(lights=lights), geo)
    for a, b in ((split.diffuse, whole.diffuse), (split.specular, whole.specular),
                 (split.per_light["p"].shadow, whole.per_light["p"].shadow)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _two_blockers():
    """A wall at z = 0 with two small square blockers in front of it: one 0.04 in front (left), one 0.16 (right)."""
    return _wall_with_blockers((-0.4, 0.4, -0.3, 0.3), [(-0.25, -0.15, -0.05, 0.05, 0.04), (0.1, 0.2, -0.05, 0.05, 0.16)],
                               128)


def _penumbra_px(vis: np.ndarray, wall: np.ndarray, columns: slice) -> int:
    part = (vis > 0.1) & (vis < 0.9) & wall
    return int(part[:, columns].sum())


def test_sun_angle_gives_a_penumbra_that_widens_with_the_gap():
    from blender_relight.lighting.blender_lights import shadow_extent

    assert shadow_extent(LightSpec("SUN", angle=0.0), 1e3) == 0.0
    assert shadow_extent(LightSpec("SUN", angle=0.2), 1e3) == pytest.approx(2e3 * np.tan(0.1))
    assert shadow_extent(LightSpec("POINT", size=0.1), 1e3) == pytest.approx(0.1)  # a point light's diameter
    assert shadow_extent(LightSpec("AREA", size=0.2, size_y=0.8, shape="RECTANGLE"), 1e3) == pytest.approx(0.4)
    geo, gb = _two_blockers()
    wall = gb.mask & (gb.part == 0)
    sun = LightSpec("SUN", power=3.0, direction=(0.8, 1.0, 0.0), name="s")  # from the front and the image left
    near, far = slice(0, 64), slice(64, 128)  # image columns of the 0.04 and the 0.16 blocker's shadows
    hard = shade(gb, SceneLighting(lights=(sun,)), geo).per_light["s"].shadow[..., 0]
    soft = shade(gb, SceneLighting(lights=(LightSpec("SUN", power=3.0, direction=(0.8, 1.0, 0.0), angle=0.25,
                                                     name="s"),)), geo).per_light["s"].shadow[..., 0]
    for vis in (hard, soft):  # both blockers cast a shadow with an umbra
        assert (wall[:, near] & (vis[:, near] < 0.1)).sum() > 20 and (wall[:, far] & (vis[:, far] < 0.1)).sum() > 20
    # a hard sun: the same thin edge behind either blocker; an angle: a penumbra ~ 2·tan(angle/2)·gap
    assert _penumbra_px(hard, wall, far) < 1.6 * _penumbra_px(hard, wall, near)
    assert _penumbra_px(soft, wall, far) > 1.8 * _penumbra_px(soft, wall, near)
    assert _penumbra_px(soft, wall, far) > 1.8 * _penumbra_px(hard, wall, far)
