"""Novel views by plate reprojection: the range clamp, exact plate at the filmed camera, the occlusion test, the clip
texture (a synthetic plate painted on the real head geometry from a known texture, seen from two cameras), mirror and
fill, continuous blend weights, and the engine path (a clamped view says so)."""
from __future__ import annotations

import numpy as np
import pytest

from blender_relight import camera
from blender_relight.head_proxy import edge_fade
from blender_relight.geometry import head_geometry, project, rasterize
from blender_relight.lighting import sh as shmath
from blender_relight.novel_view import NovelViewRenderer, SourceView, clip, fill, reproject, texture as tex, views
from blender_relight.novel_view.render import plate_trust
from blender_relight.tracking import align, pose
from blender_relight.tracking.landmarks import MediapipeBackend
from blender_relight.tracking.tracker import FrameTrack
from blender_relight.demo import sample_path
from blender_relight.video import read_image

AMBIENT = shmath.ambient_sh(np.array([1.0, 1.0, 1.0]))


@pytest.fixture(scope="module")
def astronaut_track() -> FrameTrack:
    """The shipped public-domain portrait, tracked (static landmarks, PnP camera), with a white ambient source."""
    image = read_image(sample_path())
    with MediapipeBackend(max_num_faces=1, static_image_mode=True) as backend:
        face = backend.detect(image)[0]
    t = align.CropTransform.from_landmarks(face.points)
    hp = pose.head_pose(t.to_crop(face.points))
    return FrameTrack(0, "tracked", face.points, t.matrix, hp.label, AMBIENT)


def _albedo(uv: np.ndarray) -> np.ndarray:
    """A known texture: smooth colour ramps plus stripes, so misplaced samples show."""
    u, v = uv[..., 0], uv[..., 1]
    return np.stack([0.3 + 0.25 * np.sin(37.0 * u), 0.35 + 0.25 * np.sin(29.0 * v), 0.4 + 0.2 * np.cos(23.0 * (u + v))],
                    -1).astype(np.float32)


def _e0() -> np.ndarray:
    return tex.normalising_shading(np.array([[0.0, 0.0, 1.0]]), AMBIENT)[0]


def _synthetic_source(track: FrameTrack, label: np.ndarray, index: int = 0) -> SourceView:
    """A plate rendered from the known texture on the head geometry at ``label`` (grey background), its matte the
    geometry's own coverage."""
    geometry = head_geometry(track, None)
    gb = rasterize(geometry, label)
    crop = np.full((512, 512, 3), 0.5, np.float32)
    crop[gb.mask] = _albedo(gb.uv[gb.mask]) * _e0()
    return SourceView(index, crop, np.asarray(label, np.float32), geometry, gb, gb.mask.astype(np.float32), AMBIENT)


def test_range_clamp_keeps_views_inside_and_turns_others_back(astronaut_track) -> None:
    src = astronaut_track.camera
    inside = views.offset_label(src, 20.0, -10.0)
    req = views.clamp_view(src, inside)
    assert not req.clamped and abs(req.yaw_deg - 20.0) < 1e-3 and abs(req.pitch_deg + 10.0) < 1e-3
    np.testing.assert_allclose(req.label, inside, atol=1e-6)
    far = views.offset_label(src, 55.0, 35.0)
    req = views.clamp_view(src, far)
    assert req.clamped and abs(req.yaw_deg - 30.0) < 1e-6 and abs(req.pitch_deg - 20.0) < 1e-6
    assert "clamped" in req.describe()
    again = views.clamp_view(src, req.label)  # the clamped camera is on the edge of the range
    assert abs(again.yaw_deg - 30.0) < 1e-3 and abs(again.pitch_deg - 20.0) < 1e-3
    c_far, c_new = camera.split_label(far)[0], camera.split_label(req.label)[0]
    assert abs(np.linalg.norm(c_far[:3, 3] - views.PIVOT) - np.linalg.norm(c_new[:3, 3] - views.PIVOT)) < 1e-5


def test_filmed_camera_gives_the_plate_back(astronaut_track) -> None:
    """Seen from its own camera, every pixel the frame saw well is the filmed pixel (bilinear at pixel centres), and
    everything outside the head is the crop itself."""
    src = _synthetic_source(astronaut_track, astronaut_track.camera)
    nv = NovelViewRenderer(rasterize, project).render(src, astronaut_track.camera)
    w = nv.weights["plate"]
    assert (w > 0.99).sum() > 0.8 * src.gbuffer.mask.sum()
    sure = (w > 0.99) & (nv.head_alpha > 0.99)
    np.testing.assert_allclose(nv.image[sure], src.crop[sure], atol=2e-4)
    head = src.gbuffer.mask
    off = np.abs(nv.image - src.crop).max(axis=2)[head] > 0.03
    assert off.mean() < 0.01, off.mean()  # silhouettes and depth edges included: no seam, no fill at the filmed view
    outside = (nv.alpha < 1e-3) & (edge_fade(512) > 0.999)  # the crop's border band is the paste's blend zone
    assert outside.mean() > 0.2
    np.testing.assert_allclose(nv.image[outside], src.crop[outside], atol=1e-5)


