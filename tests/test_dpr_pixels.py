"""DPR reimplementation: reproduce DPR's own demo outputs pixel for pixel (up to JPEG q95 noise)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")

from blender_relight.errors import RelightError  # noqa: E402
from evaluation.dpr import DPR, example_lights  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WEIGHTS = DATA / "dpr" / "trained_model_03.t7"


@pytest.fixture(scope="module")
def dpr() -> DPR:
    if not WEIGHTS.is_file():
        pytest.skip(f"DPR weights absent at {WEIGHTS}")
    torch.set_num_threads(1)
    return DPR(WEIGHTS)


def test_missing_weights_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RelightError, match="trained_model_03.t7"):
        DPR(tmp_path / "trained_model_03.t7")


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.t7"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(RelightError, match="x.t7"):
        DPR(bad)


@pytest.mark.parametrize("index", [0, 3, 6])
def test_reproduces_dpr_demo(dpr: DPR, index: int) -> None:
    """Relight obama.jpg with example light ×0.7 as DPR's demo does; compare with DPR's published result.

    The reference is a q95 JPEG, so the raw difference is JPEG noise (max ~15, mean ~0.8). Re-encoding our output with
    the same encoder must land on the reference almost exactly: only rare 1-LSB truncation flips (GPU vs CPU floats)
    may differ.
    """
    src, ref_path = DATA / "images" / "dpr_obama.jpg", DATA / "dpr" / "reference" / f"obama_{index:02d}.jpg"
    if not src.is_file() or not ref_path.is_file():
        pytest.skip("DPR demo image or reference absent in ../shared/data")
    light = example_lights(DATA / "dpr" / "example_light")[index]
    out, est = dpr.relight_bgr(cv2.imread(str(src)), light)
    ref = cv2.imread(str(ref_path))
    assert out.shape == ref.shape
    raw = np.abs(out.astype(int) - ref.astype(int))
    assert raw.mean() < 1.0 and raw.max() <= 24
    enc = cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)
    again = np.abs(enc.astype(int) - ref.astype(int))
    assert (again > 0).mean() < 2e-3, f"{(again > 0).mean():.2%} of values differ after re-encoding"
    assert again.max() <= 6
    # The estimate does not depend on the target light, and matches the down-path-only estimator.
    assert np.allclose(est, dpr.estimate_sh_bgr(cv2.imread(str(src))), atol=1e-5)


def test_estimate_follows_relit_light(dpr: DPR) -> None:
    """Relighting with light A then estimating gives an SH nearer A than B: the estimator sees the relighting."""
    src = DATA / "images" / "dpr_obama.jpg"
    if not src.is_file():
        pytest.skip("DPR demo image absent")
    lights = example_lights(DATA / "dpr" / "example_light")
    img = cv2.imread(str(src))
    for a, b in [(0, 3), (3, 0)]:
        est = dpr.estimate_sh_bgr(dpr.relight_bgr(img, lights[a])[0])
        assert np.linalg.norm(est - lights[a]) < np.linalg.norm(est - lights[b])
