"""Headless-bpy test setup: skip cleanly without bpy, mark every test ``blender``, enable the add-on as an extension.

Why a private user folder: BLENDER_USER_RESOURCES must point at a temporary folder before bpy is imported, so
extension installs, preferences and the analysis cache never touch the developer's Blender config.
Why a local extension repository: the source tree is linked into it as ``portrait_relight`` and enabled with
``addon_utils``, so the tests import it as ``bl_ext.<repo>.portrait_relight`` exactly as Blender does.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from pr_blender_env import DATA, PACKAGE, REPO, ROOT, set_world_colour

USER_DIR = Path(tempfile.mkdtemp(prefix="pr-blender-user-"))
os.environ.setdefault("BLENDER_USER_RESOURCES", str(USER_DIR))
os.environ.setdefault("OMP_NUM_THREADS", "1")

BPY_MISSING = importlib.util.find_spec("bpy") is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.blender)
            if BPY_MISSING:
                item.add_marker(pytest.mark.skip(reason="headless bpy is not installed (pip install bpy==4.2.22, "
                                                        "the blender-tests extra)"))


@pytest.fixture(scope="session")
def bpy_module():
    """bpy, imported once. The add-on registers no bpy.app timer (they never fire headless and one left registered
    hangs the exit); its live preview uses depsgraph and frame-change handlers, removed on disable."""
    import bpy

    return bpy


@pytest.fixture(scope="session")
def addon(bpy_module):
    """The source tree enabled as an extension in a local repository; disabled at the end."""
    import addon_utils

    bpy = bpy_module
    repo_dir = Path(tempfile.mkdtemp(prefix="pr-ext-repo-"))
    link = repo_dir / "portrait_relight"
    link.mkdir()
    for name in ("__init__.py", "ops", "ui"):
        (link / name).symlink_to(ROOT / name)
    # No wheels: the dev venv already has the core and its dependencies; listing wheels would make Blender install
    # them into its site-packages, shadowing the source tree under test.
    (link / "blender_manifest.toml").write_text(_manifest_without_wheels(), encoding="utf-8")
    repos = bpy.context.preferences.extensions.repos
    repo = repos.new(name=REPO, module=REPO, custom_directory=str(repo_dir), source="USER")
    mod = addon_utils.enable(PACKAGE, default_set=True, handle_error=_raise)
    assert mod is not None, f"could not enable {PACKAGE}"
    yield mod
    addon_utils.disable(PACKAGE, default_set=True, handle_error=_raise)
    repos.remove(repo)
    shutil.rmtree(repo_dir, ignore_errors=True)


def _manifest_without_wheels() -> str:
    spec = importlib.util.spec_from_file_location("pr_build_extension", ROOT / "tools" / "build_extension.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # dataclasses look their module up
    spec.loader.exec_module(build)
    return build.staged_manifest_text(build.read_manifest()["platforms"], [])


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.fixture
def scene(addon, bpy_module):
    """The current scene emptied of objects, strips and images, with the add-on's settings reset."""
    bpy = bpy_module
    sc = bpy.context.scene
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for coll in (bpy.data.lights, bpy.data.cameras, bpy.data.meshes, bpy.data.images):
        for block in list(coll):
            coll.remove(block)
    for c in list(bpy.data.collections):
        bpy.data.collections.remove(c)
    if sc.sequence_editor is not None:
        sc.sequence_editor_clear()
    settings = sc.portrait_relight
    for prop in settings.bl_rna.properties:
        if prop.identifier != "rna_type" and not prop.is_readonly:
            settings.property_unset(prop.identifier)
    sc.world = bpy.data.worlds.new("World")  # fresh per test: an earlier test may have linked an HDRI into it
    set_world_colour(bpy, sc.world, (0.0, 0.0, 0.0))
    sc.frame_start, sc.frame_end, sc.frame_current = 1, 250, 1
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.model_dir = ""
    yield sc


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "videos").is_dir():
        pytest.skip(f"shared data not found at {DATA} (clips from ../shared/data/videos)")
    return DATA
