"""``python -m evaluation.novel_view``: how good the new views are, on real footage, against honest baselines.

What is measured (issue 11), each beside a floor or a baseline from the same run:
- **identity**: dlib face-descriptor cosine between the input crop and the new view at ±15° and ±30° yaw (each image
  read with its own landmarks), for the plate reprojection (``novel_view``) and the model's own render (``neural
  render``); beside it the same cosine between *different clips* of the dev set (the floor: what two different
  people score; clips may show the same person, the pairs are listed);
- **sharpness**: the face's high-frequency energy (image minus its Gaussian blur, σ 1.5 px) in the new view over the
  input's, each on its own face-mesh region;
- **pseudo ground truth**: on clips that turn the head, frame t re-posed to the camera of a frame t+k whose yaw
  differs by 10–25° (pitch within 8°), compared with frame t+k on its face (gain-fitted RMSE in sRGB [0, 1], SSIM),
  against a 2D similarity warp of frame t (fitted on the landmarks) and frame t unchanged;
- **lighting judge** (DPR's estimator, ``evaluation.dpr``) on an orbit like the paper's: yaw or pitch ±0.3 rad under
  three of DPR's example lights, for the new view, the model's render and the unchanged input.
- ``--sheet PNG``: the public-domain sample at five poses, re-posed (top) and relit (bottom).

All new views are at the frame's own light unless the lighting judge relights them (then through the engine, the
same ratio as the filmed view). Figures go to ``OUT/novel_view.json`` and a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from blender_relight import camera, colour
from blender_relight.errors import RelightError

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
YAWS = (-30.0, -15.0, 15.0, 30.0)
ORBIT = ((0.3, 0.0), (-0.3, 0.0), (0.0, 0.3), (0.0, -0.3))  # (yaw, pitch) radians, the paper's orbit extent
JUDGE_LIGHTS = (0, 2, 5)  # DPR's example lights used by the lighting judge


# ------------------------------------------------------------------ image measures
def _srgb8(linear: np.ndarray) -> np.ndarray:
    return colour.linear_to_uint8_srgb(np.clip(linear, 0.0, None))


def _gray(img8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img8, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def high_frequency_energy(img8: np.ndarray, mask: np.ndarray, sigma: float = 1.5) -> float:
    """Mean squared high-pass (image − Gaussian blur) of the gray image over ``mask``: fine detail's energy."""
    g = _gray(img8)
    hp = g - cv2.GaussianBlur(g, (0, 0), sigma)
    m = np.asarray(mask, bool)
    return float(np.mean(hp[m] ** 2)) if m.any() else float("nan")


def gain_fitted_rmse(pred8: np.ndarray, truth8: np.ndarray, mask: np.ndarray) -> float:
    """RMSE in sRGB [0, 1] over ``mask`` after a per-channel gain fitted by least squares (light differs)."""
    m = np.asarray(mask, bool)
    p = pred8[m].astype(np.float64) / 255.0
    t = truth8[m].astype(np.float64) / 255.0
    gain = (p * t).sum(0) / np.maximum((p * p).sum(0), 1e-9)
    return float(np.sqrt(np.mean((p * gain - t) ** 2)))


def ssim(a8: np.ndarray, b8: np.ndarray, mask: np.ndarray, sigma: float = 1.5) -> float:
    """Mean SSIM (gray, Gaussian window σ 1.5, Wang et al. 2004 constants) over ``mask``."""
    a, b = _gray(a8).astype(np.float64), _gray(b8).astype(np.float64)

    def blur(x):
        return cv2.GaussianBlur(x, (0, 0), sigma)

    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a ** 2
    vb = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s[np.asarray(mask, bool)].mean())


def face_region(points_crop: np.ndarray, size: int = 512, erode_px: int = 6) -> np.ndarray:
    """The tracked face mesh's coverage in a crop, eroded (no silhouette pixels)."""
    from blender_relight import face_geometry

    maps = face_geometry.render_face_maps(points_crop, size, fill_holes=True)
    k = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
    return cv2.erode(maps.mask.astype(np.uint8), k) > 0


