"""Engines against real ground truth at the filmed view: Extended Yale B photos under known point lights.

For each subject of ``../shared/data/yale_dev``, the A+000E+00 photo (lit from the camera) is relit to every other
photo's light (a distant light at the stated azimuth/elevation plus a little ambient) by each engine, and compared with
that photo over the face: the correlation of log(relit/input) with log(photo/input), the gain-fitted relative RMSE,
and the strength (slope of our log-ratio on the real one; 1 is right), by light bins (frontal: both angles ≤ 25°, mid:
≤ 60°, side: beyond). DPR and the unchanged input are scored in the same run.

Two source lights: ``estimated`` (the tracker's own estimate, what the product uses) and ``known`` (the frontal photo's
real light as SH: isolates geometry and shading from the estimate). This is the geometry engineer's measuring tool
(issue 14 item 6); the project's evaluation harness (``evaluation/``) is the formal one.

Run: ``python benchmarks/bench_yale_engines.py [--subjects N] [--every K] [--engines geometry,analytic,neural,dpr]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PAD = 0.45  # context padded around the tight Yale crops (as a fraction of the side) so the face detector works
UPSCALE = 3
AMBIENT = 0.05  # the photos' ambient, as a fraction of the point light's frontal irradiance
NAME = re.compile(r"_P00A([+-]\d{3})E([+-]\d{2})\.pgm$")


def light_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """SH/anchor frame (x right, y into the face, z up) direction toward a Yale light: positive azimuth lights the
    image-left half (−x), positive elevation is from above."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([-np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])


def light_bin(azimuth: float, elevation: float) -> str:
    worst = max(abs(azimuth), abs(elevation))
    return "frontal" if worst <= 25 else ("mid" if worst <= 60 else "side")


def load_photo(path: Path) -> np.ndarray:
    """A Yale photo as the RGB uint8 'frame' the tracker sees: padded with its edges, upscaled."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise SystemExit(f"cannot read {path}")
    h, w = gray.shape
    py, px = int(PAD * h), int(PAD * w)
    padded = cv2.copyMakeBorder(gray, py, py, px, px, cv2.BORDER_REPLICATE)
    big = cv2.resize(padded, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
    return np.repeat(big[..., None], 3, axis=2)


def metrics(relit: np.ndarray, photo: np.ndarray, source: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Log-ratio correlation, gain-fitted relative RMSE and strength slope over ``mask`` (linear gray images)."""
    eps = 0.01
    r, p, s = (np.asarray(x, np.float64)[mask] for x in (relit, photo, source))
    ours = np.log((r + eps) / (s + eps))
    real = np.log((p + eps) / (s + eps))
    corr = float(np.corrcoef(ours, real)[0, 1]) if ours.std() > 1e-9 else 0.0
    gain = float((r @ p) / max(r @ r, 1e-12))
    rmse = float(np.sqrt(np.mean((gain * r - p) ** 2)) / max(np.sqrt(np.mean(p**2)), 1e-12))
    rc, oc = real - real.mean(), ours - ours.mean()
    slope = float((rc @ oc) / max(rc @ rc, 1e-12))
    return {"corr": corr, "rmse": rmse, "slope": slope}


class _MemoryPlanes:
    """The one piece of a clip cache the neural engine needs here: encoded planes per frame, in memory."""

    def __init__(self) -> None:
        self._planes: dict = {}

    def get_planes(self, index: int, model_id: str = ""):
        return self._planes.get((index, model_id))

    def put_planes(self, index: int, planes, model_id: str = "") -> None:
        self._planes[(index, model_id)] = planes


def build_engines(names: list[str]):
    from blender_relight import engines

    out = {}
    for name in names:
        if name == "dpr":
            from evaluation.dpr import DPR
            from evaluation.systems import DPRSystem

            out[name] = DPRSystem(DPR(DATA / "dpr" / "trained_model_03.t7"))
        elif name == "input":
            out[name] = None
        else:
            try:
                out[name] = engines.NeuralEngine(temporal=False) if name == "neural" else engines.make_engine(name)
            except Exception as exc:  # noqa: BLE001 - an engine that cannot be built is reported, not fatal
                print(f"{name}: unavailable ({exc})")
    return out


