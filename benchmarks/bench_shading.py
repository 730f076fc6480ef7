"""Light-only change at the filmed view with the geometry engine: what a frame costs when only the lights move.

Prints, for a real dev frame (or the astronaut sample when the dev data is absent): the per-frame setup (geometry,
matte, G-buffers, source shading: paid once per frame), then the light-only relight of the 512² crop with 0, 1 and 3
shadowed lights (point, area, spot) while every light moves 5 cm a redraw (a drag: each map is rebuilt), the same
when the lights only change power (maps kept) or move 2 mm a redraw (maps kept while their shadows move < 0.5
texel), the cost of one shadowed light, and the split between shadow maps, lookup and shading. Wall time and
process CPU time are both given: on a shared machine the CPU time is the steadier figure. OpenCV runs one thread
(``--library-threads``); run with ``OMP_NUM_THREADS=1`` for BLAS too (library thread pools only oversubscribe the
cores here).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_shading.py [--repeats 20] [--shading-size 256]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _frame(sample: bool = False):
    """(track, crop_linear, label) of a dev frame, or of the public-domain sample (always with ``sample``)."""
    import cv2

    from blender_relight import colour
    from blender_relight.tracking.tracker import FaceTracker

    video = ROOT.parent / "shared" / "data" / "videos" / "lp_d3.mp4"
    if video.exists() and not sample:
        cap = cv2.VideoCapture(str(video))
        cap.set(cv2.CAP_PROP_POS_FRAMES, 30)
        ok, bgr = cap.read()
        cap.release()
        label = "lp_d3.mp4 frame 30"
    else:
        bgr, ok = cv2.imread(str(ROOT / "blender_relight" / "samples" / "astronaut.jpg")), True
        label = "astronaut sample"
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    tracker = FaceTracker()
    track = tracker.track(0, rgb)
    tracker.close()
    return track, colour.uint8_srgb_to_linear(track.transform.warp(rgb)), label


def _lights(n: int):
    from blender_relight.lighting.blender_lights import LightSpec

    specs = [LightSpec("POINT", power=60.0, position=(-1.1, -1.0, 0.3), name="key"),
             LightSpec("AREA", power=30.0, position=(1.2, -0.9, 0.2), direction=(-1.2, 0.9, -0.2), size=0.5,
                       name="fill"),
             LightSpec("SPOT", power=80.0, position=(0.3, 1.2, 1.0), direction=(-0.3, -1.2, -1.0), spot_size=0.8,
                       name="rim")]
    return tuple(specs[:n])


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn()`` over ``repeats`` runs."""
    wall, cpu = [], []
    for i in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--shading-size", type=int, default=256)
    ap.add_argument("--shadow-resolution", type=int, default=128)
    ap.add_argument("--library-threads", type=int, default=1, help="OpenCV's threads (cv2.setNumThreads)")
    ap.add_argument("--sheet", type=Path, default=None,
                    help="instead: write a contact sheet of the public-domain astronaut sample relit by a side key")
    args = ap.parse_args(argv)
    if args.sheet is not None:
        return write_sheet(args.sheet)
    import cv2

    cv2.setNumThreads(args.library_threads)

    from blender_relight.engines import GeometryEngine
    from blender_relight.lighting import sh as shlib
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.shading import shade

    track, crop, label = _frame()
    engine = GeometryEngine(shading_size=args.shading_size, shadow_resolution=args.shadow_resolution)
    world = shlib.ambient_sh(np.full(3, 0.05))
    w0, c0 = time.perf_counter(), time.process_time()
    engine.relight(0, crop, track, SceneLighting(sh=world), None, None)
    setup = (1e3 * (time.perf_counter() - w0), 1e3 * (time.process_time() - c0))
    frame = engine._frames[0]
    print(f"frame: {label}; crop 512², shading {args.shading_size}², shadow maps {args.shadow_resolution}²; "
          f"{len(frame.geometry.triangles)} triangles ({len(frame.caster.triangles)} in the shadow caster), "
          f"{len(frame.inputs.index)} shaded pixels")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, OpenCV threads {cv2.getNumThreads()}")
    print(f"per-frame setup (geometry, matte, G-buffers, source light; once per frame): "
          f"{setup[0]:.0f} ms wall, {setup[1]:.0f} ms CPU")
    from dataclasses import replace

    def scene(n: int, i: int, step: float = 0.05, power: bool = False, dragged: int | None = None
              ) -> SceneLighting:
        """The first ``n`` lights at redraw ``i``: each moved ``step`` (m) along x per redraw (only light
        ``dragged`` when given, as a drag in Blender moves one), or (``power``) only its power changed."""
        lights = tuple(replace(s, power=s.power * (1.0 + 0.01 * (i % 50))) if power else
                       s if dragged is not None and k != dragged else
                       replace(s, position=tuple(np.asarray(s.position) + (step * (i % 20), 0.0, 0.0)))
                       for k, s in enumerate(_lights(n)))
        return SceneLighting(sh=world, lights=lights)

    print("\n| lights (all shadowed) | change per redraw | relight wall ms | CPU ms | frames/s (wall) | "
          "of which shading wall ms | shadow maps built a redraw |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for n, what, kw in ((0, "-", {}), (1, "moved 5 cm", {}), (3, "moved 5 cm", {}),
                        (3, "the key moved 5 cm (a drag)", {"dragged": 0}), (3, "power only", {"power": True}),
                        (3, "moved 2 mm", {"step": 0.002})):
        built = frame.shadows.built
        relight = _timed(lambda i: engine.relight(0, crop, track, scene(n, i, **kw), None, None), args.repeats)
        maps = (frame.shadows.built - built) / args.repeats
        shading = _timed(lambda i: shade(None, scene(n, i + 7, **kw), frame.caster, inputs=frame.inputs,
                                         shadows=frame.shadows, shadow_resolution=args.shadow_resolution,
                                         per_light=False, images=False), args.repeats)
        results[(n, what)] = relight
        print(f"| {n} | {what} | {relight[0]:.1f} | {relight[1]:.1f} | {1e3 / relight[0]:.1f} | {shading[0]:.1f} | "
              f"{maps:.2f} |")
    three, none = results[(3, "moved 5 cm")], results[(0, "-")]
    per_light = ((three[0] - none[0]) / 3, (three[1] - none[1]) / 3)
    print(f"\none moving shadowed light costs ~{per_light[0]:.1f} ms wall ({per_light[1]:.1f} ms CPU) on top of "
          f"{none[0]:.1f} ms for the frame's compositing and SH")
    import importlib

    from blender_relight.shading import frames as fr
    from blender_relight.shading import shadow

    shade_mod = importlib.import_module("blender_relight.shading.shade")
    inputs = frame.inputs
    everything = slice(0, len(inputs.index))
    print("\n| one light, serial, CPU ms | shadow map | shading (no shadow) | shadow lookup | visibility blur |")
    print("|---|---|---|---|---|")
    for spec in _lights(3):
        where = np.asarray(spec.position)
        sm_ms = _timed(lambda i: shadow.build_shadow_map(frame.caster, light_position=fr.light_frame_to_eg3d(
            where + (0.05 * i, 0, 0)), resolution=args.shadow_resolution, receivers=inputs.receivers), args.repeats)
        terms = _timed(lambda i: shade_mod._light_terms(spec, inputs, everything, None, 0.4, 0.028), args.repeats)
        sm = shadow.build_shadow_map(frame.caster, light_position=fr.light_frame_to_eg3d(where),
                                     resolution=args.shadow_resolution, receivers=inputs.receivers)
        lit = np.flatnonzero(shade_mod._light_terms(spec, inputs, everything, None, 0.4, 0.028)[0] > 0)
        look = _timed(lambda i: shadow.visibility_columns(sm, inputs.position_t[:, lit], inputs.normal_t[:, lit],
                                                          shade_mod._soft_size(spec), 1.5), args.repeats)
        vis = np.ones(len(inputs.index), np.float32)
        blur = _timed(lambda i: shade_mod._smooth(vis, inputs), args.repeats)
        print(f"| {spec.type.lower()} ({spec.name}, {lit.size} lit px) | {sm_ms[1]:.2f} | {terms[1]:.2f} | "
              f"{look[1]:.2f} | {blur[1]:.2f} |")
    return 0


