"""The core sequence writer: EXR files (half, alpha, multilayer) read back exactly, PNG/EXR/multilayer sequences of a
real tracked clip, resume, stale frames of an earlier job removed, and an unplayable video never published."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from blender_relight import exr, sequence
from blender_relight.errors import Cancelled, RelightError

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "blender_relight" / "samples" / "astronaut.jpg"
FRAMES = 3


def test_rgba_exr_is_half_with_alpha_and_reads_back(tmp_path):
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    rng = np.random.default_rng(1)
    h, w = 37, 53  # not a multiple of the 16-line block
    rgb = (rng.random((h, w, 3)) * 4.0).astype(np.float32)
    alpha = rng.random((h, w)).astype(np.float32)
    path = exr.write_rgba(tmp_path / "f.exr", rgb, alpha)
    assert exr.channels(path) == {"A": "half", "B": "half", "G": "half", "R": "half"}
    back = exr.read(path)
    np.testing.assert_array_equal(back["R"], rgb[..., 0].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(back["A"], alpha.astype(np.float16).astype(np.float32))
    got = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # another reader agrees
    assert got.shape == (h, w, 4)
    np.testing.assert_array_equal(got[..., 2], back["R"])
    np.testing.assert_array_equal(got[..., 3], back["A"])
    assert path.stat().st_size < h * w * 4 * 2 + 1000  # half float: at most 8 bytes a pixel plus the header


def test_exr_values_beyond_half_are_clipped_not_inf(tmp_path):
    rgb = np.full((4, 4, 3), 1e6, np.float32)
    rgb[0, 0] = np.nan
    back = exr.read(exr.write_rgba(tmp_path / "big.exr", rgb))
    assert np.isfinite(back["R"]).all() and back["R"].max() == 65504.0 and back["R"][0, 0] == 0.0


def test_multilayer_exr_round_trip(tmp_path):
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    rng = np.random.default_rng(2)
    h, w = 40, 33
    layers = {"": rng.random((h, w, 4)).astype(np.float32) * 3, "albedo": rng.random((h, w, 3)),
              "normal": rng.random((h, w, 3)) * 2 - 1, "depth": rng.random((h, w, 1)) * 3 + 2.0,
              "shading": rng.random((h, w, 3)), "alpha": rng.random((h, w))}
    path = exr.write(tmp_path / "passes.exr", layers)
    kinds = exr.channels(path)
    assert list(kinds) == sorted(kinds) and len(kinds) == 4 + 3 + 3 + 1 + 3 + 1
    assert kinds["depth.Z"] == "float" and kinds["albedo.R"] == "half" and kinds["normal.X"] == "half"
    back = exr.read(path)
    np.testing.assert_array_equal(back["depth.Z"], layers["depth"][..., 0].astype(np.float32))  # float32: exact
    np.testing.assert_array_equal(back["normal.Y"], layers["normal"][..., 1].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(back["alpha.A"], layers["alpha"].astype(np.float16).astype(np.float32))
    got = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # the beauty is the file's default RGBA layer
    np.testing.assert_array_equal(got[..., 2], back["R"])


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A real 3-frame clip (the public-domain astronaut, shifted a little per frame), tracked, analytic engine."""
    import cv2

    from blender_relight.pipeline import ClipSession

    root = tmp_path_factory.mktemp("seq")
    image = cv2.imread(str(ASTRONAUT))
    clip = root / "astronaut.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, image.shape[1::-1])
    for k in range(FRAMES):
        writer.write(np.roll(image, 2 * k, axis=1))
    writer.release()
    s = ClipSession(clip, root / "cache", engine="analytic")
    s.analyse()
    yield s
    s.close()


def _light(strength: float):

    sh = np.zeros((9, 3))
    sh[0] = 0.8 * strength
    sh[1] = -0.3 * strength
    sh[3] = 0.4 * strength
    return lambda i: sh


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file() and not p.name.endswith(".json")}


def test_png_sequence_resumes_and_a_new_job_removes_stale_frames(session, tmp_path):
    out = tmp_path / "frames"
    first = sequence.render_sequence(session, out, light=_light(1.0))
    names = sorted(p.name for p in out.glob("frame_*.png"))
    assert names == [f"frame_{i:06d}.png" for i in range(FRAMES)], names
    assert f"{FRAMES} frames written" in first.text()
    before = _mtimes(out)
    again = sequence.render_sequence(session, out, light=_light(1.0))
    assert "0 frames written, 3 already there" in again.text() and _mtimes(out) == before  # resumed, nothing redone

    # An earlier job's frames beyond the new range, and other formats of the same naming, are removed first.
    (out / "frame_000042.png").write_bytes((out / "frame_000000.png").read_bytes())
    (out / "notes.txt").write_text("mine")
    sequence.render_sequence(session, out, frames=[0, 1], light=_light(0.5), image_format="exr")
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".png", ".exr")) == \
        ["frame_000000.exr", "frame_000001.exr"]
    assert (out / "notes.txt").read_text() == "mine"  # files of other names are never touched
    assert [p.name for p in sequence.sequence_frames(out)] == ["frame_000000.exr", "frame_000001.exr"]
    back = exr.read(out / "frame_000000.exr")
    assert set(back) == {"R", "G", "B", "A"} and (back["A"] == 1.0).all()  # opaque plate: alpha 1
    assert exr.channels(out / "frame_000000.exr")["R"] == "half"


def test_cancelled_job_is_not_exported_and_its_rerun_resumes(session, tmp_path):
    out = tmp_path / "frames"
    done: list[int] = []
    with pytest.raises(Cancelled, match="resumes"):
        sequence.render_sequence(session, out, light=_light(1.0), progress=lambda d, t: done.append(d),
                                 cancel=lambda: len(done) >= 2)
    assert len(list(out.glob("frame_*.png"))) == 2
    with pytest.raises(RelightError, match="unfinished"):
        sequence.sequence_frames(out)
    summary = sequence.render_sequence(session, out, light=_light(1.0))
    assert "1 frames written, 2 already there" in summary.text()
    assert len(sequence.sequence_frames(out)) == FRAMES


