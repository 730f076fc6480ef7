"""The geometry engine on a real dev frame: the plate's own light gives the plate back, a side key darkens the far
side of the whole head (hair and neck included) with a nose shadow, passes are complete and clean, a light change
reuses the frame's geometry, and a new camera falls back to the filmed view with one warning."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from blender_relight import colour
from blender_relight.engines import GeometryEngine, make_engine, pass_name
from blender_relight.lighting.blender_lights import LightSpec
from blender_relight.lighting import sh as shlib
from blender_relight.lighting.scene import SceneLighting
from blender_relight.pipeline import PASS_NAMES
from tests.test_geometry_head import _tracked


@pytest.fixture(scope="module")
def frame():
    track, crop = _tracked("lp_d3.mp4", 30)
    assert track.source_sh is None  # the test helper tracks without the estimate: give it a plausible one
    track.source_sh = shlib.directional_light_sh(np.array([0.2, -1.0, 0.4]), np.full(3, 1.2)) + \
        shlib.ambient_sh(np.full(3, 0.08))
    return track, colour.uint8_srgb_to_linear(crop)


def test_make_engine_builds_it():
    assert isinstance(make_engine("geometry"), GeometryEngine)


def test_the_source_light_gives_the_plate_back(frame):
    track, crop = frame
    engine = GeometryEngine()
    out = engine.relight(0, crop, track, SceneLighting(sh=track.source_sh), None, None)
    inside = out.alpha > 0.5
    assert inside.mean() > 0.25
    rel = np.abs(out.image - crop)[inside].mean() / crop[inside].mean()
    assert rel < 0.02, rel


def test_side_key_relights_the_whole_head_with_clean_passes(frame):
    track, crop = frame
    engine = GeometryEngine()
    key = LightSpec("AREA", power=40.0, position=(-1.1, -1.0, 0.3), direction=(1.1, 1.0, -0.3), size=0.25, name="Key")
    fill = LightSpec("POINT", power=5.0, position=(1.2, -0.8, 0.0), name="Fill light")
    lighting = SceneLighting(sh=shlib.ambient_sh(np.full(3, 0.03)), lights=(key, fill))
    out = engine.relight(0, crop, track, lighting, None, None)
    for name in PASS_NAMES + ("specular",):
        assert name in out.passes, name
    for light in ("Key", "Fill light"):
        for kind in ("diffuse", "specular", "shadow"):
            assert pass_name(light, kind) in out.passes
    assert pass_name("Fill light", "shadow") == "light_Fill_light_shadow"
    for name, value in out.passes.items():
        assert value.shape[:2] == crop.shape[:2] and value.dtype == np.float32, name
        assert np.isfinite(value).all(), name
        assert name == "normal" or value.min() >= 0.0, name  # normals are signed unit vectors
    assert np.isfinite(out.image).all() and out.image.min() >= 0.0
    assert 0.0 <= out.alpha.min() and out.alpha.max() <= 1.0 + 1e-6
    # the whole head is in the matte: hair above the face mesh and the sides of the head
    pts = track.points_crop()
    top = int(pts[10, 1])  # forehead's top landmark
    assert out.alpha[max(top - 25, 0), int(pts[10, 0])] > 0.5
    # the far (image-right) side is darkened much more than the near side, the nose shadows the far cheek
    ratio = out.image.mean(2) / np.maximum(crop.mean(2), 1e-3)
    r = int(pts[4, 1])
    near = np.median(ratio[r - 10:r + 10, int(pts[50, 0]) - 10:int(pts[50, 0]) + 10])
    far = np.median(ratio[r - 10:r + 10, int(pts[280, 0]) - 10:int(pts[280, 0]) + 10])
    assert near > 2.0 * far, (near, far)
    shadow = out.passes[pass_name("Key", "shadow")][..., 0]
    c = int(pts[4, 0])
    assert shadow[r - 8:r + 24, c + 12:c + 48].min() < 0.3


def test_light_change_reuses_the_frame_and_new_view_at_the_filmed_camera_matches(frame, caplog):
    track, crop = frame
    engine = GeometryEngine()
    a = engine.relight(0, crop, track, SceneLighting(sh=track.source_sh), None, None)
    kept = engine._frames[0]
    key = LightSpec("SUN", power=2.0, direction=(1.0, 1.0, -0.5), name="sun")
    b = engine.relight(0, crop, track, SceneLighting(lights=(key,)), None, None)
    assert engine._frames[0] is kept
    assert not np.allclose(a.image, b.image)
    # A camera label at the filmed camera takes the novel-view path (blender_relight.novel_view): the plate comes
    # back, and relit it stays close to the filmed view (the path refits the shell to a whole-hair matte).
    with caplog.at_level(logging.WARNING):
        c = engine.relight(0, crop, track, SceneLighting(lights=(key,)), track.camera, None)
        own = engine.relight(0, crop, track, SceneLighting(sh=track.source_sh), track.camera, None)
    assert not c.notes and not any("clamped" in r.message for r in caplog.records)
    head = b.alpha > 0.5
    assert np.abs(own.image - crop)[head].mean() / crop[head].mean() < 0.02
    assert np.abs(c.image - b.image)[head].mean() / b.image[head].mean() < 0.12


def test_the_box_of_a_resized_shading_image_is_the_box_of_the_whole_resize():
    import cv2

    from blender_relight.engines import _resized_box

    rng = np.random.default_rng(3)
    img = rng.random((256, 256, 3), dtype=np.float32)
    whole = cv2.resize(img, (512, 512), interpolation=cv2.INTER_LINEAR)
    for rows, cols in ((slice(0, 512), slice(0, 512)), (slice(37, 301), slice(120, 511)), (slice(5, 6), slice(1, 2))):
        np.testing.assert_allclose(_resized_box(img, 512, rows, cols), whole[rows, cols], atol=1e-6)
    np.testing.assert_allclose(_resized_box(img[:, :200], 512, slice(3, 90), slice(4, 80)),
                               cv2.resize(img[:, :200], (512, 512), interpolation=cv2.INTER_LINEAR)[3:90, 4:80])
