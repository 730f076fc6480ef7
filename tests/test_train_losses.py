"""Every loss term is finite and goes down when optimised; the whole stage-1 and stage-2 objective overfits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training import losses as L

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _images(seed: int, n: int = 2, res: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, res // 8, res // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(res, res), mode="bilinear", align_corners=False) * 0.8


def _descends(loss_fn, steps: int = 5, lr: float = 0.05) -> list[float]:
    torch.manual_seed(0)
    x = torch.nn.Parameter(_images(1))
    opt = torch.optim.Adam([x], lr=lr)
    vals = []
    for _ in range(steps):
        loss = loss_fn(x)
        assert torch.isfinite(loss), "loss must be finite"
        opt.zero_grad()
        loss.backward()
        opt.step()
        vals.append(float(loss.detach()))
    vals.append(float(loss_fn(x).detach()))
    return vals


TARGET = _images(2)
BOX = torch.tensor([[16.0, 12.0, 48.0, 56.0]] * 2)
DISC = L.PatchDiscriminator(width=8)
FLOW = torch.full((2, 64, 64, 2), 1.5)
VIS = torch.ones(2, 64, 64)

TERMS = {
    "l1": lambda x: L.l1(x, TARGET),
    "l1_masked": lambda x: L.l1(x, TARGET, (TARGET[:, :1] > 0.3).float()),
    "perceptual_offline": lambda x: L.OfflinePerceptual()(x, TARGET),
    "face_crop": lambda x: L.l1(L.face_crop(x, BOX, 32), L.face_crop(TARGET, BOX, 32)),
    "identity_feature": lambda x: L.IdentityLoss()(L.face_crop(x, BOX, 32), L.face_crop(TARGET, BOX, 32), DISC),
    "adversarial_g": lambda x: L.adversarial_g(DISC(x)),
    "temporal": lambda x: L.temporal_loss(x, TARGET, FLOW, VIS, L.OfflinePerceptual()),
}


@pytest.mark.parametrize("name", sorted(TERMS))
def test_each_term_finite_and_decreasing(name):
    vals = _descends(TERMS[name])
    assert vals[-1] < vals[0], f"{name}: {vals}"


def test_discriminator_loss_decreases_when_training_d():
    d = L.PatchDiscriminator(width=8)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    real, fake = _images(3), _images(4) * 0.3
    vals = []
    for _ in range(6):
        loss = L.adversarial_d(d(real), d(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
        vals.append(float(loss))
    assert all(np.isfinite(vals)) and vals[-1] < vals[0]


def test_ms_ssim_identity_and_range():
    a = _images(5)
    assert abs(float(L.ms_ssim(a, a)) - 1.0) < 1e-5
    assert float(L.ms_ssim(a, _images(6))) < 0.99


def test_temporal_loss_zero_for_exactly_warped_frames():
    """A frame shifted by the flow is explained exactly: zero loss inside the visible mask."""
    prev = _images(7)
    cur = L.warp(prev, FLOW)
    assert float(L.temporal_loss(cur, prev, FLOW, VIS, L.OfflinePerceptual())) < 1e-5


def test_perceptual_choice_is_logged_and_offline():
    p = L.make_perceptual()
    assert p.name and ("lpips" in p.name or "ms-ssim" in p.name)


@pytest.mark.skipif(not (DATA / "videos").is_dir(), reason=f"shared data not found at {DATA}")
@pytest.mark.parametrize("stage", [1, 2])
def test_tiny_model_overfits_a_fixed_batch(stage, tmp_path):
    from training.train import Trainer, parse_args
    from training.teacher.synthetic import SyntheticHeads

    teacher = SyntheticHeads(resolution=64, supersample=1, cache_dir=tmp_path / "t", per_clip=1)
    args = parse_args(["--stage", str(stage), "--preset", "tiny", "--steps", "5", "--out", str(tmp_path / "run"),
                       "--teacher-res", "64", "--lr", "2e-3", "--lr-attention", "1e-3", "--warmup", "0"])
    tr = Trainer(args, teacher, None)
    b = tr.batch(0)
    tr.batch = lambda step: b  # the same batch every step: a pure overfit
    first = tr.step(0)
    for s in range(1, 5):
        last = tr.step(s)
    assert all(np.isfinite(v) for v in first.values()) and all(np.isfinite(v) for v in last.values())
    with torch.no_grad():
        terms = tr.stage1_terms(b) if stage == 1 else tr.stage2_terms(b, 1)[0]
        after = float(tr._weighted(terms))
    assert after < first["total"], (first["total"], after)
