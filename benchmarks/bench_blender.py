"""The extension's interactive rates in headless Blender (bpy): a light drag at the filmed view, a frame change with
the live preview on, and Render to Sequencer per frame; with where a light change's time goes. Prints a table.

    .venv/bin/python benchmarks/bench_blender.py [--clip PATH] [--frames N] [--engine auto|analytic|neural]

Without --clip it cuts the first frames of ../shared/data/videos/lp_d3.mp4 (512²). It enables the source tree as an
extension in a private user folder, as tests/blender/conftest.py does, and drives the add-on's own code: the depsgraph
handler's ``LivePreview.update`` (scene reading, core relight, preview image upload, the sequencer strip's frame
rewritten) and the Render to Sequencer operator.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
USER_DIR = Path(tempfile.mkdtemp(prefix="bench-blender-user-"))
os.environ.setdefault("BLENDER_USER_RESOURCES", str(USER_DIR))

import numpy as np  # noqa: E402

REPO_NAME = "prbench"
PACKAGE = f"bl_ext.{REPO_NAME}.portrait_relight"


def enable_addon():
    """The source tree as an extension of a local repository (no wheels: the venv has the core)."""
    import importlib.util

    import bpy  # first: it puts Blender's script modules (addon_utils) on the path
    import addon_utils

    repo_dir = Path(tempfile.mkdtemp(prefix="bench-ext-repo-"))
    link = repo_dir / "portrait_relight"
    link.mkdir()
    for name in ("__init__.py", "ops", "ui"):
        (link / name).symlink_to(REPO / name)
    spec = importlib.util.spec_from_file_location("pr_build_extension", REPO / "tools" / "build_extension.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    spec.loader.exec_module(build)
    (link / "blender_manifest.toml").write_text(build.staged_manifest_text(build.read_manifest()["platforms"], []))
    bpy.context.preferences.extensions.repos.new(name=REPO_NAME, module=REPO_NAME, custom_directory=str(repo_dir),
                                                 source="USER")
    assert addon_utils.enable(PACKAGE, default_set=True) is not None
    return bpy


def cut_clip(src: Path, out: Path, frames: int) -> Path:
    """The tests' clip cutter (tests/blender/pr_blender_env.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("pr_blender_env", REPO / "tests" / "blender" / "pr_blender_env.py")
    env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(env)
    return env.cut_clip(src, out, 0, frames)


def key_light(bpy, scene, anchor):
    from mathutils import Matrix

    data = bpy.data.lights.new("key", "AREA")
    data.energy, data.color, data.size = 15.0, (1.0, 0.85, 0.7), 0.1
    light = bpy.data.objects.new("key", data)
    scene.collection.objects.link(light)
    light.parent = anchor
    light.matrix_parent_inverse = Matrix.Identity(4)
    light.location = (1.0, -0.4, 0.1)
    return light


def ms(times: list[float]) -> str:
    return f"{1000 * float(np.median(times)):.1f} ms"