def test_multilayer_sequence_and_pass_folders(session, tmp_path):
    out = tmp_path / "ml"
    naming = sequence.FrameNaming(prefix="clip_passes_", digits=5, offset=1)
    sequence.render_sequence(session, out, frames=[0], light=_light(1.0), image_format="multilayer", naming=naming)
    path = out / "clip_passes_00001.exr"
    kinds = exr.channels(path)
    assert {"R", "G", "B", "A", "albedo.R", "normal.X", "depth.Z", "shading.B", "alpha.A"} <= set(kinds)
    assert kinds["R"] == "half" and kinds["depth.Z"] == "float"
    back = exr.read(path)
    relit = session.relight_frame(0, _light(1.0)(0), None, with_passes=True)
    np.testing.assert_allclose(back["G"], relit.image[..., 1], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(back["alpha.A"], relit.passes["alpha"][..., 0], atol=1e-3)
    h, w = relit.image.shape[:2]
    assert path.stat().st_size < 0.25 * h * w * 16 * 4  # far below 16 float32 channels

    pngs = tmp_path / "png"
    sequence.render_sequence(session, pngs, frames=[1], light=_light(1.0), passes=True)
    assert (pngs / "frame_000001.png").is_file() and (pngs / "depth" / "depth_000001.exr").is_file()
    sequence.render_sequence(session, pngs, frames=[2], light=_light(1.0))  # no passes now: the old ones go
    assert not (pngs / "depth").exists() and [p.name for p in sequence.sequence_frames(pngs)] == ["frame_000002.png"]


def test_unplayable_video_is_not_published(session, tmp_path):
    out = tmp_path / "frames"
    sequence.render_sequence(session, out, light=_light(1.0), png_bits=8)
    frames = sequence.sequence_frames(out)
    good = sequence.encode_video(frames, tmp_path / "relit.mp4", fps=25.0)
    from blender_relight.video import VideoReader

    with VideoReader(good) as reader:
        assert reader.frame_count == FRAMES
    assert not sequence.part_path(good).exists()

    # What a full disk leaves: a truncated file that the encoder reported no error for.
    target = tmp_path / "broken.mp4"
    part = sequence.part_path(target)
    part.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(RelightError, match="unplayable"):
        sequence.publish_video(part, target, FRAMES)
    assert not target.exists() and not part.exists()
    # An earlier good export under the final name is not replaced by a broken one.
    shutil.copy(good, target)
    part.write_bytes(b"\0" * 1000)
    with pytest.raises(RelightError, match="unplayable"):
        sequence.publish_video(part, target, FRAMES)
    assert target.read_bytes() == good.read_bytes()


def test_multilayer_exr_carries_each_lights_passes(tmp_path):
    """A Blender light shaded by the geometry engine reaches the multilayer EXR as its own diffuse, specular and
    shadow layers (issue 14: per-light passes), not only the standard five."""
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.pipeline import ClipSession

    session = ClipSession(ASTRONAUT, cache_dir=tmp_path / "cache", engine="geometry")
    try:
        key = LightSpec("SUN", power=3.0, direction=(-0.7, 0.7, -0.2), name="Key")
        lighting = SceneLighting(sh=np.zeros((9, 3)), lights=(key,))
        out = tmp_path / "ml"
        sequence.render_sequence(session, out, frames=[0], light=lambda i: lighting, image_format="multilayer")
        layers = {name.split(".")[0] for name in exr.channels(out / "frame_000000.exr")}
    finally:
        session.close()
    assert {"light_Key_diffuse", "light_Key_specular", "light_Key_shadow"} <= layers, sorted(layers)


def test_png_passes_carry_each_lights_passes_and_resume_keeps_them(tmp_path):
    """PNG frames with passes get each Blender light's diffuse, specular and shadow as EXRs in their own folders
    (before, only the standard five reached PNG/EXR sequences); a rerun of the same request keeps them (resume),
    and a different request removes the old light's folders with its frames."""
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.pipeline import ClipSession

    session = ClipSession(ASTRONAUT, cache_dir=tmp_path / "cache", engine="geometry")
    out = tmp_path / "png"
    try:
        def lit(name: str) -> SceneLighting:
            key = LightSpec("SUN", power=3.0, direction=(-0.7, 0.7, -0.2), name=name)
            return SceneLighting(sh=np.zeros((9, 3)), lights=(key,))

        sequence.render_sequence(session, out, frames=[0], light=lambda i: lit("Key"), passes=True)
        names = ["light_Key_diffuse", "light_Key_specular", "light_Key_shadow"]
        files = [out / n / f"{n}_000000.exr" for n in names]
        assert all(f.is_file() for f in files), sorted(p.name for p in out.iterdir())
        shadow = exr.read(files[2])
        assert shadow and 0.0 <= float(np.min(next(iter(shadow.values())))) <= 1.0
        stamp = [f.stat().st_mtime_ns for f in files]
        summary = sequence.render_sequence(session, out, frames=[0], light=lambda i: lit("Key"), passes=True)
        assert "1 already there" in summary.lines[-1] and [f.stat().st_mtime_ns for f in files] == stamp
        sequence.render_sequence(session, out, frames=[0], light=lambda i: lit("Rim"), passes=True)
        assert not any((out / n).exists() for n in names)
        assert (out / "light_Rim_diffuse" / "light_Rim_diffuse_000000.exr").is_file()
    finally:
        session.close()
