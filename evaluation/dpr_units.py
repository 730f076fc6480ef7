"""Measure the map from DPR's gray SH to this project's linear RGB SH (``lighting.sh.DPR_BAND_GAINS``).

``python -m evaluation.dpr_units [IMAGES...]`` prints the fitted gains and the round trip.

Why a fit: DPR's coefficients describe the shading of the Lab L channel of an 8-bit sRGB image (L = albedo × shading,
perceptual), not linear irradiance, so a DPR light cannot be read as radiance SH by a unit factor. A linear map that
commutes with rotations of the light must scale each SH band by one number (Schur's lemma), so the map has three
numbers: the gains of bands 0, 1 and 2. Band 0 is set by the round trip (a frame relit to DPR's estimate of its own
light comes back at its own brightness, geometric mean over the images); bands 1 and 2 so that this project's ratio
relight (E_target / E_source on the tracked geometry, the source estimated by ``lighting.estimate``) changes each face
pixel's linear luminance as DPR's own relight does under the same DPR light: least squares on log(relit / input) over
the face (up to one offset per light and image), for DPR's seven example lights at the demo's scale 0.7, on the
images given (default: DPR's demo photo, four portraits of ``../shared/data/images`` and the astronaut).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from blender_relight import colour

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_IMAGES = ["dpr_obama.jpg", "lp_d8.jpg", "lp_s1.jpg", "lp_s6.jpg", "lp_d30.jpg", "skimage_astronaut.png"]


def face_samples(image_rgb8: np.ndarray, dpr, lights: list[np.ndarray], max_pixels: int = 4000):
    """Per image: visible normals, our source SH, DPR's estimate of the input, and DPR's log-ratio per light."""
    from blender_relight.engines import AnalyticEngine, _face_maps_and_matte
    from blender_relight.tracking.tracker import FaceTracker

    tracker = FaceTracker()
    try:
        track = tracker.track(0, image_rgb8)
    finally:
        tracker.close()
    if not track.tracked:
        return None
    crop8 = track.transform.warp(image_rgb8)
    crop = colour.uint8_srgb_to_linear(crop8)
    geo = AnalyticEngine()._geometry(0, crop, track)
    maps, _ = _face_maps_and_matte(crop, track)
    mask = cv2.erode(maps.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    idx = np.flatnonzero(mask.reshape(-1))
    idx = idx[np.linspace(0, idx.size - 1, min(max_pixels, idx.size)).astype(int)]
    normals = geo.normals_sh.reshape(-1, 3)[idx]
    lum_in = (crop.reshape(-1, 3)[idx] @ colour_luminance())
    bgr = cv2.cvtColor(crop8, cv2.COLOR_RGB2BGR)
    d_src = dpr.estimate_sh_bgr(bgr)
    ratios = []
    for light in lights:
        relit, _ = dpr.relight_bgr(bgr, light)
        lin = colour.uint8_srgb_to_linear(cv2.cvtColor(relit, cv2.COLOR_BGR2RGB))
        ratios.append(np.log(np.maximum(lin.reshape(-1, 3)[idx] @ colour_luminance(), 1e-4)
                             / np.maximum(lum_in, 1e-4)))
    return normals, np.asarray(track.source_sh, dtype=np.float64), d_src, np.array(ratios), lum_in


def colour_luminance() -> np.ndarray:
    from blender_relight.lighting import sh

    return sh.LUMINANCE


def _our_log_ratio(gains: np.ndarray, normals: np.ndarray, source_rgb: np.ndarray, dpr_light: np.ndarray) -> np.ndarray:
    from blender_relight.lighting import sh

    basis = sh.irradiance_basis(normals)
    e_src = np.maximum(basis @ sh.to_gray(source_rgb), 1e-6)
    e_tgt = basis @ (dpr_light * sh.band_gains_vector(gains))
    guard = 0.02 * e_src.mean()
    return np.log((np.maximum(e_tgt, 0.0) + guard) / (e_src + guard))


def round_trip_gain(samples: list) -> float:
    """The band-0 gain that makes a frame relit to DPR's estimate of its own light come back at its own brightness
    (geometric mean over the images; DPR's estimate is DC-dominated, so bands 1-2 barely matter here)."""
    logs = []
    for normals, src, d_src, _, _ in samples:
        logs.append(np.mean(_our_log_ratio(np.ones(3), normals, src, d_src)))
    return float(np.exp(-np.mean(logs)))


def fit_gains(samples: list, lights: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Band-0 gain from the round trip; band-1 and band-2 gains by least squares on the log-ratios, with a free
    per-light offset (DPR's demo lights at ×0.7 also change the overall brightness, which the round trip fixes)."""
    from scipy.optimize import least_squares

    g0 = round_trip_gain(samples)
    for _ in range(3):  # the round trip depends a little on bands 1-2 too: iterate the two fits
        def residuals(g12: np.ndarray) -> np.ndarray:
            g = np.array([g0, *g12])
            out = []
            for normals, src, _, ratios, _ in samples:
                for light, r in zip(lights, ratios):
                    d = _our_log_ratio(g, normals, src, light) - r
                    out.append(d - d.mean())
            return np.concatenate(out)

        res = least_squares(residuals, np.array([g0, g0]), bounds=([0.01] * 2, [50.0] * 2))
        g = np.array([g0, *res.x])
        logs = [np.mean(_our_log_ratio(g, n, s, d)) for n, s, d, _, _ in samples]
        g0 = float(g0 * np.exp(-np.mean(logs)))
    return np.array([g0, *res.x]), float(np.sqrt(np.mean(res.fun ** 2)))


def main(argv: list[str] | None = None) -> int:
    from blender_relight.lighting import sh
    from evaluation.dpr import DPR, example_lights

    p = argparse.ArgumentParser(prog="python -m evaluation.dpr_units", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="*", default=[str(DATA / "images" / n) for n in DEFAULT_IMAGES])
    p.add_argument("--dpr-weights", default=str(DATA / "dpr" / "trained_model_03.t7"))
    p.add_argument("--dpr-lights", default=str(DATA / "dpr" / "example_light"))
    args = p.parse_args(argv)
    dpr = DPR(args.dpr_weights)
    lights = example_lights(args.dpr_lights, 0.7)
    samples = []
    for path in args.images:
        bgr = cv2.imread(path)
        if bgr is None:
            print(f"{path}: unreadable, skipped", file=sys.stderr)
            continue
        s = face_samples(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dpr, lights)
        if s is None:
            print(f"{path}: no face, skipped", file=sys.stderr)
            continue
        samples.append(s)
    gains, rms = fit_gains(samples, lights)
    print(f"fitted band gains (DPR gray -> linear RGB SH): {np.round(gains, 3).tolist()}  rms log-ratio error "
          f"{rms:.3f} (after a per-light offset)")
    for label, g in (("fitted", gains), ("current DPR_BAND_GAINS", np.asarray(sh.DPR_BAND_GAINS)),
                     ("pi (old evaluation)", np.full(3, np.pi)), ("1 (old CLI)", np.ones(3))):
        errs, trips, slopes = [], [], []
        for normals, src, d_src, ratios, _ in samples:
            for light, r in zip(lights, ratios):
                ours = _our_log_ratio(g, normals, src, light)
                errs.append(np.sqrt(np.mean((ours - r) ** 2)))
                slopes.append(np.polyfit(r, ours, 1)[0])
            trips.append(float(np.exp(np.mean(_our_log_ratio(g, normals, src, d_src)))))
        print(f"{label:>24}: log-ratio rms vs DPR {np.mean(errs):.3f}, slope on DPR's {np.median(slopes):.2f}, "
              f"round trip (own DPR light) brightness x{np.exp(np.mean(np.log(trips))):.2f} "
              f"(per image {', '.join(f'{t:.2f}' for t in trips)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