def test_occluded_points_are_not_taken_from_the_plate(astronaut_track) -> None:
    """At 30° yaw, a pixel trusted to the plate must be the surface point the source camera saw there (not the nose
    or cheek in front of it); the occlusion test removes some pixels the camera would otherwise sample."""
    src = _synthetic_source(astronaut_track, astronaut_track.camera)
    target = views.offset_label(astronaut_track.camera, 30.0, 0.0)
    gb = rasterize(src.geometry, target)
    pixels = np.flatnonzero(gb.mask.reshape(-1))
    hit = reproject.lookup(gb.position, gb.normal, pixels, src.label, reproject.min_depth(src.gbuffer.depth),
                           None, project)
    seen = src.gbuffer.position.reshape(-1, 3)
    xi, yi = np.rint(hit.xy[:, 0]).astype(int).clip(0, 511), np.rint(hit.xy[:, 1]).astype(int).clip(0, 511)
    gap = np.linalg.norm(seen[yi * 512 + xi] - gb.position.reshape(-1, 3)[pixels], axis=1)
    trusted = hit.weight > 0.5
    assert trusted.sum() > 0.5 * len(pixels)
    assert np.percentile(gap[trusted], 99) < 0.04  # the point itself (the face's depth range is ~0.3)
    behind = gap > 0.1  # hidden behind something else in the source
    assert behind.sum() > 50 and hit.weight[behind].max() < 0.05


def test_clip_texture_shows_what_another_frame_saw(astronaut_track) -> None:
    """Frame A filmed from 25° left, frame B from 25° right: a view at 30° right of A takes the right side from the
    clip texture (B's pixels) and matches the known texture there; without the clip texture it cannot."""
    label_a = views.offset_label(astronaut_track.camera, -25.0, 0.0)
    label_b = views.offset_label(astronaut_track.camera, 25.0, 0.0)
    a, b = _synthetic_source(astronaut_track, label_a, 0), _synthetic_source(astronaut_track, label_b, 1)
    acc = tex.TextureAccumulator(a.geometry.uv, a.geometry.triangles)
    for s in (a, b):
        acc.add(s.index, s.crop, s.geometry.vertices, s.label, reproject.min_depth(s.gbuffer.depth),
                plate_trust(s.matte), s.source_sh, project)
    texture = acc.result()
    texture.attach(a.geometry.uv, a.geometry.triangles, a.geometry.vertices)
    assert texture.frames == [0, 1] and (texture.trust > 0.5).mean() > 0.1
    target = views.offset_label(label_a, 30.0, 0.0)
    truth_gb = rasterize(a.geometry, target)
    truth = _albedo(truth_gb.uv) * _e0()
    with_tex = NovelViewRenderer(rasterize, project, lambda: texture).render(a, target)
    without = NovelViewRenderer(rasterize, project, None).render(a, target)
    from_texture = (with_tex.weights["texture"] > 0.5) & (with_tex.head_alpha > 0.99)
    assert from_texture.sum() > 2000
    err_tex = np.abs(with_tex.image[from_texture] - truth[from_texture]).mean()
    err_without = np.abs(without.image[from_texture] - truth[from_texture]).mean()
    assert err_tex < 0.02 and err_without > 2.0 * err_tex, (err_tex, err_without)


def test_mirror_texture_fills_the_unseen_side_of_a_symmetric_texture(astronaut_track) -> None:
    """A texture that is the same on both sides, filmed only from the left: the right side at a new view comes from
    the mirror, close to the truth."""
    def sym_albedo(uv):
        u = np.where(uv[..., 0] < 0.5, np.abs(uv[..., 0] - 0.25), np.abs(uv[..., 0] - 0.75))  # both atlas halves
        return _albedo(np.stack([u, uv[..., 1]], -1))

    label = views.offset_label(astronaut_track.camera, -28.0, 0.0)
    geometry = head_geometry(astronaut_track, None)
    gb = rasterize(geometry, label)
    crop = np.full((512, 512, 3), 0.5, np.float32)
    crop[gb.mask] = sym_albedo(gb.uv[gb.mask]) * _e0()
    src = SourceView(0, crop, label, geometry, gb, gb.mask.astype(np.float32), AMBIENT)
    acc = tex.TextureAccumulator(geometry.uv, geometry.triangles)
    acc.add(0, crop, geometry.vertices, label, reproject.min_depth(gb.depth), plate_trust(src.matte),
            AMBIENT, project)
    texture = acc.result()
    texture.attach(geometry.uv, geometry.triangles, geometry.vertices)
    target = views.offset_label(label, 40.0, 0.0)
    nv = NovelViewRenderer(rasterize, project, lambda: texture).render(src, target, clamp=False)
    truth_gb = rasterize(geometry, target)
    truth = sym_albedo(truth_gb.uv) * _e0()
    mirrored = (nv.weights["mirror"] > 0.5) & (nv.head_alpha > 0.99) & (truth_gb.part == 0)
    assert mirrored.sum() > 500
    assert np.abs(nv.image[mirrored] - truth[mirrored]).mean() < 0.04


