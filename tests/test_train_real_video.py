"""Self-supervised real-video terms and the held-out evaluation run on real tracked frames with a tiny model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not (DATA / "videos" / "lp_d18.mp4").exists():
    pytest.skip(f"shared clip lp_d18.mp4 not found under {DATA}", allow_module_level=True)

from inference.model import RelightNet  # noqa: E402
from training import losses as L  # noqa: E402
from training.evaluate import Relighter, evaluate_real, evaluate_synthetic, psnr  # noqa: E402
from training.real_video import RealVideoTerms, track_clip  # noqa: E402


@pytest.fixture(scope="module")
def frames():
    fs = track_clip(DATA / "videos" / "lp_d18.mp4", every=2, limit=2)
    assert len(fs) == 2, "lp_d18 has a face in every frame"
    return fs


def test_tracked_frames_follow_conventions(frames):
    f = frames[0]
    assert f.crop.shape == (512, 512, 3) and f.crop.dtype == np.uint8
    assert f.camera.shape == (25,) and abs(f.camera[16] - 4.2647) < 1e-3
    assert f.sh.shape == (9, 3) and np.isfinite(f.sh).all()
    assert 0.05 < f.mask.mean() < 0.9


def test_real_terms_finite_with_gradients(frames):
    torch.manual_seed(0)
    model = RelightNet("tiny")
    terms = RealVideoTerms(image_res=64, loss_res=64, frames=frames)
    out = terms.terms(model, L.OfflinePerceptual(), np.random.default_rng(0))
    assert set(out) == {"real_recon", "real_cross", "real_cycle", "real_albedo"}
    total = sum(out.values())
    assert all(torch.isfinite(v) for v in out.values())
    total.backward()
    g = model.albedo_encoder.parameters().__next__().grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_psnr_masks_and_orders():
    a = np.full((8, 8, 3), 0.5, np.float32)
    b = a.copy()
    b[:4] += 0.1
    m = np.zeros((8, 8), np.float32)
    m[4:] = 1
    assert psnr(a, b, m) > 90 and psnr(a, b) < 40


def test_evaluation_runs_on_a_tiny_model(frames, tmp_path):
    from training.teacher.synthetic import SyntheticHeads

    rel = Relighter(RelightNet("tiny"), 64)
    teacher = SyntheticHeads(resolution=64, supersample=1, held_out=True, cache_dir=tmp_path, per_clip=1)
    metrics, rows = evaluate_synthetic(rel, teacher, 1, 0)
    for k in ("albedo_psnr", "relit_psnr", "relit_ssim", "view-30_psnr", "view+15_psnr", "relit_copy_input_psnr"):
        assert np.isfinite(metrics[k]), k
    assert len(rows) == 1 and len(rows[0]) == 10
    rm, rrows = evaluate_real(rel, frames, 2)
    assert np.isfinite(rm["real_recon_psnr"]) and rm["real_frames"] == 2 and len(rrows[0]) == 10
