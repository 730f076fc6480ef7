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
    # A camera label that is the filmed camera gives the filmed view itself (not the re-posed plate).
    with caplog.at_level(logging.WARNING):
        c = engine.relight(0, crop, track, SceneLighting(lights=(key,)), track.camera, None)
        own = engine.relight(0, crop, track, SceneLighting(sh=track.source_sh), track.camera, None)
    assert not c.notes and not any("clamped" in r.message for r in caplog.records)
    np.testing.assert_array_equal(c.image, b.image)
    np.testing.assert_array_equal(c.alpha, b.alpha)
    head = b.alpha > 0.5
    assert np.abs(own.image - crop)[head].mean() / crop[head].mean() < 0.02


def test_analysis_caches_the_matte_and_a_frame_change_only_reads_it(tmp_path, monkeypatch):
    """Analysis with the geometry engine stores each frame's head matte and shell silhouette (a few KB); a frame
    change then runs no segmentation and gives the matte a cache-less relight computes; a damaged matte file is redone."""
    from blender_relight import head_proxy
    from blender_relight.engines import _matte_id
    from blender_relight.pipeline import ClipSession
    from tests.real_data import DATA

    clip = DATA / "videos" / "lp_d3.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    session = ClipSession(clip, cache_dir=tmp_path, engine="geometry")
    session.analyse(range(3))
    cache = session.cache
    for i in range(3):
        assert not session.engine.needs_prepare(i, cache)
        assert cache._planes_path(i, _matte_id()).stat().st_size < 8192
    calls = []
    real = head_proxy.head_labels
    monkeypatch.setattr(head_proxy, "head_labels", lambda *a, **k: calls.append(1) or real(*a, **k))
    key = LightSpec("AREA", power=15.0, position=(1.0, -0.4, 0.1), direction=(-1.0, 0.4, -0.1), size=0.1)
    lighting = SceneLighting(sh=shlib.ambient_sh(np.full(3, 0.03)), lights=(key,))
    session.engine = GeometryEngine()  # a new Blender session: nothing kept in memory
    lit = session.relight_frame(1, lighting)
    assert not calls and np.isfinite(lit.image).all()
    track = session.frame_track(1)
    fresh = GeometryEngine().relight(1, session.crop_linear(1, track), track, lighting, None, None)
    assert len(calls) == 1  # without a cache the labels are computed, and give the same matte
    np.testing.assert_array_equal(fresh.alpha, session.engine._frames[1].alpha)
    kept = session.engine._frames[1].labels  # what new views take the whole hairdo from: the cached matte itself
    assert kept.dtype == np.uint8 and kept.shape == (head_proxy.MATTE_SIZE,) * 2
    np.testing.assert_array_equal(kept, cache.get_planes(1, _matte_id(), None)["labels"])
    cache._planes_path(2, _matte_id()).write_bytes(b"PK\x03\x04 not a zip")
    assert session.engine.needs_prepare(2, cache) is False  # a file is there: found damaged when read
    again = GeometryEngine()
    again.relight(2, session.crop_linear(2), session.frame_track(2), lighting, None, cache)
    assert len(calls) == 2 and "plane file" in cache.repair_text()
    assert cache.get_planes(2, _matte_id(), None) is not None  # redone and stored


def test_matte_region_grows_the_shell_by_its_fraction_of_the_side():
    """The hair region: the shell's silhouette grown by a disc of ``grow`` × the side (a distance transform), softened
    by a Gaussian of a third of that radius: full well inside, half at the grown edge, nothing well outside."""
    from blender_relight.head_proxy import matte_region

    cover = np.zeros((128, 128), np.uint8)
    cover[54:74, 40:74] = 1
    radius = 0.16 * 128
    ys, xs = np.mgrid[:128, :128]
    dx = np.maximum(np.maximum(40 - xs, xs - 73), 0)
    dy = np.maximum(np.maximum(54 - ys, ys - 73), 0)
    distance = np.hypot(dx, dy)  # from the silhouette, 0 inside it
    region = matte_region(cover, grow=0.16)
    sigma = radius / 3.0
    assert region.shape == cover.shape and region.dtype == np.float32
    assert region[distance <= radius - 2 * sigma].min() > 0.95
    assert region[distance >= radius + 2 * sigma].max() < 0.05
    edge = np.abs(distance - radius) < 0.5
    assert 0.35 < float(np.median(region[edge])) < 0.65


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


def test_a_held_light_relights_adjacent_frames_of_a_real_clip_steadily():
    """Under one held SH light, the relight ratio (relit ÷ plate) of a real clip changes little from frame to frame
    where the head hardly moves (lp_d18 frames 0-11, tracked as analysis tracks them, DPR's example light 0 as the
    evaluation gives it). When an SH light was shaded as the hardest sun its first band allows (``split_key``: a hard
    terminator and nose shadow that slid over the face with every landmark step) the mean step was 0.0114 (max
    0.0197) and DPR's estimator read the relit lp_d18 as far less steady than the input (0.139 against 0.073);
    now (SH lights shaded as SH) 0.0062 (max 0.0138); docs/evaluation.md."""
    from blender_relight.tracking.tracker import track_video
    from blender_relight.video import VideoReader
    from tests.real_data import DATA

    video, light_file = DATA / "videos" / "lp_d18.mp4", DATA / "dpr" / "example_light" / "rotate_light_00.txt"
    if not (video.is_file() and light_file.is_file()):
        pytest.skip("needs ../shared/data (lp_d18.mp4 and DPR's example light)")
    n = 12
    tracks = track_video(video, cache=None, frames=range(n))
    light = shlib.dpr_to_rgb_sh(0.7 * np.loadtxt(light_file))
    engine = GeometryEngine()
    steps, prev = [], None
    with VideoReader(video) as reader:
        for i, image in reader.frames(0, n):
            track = tracks[i]
            assert track.tracked and track.source_sh is not None
            crop = colour.uint8_srgb_to_linear(track.transform.warp(image))
            out = engine.relight(i, crop, track, light, None, None)
            face = (out.alpha > 0.5) & (track.crop_mask() > 0.5)
            log_ratio = np.log(np.maximum(out.image.mean(2), 1e-3) / np.maximum(crop.mean(2), 1e-3))
            if prev is not None:
                both = face & prev[1]
                steps.append(float(np.abs(log_ratio - prev[0])[both].mean()))
            prev = (log_ratio, face)
    assert np.mean(steps) < 0.010 and max(steps) < 0.018, steps
