"""The extension in headless bpy: enable/disable/enable, lights -> SH in measured units, camera -> EG3D label."""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest

from blender_relight import camera
from blender_relight.errors import RelightError
from blender_relight.lighting import blender_lights, sh

from pr_blender_env import PACKAGE, set_world_colour, use_world_nodes


def _mat(m):
    from mathutils import Matrix

    return Matrix(np.asarray(m).tolist())


def _anchor(bpy, sc, matrix):
    anchor = bpy.data.objects.new("anchor", None)
    sc.collection.objects.link(anchor)
    anchor.matrix_world = _mat(matrix)
    sc.portrait_relight.anchor = anchor
    return anchor


def _anchor_matrix(yaw_deg=30.0, loc=(0.4, -2.0, 1.1)):
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    m = np.eye(4)
    m[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    m[:3, 3] = loc
    return m


def test_enable_disable_enable(addon, bpy_module):
    import addon_utils

    bpy = bpy_module
    assert hasattr(bpy.types.Scene, "portrait_relight")
    assert bpy.ops.portrait_relight.analyse.idname() == "PORTRAIT_RELIGHT_OT_analyse"
    relight = importlib.import_module(PACKAGE + ".ops.relight")
    assert relight._on_depsgraph in bpy.app.handlers.depsgraph_update_post
    operators = importlib.import_module(PACKAGE + ".ops.operators")
    assert operators.clear_stale_state in bpy.app.handlers.load_post
    # A file saved mid-analysis must not leave the clip "busy" when reopened.
    bpy.context.scene.portrait_relight.busy = True
    operators.clear_stale_state()
    assert not bpy.context.scene.portrait_relight.busy
    addon_utils.disable(PACKAGE, default_set=True)
    assert not hasattr(bpy.types.Scene, "portrait_relight")
    assert not any(getattr(h, "__module__", "").startswith(PACKAGE) for h in bpy.app.handlers.load_post)
    assert not any(getattr(h, "__module__", "").startswith(PACKAGE) for h in bpy.app.handlers.depsgraph_update_post)
    assert not any(getattr(h, "__module__", "").startswith(PACKAGE) for h in bpy.app.handlers.frame_change_post)
    addon_utils.enable(PACKAGE, default_set=True)
    assert hasattr(bpy.types.Scene, "portrait_relight")
    assert bpy.context.scene.portrait_relight.engine == "auto"


def test_cache_folder_is_under_the_extension_user_path(addon, bpy_module):
    bpy = bpy_module
    sessions = importlib.import_module(PACKAGE + ".ops.session")
    prefs = sessions.preferences()
    expected = bpy.utils.extension_path_user(PACKAGE, path="cache")
    assert prefs.cache_dir == expected
    addon_dir = Path(addon.__file__).resolve().parent
    assert addon_dir not in Path(prefs.cache_dir).resolve().parents


def test_coloured_area_light_gives_the_measured_irradiance(scene, bpy_module):
    """A small area light 1.5 m in front of the face: E = P/(π r²) × colour toward it (× the SH band-limit factor),
    wherever the anchor stands and however it is turned."""
    bpy = bpy_module
    scene_read = importlib.import_module(PACKAGE + ".ops.scene_read")
    A = _anchor_matrix()
    _anchor(bpy, scene, A)
    data = bpy.data.lights.new("key", "AREA")
    data.energy, data.color, data.size = 60.0, (1.0, 0.5, 0.25), 0.02
    light = bpy.data.objects.new("key", data)
    scene.collection.objects.link(light)
    offset = np.array([0.6, -1.2, 0.5])  # anchor frame: subject's side, in front (-Y), above
    r = float(np.linalg.norm(offset))
    local = np.eye(4)
    local[:3, 3] = offset
    z = offset / r  # the light's local +Z points away from the head, so it shines (-Z) at it
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    local[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    light.matrix_world = _mat(A @ local)
    depsgraph = bpy.context.evaluated_depsgraph_get()

    coeffs = scene_read.scene_sh(scene, scene.portrait_relight, depsgraph)
    expected_e = 60.0 / (math.pi * r * r) * np.array([1.0, 0.5, 0.25]) * blender_lights.DIRECTIONAL_PEAK_FACTOR
    np.testing.assert_allclose(sh.irradiance(z, coeffs), expected_e, rtol=2e-3)
    # The dominant direction of the band-1 coefficients (order y, z, x) points at the light in the anchor frame.
    band1 = coeffs[1:4, 0]
    np.testing.assert_allclose(np.array([band1[2], band1[0], band1[1]]) / np.linalg.norm(band1), z, atol=1e-3)
    np.testing.assert_allclose(sh.irradiance(-z, coeffs), 0.0, atol=0.15 * expected_e.max())

    # Turning and moving the anchor with its light changes nothing.
    B = _anchor_matrix(yaw_deg=-75.0, loc=(-3.0, 1.0, 0.2))
    scene.portrait_relight.anchor.matrix_world = _mat(B)
    light.matrix_world = _mat(B @ local)
    again = scene_read.scene_sh(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    np.testing.assert_allclose(again, coeffs, rtol=1e-5, atol=1e-5)  # Blender matrices are float32

    # A world colour adds π·Lw of irradiance everywhere.
    set_world_colour(bpy, scene.world, (0.1, 0.2, 0.3))
    with_world = scene_read.scene_sh(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    np.testing.assert_allclose(sh.irradiance(-z, with_world) - sh.irradiance(-z, again),
                               math.pi * np.array([0.1, 0.2, 0.3]), rtol=1e-6)


def test_hidden_lights_and_an_empty_scene(scene, bpy_module):
    bpy = bpy_module
    scene_read = importlib.import_module(PACKAGE + ".ops.scene_read")
    _anchor(bpy, scene, np.eye(4))
    with pytest.raises(RelightError, match="no light"):
        scene_read.scene_sh(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    data = bpy.data.lights.new("sun", "SUN")
    sun = bpy.data.objects.new("sun", data)
    scene.collection.objects.link(sun)
    sun.hide_render = True
    with pytest.raises(RelightError, match="no light"):
        scene_read.scene_sh(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    sun.hide_render = False
    data.energy = 3.0
    coeffs = scene_read.scene_sh(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    down = np.array([0.0, 0.0, 1.0])  # a default sun points down (-Z): it lights normals facing up
    np.testing.assert_allclose(sh.irradiance(down, coeffs), 3.0 * blender_lights.DIRECTIONAL_PEAK_FACTOR, rtol=1e-6)


def test_moving_the_camera_moves_the_eg3d_camera(scene, bpy_module):
    bpy = bpy_module
    scene_read = importlib.import_module(PACKAGE + ".ops.scene_read")
    A = _anchor_matrix(yaw_deg=-20.0, loc=(1.0, 2.0, 0.5))
    _anchor(bpy, scene, A)
    cam_data = bpy.data.cameras.new("cam")
    cam_data.sensor_width = camera.SENSOR_WIDTH_MM
    cam_data.lens, _, _ = camera.blender_lens(camera.intrinsics())
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.portrait_relight.camera = cam
    for yaw, pitch in ((0.0, 0.0), (0.5, 0.15), (-0.8, -0.2)):
        c2w = camera.orbit_camera(yaw, pitch)
        cam.matrix_world = _mat(camera.eg3d_to_blender(c2w, A))
        label = scene_read.scene_camera_label(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
        np.testing.assert_allclose(label, camera.make_label(c2w), atol=2e-5)
    # Zoom and shift become focal length and principal point.
    cam_data.lens, cam_data.shift_x = 100.0, 0.05
    label = scene_read.scene_camera_label(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    _, K = camera.split_label(label)
    np.testing.assert_allclose([K[0, 0], K[0, 2]], [100.0 / 36.0, 0.45], atol=1e-6)


def test_hdri_world_is_projected_in_the_anchor_frame(scene, bpy_module, tmp_path):
    """An HDRI bright only in one hemisphere (world +X) lights the face from there; turning the anchor by 90° about
    Z moves that light in the anchor frame, and a uniform HDRI gives π·value·strength everywhere."""
    import cv2

    bpy = bpy_module
    scene_read = importlib.import_module(PACKAGE + ".ops.scene_read")
    h, w = 32, 64
    lon = (np.arange(w) + 0.5) / w * 2 * np.pi - np.pi  # longitude of each column; half the map is lit
    hemi = np.zeros((h, w, 3), np.float32)
    uniform = np.full((h, w, 3), 0.25, np.float32)
    path_u, path_h = tmp_path / "uniform.hdr", tmp_path / "hemi.hdr"
    cv2.imwrite(str(path_u), uniform)
    hemi[:, np.cos(lon) > 0] = 1.0
    cv2.imwrite(str(path_h), hemi)
    _anchor(bpy, scene, np.eye(4))
    world = scene.world
    use_world_nodes(bpy, world)
    nodes = world.node_tree.nodes
    env = nodes.new("ShaderNodeTexEnvironment")
    background = next(n for n in nodes if n.type == "BACKGROUND")
    world.node_tree.links.new(env.outputs["Color"], background.inputs["Color"])
    background.inputs["Strength"].default_value = 2.0
    env.image = bpy.data.images.load(str(path_u))
    coeffs = scene_read.scene_sh(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    for n in np.eye(3):
        np.testing.assert_allclose(sh.irradiance(n, coeffs), math.pi * 0.25 * 2.0, rtol=2e-2)
    env.image = bpy.data.images.load(str(path_h))
    base = scene_read.scene_sh(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    band1 = np.array([base[3, 0], base[1, 0], base[2, 0]])  # (x, y, z) of the dominant direction
    scene.portrait_relight.anchor.matrix_world = _mat(_anchor_matrix(yaw_deg=90.0, loc=(0, 0, 0)))
    turned = scene_read.scene_sh(scene, scene.portrait_relight, bpy.context.evaluated_depsgraph_get())
    band1_t = np.array([turned[3, 0], turned[1, 0], turned[2, 0]])
    # World direction d is seen from an anchor turned +90° about Z at Rz(-90°)·d.
    rz = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(band1_t, rz @ band1, atol=1e-6 * max(1.0, np.abs(band1).max()))
    assert np.linalg.norm(band1) > 0.1


def test_light_softness_reaches_the_light_spec(scene, bpy_module):
    """A point or spot light's Radius (shadow_soft_size) reaches LightSpec.size as its diameter, a sun's Angle
    reaches LightSpec.angle: the shading's shadows are as soft as Blender's."""
    bpy = bpy_module
    scene_read = importlib.import_module(PACKAGE + ".ops.scene_read")
    A = _anchor_matrix()
    _anchor(bpy, scene, A)
    made = {}
    for kind, name in (("POINT", "key"), ("SPOT", "rim"), ("SUN", "sun")):
        data = bpy.data.lights.new(name, kind)
        data.energy = 50.0
        if kind == "SUN":
            data.angle = math.radians(7.5)
        else:
            data.shadow_soft_size = 0.12 if kind == "POINT" else 0.03
        obj = bpy.data.objects.new(name, data)
        scene.collection.objects.link(obj)
        local = np.eye(4)
        local[:3, 3] = (0.8, -1.2, 0.4)
        obj.matrix_world = _mat(A @ local)
        made[name] = obj
    depsgraph = bpy.context.evaluated_depsgraph_get()
    anchor = scene_read.anchor_matrix(scene.portrait_relight, depsgraph)
    specs = {s.name: s for s in scene_read.scene_lights(scene, depsgraph, anchor)}
    assert specs["key"].size == pytest.approx(0.24) and specs["rim"].size == pytest.approx(0.06)
    assert specs["sun"].angle == pytest.approx(math.radians(7.5)) and specs["key"].angle == 0.0
    made["key"].data.shadow_soft_size = 0.0  # a zero radius is a hard light, not a default
    depsgraph = bpy.context.evaluated_depsgraph_get()
    hard = scene_read.light_spec(made["key"].evaluated_get(depsgraph), anchor)
    assert hard.size == 0.0
    from blender_relight.lighting.blender_lights import shadow_extent

    assert shadow_extent(specs["sun"], 1.0) == pytest.approx(2.0 * math.tan(math.radians(3.75)))


def test_scene_lighting_keeps_the_lights_and_projects_to_the_scene_sh(scene, bpy_module):
    bpy = bpy_module
    scene_read = importlib.import_module(PACKAGE + ".ops.scene_read")
    _anchor(bpy, scene, _anchor_matrix())
    data = bpy.data.lights.new("key", "POINT")
    data.energy, data.shadow_soft_size = 80.0, 0.1
    obj = bpy.data.objects.new("key", data)
    scene.collection.objects.link(obj)
    local = np.eye(4)
    local[:3, 3] = (-0.9, -1.1, 0.3)
    obj.matrix_world = _mat(_anchor_matrix() @ local)
    set_world_colour(bpy, scene.world, (0.05, 0.05, 0.05))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    lighting = scene_read.scene_lighting(scene, scene.portrait_relight, depsgraph)
    assert [s.name for s in lighting.lights] == ["key"] and lighting.lights[0].size == pytest.approx(0.2)
    assert float(np.abs(lighting.sh).max()) > 0  # the world stays SH
    np.testing.assert_allclose(lighting.total_sh(), scene_read.scene_sh(scene, scene.portrait_relight, depsgraph))
