"""End to end: `python -m evaluation` on one real clip, a few frames, writes a complete report."""
from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLIP = DATA / "videos" / "lp_d3.mp4"
WEIGHTS = DATA / "dpr" / "trained_model_03.t7"


def test_evaluation_command_on_one_clip(tmp_path: Path) -> None:
    if not CLIP.is_file() or not WEIGHTS.is_file():
        pytest.skip(f"dev clip {CLIP} or DPR weights {WEIGHTS} absent")
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation", "--clips", str(CLIP), "--out", str(out), "--stride", "4", "--run", "2",
         "--max-frames", "4", "--systems", "input", "analytic", "dpr", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("report.md", "overall.csv", "per_clip.csv", "lp_d3/report.md", "lp_d3/metrics.csv",
                 "lp_d3/per_frame.csv", "lp_d3/plots.png", "lp_d3/contact_sheet.png"):
        assert (out / name).is_file(), name
    rows = {r["system"]: r for r in csv.DictReader((out / "overall.csv").open())}
    assert set(rows) == {"input", "analytic", "dpr"}
    for r in rows.values():
        assert int(r["frames"]) == 4
        for key in ("light_err_dpr", "instability_dpr", "warp_err", "peak_mem_mib"):
            assert math.isfinite(float(r[key])), (r["system"], key)
    # The input floor is unchanged: identity 1, and DPR relighting toward the target lowers DPR's lighting error.
    assert float(rows["input"]["identity"]) == pytest.approx(1.0, abs=1e-6)
    assert float(rows["dpr"]["light_err_dpr"]) < float(rows["input"]["light_err_dpr"])
    assert float(rows["dpr"]["fps_relight"]) > 0
    assert "| dpr |" in (out / "report.md").read_text()


def test_evaluation_command_refuses_missing_clip(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "evaluation", "--clips", str(tmp_path / "nope.mp4"), "--out",
                           str(tmp_path / "r"), "--systems", "input"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "nope.mp4" in proc.stderr and "Traceback" not in proc.stderr


def test_pose_error_against_reference_cameras(tmp_path: Path) -> None:
    """A clip with a `<clip>.cameras.npy` beside it gets pose errors; the tracker's own cameras score zero."""
    if not CLIP.is_file():
        pytest.skip(f"dev clip {CLIP} absent")
    import shutil

    import numpy as np

    from evaluation.frames import load_clip_frames

    clip = tmp_path / CLIP.name
    shutil.copy(CLIP, clip)  # a scratch copy, only so a reference file can sit beside it
    first = load_clip_frames(clip, stride=1, max_frames=3)
    assert not first.pose_errors  # no reference yet
    cams = np.zeros((first.n_frames_total, 25), np.float32)
    for f in first.frames:
        cams[f.index] = f.track.camera
    np.save(clip.with_suffix(".cameras.npy"), cams)
    again = load_clip_frames(clip, stride=1, max_frames=3)
    assert len(again.pose_errors) == 3
    # The reference is stored as float32 (EG3D labels are): the angle of R_a^T R_b through arccos near 1 then has a
    # resolution of sqrt(2 * 6e-8) rad ~ 0.02 degrees, so 0.05 degrees is "the same camera".
    assert np.allclose(again.pose_errors, 0.0, atol=5e-2)
    np.save(clip.with_suffix(".cameras.npy"), np.zeros((5, 24), np.float32))
    with pytest.raises(Exception, match="cameras.npy"):
        load_clip_frames(clip, stride=1, max_frames=1)


def test_an_engine_system_starts_each_clip_afresh() -> None:
    """Frames of two clips at the same index: after ``begin_clip`` the second clip is relit as by a fresh system,
    not with the first clip's matte (which the engine keeps by frame index, as a session does for its one clip)."""
    import numpy as np

    from blender_relight import colour
    from blender_relight.lighting import sh as shlib
    from evaluation.systems import EngineRelight
    from tests.test_geometry_head import _tracked

    light = shlib.directional_light_sh(np.array([0.2, -1.0, 0.4]), np.full(3, 1.2)) + shlib.ambient_sh(np.full(3, 0.08))
    target = shlib.directional_light_sh(np.array([-1.0, -0.5, 0.2]), np.full(3, 1.5)) + shlib.ambient_sh(np.full(3, 0.1))
    frames = []
    for clip in ("lp_d3.mp4", "lp_d0.mp4"):
        track, crop = _tracked(clip, 30)
        track.source_sh = light
        frames.append((track, colour.uint8_srgb_to_linear(crop)))
    shared = EngineRelight("geometry")
    shared.relight(frames[0][1], frames[0][0], target)
    stale = shared.relight(frames[1][1], frames[1][0], target)
    shared.begin_clip(Path("lp_d0.mp4"))
    second = shared.relight(frames[1][1], frames[1][0], target)
    fresh = EngineRelight("geometry").relight(frames[1][1], frames[1][0], target)
    np.testing.assert_array_equal(second, fresh)
    assert np.abs(stale - fresh).mean() > 1e-3  # without it the first clip's matte is reused


def test_an_engine_system_relights_the_body_below_the_head_as_the_session_does() -> None:
    """The protocol scores what users get: the chest in the crop's bottom rows follows a side key (``body``), not
    only the head; the room beside the person keeps the filmed light."""
    import numpy as np

    from blender_relight import colour
    from blender_relight.lighting import sh as shlib
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.matting import person_matte
    from evaluation.systems import EngineRelight
    from tests.test_geometry_head import _tracked

    if not (DATA / "videos" / "lp_s18.mp4").exists():
        pytest.skip("needs ../shared/data")
    track, crop8 = _tracked("lp_s18.mp4", 20)
    crop = colour.uint8_srgb_to_linear(crop8)
    track.source_sh = shlib.directional_light_sh(np.array([0.0, -0.3, 1.0]), np.full(3, 1.2)) \
        + shlib.ambient_sh(np.full(3, 0.1))
    key = LightSpec("SUN", colour=(1, 1, 1), power=2.5, direction=(-0.9, -0.1, -0.4), name="key")
    system = EngineRelight("geometry")
    out = system.relight_lighting(20, crop, track, SceneLighting(sh=shlib.ambient_sh(np.full(3, 0.08)), lights=(key,)))
    lum = lambda x: x @ np.array([0.2126, 0.7152, 0.0722], np.float32)  # noqa: E731
    ratio = (lum(out) + 1e-3) / (lum(crop) + 1e-3)
    head = system.engine.relight(20, crop, track, SceneLighting(), None, system.cache).alpha
    person = person_matte(crop8)
    chest = (person > 0.9) & (head < 1e-3)
    chest[: int(0.8 * chest.shape[0])] = False
    assert chest.sum() > 500, "the crop holds no chest below the head"
    xs = np.nonzero(chest.any(axis=0))[0]
    mid = (xs.min() + xs.max()) // 2
    left, right = chest.copy(), chest.copy()
    left[:, mid:] = False
    right[:, :mid] = False
    assert abs(np.median(ratio[chest]) - 1.0) > 0.2  # the chest took the new light (it stayed at 1 before)
    # the key's side of the chest is the lighter (the proxy's normals turn only to 45° at the outline: a mild slope)
    assert np.median(ratio[right]) > 1.08 * np.median(ratio[left])
    room = (person < 0.01) & (head < 1e-3)
    np.testing.assert_allclose(out[room], crop[room], atol=1e-6)