def test_blend_weights_change_continuously_with_the_camera(astronaut_track) -> None:
    """An orbit step of 0.3° changes no blend weight by more than a small amount anywhere on the head (no popping)."""
    src = _synthetic_source(astronaut_track, astronaut_track.camera)
    r = NovelViewRenderer(rasterize, project)
    one = r.render(src, views.offset_label(src.label, 20.0, 0.0))
    # 0.3°: new views turn about the head's centre, so the face itself moves ~0.14 units × the angle in the image
    two = r.render(src, views.offset_label(src.label, 20.3, 0.0))
    both = (one.head_alpha > 0.99) & (two.head_alpha > 0.99)
    for name in ("plate", "fill"):
        step = np.abs(one.weights[name] - two.weights[name])[both]
        assert np.percentile(step, 99.5) < 0.25, name
    assert np.abs(one.image - two.image)[both].mean() < 0.01


def test_push_pull_keeps_known_pixels_and_fills_holes_smoothly() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((64, 64, 3)).astype(np.float32)
    w = np.ones((64, 64), np.float32)
    w[20:40, 20:40] = 0.0
    out = fill.push_pull(img, w)
    np.testing.assert_allclose(out[w == 1], img[w == 1], atol=1e-5)
    hole = out[22:38, 22:38]
    assert np.isfinite(hole).all() and 0.2 < hole.mean() < 0.8 and hole.std() < 0.1


def test_pick_frames_spreads_over_pose(astronaut_track) -> None:
    tracks = []
    for i, yaw in enumerate([0.0, 0.5, 1.0, 10.0, 10.2, -12.0, 20.0]):
        t = FrameTrack(i, "tracked", astronaut_track.points, astronaut_track.crop_matrix,
                       camera.make_label(camera.orbit_camera(np.radians(yaw), 0.0)), AMBIENT)
        tracks.append(t)
    tracks.append(FrameTrack(7, "no_face"))
    picked = clip.pick_frames(tracks)
    assert picked == [0, 3, 5, 6]
    assert clip.pick_frames(tracks, max_frames=2) == [5, 6]


def test_geometry_engine_new_view_through_the_pipeline_says_when_it_clamps(tmp_path) -> None:
    """The Blender camera's path (ClipSession.relight_frame with a camera label) on the shipped sample: a view
    inside the range is re-posed and relit with passes; one far outside is clamped and the result says so."""
    from blender_relight.engines import GeometryEngine
    from blender_relight.pipeline import ClipSession

    session = ClipSession(sample_path(), cache_dir=tmp_path, engine=GeometryEngine())
    session.track()
    source = session.source_camera(0)
    frame = session.relight_frame(0, AMBIENT, views.offset_label(source, 15.0, 5.0), with_passes=True)
    assert frame.status == "tracked" and np.isfinite(frame.image).all()
    assert {"albedo", "normal", "depth", "shading", "alpha"} <= set(frame.passes)
    track = session.frame_track(0)
    crop = session.crop_linear(0, track)
    relit = session.engine.relight(0, crop, track, AMBIENT, views.offset_label(source, 60.0, 0.0), session.cache)
    assert relit.notes and "clamped" in relit.notes[0]
    inside = session.engine.relight(0, crop, track, AMBIENT, views.offset_label(source, 10.0, 0.0), session.cache)
    assert not inside.notes
    assert (session.cache.root / "novel_view").is_dir()  # the clip texture is stored with the clip