def similarity_warp(crop: np.ndarray, points_from: np.ndarray, points_to: np.ndarray) -> np.ndarray:
    """The 2D baseline: ``crop`` warped by the similarity that best maps its landmarks onto ``points_to``."""
    src = np.ascontiguousarray(np.asarray(points_from, np.float32)[:, :2]).reshape(-1, 1, 2)
    dst = np.ascontiguousarray(np.asarray(points_to, np.float32)[:, :2]).reshape(-1, 1, 2)
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if m is None:
        return crop.copy()
    return cv2.warpAffine(crop, m, crop.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


# ------------------------------------------------------------------ the run
@dataclass
class Tally:
    """Lists of figures by name, averaged at the end."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        if np.isfinite(value):
            self.values.setdefault(name, []).append(float(value))

    def mean(self, name: str) -> float:
        v = self.values.get(name, [])
        return float(np.mean(v)) if v else float("nan")

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "n": len(v)} for k, v in self.values.items()}


class Evaluator:
    """One engine for our new views (plate reprojection) and one for the model's render, shared over clips."""

    def __init__(self, cache_dir: Path, identity: bool = True, dpr_weights: Path | None = None,
                 neural: bool = True) -> None:
        from blender_relight.engines import NeuralEngine
        from evaluation import metrics

        self.cache_dir = cache_dir
        self.neural = neural
        self.engine = NeuralEngine(novel_views=True)
        self.render_engine = NeuralEngine(novel_views=False) if neural else None
        self.embedder, reason = metrics.identity_embedder_or_reason() if identity else (None, "not asked")
        if self.embedder is None:
            log.warning("identity column empty: %s", reason)
        self.dpr = None
        if dpr_weights is not None and Path(dpr_weights).is_file():
            from evaluation.dpr import DPR

            self.dpr = DPR(dpr_weights)
        self.tally = Tally()
        self.embeddings: dict[str, np.ndarray] = {}
        self.rows: list[dict] = []

    def _embed(self, img8: np.ndarray) -> np.ndarray | None:
        if self.embedder is None:
            return None
        return self.embedder.embed(np.ascontiguousarray(img8))

    def session(self, clip: Path):
        """The clip's session, with fresh engines: engines keep per-frame state by frame index, for one clip."""
        from blender_relight.engines import NeuralEngine
        from blender_relight.pipeline import ClipSession

        self.engine = NeuralEngine(novel_views=True)
        self.render_engine = NeuralEngine(novel_views=False) if self.neural else None
        s = ClipSession(clip, cache_dir=self.cache_dir, engine=self.engine)
        s.track()
        return s

    def views_of_frame(self, name: str, session, index: int, first: bool) -> None:
        """Identity and sharpness at ±15°/±30° yaw for one frame (ours and the model's render)."""
        from blender_relight.novel_view.views import offset_label

        track = session.frame_track(index)
        crop = session.crop_linear(index, track)
        input8 = _srgb8(crop)
        e_in = self._embed(input8)
        if first and e_in is not None:
            self.embeddings[name] = e_in
        face_in = face_region(track.points_crop())
        hf_in = high_frequency_energy(input8, face_in)
        path = self.engine.novel_view_path()
        for yaw in YAWS:
            label = offset_label(track.camera, yaw, 0.0)
            nv = path.view(index, crop, track, label, session.cache)
            ours8 = _srgb8(nv.image)
            face_new = cv2.erode(((nv.gbuffer.part == 0) & nv.gbuffer.mask).astype(np.uint8),
                                 np.ones((13, 13), np.uint8)) > 0
            tag = f"{abs(int(yaw))}"
            self.tally.add(f"sharpness ±{tag}° novel_view", high_frequency_energy(ours8, face_new) / hf_in)
            row = {"clip": name, "frame": index, "yaw": yaw,
                   "plate_share": float(nv.weights["plate"][face_new].mean()) if face_new.any() else float("nan")}
            if e_in is not None:
                from evaluation.metrics import cosine

                row["identity_novel_view"] = cosine(e_in, self._embed(ours8))
                self.tally.add(f"identity ±{tag}° novel_view", row["identity_novel_view"])
            if self.render_engine is not None:
                lighting = np.asarray(track.source_sh, np.float64)
                rendered = self.render_engine.relight(index, crop, track, lighting, label, session.cache)
                r8 = _srgb8(rendered.image)
                if e_in is not None:
                    row["identity_neural_render"] = cosine(e_in, self._embed(r8))
                    self.tally.add(f"identity ±{tag}° neural render", row["identity_neural_render"])
                self.tally.add(f"sharpness ±{tag}° neural render", high_frequency_energy(r8, face_new) / hf_in)
            self.rows.append(row)

    def pseudo_ground_truth(self, name: str, session, pairs: int = 4) -> None:
        """Frame t re-posed to frame t+k's camera vs frame t+k (yaw 10–25° apart), and the 2D baselines."""
        from blender_relight.novel_view.views import direction_angles

        tracks = [session.cache.get_track(i) for i in range(session.info.frame_count)]
        ang = {}
        for t in tracks:
            if t is not None and t.tracked and t.status == "tracked":
                ang[t.index] = np.degrees(direction_angles(camera.split_label(t.camera)[0]))
        found = []
        for t in sorted(ang):
            for k in range(1, 46):
                if t + k in ang:
                    dy = abs(ang[t + k][0] - ang[t][0])
                    if 10.0 <= dy <= 25.0 and abs(ang[t + k][1] - ang[t][1]) < 8.0:
                        found.append((t, t + k, dy))
                        break
        if not found:
            return
        picks = [found[i] for i in sorted(set(np.linspace(0, len(found) - 1, pairs).round().astype(int).tolist()))]
        path = self.engine.novel_view_path()
        for t, tk, dy in picks:
            tr_t, tr_k = session.frame_track(t), session.frame_track(tk)
            crop_t, crop_k = session.crop_linear(t, tr_t), session.crop_linear(tk, tr_k)
            truth8 = _srgb8(crop_k)
            mask = face_region(tr_k.points_crop())
            nv = path.view(t, crop_t, tr_t, tr_k.camera, session.cache)
            ours8 = _srgb8(nv.image)
            warp8 = similarity_warp(_srgb8(crop_t), tr_t.points_crop(), tr_k.points_crop())
            same8 = _srgb8(crop_t)
            row = {"clip": name, "t": t, "t+k": tk, "yaw_diff": float(dy)}
            for label, img in (("novel_view", ours8), ("similarity warp", warp8), ("frame t unchanged", same8)):
                rm, ss = gain_fitted_rmse(img, truth8, mask), ssim(img, truth8, mask)
                self.tally.add(f"pseudo-GT RMSE {label}", rm)
                self.tally.add(f"pseudo-GT SSIM {label}", ss)
                row[f"rmse {label}"], row[f"ssim {label}"] = rm, ss
            self.rows.append(row)

    def lighting_judge(self, name: str, session, index: int) -> None:
        """DPR's estimate of the new view's light vs the target, on the paper's orbit under three lights."""
        if self.dpr is None:
            return
        from blender_relight.lighting import estimate
        from blender_relight.novel_view.views import offset_label
        from evaluation.dpr import example_lights

        lights = example_lights(DATA / "dpr" / "example_light")
        track = session.frame_track(index)
        crop = session.crop_linear(index, track)
        for li in JUDGE_LIGHTS:
            gray = lights[li]
            rgb = np.asarray(estimate.dpr_gray_to_rgb_sh(gray), np.float64)
            e_input = np.linalg.norm(self._dpr_sh(_srgb8(crop)) - gray)
            self.tally.add("lighting judge input unchanged", e_input)
            for yaw, pitch in ORBIT:
                label = offset_label(track.camera, np.degrees(yaw), np.degrees(pitch))
                ours = self.engine.relight(index, crop, track, rgb, label, session.cache)
                self.tally.add("lighting judge novel_view", np.linalg.norm(self._dpr_sh(_srgb8(ours.image)) - gray))
                if self.render_engine is not None:
                    rend = self.render_engine.relight(index, crop, track, rgb, label, session.cache)
                    self.tally.add("lighting judge neural render",
                                   np.linalg.norm(self._dpr_sh(_srgb8(rend.image)) - gray))

    def _dpr_sh(self, img8: np.ndarray) -> np.ndarray:
        return self.dpr.estimate_sh_bgr(cv2.cvtColor(img8, cv2.COLOR_RGB2BGR))

    def identity_floor(self) -> list[tuple[str, str, float]]:
        from evaluation.metrics import cosine

        names = sorted(k for k in self.embeddings if k != "astronaut")
        pairs = [(a, b, cosine(self.embeddings[a], self.embeddings[b])) for a, b in itertools.combinations(names, 2)]
        for _, _, c in pairs:
            self.tally.add("identity floor (different clips)", c)
        return pairs


def save_sheet(path: Path, session, index: int, engine, yaws=(-30.0, -15.0, 0.0, 15.0, 30.0)) -> None:
    """The sample at five poses: re-posed at its own light (top), relit by a warm key from the right (bottom)."""
    from blender_relight.contact_sheet import save_contact_sheet
    from blender_relight.demo import demo_light
    from blender_relight.novel_view.views import offset_label

    track = session.frame_track(index)
    crop = session.crop_linear(index, track)
    path_ = engine.novel_view_path()
    top, bottom, labels = [], [], []
    for yaw in yaws:
        label = offset_label(track.camera, yaw, 0.0)
        top.append(_srgb8(path_.view(index, crop, track, label, session.cache).image))
        bottom.append(_srgb8(engine.relight(index, crop, track, demo_light(0.15), label, session.cache).image))
        labels.append(f"yaw {yaw:+.0f} deg")
    save_contact_sheet(path, top + bottom, labels + [f"relit, yaw {y:+.0f} deg" for y in yaws], columns=len(yaws),
                       thumb=256)


def table(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| figure | mean | min | n |", "|---|---|---|---|"]
    for k in sorted(summary):
        v = summary[k]
        lines.append(f"| {k} | {v['mean']:.3f} | {v['min']:.3f} | {v['n']} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evaluation.novel_view", description=__doc__.split("\n")[0])
    p.add_argument("--clips", nargs="*", default=[str(DATA / "videos")], help="clips or folders of clips")
    p.add_argument("--sample", action="store_true", default=True, help="include the public-domain sample")
    p.add_argument("--no-sample", dest="sample", action="store_false")
    p.add_argument("--frames", type=int, default=2, help="frames per clip for identity and sharpness")
    p.add_argument("--pairs", type=int, default=4, help="pseudo-ground-truth pairs per clip")
    p.add_argument("--judge-clips", type=int, default=3, help="clips (besides the sample) the lighting judge sees")
    p.add_argument("--out", type=Path, default=Path("report-novel-view"))
    p.add_argument("--cache", type=Path, default=None, help="clip cache root (default: the product's)")
    p.add_argument("--dpr", type=Path, default=DATA / "dpr" / "trained_model_03.t7")
    p.add_argument("--no-neural", action="store_true", help="skip the model's render (faster)")
    p.add_argument("--sheet", type=Path, default=None, help="write the sample's five-pose sheet here")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from blender_relight.demo import sample_path
    from blender_relight.pipeline import default_cache_root
    from evaluation.run import _git_commit, find_clips, machine_description

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cv2.setNumThreads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    started = time.time()
    clips = find_clips(args.clips) if args.clips else []
    ev = Evaluator(args.cache or default_cache_root(), dpr_weights=args.dpr, neural=not args.no_neural)
    entries = ([("astronaut", sample_path())] if args.sample else []) + [(c.stem, c) for c in clips]
    for n, (name, clip) in enumerate(entries):
        t0 = time.time()
        try:
            session = ev.session(clip)
        except RelightError as exc:
            log.warning("%s: skipped (%s)", name, exc)
            continue
        tracked = [i for i in range(session.info.frame_count) if session.frame_status(i) == "tracked"]
        picks = [tracked[i] for i in sorted(set(np.linspace(0, len(tracked) - 1, args.frames).round()
                                                .astype(int).tolist()))] if tracked else []
        for j, index in enumerate(picks):
            ev.views_of_frame(name, session, index, first=j == 0)
        if session.info.frame_count > 1:
            ev.pseudo_ground_truth(name, session, args.pairs)
        if picks and (name == "astronaut" or n <= args.judge_clips):
            ev.lighting_judge(name, session, picks[0])
        if args.sheet and name == "astronaut":
            save_sheet(args.sheet, session, 0, ev.engine)
            log.info("sheet: %s", args.sheet)
        session.close()
        log.info("%s done in %.0f s", name, time.time() - t0)
    pairs = ev.identity_floor()
    summary = ev.tally.summary()
    report = {"commit": _git_commit(), "machine": machine_description(), "seconds": round(time.time() - started),
              "clips": [e[0] for e in entries], "summary": summary, "rows": ev.rows,
              "identity_floor_pairs": [{"a": a, "b": b, "cosine": c} for a, b, c in pairs]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "novel_view.json").write_text(json.dumps(report, indent=1))
    print(f"commit {report['commit']}, {report['machine']}, {report['seconds']} s")
    print(table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