def scrub_real_clip(path: Path, rows: list, first: int = 100, count: int = 60) -> None:
    """First visits on a real, long-GOP clip (the cut clip above is re-encoded with frequent keyframes, where a seek is
    cheap): the core's ``relight_frame`` (decode, crop, engine, paste) stepping forward by 1 (playback) and 5 (a
    scrub) and back by 5, on frames ``first``.. of ``path`` analysed first (not timed)."""
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.lighting.sh import ambient_sh
    from blender_relight.pipeline import ClipSession

    session = ClipSession(path, cache_dir=Path(tempfile.mkdtemp(prefix="bench-scrub-")))
    frames = range(first, min(first + count, session.info.frame_count))
    session.analyse(frames)
    key = LightSpec("AREA", power=15.0, colour=(1.0, 0.85, 0.7), position=(1.0, -0.4, 0.1),
                    direction=(-1.0, 0.4, -0.1), size=0.1)
    lighting = SceneLighting(sh=ambient_sh(np.full(3, 0.03)), lights=(key,))
    stop = frames.stop - 1
    for name, order in (("next frame", list(range(first, first + 12))),
                        ("forward by 5", list(range(first, stop, 5))),
                        ("back by 5", list(range(stop, first, -5)))):
        walls, cpus = [], []
        for i in order:
            session.engine = type(session.engine)()  # a first visit: nothing kept in memory
            t0, c0 = time.perf_counter(), time.process_time()
            session.relight_frame(i, lighting)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        rows.append((f"core first visit on {path.name} ({session.info.width}x{session.info.height}), {name}",
                     f"{ms(walls)} (CPU {1000 * float(np.median(cpus)):.1f} ms)"))
    session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=None)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--engine", default="auto", choices=("auto", "analytic", "neural"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--scrub-clip", default=str(REPO.parent / "shared" / "data" / "videos" / "lp_d3.mp4"),
                        help="a real clip for the core's first visits forward and back (empty: skip)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where a first visit's frame change spends its time (cProfile)")
    args = parser.parse_args()
    bpy = enable_addon()
    import importlib

    ops = {name: importlib.import_module(f"{PACKAGE}.ops.{name}") for name in ("relight", "session", "output")}
    relight, sessions, output = ops["relight"], ops["session"], ops["output"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-blender-"))
    clip = Path(args.clip) if args.clip else cut_clip(REPO.parent / "shared" / "data" / "videos" / "lp_d3.mp4",
                                                       tmp / "clip.mp4", args.frames)
    scene = bpy.context.scene
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    settings = scene.portrait_relight
    settings.engine = args.engine
    settings.output_dir = str(tmp / "out")
    rows = []
    start = time.perf_counter()
    assert bpy.ops.portrait_relight.import_video("EXEC_DEFAULT", filepath=str(clip)) == {"FINISHED"}
    assert bpy.ops.portrait_relight.analyse("EXEC_DEFAULT") == {"FINISHED"}, settings.status
    session = sessions.get_session(settings)
    n = session.info.frame_count
    rows.append((f"import + analyse, {n} frames {session.info.width}x{session.info.height} "
                 f"({session.engine.name} engine)", f"{n / (time.perf_counter() - start):.1f} frames/s"))
    light = key_light(bpy, scene, settings.anchor)
    scene.world.color = (0.03, 0.03, 0.03)

    start = time.perf_counter()
    assert bpy.ops.portrait_relight.render_sequencer("EXEC_DEFAULT") == {"FINISHED"}, settings.status
    rows.append(("Render to Sequencer (plan, relight, 8-bit PNG, strip)",
                 f"{1000 * (time.perf_counter() - start) / n:.0f} ms a frame"))

    # A light drag at the filmed view: each step changes the light, the depsgraph handler relights.
    settings.live = True
    scene.frame_set(scene.frame_start + n // 2)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    relight.LIVE.last_key = None
    relight.LIVE.update(scene, depsgraph)
    parts = {k: [] for k in ("scene read", "core relight", "preview upload", "strip frame rewrite", "whole")}
    for k in range(args.repeats):
        light.data.energy = 10.0 + 0.37 * k  # a drag: every step a new light (nothing kept applies)
        t0 = time.perf_counter()
        depsgraph = bpy.context.evaluated_depsgraph_get()  # runs the add-on's depsgraph handler (one relight)
        parts["whole"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        req = relight.request(scene, settings, session, depsgraph)
        t1 = time.perf_counter()
        frame = relight.relight(session, req)
        t2 = time.perf_counter()
        relight.show(frame.image)
        t3 = time.perf_counter()
        output.refresh_relit_frame(scene, settings, scene.frame_current, frame.image)
        t4 = time.perf_counter()
        for name, dt in zip(("scene read", "core relight", "preview upload", "strip frame rewrite"),
                            (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[name].append(dt)
    assert relight.LIVE.last_error is None, relight.LIVE.last_error
    whole = float(np.median(parts["whole"]))
    rows.append(("light drag at the filmed view, one redraw (handler: read, relight, upload, strip)",
                 f"{ms(parts['whole'])} = {1 / whole:.1f} fps"))
    for name in ("scene read", "core relight", "preview upload", "strip frame rewrite"):
        rows.append((f"  of which {name}", ms(parts[name])))
    core = session.engine
    crop_times = []
    track = session.frame_track(req.index)
    frame_linear, crop = session._linear_frame_and_crop(req.index, track)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        core.relight(req.index, crop, track, req.lighting, None, session.cache)
        crop_times.append(time.perf_counter() - t0)
    rows.append(("  core: engine shade step alone (512² crop)", ms(crop_times)))

    # Frame changes with the live preview on: the frame-change handler relights the new frame.
    kept = getattr(relight.LIVE, "kept", {})  # (absent before the live preview kept frames: a baseline run)

    cpu: list[float] = []

    def frame_changes(order: list[int], forget: bool) -> list[float]:
        times = []
        cpu.clear()
        for frame in order:
            if forget:
                kept.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            scene.frame_set(scene.frame_start + frame)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return times

    def with_cpu(times: list[float]) -> str:
        return f"{ms(times)} (CPU {1000 * float(np.median(cpu)):.1f} ms)"

    jumps = [(k * 5) % n for k in range(min(n, args.repeats))]
    rows.append(("frame change with live preview, first visit (scrub, jumps of 5)",
                 with_cpu(frame_changes(jumps, True))))
    rows.append(("frame change with live preview, first visit (playback, next frame)",
                 with_cpu(frame_changes(list(range(n)), True))))
    seen = list(range(max(n - getattr(relight, "KEEP_RELIT", 12), 0), n))
    frame_changes(seen, False)
    rows.append(("frame change with live preview, back over frames seen (kept relit frames)",
                 with_cpu(frame_changes(seen[::-1], False))))
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        frame_changes(jumps, True)
        profiler.disable()
        print(f"cProfile of {len(jumps)} first visits (scrub):")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    settings.live = False

    # A camera turned 20° around the head: a new view (first a camera change, then light changes at that view).
    import math

    from mathutils import Matrix

    scene.frame_set(scene.frame_start + n // 2)
    anchor, cam = settings.anchor.matrix_world.copy(), settings.camera
    filmed_cam = cam.matrix_world.copy()
    cam.matrix_world = anchor @ Matrix.Rotation(math.radians(20.0), 4, "Z") @ anchor.inverted() @ cam.matrix_world
    bpy.context.view_layer.update()
    req = relight.request(scene, settings, session, bpy.context.evaluated_depsgraph_get())
    if req.camera_label is not None:
        t0, c0 = time.perf_counter(), time.process_time()
        relight.relight(session, req)
        rows.append(("camera turned 20° around the head, first relight at the new view",
                     f"{1000 * (time.perf_counter() - t0):.0f} ms (CPU {1000 * (time.process_time() - c0):.0f} ms)"))
        times = []
        for k in range(min(args.repeats, 8)):
            light.data.energy = 12.0 + 0.41 * k
            req = relight.request(scene, settings, session, bpy.context.evaluated_depsgraph_get())
            t0 = time.perf_counter()
            relight.relight(session, req)
            times.append(time.perf_counter() - t0)
        rows.append(("  then a light change at that view (core relight)", ms(times)))
    cam.matrix_world = filmed_cam
    bpy.context.view_layer.update()

    # Exports of the whole range (the frames are relit again: the render's frames are the sequencer's).
    for kind in ("PNG", "MULTILAYER", "VIDEO"):
        start = time.perf_counter()
        assert bpy.ops.portrait_relight.export("EXEC_DEFAULT", kind=kind) == {"FINISHED"}, settings.status
        rows.append((f"Export {kind}", f"{1000 * (time.perf_counter() - start) / n:.0f} ms a frame"))

    # Save, reopen (nothing analysed again) and the first relit frame after it.
    blend = tmp / "shot.blend"
    assert bpy.ops.wm.save_as_mainfile(filepath=str(blend)) == {"FINISHED"}
    sessions.forget_sessions()
    start = time.perf_counter()
    assert bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False) == {"FINISHED"}
    opened = time.perf_counter() - start
    scene = bpy.context.scene
    settings = scene.portrait_relight
    scene.frame_set(scene.frame_start + 1)
    start = time.perf_counter()
    assert bpy.ops.portrait_relight.relight_frame("EXEC_DEFAULT") == {"FINISHED"}, settings.status
    rows.append(("save, reopen the .blend, first Relight Frame (session and engine made again, tracks from the "
                 "cache)", f"open {1000 * opened:.0f} ms + {1000 * (time.perf_counter() - start):.0f} ms"))
    cache_root = sessions.get_session(settings).cache.root
    files = [f for f in cache_root.rglob("*") if f.is_file()]
    rows.append(("analysis cache on disk", f"{sum(f.stat().st_size for f in files) / n / 1024:.1f} KB a frame "
                                           f"({len(files)} files)"))
    if args.scrub_clip and Path(args.scrub_clip).is_file():
        scrub_real_clip(Path(args.scrub_clip), rows)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores (load average "
          f"{load}: figures are wall-clock medians), Blender {bpy.app.version_string} (bpy), commit {commit}; "
          f"clip {clip.name}, {n} frames")
    print("| stage | figure |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
    os._exit(0)  # bpy's exit can wait on handlers; the figures are printed
