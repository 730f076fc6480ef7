"""The extension zip: build and validate it with blender_ext.py from the bpy wheel, install it into a headless
Blender's user repository, enable / disable / enable it, and check that its bundled wheels (plus Blender's numpy
alone) are enough to import the core, face tracking and ONNX Runtime.

Each Blender step runs in a subprocess with its own BLENDER_USER_RESOURCES, so the install never touches this
process's bpy or the developer's Blender config. linux-x64 only (the wheels downloaded for CI).
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                                reason="the CI build test downloads linux-x64 wheels only")


def _build_module():
    spec = importlib.util.spec_from_file_location("pr_build_extension", ROOT / "tools" / "build_extension.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


BUILD_LOG: list[str] = []


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory) -> Path:
    build = _build_module()
    try:
        zips = build.build(["linux-x64"], output_dir=tmp_path_factory.mktemp("dist"), log=BUILD_LOG.append)
    except build.BuildError as exc:
        if str(exc).startswith("downloading"):
            pytest.skip(f"wheel download failed (offline, and ./wheels holds no cached copy): {exc}")
        raise
    assert len(zips) == 1
    return zips[0]


def _run(code: str, env_extra: dict[str, str], *flags: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_extra)
    # a checkout on PYTHONPATH would be imported instead of the installed extension's wheels, which is what these
    # subprocesses check
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=str(Path(env_extra.get("HOME", "/tmp"))))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, f"subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def test_zip_holds_glue_and_wheels_only(extension_zip):
    with zipfile.ZipFile(extension_zip) as zf:
        names = zf.namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "ops/compat.py" in names
    assert not any(n.startswith(("blender_relight/", "inference/", "training/", "evaluation/", "tests/", "docs/",
                                 "tools/")) for n in names)
    wheels = [n for n in names if n.startswith("wheels/")]
    assert any(n.startswith("wheels/blender_relight-") for n in wheels)
    assert not any("numpy" in n for n in wheels)
    assert sum("opencv" in n for n in wheels) == 1
    assert not any("win_amd64" in n or "macosx" in n for n in wheels)


def test_build_shows_blender_ext_output_and_sizes(extension_zip):
    """What Blender's own ``blender_ext.py validate`` says reaches the build's output (a warning would show)."""
    validate = [ln for ln in BUILD_LOG if ln.startswith("blender_ext.py validate: ")]
    assert validate and any(extension_zip.name in ln for ln in validate), BUILD_LOG
    assert any(ln.startswith("blender_ext.py build: ") for ln in BUILD_LOG)
    sizes = [ln for ln in BUILD_LOG if ln.startswith("built and validated")]
    assert sizes and "MB installed" in sizes[0]
    with zipfile.ZipFile(extension_zip) as zf:
        mediapipe = next(n for n in zf.namelist() if n.startswith("wheels/mediapipe-"))
        import io

        with zipfile.ZipFile(io.BytesIO(zf.read(mediapipe))) as wheel:
            names = wheel.namelist()
    assert not any("/hand_landmark/" in n and n.endswith(".tflite") for n in names)  # unused solutions' models out
    assert any(n.endswith("face_landmark_with_attention.tflite") for n in names)
    assert any("face_detection_short_range" in n for n in names)


def test_install_enable_disable_enable(extension_zip, tmp_path):
    user = tmp_path / "blender_user"
    result = _run(f"""
        import json, sys
        import bpy, addon_utils
        pkg = "bl_ext.user_default.portrait_relight"
        out = {{}}
        r = bpy.ops.extensions.package_install_files(filepath={str(extension_zip)!r}, repo="user_default",
                                                     enable_on_install=True)
        out["install"] = sorted(r)
        out["enabled"] = pkg in bpy.context.preferences.addons
        out["registered"] = hasattr(bpy.types.Scene, "portrait_relight")
        import blender_relight
        out["core"] = blender_relight.__file__
        addon_utils.disable(pkg, default_set=True)
        out["after_disable"] = hasattr(bpy.types.Scene, "portrait_relight")
        addon_utils.enable(pkg, default_set=True)
        out["after_enable"] = hasattr(bpy.types.Scene, "portrait_relight")
        out["cache"] = bpy.utils.extension_path_user(pkg, path="cache", create=True)
        out["addon_dir"] = sys.modules[pkg].__file__
        print(json.dumps(out))
    """, {"BLENDER_USER_RESOURCES": str(user)})
    assert result["install"] == ["FINISHED"] and result["enabled"] and result["registered"]
    assert not result["after_disable"] and result["after_enable"]
    site = user / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    assert Path(result["core"]).resolve().is_relative_to(site.resolve()), result["core"]
    assert Path(result["cache"]).resolve().is_relative_to(user.resolve())
    assert not Path(result["cache"]).resolve().is_relative_to(Path(result["addon_dir"]).resolve().parent)

    # The bundled wheels plus numpy alone (no dev venv on the path) import everything the add-on runs.
    numpy_only = tmp_path / "numpy_only"
    numpy_only.mkdir()
    import numpy

    np_dir = Path(numpy.__file__).parent
    for name in (np_dir.name, "numpy.libs"):
        if (np_dir.parent / name).exists():
            (numpy_only / name).symlink_to(np_dir.parent / name)
    strict = _run(f"""
        import json, sys
        sys.path[:0] = [{str(site)!r}, {str(numpy_only)!r}]
        import mediapipe as mp
        mesh = mp.solutions.face_mesh
        import cv2, onnxruntime
        import blender_relight.pipeline, blender_relight.lighting.blender_lights
        from inference.runtime import RelightRuntime, find_weights
        weights = find_weights()
        runtime = RelightRuntime(weights, threads=1)  # the shipped model loads from the installed wheel
        # Face detection and the face mesh really run from the installed wheels (their model files are bundled).
        from blender_relight.tracking.landmarks import MediapipeBackend
        from blender_relight.demo import sample_path
        from blender_relight.video import read_image
        with MediapipeBackend(static_image_mode=True) as backend:
            faces = backend.detect(read_image(sample_path()))
        import importlib.metadata as md
        print(json.dumps({{"cv2": cv2.__file__, "opencv": [d.metadata["Name"] for d in md.distributions()
                                                         if d.metadata["Name"].lower().startswith("opencv")],
                           "faces": len(faces), "ort": onnxruntime.__file__,
                           "mp": mp.__file__, "weights": str(weights), "trained": runtime.trained}}))
    """, {"HOME": str(tmp_path)}, "-S")
    for key in ("cv2", "ort", "mp", "weights"):
        assert Path(strict[key]).resolve().is_relative_to(site.resolve()), strict
    assert strict["opencv"] == ["opencv-python-headless"] and strict["trained"]
    assert strict["faces"] == 1  # mediapipe's face detection and mesh models made it into the slim wheel
