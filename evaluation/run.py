"""The one-command evaluation: clips in, report folder out.

``python -m evaluation --clips ../shared/data/videos --out report/ [--stride N --max-frames N --systems ...]``
``python -m evaluation --yale ../shared/data/yale_dev --out report/ [--engines analytic neural ...]`` (real photos
under known lights: evaluation/yale.py)

Per clip: track every frame (the tracker smooths over time), keep every ``stride``-th tracked frame up to
``max-frames``, then for each system run two passes over those frames:
- the **demo pass** under the paper demo's schedule (DPR's seven lights ×0.7, held and blended), scored with lighting
  error (DPR's estimator and the geometric one) and identity;
- the **static pass** under one light held over the clip, scored with lighting instability and warping error (with a
  constant target any frame-to-frame change the flow does not explain is flicker, so the blends of the demo schedule
  cannot be mistaken for it).
Speed (frames/s of each stage and end to end) and peak memory are measured for each system in the same run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blender_relight import colour
from blender_relight.contact_sheet import contact_sheet
from blender_relight.errors import RelightError
from blender_relight.io_utils import ensure_writable_dir
from blender_relight.lighting import sh
from evaluation import metrics, report
from evaluation.frames import ClipFrames, load_clip_frames
from evaluation.memory import PeakRSS
from evaluation.schedule import demo_schedule, static_schedule
from evaluation.systems import Timings, Unavailable, build_systems

log = logging.getLogger("evaluation")

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
DEFAULT_SYSTEMS = ["input", "analytic", "geometry", "dpr", "project"]
CONTACT_ROWS = 5


@dataclass
class SystemResult:
    """Everything measured for one system on one clip."""

    name: str
    frames: list[int] = field(default_factory=list)
    err_dpr: list[float] = field(default_factory=list)
    err_geo: list[float] = field(default_factory=list)
    err_geo_rgb: list[float] = field(default_factory=list)
    est_dpr: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)  # the demo target (gray SH) of each scored frame
    est_geo: list[np.ndarray] = field(default_factory=list)
    static_dpr: list[np.ndarray] = field(default_factory=list)
    static_geo: list[np.ndarray] = field(default_factory=list)
    identity: list[float] = field(default_factory=list)
    warp: list[float] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    peak_mem_mib: float = float("nan")
    start_mem_mib: float = float("nan")
    demo_crops: dict[int, np.ndarray] = field(default_factory=dict)

    def row(self, tracking_s_per_frame: float) -> dict:
        relight_s = self.timings.median_seconds()
        if not relight_s > 1e-4:  # the unchanged input does no work: a speed would mean nothing
            relight_s = math.nan
        row = {
            "system": self.name,
            "light_err_dpr": _mean(self.err_dpr),
            "light_err_geo": _mean(self.err_geo),
            "light_err_geo_rgb": _mean(self.err_geo_rgb),
            **{f"slope_{axis}": (metrics.coefficient_slope(np.array(self.est_dpr), np.array(self.targets), j)
                                 if self.targets else math.nan) for axis, j in metrics.DIRECTION_COEFFICIENTS.items()},
            "instability_dpr": metrics.lighting_instability(np.array(self.static_dpr)) if self.static_dpr else math.nan,
            "instability_geo": metrics.lighting_instability(np.array(self.static_geo)) if self.static_geo else math.nan,
            "identity": _mean(self.identity),
            "warp_err": _mean(self.warp),
            "fps_relight": 1.0 / relight_s if relight_s > 0 else math.nan,
            "fps_end_to_end": 1.0 / (relight_s + tracking_s_per_frame) if relight_s > 0 else math.nan,
            "peak_mem_mib": self.peak_mem_mib,
            "mem_growth_mib": self.peak_mem_mib - self.start_mem_mib,
            "frames": len(self.frames),
        }
        if self.timings.stages != ["relight"]:  # per-stage speeds of systems that report stages
            for stage in self.timings.stages:
                row[f"fps_{stage}"] = self.timings.fps(stage)
        return row


def _mean(values: list[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


class Progress:
    """A one-line text progress bar on stderr (no dependency; readable in logs when not a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.t0 = max(total, 1), label, 0, time.perf_counter()
        self._last = 0.0

    def step(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last < 0.5 and self.done < self.total:
            return
        self._last = now
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        eta = (now - self.t0) / max(frac, 1e-9) * (1 - frac)
        end = "\n" if self.done >= self.total or not sys.stderr.isatty() else "\r"
        sys.stderr.write(f"{self.label} [{bar:<30}] {self.done}/{self.total} ETA {eta:5.0f}s {note[:40]:<40}{end}")
        sys.stderr.flush()


class Estimators:
    """The two lighting estimators applied to every relit crop: DPR's network (gray) and the geometric one (RGB)."""

    def __init__(self, dpr: object) -> None:
        from blender_relight.lighting import estimate

        self._dpr = dpr
        self._estimate = estimate
        self.geo_reason = ""

    def dpr_gray(self, crop_srgb8: np.ndarray) -> np.ndarray:
        import cv2

        return self._dpr.estimate_sh_bgr(cv2.cvtColor(crop_srgb8, cv2.COLOR_RGB2BGR))

    def geometric_rgb(self, crop_linear: np.ndarray, frame_track: object) -> np.ndarray:
        # a measuring instrument: the plain per-channel fit (the product's white-balance assumption would hide the
        # colour the RGB column is there to measure)
        # in the image's axes, as the targets and DPR's estimates are (the estimate itself is in the head's)
        from evaluation.systems import head_light_to_image

        head = np.asarray(self._estimate.estimate_frame_sh(crop_linear, frame_track.points_crop(),
                                                           frame_track.camera_c2w(), white_balanced=False),
                          dtype=np.float64)
        return head_light_to_image(head, frame_track)

    def to_gray(self, sh_rgb: np.ndarray) -> np.ndarray:
        return np.asarray(self._estimate.rgb_sh_to_dpr_gray(sh_rgb), dtype=np.float64)

    def to_rgb(self, sh_gray: np.ndarray) -> np.ndarray:
        return np.asarray(self._estimate.dpr_gray_to_rgb_sh(sh_gray), dtype=np.float64)


def evaluate_clip(clip: ClipFrames, systems: list[object], estimators: Estimators, light_folder: Path,
                  identity: metrics.IdentityEmbedder | None, progress: Progress) -> list[SystemResult]:
    """Run every system's two passes over the clip's sampled frames and score them."""
    frames = clip.frames
    n_total = clip.n_frames_total
    demo = demo_schedule(light_folder, n_total)
    static = static_schedule(light_folder, n_total)
    input_srgb = [f.crop_srgb8 for f in frames]
    input_ids = [identity.landmarks(c) for c in input_srgb] if identity is not None else []
    input_desc = [identity.embed(c, s) for c, s in zip(input_srgb, input_ids)] if identity is not None else []
    keep = set(contact_frames(clip))
    results = []
    for system in systems:
        res = SystemResult(system.name)
        if hasattr(system, "begin_clip"):
            system.begin_clip(clip.path)
        # Frames are scored as they come (nothing but the contact-sheet crops is kept), so memory stays flat
        # whatever the clip length; the peak covers the system and the scoring around it.
        with PeakRSS() as mem:
            system.reset()
            for k, f in enumerate(frames):
                crop, target = f.crop, estimators.to_rgb(demo[f.index])  # decoding is not the system's time
                t0 = time.perf_counter()
                out = system.relight(crop, f.track, target)
                _add_timings(res.timings, system, time.perf_counter() - t0)
                srgb = colour.linear_to_uint8_srgb(out)
                _score_demo(res, estimators, identity, f, out, srgb, demo[f.index],
                            (input_desc[k], input_ids[k]) if identity is not None else None)
                if f.index in keep:
                    res.demo_crops[f.index] = srgb
                progress.step(note=f"{clip.name} {system.name} demo")
            system.reset()
            prev = None
            for k, f in enumerate(frames):
                out = system.relight(f.crop, f.track, estimators.to_rgb(static[f.index]))
                srgb = colour.linear_to_uint8_srgb(out)
                res.static_dpr.append(estimators.dpr_gray(srgb))
                geo = _safe_geo(estimators, out, f.track)
                if geo is not None:
                    res.static_geo.append(estimators.to_gray(geo))
                disp = srgb.astype(np.float32) / 255.0
                if prev is not None and frames[k - 1].index == f.index - clip.pair_gap:
                    res.warp.append(metrics.warping_error(prev, disp, input_srgb[k - 1], input_srgb[k], f.mask))
                prev = disp
                progress.step(note=f"{clip.name} {system.name} static")
        res.peak_mem_mib, res.start_mem_mib = mem.peak_mib, mem.start_mib
        results.append(res)
    return results


def _score_demo(res: SystemResult, estimators: Estimators, identity: metrics.IdentityEmbedder | None, f: object,
                out: np.ndarray, srgb: np.ndarray, target_gray: np.ndarray, input_face: tuple | None) -> None:
    """Lighting error with both estimators (gray, and RGB for the geometric one) and identity, for one frame."""
    res.frames.append(f.index)
    est = estimators.dpr_gray(srgb)
    res.est_dpr.append(est)
    res.targets.append(np.asarray(target_gray, dtype=np.float64))
    res.err_dpr.append(float(metrics.lighting_error(est[None], target_gray[None])[0]))
    geo = _safe_geo(estimators, out, f.track)
    res.est_geo.append(geo if geo is not None else np.full((9, 3), np.nan))
    if geo is not None:
        res.err_geo.append(float(metrics.lighting_error(estimators.to_gray(geo)[None], target_gray[None])[0]))
        # RGB in DPR's units (per channel, through the one conversion) so it reads on the gray error's scale.
        res.err_geo_rgb.append(float(metrics.lighting_error(
            geo[None] / sh.band_gains_vector(sh.DPR_BAND_GAINS)[None, :, None], sh.as_rgb(target_gray)[None])[0]))
    if identity is not None and input_face is not None:
        desc, shape = input_face
        res.identity.append(metrics.cosine(desc, identity.embed(srgb, shape)))


def contact_frames(clip: ClipFrames) -> list[int]:
    """The frames the contact sheet shows: up to CONTACT_ROWS, evenly spread over the scored ones."""
    idx = clip.frame_indices
    if not idx:
        return []
    return [idx[int(round(i))] for i in np.linspace(0, len(idx) - 1, min(CONTACT_ROWS, len(idx)))]


def _safe_geo(estimators: Estimators, crop: np.ndarray, track: object) -> np.ndarray | None:
    """Geometric estimate, or None when the estimator finds too few usable face pixels (counted, not fatal)."""
    try:
        sh = estimators.geometric_rgb(crop, track)
    except RelightError as exc:
        estimators.geo_reason = str(exc)
        return None
    if not np.all(np.isfinite(sh)) or not np.any(sh):  # zeros: fewer than 50 usable face pixels
        estimators.geo_reason = "too few usable face pixels (over-exposed or dark relit face)"
        return None
    return sh


def _add_timings(timings: Timings, system: object, total_s: float) -> None:
    """Record a frame's stage times (systems with stages expose ``last_stage_seconds``; the rest is 'other')."""
    stages = dict(getattr(system, "last_stage_seconds", None) or {})
    rest = total_s - sum(stages.values())
    if rest > 1e-4 or not stages:
        stages["other" if stages else "relight"] = max(rest, 0.0)
    timings.add_frame(stages)


# ------------------------------------------------------------------ output
def write_clip_report(out: Path, clip: ClipFrames, results: list[SystemResult], light_folder: Path) -> list[dict]:
    folder = ensure_writable_dir(out / clip.name)
    tracking_s = (clip.tracking_seconds / max(clip.n_frames_tracked, 1)
                  + clip.source_sh_seconds / max(len(clip.frames), 1))
    rows = [r.row(tracking_s) for r in results]
    for r in rows:
        r["clip"] = clip.name
        r["fps_tracking"] = clip.n_frames_tracked / clip.tracking_seconds if clip.tracking_seconds else math.nan
        r["fps_source_sh"] = len(clip.frames) / clip.source_sh_seconds if clip.source_sh_seconds else math.nan
    header = (f"# {clip.name}\n\n{len(clip.frames)} frames evaluated (stride {clip.stride}) of "
              f"{clip.n_frames_total}; {clip.n_frames_tracked} tracked in {clip.tracking_seconds:.1f} s; "
              f"frames without a face: {clip.n_frames_untracked}. Tracking (landmarks + pose) "
              f"{rows[0]['fps_tracking']:.1f} frames/s; input lighting estimate {rows[0]['fps_source_sh']:.1f} frames/s.\n")
    if clip.pose_errors:
        pe = np.array(clip.pose_errors)
        header += (f"Pose error vs reference cameras: rotation {pe[:, 0].mean():.2f}° mean / {pe[:, 0].max():.2f}° max, "
                   f"translation {pe[:, 1].mean():.4f} mean.\n")
    header += "\n"
    report.write_text(folder / "report.md", header + report.markdown_table(rows))
    report.write_csv(folder / "metrics.csv", rows)
    per_frame = []
    for r in results:
        for k, idx in enumerate(r.frames):
            per_frame.append({"system": r.name, "frame": idx, "light_err_dpr": r.err_dpr[k],
                              **{f"dpr_sh{j}": r.est_dpr[k][j] for j in range(9)},
                              **{f"geo_gray_sh{j}": (float(g) if np.isfinite(g) else "")
                                 for j, g in enumerate(_gray_or_nan(r.est_geo[k]))}})
    report.write_csv(folder / "per_frame.csv", per_frame)
    report.write_png(folder / "plots.png", _clip_plots(clip, results, light_folder))
    report.write_png(folder / "contact_sheet.png", _contact(clip, results))
    return rows


def _gray_or_nan(sh_rgb: np.ndarray) -> np.ndarray:
    """DPR gray of an RGB estimate (NaN rows stay NaN: the estimator found too few face pixels)."""
    from blender_relight.lighting.estimate import rgb_sh_to_dpr_gray

    sh_rgb = np.asarray(sh_rgb, dtype=np.float64)
    return rgb_sh_to_dpr_gray(sh_rgb) if np.all(np.isfinite(sh_rgb)) else np.full(9, np.nan)


def _clip_plots(clip: ClipFrames, results: list[SystemResult], light_folder: Path) -> np.ndarray:
    demo = demo_schedule(light_folder, clip.n_frames_total)
    plots = [
        report.line_plot({r.name: (np.array(r.frames), np.array(r.err_dpr)) for r in results},
                         f"{clip.name}: lighting error, DPR estimator", "frame", "L2 (gray SH)"),
    ]
    geo = {r.name: (np.array([f for f, e in zip(r.frames, r.est_geo) if np.all(np.isfinite(e))]),
                    np.array(r.err_geo)) for r in results}
    plots.append(report.line_plot(geo, f"{clip.name}: lighting error, geometric estimator", "frame", "L2 (gray SH)"))
    frames = np.array(clip.frame_indices)
    for j, name in [(1, "y"), (2, "z (up)"), (3, "x (right)")]:
        series = {"target": (frames, demo[frames, j])}
        series.update({r.name: (np.array(r.frames), np.array([e[j] for e in r.est_dpr])) for r in results})
        plots.append(report.line_plot(series, f"{clip.name}: SH coefficient {name}, DPR estimate vs target",
                                      "frame", "coefficient"))
    return report.stack_plots(plots)


def _contact(clip: ClipFrames, results: list[SystemResult]) -> np.ndarray:
    picks = contact_frames(clip)
    by_index = {f.index: f for f in clip.frames}
    shown = [r for r in results if r.name != "input"]  # the first column already is the input
    cells = [cell for i in picks for cell in [by_index[i].crop_srgb8] + [r.demo_crops.get(i) for r in shown]]
    return contact_sheet(cells, columns=1 + len(shown), thumb=160, column_titles=["input"] + [r.name for r in shown],
                         row_titles=[f"#{i}" for i in picks])


def overall_rows(all_rows: list[dict]) -> list[dict]:
    """Per system: frame-weighted means of the per-clip metrics; speed and memory over all clips."""
    out = []
    for name in dict.fromkeys(r["system"] for r in all_rows):
        rs = [r for r in all_rows if r["system"] == name]
        w = np.array([r["frames"] for r in rs], dtype=np.float64)
        row = {"system": name, "frames": int(w.sum())}
        keys = [k for k, _, _ in report.COLUMNS if k != "frames"]
        keys += [k for r in rs for k in r if k.startswith(("fps_", "mem_")) and k not in keys]
        for key in dict.fromkeys(keys):
            v = np.array([r.get(key, math.nan) for r in rs], dtype=np.float64)
            ok = np.isfinite(v)
            if key in ("peak_mem_mib", "mem_growth_mib"):
                row[key] = float(v[ok].max()) if ok.any() else math.nan
            elif key.startswith("fps_"):  # frames over total time (a harmonic mean), not a mean of rates
                ok &= v > 0
                row[key] = float(w[ok].sum() / (w[ok] / v[ok]).sum()) if ok.any() else math.nan
            else:
                row[key] = float((v[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() and w[ok].sum() > 0 else math.nan
        out.append(row)
    return out


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1], timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_description() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpus} CPU cores ({model}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


# ------------------------------------------------------------------ command
def find_clips(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise RelightError(f"{p}: no such clip or folder; pass video files or a folder of them")
    if not out:
        raise RelightError(f"no video clips ({', '.join(sorted(VIDEO_SUFFIXES))}) found in {', '.join(paths)}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    p = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=None, help="video files or folders of them")
    p.add_argument("--yale", default=None,
                   help="instead of clips: a folder of Extended Yale B subjects (../shared/data/yale_dev): relight each "
                        "A+000E+00 photo to every other photo's known light and score against the photo "
                        "(evaluation/yale.py)")
    p.add_argument("--engines", nargs="+", default=["analytic"],
                   help="--yale: product engines to score by name (engines.make_engine), e.g. analytic neural geometry")
    p.add_argument("--max-photos", type=int, default=0, help="--yale: at most N target photos per subject (0: all)")
    p.add_argument("--subjects", type=int, default=0, help="--yale: at most N subjects (0: all)")
    p.add_argument("--subject-names", nargs="+", default=None,
                   help="--yale: only these subject folders (e.g. yaleB12 yaleB15 yaleB17: a held-out split)")
    p.add_argument("--ambient", type=float, default=None,
                   help="--yale: the target's ambient as a fraction of the key for every subject (default: each "
                        "subject's, measured from its ambient-only photo)")
    p.add_argument("--source-light", choices=("estimated", "known"), default="estimated",
                   help="--yale: the input photo's light the engines divide by: the product's estimate (default) or "
                        "its known strobe plus the measured ambient (isolates shading from the estimate)")
    p.add_argument("--out", required=True, help="report folder (created)")
    p.add_argument("--stride", type=int, default=1, help="evaluate every N-th frame (default 1)")
    p.add_argument("--max-frames", type=int, default=0, help="at most N evaluated frames per clip (0: all)")
    p.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS,
                   help="systems to compare: input analytic geometry dpr project (default: all)")
    p.add_argument("--dpr-weights", default=str(data / "dpr" / "trained_model_03.t7"),
                   help="DPR's trained_model_03.t7 (research use only; never shipped)")
    p.add_argument("--dpr-lights", default=str(data / "dpr" / "example_light"),
                   help="folder with DPR's rotate_light_0[0-6].txt")
    p.add_argument("--weights", nargs="*", default=[], help="extra exported model folders for the project system")
    p.add_argument("--allow-untrained", action="store_true",
                   help="also run model folders marked untrained (speed only; their quality means nothing)")
    p.add_argument("--run", type=int, default=2,
                   help="consecutive frames scored at each stride step (≥ 2 gives warping error on adjacent frames "
                        "and a warm temporal window); default 2")
    p.add_argument("--no-identity", action="store_true", help="skip the identity metric (dlib)")
    p.add_argument("--threads", type=int, default=0, help="torch / OpenCV threads (0: leave the defaults)")
    args = p.parse_args(argv)
    if not args.clips and not args.yale:
        p.error("give --clips (the paper's protocol on videos) or --yale (real photos under known lights)")
    if args.stride < 1 or args.max_frames < 0 or args.run < 1:
        p.error("--stride and --run must be ≥ 1 and --max-frames ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.yale:
            from evaluation import yale

            return yale.run(args)
        return _run(args)
    except RelightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    out = ensure_writable_dir(args.out)
    clips = find_clips(args.clips)
    light_folder = Path(args.dpr_lights)
    from evaluation.dpr import DPR

    dpr = DPR(args.dpr_weights)  # the lighting estimator is needed by every run, whatever the systems
    estimators = Estimators(dpr)
    project_options = {"weights": args.weights, "allow_untrained": args.allow_untrained,
                       "cache_root": Path(args.out) / ".cache"}
    built = build_systems(args.systems, args.dpr_weights, dpr=dpr, project_options=project_options)
    systems = [s for s in built if not isinstance(s, Unavailable)]
    skipped = [s for s in built if isinstance(s, Unavailable)]
    for s in skipped:
        log.warning("system %s skipped: %s", s.name, s.reason)
    if not systems:
        raise RelightError("none of the requested systems can run here: " + "; ".join(s.reason for s in skipped))
    identity, id_reason = (None, "disabled with --no-identity") if args.no_identity else \
        metrics.identity_embedder_or_reason()
    if identity is None:
        log.warning("identity metric skipped: %s", id_reason)

    started = time.perf_counter()
    all_rows: list[dict] = []
    for ci, path in enumerate(clips):
        log.info("[%d/%d] %s: tracking", ci + 1, len(clips), path.name)
        clip = load_clip_frames(path, args.stride, args.max_frames, args.run)
        if not clip.frames:
            log.warning("%s: no tracked face in the sampled frames; skipped", path.name)
            continue
        progress = Progress(2 * len(clip.frames) * len(systems), f"[{ci + 1}/{len(clips)}] {path.name}")
        results = evaluate_clip(clip, systems, estimators, light_folder, identity, progress)
        all_rows += write_clip_report(out, clip, results, light_folder)
    if not all_rows:
        raise RelightError("no clip had a tracked face; nothing to report")
    elapsed = time.perf_counter() - started
    overall = overall_rows(all_rows)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = [f"- date: {stamp}; commit: {_git_commit()}; machine: {machine_description()}",
             f"- clips: {len(clips)}; stride {args.stride}, runs of {args.run} consecutive frames; max frames per clip {args.max_frames or 'all'}; "
             f"wall time {elapsed:.0f} s",
             "- lighting error: L2 over 9 gray SH coefficients (DPR convention) vs the demo schedule's target; "
             "instability and warping error under a static light",
             f"- identity: {'dlib ResNet descriptor, cosine similarity' if identity else id_reason}"]
    if estimators.geo_reason:
        notes.append(f"- geometric estimator gave no estimate on some frames: {estimators.geo_reason}")
    notes += [f"- {s.name}: not run ({s.reason})" for s in skipped]
    text = "# Evaluation report\n\n" + "\n".join(notes) + "\n\n## Overall\n\n" + report.markdown_table(overall)
    text += "\n## Per clip\n\n" + report.markdown_table(all_rows, lead=("clip", "system"))
    report.write_text(out / "report.md", text)
    report.write_csv(out / "overall.csv", overall)
    report.write_csv(out / "per_clip.csv", all_rows)
    print(text)
    print(f"report written to {out}")
    return 0