def write_sheet(path: Path) -> int:
    """The astronaut sample under a side key light (with its cast shadow), a fill and a rim: input, geometry engine,
    analytic engine (SH only), the key's shadow pass, its diffuse pass and the normals. Public-domain input only."""
    from blender_relight import colour
    from blender_relight.contact_sheet import save_contact_sheet
    from blender_relight.engines import AnalyticEngine, GeometryEngine, pass_name
    from blender_relight.lighting import sh as shlib
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting

    track, crop, _ = _frame(sample=True)
    key = LightSpec("AREA", power=45.0, position=(-1.2, -0.9, 0.45), direction=(1.2, 0.9, -0.45), size=0.3,
                    name="Key")
    rim = LightSpec("SPOT", power=60.0, position=(1.0, 1.0, 0.9), direction=(-1.0, -1.0, -0.9), spot_size=0.9,
                    name="Rim")
    lighting = SceneLighting(sh=shlib.ambient_sh(np.full(3, 0.06)), lights=(key, rim))
    geo = GeometryEngine().relight(0, crop, track, lighting, None, None)
    ana = AnalyticEngine().relight(0, crop, track, lighting, None, None)
    shadow = np.repeat(geo.passes[pass_name("Key", "shadow")], 3, axis=2)
    diffuse = geo.passes[pass_name("Key", "diffuse")]
    diffuse = diffuse / max(float(np.percentile(diffuse, 99.5)), 1e-6)
    normals = (geo.passes["normal"] * 0.5 + 0.5) * (geo.alpha[..., None] > 0.05)
    images = [colour.linear_to_uint8_srgb(crop), colour.linear_to_uint8_srgb(geo.image),
              colour.linear_to_uint8_srgb(ana.image), (np.clip(shadow, 0, 1) * 255).astype(np.uint8),
              colour.linear_to_uint8_srgb(np.clip(diffuse, 0, 1)), (np.clip(normals, 0, 1) * 255).astype(np.uint8)]
    labels = ["input", "geometry engine", "analytic (SH only)", "key: shadow pass", "key: diffuse pass",
              "normals (head frame)"]
    save_contact_sheet(path, images, labels, columns=3, thumb=320)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
