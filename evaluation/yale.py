"""Relighting against real ground truth: Extended Yale B photos under known point lights.

``python -m evaluation --yale ../shared/data/yale_dev --out report/ [--engines analytic neural geometry]
[--max-photos N] [--subjects N]``

For each subject the A+000E+00 photo (lit from the camera) is relit to every other photo's light and compared with
that photo over the face (``yale_data.face_mask``). Every system gets the same known light: our engines a
:class:`SceneLighting` with a SUN ``LightSpec`` toward the photo's light (irradiance 1 on a surface facing it) plus a
uniform ambient measured per subject from the database's ambient-only photo (``yale_data.measure_ambient``); DPR the
same light in its convention (``sh.rgb_to_dpr_sh`` of the light's SH, the project's one conversion); ``input``
returns the photo it was given. The input's own light is the project's estimate (``lighting.estimate``), as in the
product, or (``source_light="known"``) the photo's real light.

Scores (per photo, then means per light bin ``yale_data.BINS``), all on luminance over the face, with
``r = log((x + EPS) / (input + EPS))``:
- ``corr``: correlation of the system's r with the real photo's r (undefined for ``input``: it changes nothing);
- ``rmse``: gain-fitted relative RMSE ``‖g·relit − photo‖ / ‖photo‖`` with the best gain g (the lamp's power and
  the camera's exposure are not part of the light's direction);
- ``strength``: the slope of the system's r on the real r (1: the face darkens and brightens as much as the real
  one; 0: nothing moves).
Cast shadows are in the real photos, so a second-order SH cannot reach corr 1.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from blender_relight import colour
from blender_relight.errors import RelightError
from blender_relight.io_utils import ensure_writable_dir
from evaluation import report, yale_data
from evaluation.systems import EngineRelight

log = logging.getLogger("evaluation")

#: Ambient irradiance given with each target light, as a fraction of the point light's, where a subject has no
#: ambient-only photo to measure it from (``yale_data.measure_ambient``; measured on the six development subjects:
#: 0.000-0.019, so this stand-in is generous).
AMBIENT_FRACTION = 0.05
#: Linear floor in the log-ratios (about 2.5/255): deep shadows do not dominate the scores with log(0).
EPS = 0.01
#: Photos per subject on the contact sheet (spread over the light bins).
SHEET_ROWS = 3


def target_lighting(direction: np.ndarray, ambient_fraction: float = AMBIENT_FRACTION, level: float = 1.0):
    """The known light of a photo as the engines take it: a SUN toward ``direction`` plus uniform ambient, scaled so
    the key's irradiance on a surface facing it is ``level`` (the input's light level: DPR works on 8-bit L, so a far
    too dark or bright target would score its quantisation, not its light)."""
    from blender_relight.lighting import sh
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting

    d = np.asarray(direction, dtype=np.float64)
    spec = LightSpec("SUN", colour=(1.0, 1.0, 1.0), power=float(level), direction=tuple(-d / np.linalg.norm(d)),
                     name="yale")
    return SceneLighting(sh=sh.ambient_sh(np.full(3, level * ambient_fraction / np.pi)), lights=(spec,))


class EngineSystem(EngineRelight):
    """A product engine (``engines.make_engine(name)``), composited over the crop with its alpha as the session does,
    relit under a :class:`SceneLighting` (the clip evaluation's :class:`EngineRelight` with this module's call)."""

    def relight(self, index: int, crop: np.ndarray, track, lighting) -> np.ndarray:
        return self.relight_lighting(index, crop, track, lighting)


class DPRYale:
    """DPR on the 8-bit sRGB crop, its L relit to the light in DPR's convention."""

    name = "dpr"

    def __init__(self, dpr) -> None:
        self.dpr = dpr

    def relight(self, index: int, crop: np.ndarray, track, lighting) -> np.ndarray:
        from blender_relight.lighting import sh

        bgr = cv2.cvtColor(colour.linear_to_uint8_srgb(crop), cv2.COLOR_RGB2BGR)
        relit, _ = self.dpr.relight_bgr(bgr, sh.rgb_to_dpr_sh(lighting.total_sh()))
        return colour.uint8_srgb_to_linear(cv2.cvtColor(relit, cv2.COLOR_BGR2RGB))


class InputYale:
    name = "input"

    def relight(self, index: int, crop: np.ndarray, track, lighting) -> np.ndarray:
        return crop


