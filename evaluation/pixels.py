"""Pixel checks of relit frames: no negative or NaN values in any output or pass, and no colour blotch: under a white
light the face's chroma stays near the input's.

``python -m evaluation.pixels [IMAGES OR CLIPS...] [--engine geometry] [--frame N]`` prints one line per input and
light and the worst figures (default inputs: the development clips and the public-domain sample photo; a clip is
checked on frame ``--frame``).

Chroma of a pixel: its linear RGB over its own mean (1, 1, 1 is grey); the chroma of a region is the mean of its
pixels' chroma, over pixels lit in both input and relit (mean above :data:`DARK`: chroma means nothing in black
shadow). The drift is the largest per-channel change of that between input and relit, over the whole face and over
its 5×5 grid cells (a blotch moves a cell's chroma, not the face's). Why per pixel: a region's mean RGB changes colour
under a pure brightness change whenever its pixels differ in colour (lips, brows, hair in a cell relit unevenly):
measured on lp_s18 with a luminance-only ratio (every pixel's chroma unchanged), 0.21 on the face that way. Why white
lights: under a white light the relight should change brightness and shading, never the skin's colour (the source
estimate is neutral, ``lighting.estimate.white_balance``). The highlights the engine adds are white and grey the skin
where they land (physics, not a blotch): the cell drift is also given without them (``diffuse``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_IMAGES = ["dpr_obama.jpg", "lp_d8.jpg", "lp_s1.jpg", "lp_s6.jpg", "lp_d30.jpg", "lp_s12.jpg",
                  "skimage_astronaut.png"]
#: What ``python -m evaluation.pixels`` checks without arguments: every development clip and the public-domain sample.
DEFAULT_INPUTS = [*(f"videos/{n}" for n in ("lp_d0.mp4", "lp_d3.mp4", "lp_d9.mp4", "lp_d10.mp4", "lp_d11.mp4",
                                            "lp_d13.mp4", "lp_d14.mp4", "lp_d18.mp4", "lp_s18.mp4")),
                  "images/skimage_astronaut.png"]
#: Bounds the check states and ``tests/test_eval_pixels.py`` enforces under a white light: the largest per-channel
#: chroma change of the whole face, and of a face cell without the engine's (white) highlights. Measured worst over
#: the 9 development clips and the sample, 4 lights each, geometry engine (docs/evaluation.md): 0.022 and 0.051.
MAX_FACE_DRIFT = 0.05
MAX_CELL_DRIFT = 0.10
#: White lights the check relights to (direction toward the light, head frame), strength 3, ambient 0.1.
WHITE_LIGHTS = {"key left": "-1,-0.8,0.4", "key right": "1,-0.8,0.4", "top": "0,-0.5,1", "front": "0,-1,0.2"}
GRID = 5


#: Pixels darker than this (mean linear RGB) in input or relit are left out of the chroma.
DARK = 0.02


def chroma(pixels: np.ndarray) -> np.ndarray:
    """Mean over pixels ``(N, 3)`` of each pixel's RGB over its own mean (module docstring)."""
    p = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    return (p / np.maximum(p.mean(axis=1, keepdims=True), 1e-9)).mean(axis=0)


def chroma_drift(relit: np.ndarray, source: np.ndarray) -> float:
    """Largest per-channel change of the region's chroma from ``source`` to ``relit`` (pixels ``(N, 3)`` each),
    over pixels lit in both; NaN when fewer than 50 are."""
    r, s = np.asarray(relit, np.float64).reshape(-1, 3), np.asarray(source, np.float64).reshape(-1, 3)
    lit = (r.mean(axis=1) > DARK) & (s.mean(axis=1) > DARK)
    if lit.sum() < 50:
        return float("nan")
    return float(np.abs(chroma(r[lit]) - chroma(s[lit])).max())