def test_a_shell_wider_than_the_filmed_head_is_see_through_at_a_new_view(astronaut_track) -> None:
    """The filmed silhouette bounds the head (a visual hull): where the prior shell reaches past the plate's matte,
    its points, seen or hidden from the source, are not head at a new view, so no pale balloon is drawn."""
    import cv2

    full = _synthetic_source(astronaut_track, astronaut_track.camera)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))
    matte = cv2.erode(full.gbuffer.mask.astype(np.uint8), k).astype(np.float32)  # the head: 20 px inside the shell
    src = SourceView(full.index, full.crop, full.label, full.geometry, full.gbuffer, matte, full.source_sh)
    target = views.offset_label(src.label, 30.0, 0.0)
    nv = NovelViewRenderer(rasterize, project).render(src, target)
    gb = nv.gbuffer
    pixels = np.flatnonzero(gb.mask.reshape(-1))
    xy, _ = project(gb.position.reshape(-1, 3)[pixels], src.label, 512)
    xi = np.clip(np.rint(xy[:, 0]).astype(int), 0, 511)
    yi = np.clip(np.rint(xy[:, 1]).astype(int), 0, 511)
    far_outside = cv2.erode(1 - matte.astype(np.uint8), np.ones((7, 7), np.uint8))[yi, xi] > 0
    assert far_outside.sum() > 500  # the test sees shell beyond the head
    assert nv.head_alpha.reshape(-1)[pixels[far_outside]].max() < 0.02
    inside = cv2.erode(matte.astype(np.uint8), np.ones((7, 7), np.uint8))[yi, xi] > 0
    assert np.median(nv.head_alpha.reshape(-1)[pixels[inside]]) > 0.99


def test_clip_texture_is_the_same_whichever_frame_attached_it_and_as_stored(astronaut_track, tmp_path) -> None:
    """A frame's output must not depend on visit order: the texture's layout (and the mirror built on it) is the
    same whichever frame's head attached it first (frames drop different shell triangles under the face), and the
    texture a session builds is the one a later session loads."""
    a = _synthetic_source(astronaut_track, views.offset_label(astronaut_track.camera, -20.0, 0.0))
    acc = tex.TextureAccumulator(a.geometry.uv, a.geometry.triangles)
    acc.add(0, a.crop, a.geometry.vertices, a.label, reproject.min_depth(a.gbuffer.depth), plate_trust(a.matte),
            a.source_sh, project)
    built = acc.result()
    built.save(tmp_path / "t.npz")
    loaded = tex.ClipTexture.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(built.colour, loaded.colour)
    np.testing.assert_array_equal(built.trust, loaded.trust)
    tris = a.geometry.triangles
    other = tris[np.r_[np.arange(468 * 2), np.arange(468 * 2 + 40, len(tris))]]  # another frame's triangle set
    mirrors = []
    for triangles in (tris, other):
        t = tex.ClipTexture(built.colour.copy(), built.trust.copy(), built.frames)
        t.attach(a.geometry.uv, triangles, a.geometry.vertices)
        mirrors.append(t.mirrored())
    np.testing.assert_array_equal(mirrors[0][0], mirrors[1][0])
    np.testing.assert_array_equal(mirrors[0][1], mirrors[1][1])
    assert tex.texture_key(a.geometry.uv, tris, 512, [0]) == tex.texture_key(a.geometry.uv, other, 512, [0])


def test_the_filmed_camera_through_the_camera_path_is_the_filmed_view(tmp_path) -> None:
    """A Blender camera at the filmed pose (the frame's own camera label) gives exactly the frame relit at the
    filmed view, crop and pasted frame; a camera a little off it takes the re-posed plate."""
    from blender_relight.engines import GeometryEngine
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.pipeline import ClipSession

    session = ClipSession(sample_path(), cache_dir=tmp_path, engine=GeometryEngine())
    session.track()
    light = SceneLighting(lights=(LightSpec("SUN", power=2.0, direction=(1.0, 1.0, -0.5), name="sun"),))
    source = session.source_camera(0)
    filmed = session.relight_frame(0, light, None)
    same = session.relight_frame(0, light, source)
    np.testing.assert_array_equal(same.image, filmed.image)
    assert views.is_filmed_view(source, np.asarray(source, np.float32))
    near = views.offset_label(source, 0.5, 0.0)
    assert not views.is_filmed_view(source, near)
    track = session.frame_track(0)
    crop = session.crop_linear(0, track)
    moved = session.engine.relight(0, crop, track, light, near, session.cache)
    assert "source_plate" in moved.passes  # the re-posed plate's blend weights: the novel-view path


def test_neural_engine_filmed_camera_is_its_filmed_view(tmp_path) -> None:
    """Every engine: a camera label that is the frame's own camera gives that engine's filmed view."""
    from blender_relight.pipeline import ClipSession

    session = ClipSession(sample_path(), cache_dir=tmp_path, engine="neural")
    session.track()
    light = shmath.directional_light_sh(np.array([0.6, 0.3, 0.7]), np.full(3, 2.0))
    filmed = session.relight_frame(0, light, None)
    same = session.relight_frame(0, light, session.source_camera(0))
    np.testing.assert_array_equal(same.image, filmed.image)