def scores(relit: np.ndarray, photo: np.ndarray, source: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """corr, rmse, strength (module docstring) of one relit crop against the real photo over ``mask``."""
    lum = lambda x: np.asarray(x, dtype=np.float64)[mask] @ np.array([0.2126, 0.7152, 0.0722])  # noqa: E731
    y, p, s = lum(relit), lum(photo), lum(source)
    r_sys = np.log((np.maximum(y, 0.0) + EPS) / (s + EPS))
    r_real = np.log((p + EPS) / (s + EPS))
    gain = float(y @ p / max(y @ y, 1e-12))
    rmse = float(np.linalg.norm(gain * y - p) / max(np.linalg.norm(p), 1e-12))
    if np.std(r_sys) < 1e-6:
        corr, slope = math.nan, 0.0
    else:
        corr = float(np.corrcoef(r_sys, r_real)[0, 1])
        slope = float(np.polyfit(r_real, r_sys, 1)[0])
    return {"corr": corr, "rmse": rmse, "strength": slope}


@dataclass
class YaleResult:
    rows: list[dict] = field(default_factory=list)  # one per (subject, photo, system)
    sheets: dict[str, np.ndarray] = field(default_factory=dict)
    angle_rows: list[dict] = field(default_factory=list)  # source-estimate direction errors
    ambient_rows: list[dict] = field(default_factory=list)  # per subject: the target's ambient fraction


def subject_ambient(subject) -> tuple[float, str]:
    """The subject's measured ambient fraction (``yale_data.measure_ambient``) and how it was found; the stand-in
    :data:`AMBIENT_FRACTION` where the subject has no ambient photo."""
    try:
        m = yale_data.measure_ambient(subject)
    except RelightError as exc:
        log.warning("%s: ambient not measured (%s); using %.3f of the key", subject.name, exc, AMBIENT_FRACTION)
        return AMBIENT_FRACTION, "stand-in"
    return m.fraction, m.how


def evaluate(root: str | Path, systems: list, max_photos: int = 0, subjects: int | list[str] = 0,
             ambient: float | None = None, source_light: str = "estimated") -> YaleResult:
    """Score ``systems`` on the subjects under ``root`` (``subjects``: the first N, or these folder names).
    ``ambient``: the target's ambient fraction for every subject; None: each subject's measured one.
    ``source_light``: the input's light the engines divide by: "estimated" (``lighting.estimate``, as the product)
    or "known" (the A+000E+00 strobe toward the camera plus the measured ambient, at the estimate's level: isolates
    geometry and shading from the estimate; DPR estimates its own either way)."""
    if source_light not in ("estimated", "known"):
        raise RelightError(f"source light {source_light!r}: choose estimated or known")
    from blender_relight.lighting import estimate, sh

    result = YaleResult()
    folders = yale_data.subject_folders(root)
    if isinstance(subjects, int) and subjects:
        folders = folders[:subjects]
    elif subjects and not isinstance(subjects, int):
        missing = sorted(set(subjects) - {f.name for f in folders})
        if missing:
            raise RelightError(f"{root}: no subject folders {', '.join(missing)}")
        folders = [f for f in folders if f.name in set(subjects)]
    for si, folder in enumerate(folders):
        t0 = time.perf_counter()
        subject = yale_data.load_subject(folder, max_photos=max_photos)
        fraction, how = (float(ambient), "given") if ambient is not None else subject_ambient(subject)
        result.ambient_rows.append({"subject": subject.name, "ambient_fraction": fraction, "how": how})
        mask = yale_data.face_mask(subject)
        source = subject.crop_linear(subject.input)
        track = subject.track
        track.index = si
        track.source_sh = estimate.estimate_frame_sh(source, track.points_crop(), track.camera_c2w())
        # the input's light level: its estimated irradiance on a surface facing the camera
        level = float(np.maximum(sh.irradiance(np.array([0.0, -1.0, 0.0]), track.source_sh), 1e-3) @ sh.LUMINANCE)
        if source_light == "known":  # the input's real light: the strobe at the camera plus the measured ambient
            track.source_sh = target_lighting(yale_data.light_direction(0.0, 0.0), fraction, level=level).total_sh()
        targets = [p for p in subject.photos if p.name != yale_data.INPUT_NAME]
        picks = {targets[int(round(i))].name for i in np.linspace(0, len(targets) - 1, min(SHEET_ROWS, len(targets)))}
        cells = []
        for photo in targets:
            real = subject.crop_linear(photo)
            lighting = target_lighting(photo.direction, fraction, level=level)
            row_cells = [source, real]
            for system in systems:
                out = system.relight(si, source, track, lighting)
                if not (np.isfinite(out).all() and out.min() >= 0.0):
                    log.warning("%s on %s %s: output has negative or non-finite values (min %.3g)", system.name,
                                subject.name, photo.name, float(np.nanmin(out)))
                sc = scores(out, real, source, mask)
                result.rows.append({"subject": subject.name, "photo": photo.name, "bin": photo.bin,
                                    "system": system.name, **sc, "min_value": float(np.nanmin(out))})
                row_cells.append(out)
            if photo.name in picks:
                cells.append((photo.name, row_cells))
            try:
                est = estimate.estimate_frame_sh(real, track.points_crop(), track.camera_c2w(), white_balanced=False)
                angle = float(np.degrees(np.arccos(np.clip(estimate.dominant_direction(est) @ photo.direction, -1, 1))))
            except estimate.TooFewPixelsError:
                angle = math.nan
            result.angle_rows.append({"subject": subject.name, "photo": photo.name, "bin": photo.bin,
                                      "angle_deg": angle})
        result.sheets[subject.name] = _sheet(cells, [s.name for s in systems])
        log.info("yale %s: %d photos relit by %d systems in %.0f s", subject.name, len(targets), len(systems),
                 time.perf_counter() - t0)
    return result


def _sheet(cells: list[tuple[str, list[np.ndarray]]], names: list[str]) -> np.ndarray:
    from blender_relight.contact_sheet import contact_sheet

    images = [colour.linear_to_uint8_srgb(np.clip(c, 0.0, 1.0)) for _, row in cells for c in row]
    return contact_sheet(images, columns=2 + len(names), thumb=160, column_titles=["input", "photo", *names],
                         row_titles=[n for n, _ in cells])


def summarise(rows: list[dict], keys: tuple[str, ...] = ("corr", "rmse", "strength"),
              by: tuple[str, ...] = ("system", "bin")) -> list[dict]:
    """Means of ``keys`` over rows grouped by ``by`` (NaNs left out), plus the count."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[b] for b in by), []).append(r)
    out = []
    for key, rs in groups.items():
        row = dict(zip(by, key))
        row["n"] = len(rs)
        for k in keys:
            v = np.array([r[k] for r in rs], dtype=np.float64)
            v = v[np.isfinite(v)]
            row[k] = float(v.mean()) if len(v) else math.nan
        out.append(row)
    order = {name: i for i, (name, _) in enumerate(yale_data.BINS)}
    return sorted(out, key=lambda r: tuple(order.get(r.get(b), 0) if b == "bin" else str(r.get(b)) for b in by[::-1]))


def table(rows: list[dict], lead: tuple[str, ...], keys: tuple[str, ...]) -> str:
    head = list(lead) + ["n"] + list(keys)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[k]) for k in lead] + [str(r["n"])] + \
                [("—" if not math.isfinite(r[k]) else f"{r[k]:.3f}") for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    """``python -m evaluation --yale``: build the systems, evaluate, write the report folder."""
    from evaluation.dpr import DPR
    from evaluation.run import _git_commit, machine_description

    out = ensure_writable_dir(args.out)
    systems: list = []
    for name in ["input", "dpr", *args.engines]:
        try:
            systems.append(InputYale() if name == "input" else DPRYale(DPR(args.dpr_weights)) if name == "dpr"
                           else EngineSystem(name))
        except (RelightError, ImportError) as exc:
            log.warning("system %s skipped: %s", name, exc)
    started = time.perf_counter()
    names = getattr(args, "subject_names", None)
    source_light = getattr(args, "source_light", "estimated")
    res = evaluate(args.yale, systems, args.max_photos, names or args.subjects, getattr(args, "ambient", None),
                   source_light)
    elapsed = time.perf_counter() - started
    by_bin = summarise(res.rows)
    by_subject = summarise(res.rows, by=("system", "subject", "bin"))
    angles = summarise(res.angle_rows, keys=("angle_deg",), by=("subject", "bin"))
    angles_all = summarise(res.angle_rows, keys=("angle_deg",), by=("bin",))
    neg = [r for r in res.rows if not r["min_value"] >= 0.0]
    text = (f"# Yale relighting report\n\n- commit {_git_commit()}; {machine_description()}; wall time {elapsed:.0f} s\n"
            f"- {len({r['subject'] for r in res.rows})} subjects, {len({(r['subject'], r['photo']) for r in res.rows})}"
            f" target photos; source light {source_light}; EPS {EPS}; target ambient (fraction of the key) per "
            "subject: "
            + ", ".join(f"{r['subject']} {r['ambient_fraction']:.4f} ({r['how']})" for r in res.ambient_rows) + "\n"
            f"- outputs with negative or NaN values: {len(neg)}\n\n## By light bin\n\n"
            + table(by_bin, ("system", "bin"), ("corr", "rmse", "strength"))
            + "\n## Source-light estimate: angle of its dominant direction to the photo's light (degrees)\n\n"
            + table(angles_all, ("bin",), ("angle_deg",)) + "\n" + table(angles, ("subject", "bin"), ("angle_deg",))
            + "\n## By subject\n\n" + table(by_subject, ("system", "subject", "bin"), ("corr", "rmse", "strength")))
    report.write_text(out / "yale_report.md", text)
    report.write_csv(out / "yale_photos.csv", res.rows)
    report.write_csv(out / "yale_angles.csv", res.angle_rows)
    report.write_csv(out / "yale_ambient.csv", res.ambient_rows)
    for name, sheet in res.sheets.items():
        report.write_png(out / f"yale_{name}_contact.png", sheet)
    print(text)
    print(f"report written to {out}")
    return 0