def check_image(path: Path, engine: str = "geometry", frame_index: int = 0) -> list[dict]:
    """One row per white light (:data:`WHITE_LIGHTS`) for frame ``frame_index`` of ``path`` (a photo or a clip)
    relit by ``engine`` through the session, as a user gets it: min value and non-finite count over the image and
    every pass, and the chroma drift of the face mean and of its worst grid cell."""
    import tempfile

    from blender_relight import colour
    from blender_relight.lighting import inputs
    from blender_relight.pipeline import ClipSession

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        session = ClipSession(path, cache_dir=cache, engine=engine)
        track = session.frame_track(frame_index)
        if track is None or not track.tracked:
            return rows
        frame = colour.uint8_srgb_to_linear(session._frame(frame_index))
        # the face in the frame: the tracker's crop mask mapped back, its interior only
        m = cv2.warpAffine(track.crop_mask(), track.transform.matrix, frame.shape[1::-1],
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP) > 0.99
        ys, xs = np.nonzero(m)
        cells = [(m & (np.arange(m.shape[0])[:, None] >= y0) & (np.arange(m.shape[0])[:, None] < y1)
                  & (np.arange(m.shape[1])[None, :] >= x0) & (np.arange(m.shape[1])[None, :] < x1))
                 for y0, y1 in _edges(ys) for x0, x1 in _edges(xs)]
        cells = [c for c in cells if c.sum() > 50]
        for name, direction in WHITE_LIGHTS.items():
            lighting = inputs.directional_lighting(direction, "1,1,1", 3.0, "0.1")
            relit = session.relight_frame(frame_index, lighting, with_passes=True)
            # every output must be finite and >= 0, except the normal pass (a direction: signed by definition)
            values = [relit.image, *(v for k, v in relit.passes.items() if k != "normal")]
            drift_mean = chroma_drift(relit.image[m], frame[m])
            drift_cells = np.nanmax([chroma_drift(relit.image[c], frame[c]) for c in cells] + [0.0])
            # without the (white) highlights the engine adds: the diffuse ratio's colour change alone
            diffuse = np.maximum(relit.image - relit.passes.get("specular", 0.0), 0.0)
            drift_diffuse = np.nanmax([chroma_drift(diffuse[c], frame[c]) for c in cells] + [0.0])
            rows.append({"image": path.name, "frame": frame_index, "light": name,
                         "min": float(min(np.nanmin(v) for v in values)),
                         "nonfinite": int(sum((~np.isfinite(v)).sum() for v in values)),
                         "chroma_drift_mean": drift_mean, "chroma_drift_cell": float(drift_cells),
                         "chroma_drift_cell_diffuse": float(drift_diffuse)})
    return rows


def _edges(coords: np.ndarray) -> list[tuple[int, int]]:
    e = np.linspace(coords.min(), coords.max() + 1, GRID + 1).astype(int)
    return list(zip(e[:-1], e[1:]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.pixels", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="*", default=[str(DATA / n) for n in DEFAULT_INPUTS],
                   help="photos or clips (default: the development clips and the sample photo)")
    p.add_argument("--engine", default="geometry", help="engine name (engines.make_engine); default geometry")
    p.add_argument("--frame", type=int, default=0, help="frame of a clip to check (default 0)")
    args = p.parse_args(argv)
    rows = []
    for path in map(Path, args.images):
        got = check_image(path, args.engine, args.frame)
        for r in got:
            print(f"{r['image']:>24} {r['light']:>9}: min {r['min']:.4f}, non-finite {r['nonfinite']}, chroma drift "
                  f"face mean {r['chroma_drift_mean']:.3f}, worst cell {r['chroma_drift_cell']:.3f} "
                  f"(diffuse alone {r['chroma_drift_cell_diffuse']:.3f})")
        rows += got
    if not rows:
        print("no face found in any image", file=sys.stderr)
        return 1
    print(f"worst over {len(rows)} relights: min value {min(r['min'] for r in rows):.4f}, non-finite "
          f"{sum(r['nonfinite'] for r in rows)}, chroma drift of the face mean "
          f"{max(r['chroma_drift_mean'] for r in rows):.3f}, "
          f"of a face cell {max(r['chroma_drift_cell'] for r in rows):.3f} "
          f"(diffuse alone {max(r['chroma_drift_cell_diffuse'] for r in rows):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