def main(argv: list[str] | None = None) -> int:
    from blender_relight import colour, face_geometry
    from blender_relight.lighting import sh as shlib
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.tracking.tracker import FaceTracker

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=6)
    ap.add_argument("--every", type=int, default=1, help="use every k-th target photo")
    ap.add_argument("--engines", default="input,analytic,neural,geometry,dpr")
    ap.add_argument("--sources", default="estimated,known")
    ap.add_argument("--decode", choices=("srgb", "linear"), default="srgb",
                    help="how the 8-bit photos map to linear light (the camera's response is not documented)")
    ap.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG (input | photo | systems)")
    args = ap.parse_args(argv)
    if args.decode == "linear":
        to_linear = lambda im: np.asarray(im, np.float32) / 255.0  # noqa: E731
    else:
        to_linear = colour.uint8_srgb_to_linear
    systems = build_engines(args.engines.split(","))
    subjects = sorted(p for p in (DATA / "yale_dev").iterdir() if p.is_dir())[: args.subjects]
    rows: list[dict] = []
    sheet_rows: list[list[np.ndarray]] = []
    timings: dict[str, float] = {}
    for subject in subjects:
        frontal = next(subject.glob("*_P00A+000E+00.pgm"))
        frame = load_photo(frontal)
        tracker = FaceTracker()
        track = tracker.track(0, frame)
        tracker.close()
        if not track.tracked or track.source_sh is None:
            print(f"{subject.name}: no face tracked on the frontal photo; skipped")
            continue
        crop = to_linear(track.transform.warp(frame))
        maps = face_geometry.render_face_maps(track.points_crop(), 512, fill_holes=True)
        mask = cv2.erode(maps.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        src_gray = crop.mean(2)
        targets = sorted(p for p in subject.glob("*.pgm") if NAME.search(p.name) and p != frontal)[:: args.every]
        est = np.asarray(track.source_sh, np.float64)
        front = np.array([0.0, -1.0, 0.0])
        e_front = float(shlib.irradiance(front, shlib.to_gray(est)))
        dpr_done: dict[Path, np.ndarray] = {}
        for source_kind in args.sources.split(","):
            if source_kind == "known":
                strength = 1.0
                known = shlib.directional_light_sh(front, np.ones(3) * strength) + \
                    shlib.ambient_sh(np.ones(3) * AMBIENT * strength / np.pi)
                track_used = dataclasses.replace(track, source_sh=known)
            else:
                strength, track_used = e_front, track
            planes = _MemoryPlanes()
            for engine in systems.values():  # a new source light: per-frame caches must not carry over
                if hasattr(engine, "_frames"):
                    engine._frames.clear()
                for attr in ("_geometry_cache", "_source_shading", "_planes", "_gbuffers"):
                    if hasattr(engine, attr):
                        getattr(engine, attr).clear()
            for k, target in enumerate(targets):
                a, e = (int(v) for v in NAME.search(target.name).groups())
                photo = to_linear(track.transform.warp(load_photo(target))).mean(2)
                sun = LightSpec("SUN", power=strength, direction=-light_direction(a, e), name="yale")
                lighting = SceneLighting(sh=shlib.ambient_sh(np.ones(3) * AMBIENT * strength / np.pi), lights=(sun,))
                outs = {}
                for name, engine in systems.items():
                    t0 = time.perf_counter()
                    if engine is None:
                        relit = crop
                    elif name == "dpr":  # DPR estimates its own source light: one run serves both sources
                        if target not in dpr_done:
                            dpr_done[target] = engine.relight(crop, track_used, lighting.total_sh())
                        relit = dpr_done[target]
                    else:
                        relit = engine.relight(0, crop, track_used, lighting, None, planes).image
                    timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
                    m = metrics(relit.mean(2), photo, src_gray, mask)
                    rows.append({"subject": subject.name, "source": source_kind, "system": name,
                                 "bin": light_bin(a, e), "azimuth": a, "elevation": e, **m})
                    outs[name] = relit
                if args.sheet is not None and source_kind == args.sources.split(",")[0] and a in (70, -70, 50) \
                        and e in (0,) and len(sheet_rows) < 6:
                    sheet_rows.append([track.transform.warp(frame), colour.linear_to_uint8_srgb(
                        np.repeat(photo[..., None], 3, 2))] + [colour.linear_to_uint8_srgb(v) for v in outs.values()])
        print(f"{subject.name}: {len(targets)} lights", flush=True)
    report(rows)
    n = max(1, len(rows) // max(1, len(systems)))
    print("\nseconds per relight:", ", ".join(f"{k} {v / n:.3f}" for k, v in timings.items()))
    if args.sheet is not None and sheet_rows:
        from blender_relight.contact_sheet import save_contact_sheet

        titles = ["input", "photo"] + list(systems)
        save_contact_sheet(args.sheet, [im for row in sheet_rows for im in row], columns=len(titles), thumb=200,
                           column_titles=titles)
        print(f"wrote {args.sheet}")
    return 0


def report(rows: list[dict]) -> None:
    """Mean metrics per source light, bin and system, as a markdown table."""
    keys = sorted({(r["source"], r["bin"], r["system"]) for r in rows},
                  key=lambda k: (k[0], ("frontal", "mid", "side").index(k[1]), k[2]))
    print("\n| source | bin | system | n | log-ratio corr | gain-fit rel. RMSE | strength |")
    print("|---|---|---|---|---|---|---|")
    for key in keys:
        sel = [r for r in rows if (r["source"], r["bin"], r["system"]) == key]
        c, e, s = (np.nanmean([r[m] for r in sel]) for m in ("corr", "rmse", "slope"))
        print(f"| {key[0]} | {key[1]} | {key[2]} | {len(sel)} | {c:.3f} | {e:.3f} | {s:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
