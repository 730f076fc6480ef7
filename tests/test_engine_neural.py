"""The shipped, trained model through the pipeline on the shipped sample photo: what a user of the default gets.

The filmed viewpoint keeps the plate (input × the model's shading ratio), so relighting with the frame's own light
changes nothing and a side light brightens that side; a new viewpoint is the model's render.
"""
from __future__ import annotations

import numpy as np
import pytest

from blender_relight import camera as cam
from blender_relight.demo import sample_path
from blender_relight.engines import make_engine, weights_are_trained
from blender_relight.lighting import sh as shmath
from blender_relight.pipeline import ClipSession
from inference.runtime import find_weights

SAMPLE = sample_path()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    weights = find_weights()
    assert weights is not None and weights_are_trained(weights), "the package ships trained weights"
    s = ClipSession(SAMPLE, cache_dir=tmp_path_factory.mktemp("cache"), engine="neural")
    s.analyse()
    yield s
    s.close()


def test_auto_engine_renders_new_views_by_reprojection():
    engine = make_engine("auto")  # the geometry engine at the filmed view and at new views (engines.make_engine)
    assert engine.name == "geometry" and engine.supports_novel_view and engine.novel_view_engine is None


def test_own_light_at_the_source_view_returns_the_input(session):
    track = session.frame_track(0)
    frame = session.relight_frame(0, track.source_sh)
    from blender_relight import colour
    from blender_relight.video import read_image

    source = colour.uint8_srgb_to_linear(read_image(SAMPLE))
    assert frame.status == track.status
    assert np.abs(frame.image - source).max() < 2e-3


def test_side_light_brightens_that_side_and_passes_are_in_range(session):
    results = {}
    for name, direction in (("left", (-1.0, -0.6, 0.2)), ("right", (1.0, -0.6, 0.2))):
        sh = shmath.directional_light_sh(np.array(direction), np.full(3, 3.0)) + shmath.ambient_sh(np.full(3, 0.05))
        results[name] = session.relight_frame(0, sh, with_passes=True)
    diff = results["left"].image - results["right"].image
    # the astronaut's face spans roughly x 180..300, y 60..220 of the 512² photo; image left = the subject's right
    assert diff[80:200, 180:240].mean() > 0.02 and diff[80:200, 240:300].mean() < -0.02
    passes = results["left"].passes
    head = passes["alpha"][..., 0] > 0.9
    assert head.sum() > 5000 and head[120, 230]                   # the face centre is covered
    albedo = np.median(passes["albedo"][head], axis=0)
    assert np.all(albedo > 0.05) and np.all(albedo < 1.0) and albedo[0] > albedo[2]   # ρ (not ρ/π), skin-like
    norms = np.linalg.norm(passes["normal"][head], axis=-1)
    assert abs(np.median(norms) - 1.0) < 1e-2 and np.percentile(norms, 5) > 0.9


def test_new_viewpoint_is_the_render(session):
    track = session.frame_track(0)
    source = session.relight_frame(0, track.source_sh).image
    turned = session.relight_frame(0, track.source_sh, cam.make_label(cam.orbit_camera(np.radians(25), 0.0))).image
    assert np.isfinite(turned).all()
    assert np.abs(turned - source)[60:220, 180:300].mean() > 0.01
