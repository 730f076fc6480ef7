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
    systems = [yale.InputYale(), yale.EngineSystem("analytic")]
    res = yale.evaluate(DATA / "yale_dev", systems, max_photos=2, subjects=1)
    assert len(res.rows) == 2 * 2 and all(r["min_value"] >= 0 for r in res.rows)
    ours = [r for r in res.rows if r["system"] == "analytic"]
    side = [r for r in ours if r["bin"] == "side"]
    assert side and all(r["corr"] > 0.5 and r["strength"] > 0.3 for r in side), side  # the far side darkens
    assert all(math.isfinite(r["corr"]) for r in ours)
    rows = yale.summarise(res.rows)
    assert {r["system"] for r in rows} == {"input", "analytic"}
    assert res.sheets and next(iter(res.sheets.values())).ndim == 3
