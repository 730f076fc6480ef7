"""Blender-version shim, rig maths, multilayer EXR writer and build-script helpers: pure code, no bpy needed."""
from __future__ import annotations

import importlib.util
import os
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from blender_relight import camera

ROOT = Path(__file__).resolve().parents[1]


def _load(rel: str, name: str):
    """Import a file of the Blender glue without its package (whose __init__ needs bpy)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


compat = _load("ops/compat.py", "pr_compat")
rig_maths = _load("ops/rig_maths.py", "pr_rig_maths")
build = _load("tools/build_extension.py", "pr_build_extension")

V42, V45, V50 = (4, 2, 22), (4, 5, 3), (5, 0, 0)


def test_sequencer_collections_and_classes_follow_the_version():
    editor = SimpleNamespace(sequences="old", sequences_all="old-all", strips="new", strips_all="new-all")
    assert compat.strips(editor, V42) == "old" and compat.strips(editor, V45) == "old"
    assert compat.strips(editor, V50) == "new"
    assert compat.all_strips(editor, V42) == "old-all" and compat.all_strips(editor, V50) == "new-all"
    assert compat.strip_class_name("MOVIE", V42) == "MovieSequence"
    assert compat.strip_class_name("IMAGE", V50) == "ImageStrip"
    assert compat.strip_class_name("", V50) == "Strip"
    assert compat.context_member("active_sequence_strip", V42) == "active_sequence_strip"
    assert compat.context_member("active_sequence_strip", V50) == "active_strip"
    assert compat.context_member("selected_editable_sequences", V50) == "selected_editable_strips"


def test_eevee_engine_id():
    assert compat.eevee_engine_id(V42) == "BLENDER_EEVEE_NEXT"
    assert compat.eevee_engine_id(V45) == "BLENDER_EEVEE_NEXT"
    assert compat.eevee_engine_id(V50) == "BLENDER_EEVEE"


class _World5:
    """Mimics a 5.0 world: reading ``use_nodes`` is deprecated (it would warn), the node tree always renders."""

    node_tree = object()

    @property
    def use_nodes(self):
        raise AssertionError("use_nodes must not be read in 5.0")


def test_world_reads_nodes_always_in_5_0_and_by_use_nodes_before():
    assert compat.world_uses_nodes(_World5(), V50)
    assert compat.world_uses_nodes(SimpleNamespace(use_nodes=True, node_tree=object()), V42)
    assert not compat.world_uses_nodes(SimpleNamespace(use_nodes=False, node_tree=object()), V45)
    assert not compat.world_uses_nodes(SimpleNamespace(use_nodes=True, node_tree=None), V42)


class _Bpy5Props:
    """Mimics 5.0: a bpy.props property reads as an attribute, ``owner[name]`` raises."""

    engine = "neural"

    def __getitem__(self, key):
        if key == "engine":
            raise KeyError(key)
        return {"custom": 3}[key]


def test_read_prop_prefers_attributes_then_id_properties():
    owner = _Bpy5Props()
    assert compat.read_prop(owner, "engine") == "neural"
    assert compat.read_prop(owner, "custom") == 3
    assert compat.read_prop(owner, "absent", "fallback") == "fallback"
    assert compat.read_prop(None, "engine", "x") == "x"


def test_video_output_sets_media_type_first_in_5_0():
    order: list[tuple[str, str]] = []

    class Settings:
        def __setattr__(self, key, value):
            order.append((key, value))
            object.__setattr__(self, key, value)

    s5 = Settings()
    object.__setattr__(s5, "media_type", "IMAGE")
    compat.set_video_output(s5, V50)
    assert order == [("media_type", "VIDEO"), ("file_format", "FFMPEG")]
    order.clear()
    s4 = Settings()
    compat.set_video_output(s4, V42)
    assert order == [("file_format", "FFMPEG")]


def test_extension_user_dir_uses_extension_path_for_extensions(tmp_path):
    calls = []

    def extension_path_user(package, path="", create=False):
        calls.append((package, path, create))
        return str(tmp_path / "ext" / path)

    utils = SimpleNamespace(extension_path_user=extension_path_user, user_resource=lambda kind: str(tmp_path / "cfg"))
    assert compat.extension_user_dir(utils, "bl_ext.user_default.portrait_relight", "cache").endswith("ext/cache")
    assert calls == [("bl_ext.user_default.portrait_relight", "cache", True)]
    legacy = compat.extension_user_dir(utils, "portrait_relight", "cache")
    assert legacy == str(tmp_path / "cfg" / "portrait_relight" / "cache") and os.path.isdir(legacy)


def test_addon_package_from_subpackages():
    assert compat.addon_package("bl_ext.user_default.portrait_relight.ops") == "bl_ext.user_default.portrait_relight"
    assert compat.addon_package("portrait_relight.ui") == "portrait_relight"
    assert compat.addon_package("portrait_relight") == "portrait_relight"


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (0.4, -0.1), (-0.6, 0.25)])
def test_rig_reproduces_each_frames_camera(yaw, pitch):
    """Camera fixed at frame 0's view; the anchor keyed per frame makes camera-from-anchor equal each frame's label."""
    first = camera.make_label(camera.orbit_camera(0.1, 0.05))
    cam = rig_maths.camera_world(first)
    label = camera.make_label(camera.orbit_camera(yaw, pitch))
    anchor = rig_maths.anchor_world(cam, label)
    lens, sx, sy = camera.blender_lens(camera.intrinsics())
    got = rig_maths.scene_camera_label(cam, anchor, lens, camera.SENSOR_WIDTH_MM, sx, sy)
    np.testing.assert_allclose(got, label, atol=1e-5)
    assert rig_maths.same_view(got, label)
    moved = camera.make_label(camera.orbit_camera(yaw + 0.01, pitch))
    assert not rig_maths.same_view(moved, label)


def test_rigid_removes_anchor_scale():
    m = np.diag([2.0, 2.0, 2.0, 1.0])
    m[:3, 3] = (1, 2, 3)
    r = rig_maths.rigid(m)
    np.testing.assert_allclose(r[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(r[:3, 3], (1, 2, 3))


def test_manifest_pins_the_same_projects_on_every_platform_and_no_numpy():
    with (ROOT / "blender_manifest.toml").open("rb") as fh:
        manifest = tomllib.load(fh)
    assert manifest["blender_version_min"] == "4.2.0" and len(manifest["tagline"]) <= 64
    pins = [build.parse_wheel(p) for p in manifest["wheels"]]
    assert not any(p.project == "numpy" for p in pins)
    assert build.core_wheel_name() in [p.filename for p in pins]
    projects = {plat: sorted(p.project for p in build.wheels_for([plat], manifest)) for plat in manifest["platforms"]}
    first = next(iter(projects.values()))
    assert all(v == first for v in projects.values()), projects
    assert sum(p.project.startswith("opencv") for p in build.wheels_for(["linux-x64"], manifest)) == 1
    assert all(p.project == "opencv_python_headless" for p in pins if p.project.startswith("opencv"))  # no Qt


def test_wheel_platform_tags_map_to_blender_platforms():
    assert build.blender_platforms("manylinux2014_x86_64.manylinux_2_17_x86_64") == {"linux-x64"}
    assert build.blender_platforms("win_amd64") == {"windows-x64"}
    assert build.blender_platforms("macosx_11_0_universal2") == {"macos-x64", "macos-arm64"}
    assert build.blender_platforms("macosx_14_0_arm64") == {"macos-arm64"}
    assert "linux-x64" in build.blender_platforms("any")


def test_staged_manifest_keeps_only_the_chosen_platform():
    manifest = build.read_manifest()
    pins = build.wheels_for(["linux-x64"], manifest)
    staged = tomllib.loads(build.staged_manifest_text(["linux-x64"], pins))
    assert staged["platforms"] == ["linux-x64"]
    assert staged["wheels"] == [p.path for p in pins]
    assert not any("win_amd64" in w or "macosx" in w for w in staged["wheels"])
    assert staged["id"] == manifest["id"] and staged["build"] == manifest["build"]
