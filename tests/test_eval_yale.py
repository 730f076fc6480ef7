"""The Yale evaluation's pieces: the light convention of the file names, the light bins, the scores, and one small
end-to-end run (one subject, two photos) through input, the analytic engine and the report."""
from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import yale, yale_data
from real_data import DATA


def test_file_name_light_convention():
    # positive azimuth lights the image-left half (the subject's right, SH-frame -x); positive elevation from above
    assert np.allclose(yale_data.light_direction(90, 0), [-1, 0, 0], atol=1e-12)
    assert np.allclose(yale_data.light_direction(0, 0), [0, -1, 0], atol=1e-12)
    assert np.allclose(yale_data.light_direction(0, 90), [0, 0, 1], atol=1e-12)
    assert yale_data.NAME.search("yaleB12_P00A-035E+15.pgm").groups() == ("-035", "+15")
    assert [yale_data.light_bin(a, e) for a, e in ((20, -25), (0, 45), (-60, 10), (70, 0), (0, 90))] == \
        ["frontal", "mid", "mid", "side", "side"]


def test_target_light_is_a_sun_toward_the_photo_light_with_ambient():
    lighting = yale.target_lighting(np.array([-1.0, 0.0, 0.0]), 0.05, level=2.0)
    (spec,) = lighting.lights
    assert spec.type == "SUN" and np.allclose(spec.direction, [1, 0, 0]) and spec.power == 2.0
    from blender_relight.lighting import sh

    assert np.allclose(sh.irradiance(np.array([0.0, 0.0, 1.0]), lighting.sh), 0.1)  # ambient irradiance 5 % of 2


def test_scores_perfect_none_and_half():
    rng = np.random.default_rng(0)
    source = rng.uniform(0.2, 0.8, (40, 40, 3))
    shade = np.exp(rng.normal(0, 0.5, (40, 40, 1)))
    photo = source * shade
    mask = np.ones((40, 40), bool)
    perfect = yale.scores(photo * 3.0, photo, source, mask)  # any gain
    assert perfect["corr"] > 0.999 and perfect["rmse"] < 1e-6 and abs(perfect["strength"] - 1) < 0.05
    none = yale.scores(source, photo, source, mask)
    assert math.isnan(none["corr"]) and none["strength"] == 0.0 and none["rmse"] > 0.2
    half = yale.scores(source * np.sqrt(shade), photo, source, mask)
    assert 0.4 < half["strength"] < 0.6 and half["corr"] > 0.99


def test_small_yale_run_end_to_end(tmp_path):
    folder = DATA / "yale_dev" / "yaleB12"
    if not folder.exists():
        pytest.skip("../shared/data/yale_dev not found")
    systems = [yale.InputYale(), yale.EngineSystem("analytic"), yale.EngineSystem("geometry")]
    res = yale.evaluate(DATA / "yale_dev", systems, max_photos=2, subjects=1)
    assert len(res.rows) == 3 * 2 and all(r["min_value"] >= 0 for r in res.rows)
    assert [r["how"] for r in res.ambient_rows] == ["landmarks"]  # the target's ambient measured, not assumed
    ours = [r for r in res.rows if r["system"] == "analytic"]
    side = [r for r in ours if r["bin"] == "side"]
    assert side and all(r["corr"] > 0.5 and r["strength"] > 0.3 for r in side), side  # the far side darkens
    assert all(math.isfinite(r["corr"]) for r in ours)
    rows = yale.summarise(res.rows)
    assert {r["system"] for r in rows} == {"input", "analytic", "geometry"}
    assert res.sheets and next(iter(res.sheets.values())).ndim == 3


def _subject(name: str):
    folder = DATA / "yale_dev" / name
    if not folder.exists():
        pytest.skip("../shared/data/yale_dev not found")
    return yale_data.load_subject(folder, max_photos=1)


def test_ambient_is_found_aligned_and_scaled_from_a_known_ambient_photo(tmp_path):
    """A stand-in ambient photo made from the frontal photo itself (a quarter of its values, rescaled and placed in a
    640×480 frame as the database's is): the measure finds the face, aligns it back onto the crop and reads a quarter
    of the frontal photo there."""
    import cv2

    subject = _subject("yaleB12")
    gray = cv2.imread(str(next((DATA / "yale_dev" / "yaleB12").glob("*_P00A+000E+00.pgm"))), cv2.IMREAD_GRAYSCALE)
    k = 0.25
    face = cv2.resize(gray, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_LINEAR).astype(np.float32) * k
    frame = np.zeros((480, 640), np.float32)
    y0, x0 = 90, 200
    frame[y0:y0 + face.shape[0], x0:x0 + face.shape[1]] = face
    cv2.imwrite(str(tmp_path / "yaleB12_P00_Ambient.pgm"), np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    m = yale_data.measure_ambient(subject, tmp_path)
    # mediapipe's landmarks of the same face at two resolutions differ by 2-4 photo px (RMS over all 478): the
    # alignment is good to a few pixels, which the face's mean level does not notice
    assert m.how == "landmarks" and m.align_px < 6.0, m
    mask = yale_data.face_mask(subject)
    frontal = subject.crop_linear(subject.input)[..., 0]
    blur = lambda x: cv2.GaussianBlur(x.astype(np.float32), (0, 0), 8.0)  # noqa: E731
    assert np.corrcoef(blur(frontal)[mask], blur(m.crop)[mask])[0, 1] > 0.8  # the same face, not a shifted one
    assert abs(m.crop[mask].sum() / frontal[mask].sum() - k) < 0.02 * k / 0.25


def test_measured_ambient_of_the_development_subjects_is_small():
    """yaleB12's room light shows on its face (about 2 % of the frontal strobe's key); yaleB15's ambient photo is
    black (no face to find: the frame's median, 0)."""
    b12 = yale_data.measure_ambient(_subject("yaleB12"))
    assert b12.how == "landmarks" and 0.005 < b12.fraction < 0.05 and b12.align_px < 8.0, b12
    b15 = yale_data.measure_ambient(_subject("yaleB15"))
    assert b15.how == "no face" and 0.0 <= b15.fraction < 0.005, b15
