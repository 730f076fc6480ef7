"""RelightNet (tiny preset): shapes, gradients, the light-only seam, temporal ring buffer, sampler geometry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from blender_relight import camera as cam
from blender_relight.lighting import sh as sh_np
from inference.model import PRESETS, ModelConfig, RelightNet
from inference.model.sampler import camera_rays, importance_depths
from inference.model.shading import sh_irradiance
from inference.model.triplane import sample_triplane

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net() -> RelightNet:
    torch.manual_seed(0)
    return RelightNet("tiny")


def _inputs(cfg: ModelConfig, b: int = 2):
    crop = torch.rand(b, 3, cfg.image_res, cfg.image_res)
    sh = torch.randn(b, 9, 3) * 0.3
    cams = torch.tensor(np.stack([cam.make_label(cam.orbit_camera(0.1 * i, 0.05)) for i in range(b)]))
    return crop, sh, cams


def test_forward_shapes_and_gradients(net: RelightNet) -> None:
    cfg = net.config
    crop, sh, cams = _inputs(cfg)
    out = net.train()(crop, sh, sh, torch.stack([cams, cams.flip(0)], dim=1))
    r = cfg.out_res
    assert out["image"].shape == (2, 2, 3, r, r)
    assert out["normal"].shape == (2, 2, 3, r, r)
    assert out["albedo_planes"].shape == (2, 3 * cfg.plane_channels, cfg.plane_res, cfg.plane_res)
    assert out["memory"].shape == (2, cfg.temporal_window, cfg.n_tokens, cfg.temporal_dim)
    n = out["normal"]
    assert torch.allclose(torch.linalg.vector_norm(n, dim=2), torch.ones(1), atol=1e-4)
    loss = out["image"].mean() + out["albedo"].mean() + out["normal"].mean()
    loss.backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert grads["albedo_encoder.stem.weight"] is not None and grads["albedo_encoder.stem.weight"].abs().sum() > 0
    assert grads["shading_encoder.stem.weight"].abs().sum() > 0
    assert grads["field.albedo_head.0.weight"].abs().sum() > 0
    net.zero_grad()


def test_single_camera_drops_view_axis(net: RelightNet) -> None:
    crop, sh, cams = _inputs(net.config)
    with torch.no_grad():
        out = net.eval()(crop, sh, sh, cams)
    assert out["image"].shape == (2, 3, net.config.out_res, net.config.out_res)


def test_inference_is_deterministic_and_light_only_changes_shade(net: RelightNet) -> None:
    crop, sh, cams = _inputs(net.config, 1)
    net.eval()
    with torch.no_grad():
        planes = net.encode(crop, sh)
        g1 = net.render(planes, cams)
        g2 = net.render(planes, cams)
        assert all(torch.equal(g1[k], g2[k]) for k in g1)
        s_a = net.shade(g1, sh)["image"]
        s_b = net.shade(g1, torch.flip(sh, dims=[2]) * 2.0)["image"]
    assert not torch.allclose(s_a, s_b)


def test_temporal_ring_buffer_moves_and_masks(net: RelightNet) -> None:
    cfg = net.config
    torch.manual_seed(1)
    for p in net.temporal_net.parameters():   # the head is zero-initialised (identity); randomise to test attention
        torch.nn.init.normal_(p, std=0.2)
    crop, sh, _ = _inputs(cfg, 1)
    with torch.no_grad():
        planes = net.encode(crop, sh)
        out1, mem1, val1 = net.temporal(planes)
        assert val1.tolist() == [[0.0] * (cfg.temporal_window - 1) + [1.0]]
        out2, mem2, val2 = net.temporal(planes, mem1, val1)
        assert torch.equal(mem2[:, -2], mem1[:, -1])          # the previous newest slot moved back by one
        assert val2[0, -2:].tolist() == [1.0, 1.0]
        # the memory matters once valid, and invalid slots are ignored whatever they hold
        assert not torch.allclose(out2["albedo_planes"], out1["albedo_planes"])
        junk = torch.randn_like(mem1) * 10
        out_junk, _, _ = net.temporal(planes, junk, torch.zeros_like(val1))
        assert torch.allclose(out_junk["albedo_planes"], out1["albedo_planes"], atol=1e-5)


def test_shading_matches_numpy_sh() -> None:
    rng = np.random.default_rng(3)
    n = rng.normal(size=(4, 5, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    sh_rgb = rng.normal(size=(9, 3))
    expected = sh_np.irradiance(sh_np.rotate_eg3d_to_sh(n), sh_rgb)          # (4, 5, 3)
    got = sh_irradiance(torch.tensor(n, dtype=torch.float64).permute(2, 0, 1)[None],
                        torch.tensor(sh_rgb)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_frontal_rays_follow_eg3d() -> None:
    label = torch.tensor(cam.frontal_label())[None]
    origins, dirs = camera_rays(label, 4)
    np.testing.assert_allclose(origins[0, 0].numpy(), [0, 0, 2.7], atol=1e-6)
    centre = dirs[0].mean(dim=0)
    assert centre[2] < -0.99                                   # looking down -z toward the face
    assert dirs[0, 0, 0] < 0 and dirs[0, 0, 1] > 0             # top-left pixel: world left and up (OpenCV y down)


def test_triplane_axes_are_eg3d() -> None:
    planes = torch.zeros(1, 3, 2, 2)
    planes[0, 0] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])     # xy plane: value grows with x (width)
    pts = torch.tensor([[[0.25, 0.0, 0.0], [-0.25, 0.0, 0.0]]])
    v = sample_triplane(planes, pts, 1.0)[0, :, 0]
    assert v[0] > v[1]
    planes = torch.zeros(1, 3, 2, 2)
    planes[0, 2] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])     # third plane: width reads z (EG3D's (z, x) plane)
    v = sample_triplane(planes, torch.tensor([[[0.0, 0.0, 0.25], [0.0, 0.0, -0.25]]]), 1.0)[0, :, 0]
    assert v[0] > v[1]


def test_xy_plane_rows_run_down_the_face_like_the_crop() -> None:
    """The xy plane is image-aligned with the frontal crop: its top row holds the top of the head (world +y), so a
    convolutional encoder can write a texel where it sees the pixel (see inference/model/triplane.py)."""
    planes = torch.zeros(1, 3, 2, 2)
    planes[0, 0] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])     # xy plane: top row set
    v = sample_triplane(planes, torch.tensor([[[0.0, 0.25, 0.0], [0.0, -0.25, 0.0]]]), 1.0)[0, :, 0]
    assert v[0] > v[1]                                         # the point above the centre reads the top row


def test_untrained_albedo_starts_mid_range_in_rho_over_pi() -> None:
    """The field's albedo is ρ/π with ρ from a sigmoid near its centre at init (not saturated: the first CPU run's
    plain sigmoid collapsed to 0 while reaching for ρ/π ≈ 0.13)."""
    torch.manual_seed(0)
    net = RelightNet("tiny")
    planes = torch.randn(1, 3 * net.config.plane_channels * 2, net.config.plane_res, net.config.plane_res) * 0.1
    with torch.no_grad():
        _, values = net.field(planes, torch.rand(1, 256, 3) - 0.5)
    rho = values[..., :3] * np.pi
    assert 0.3 < float(rho.mean()) < 0.7
    assert float(rho.max()) <= 1.0 + 1e-5 and float(rho.min()) >= -1e-5


def test_first_temporal_update_is_small_for_large_planes() -> None:
    """One Adam step on the zero-initialised temporal head must not move large stage-1 planes by much: its input and
    the input of its head are normalised (the unnormalised version moved every plane by several units, ending the
    density in the first stage-2 run)."""
    from inference.model.temporal import TemporalAttention

    torch.manual_seed(0)
    cfg = PRESETS["default"]
    temporal = TemporalAttention(cfg)
    a = torch.randn(1, 3 * cfg.plane_channels, 1, 1).expand(-1, -1, cfg.plane_res, cfg.plane_res) * 100.0  # smooth, large
    s = torch.randn_like(a) * 100.0
    memory, valid = temporal.empty_memory(1)
    opt = torch.optim.Adam(temporal.parameters(), lr=1e-4)
    na, ns, _, _ = temporal(a, s, memory, valid)
    assert torch.equal(na, a)                                      # identity at init
    (na.sum() + ns.sum()).backward()
    opt.step()
    with torch.no_grad():
        na, _, _, _ = temporal(a, s, memory, valid)
    shift = float((na - a).abs().max())
    assert 0.0 < shift < 0.05                                      # unnormalised: about 0.16


def test_importance_samples_follow_weights() -> None:
    w = torch.zeros(1, 1, 10)
    w[..., 7] = 1.0
    z = importance_depths(w, 64, stochastic=False)
    edges = cam.RAY_NEAR + (cam.RAY_FAR - cam.RAY_NEAR) * torch.tensor([6 / 10, 9 / 10])   # smoothed over 6..8
    inside = ((z >= edges[0]) & (z <= edges[1])).float().mean()
    assert inside > 0.8
    assert torch.all(z[..., 1:] >= z[..., :-1])


def test_presets_validate() -> None:
    for name, cfg in PRESETS.items():
        cfg.validate()
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg, name
    assert PRESETS["paper"].plane_res == 256 and PRESETS["paper"].out_res == 512
    assert PRESETS["default"].out_res == 512


def _constant_density_net(sigma: float) -> RelightNet:
    """Tiny net whose field has density ``sigma`` everywhere and normal +z per sample (hand-set weights)."""
    net = RelightNet("tiny").eval()
    with torch.no_grad():
        for p in net.field.parameters():
            p.zero_()
        net.field.albedo_head[2].bias[0] = sigma          # sigma
        net.field.shading_head[2].bias[2] = 1.0           # normal (0, 0, 1)
    return net


def test_renderer_compositing_limits() -> None:
    label = torch.tensor(cam.frontal_label())[None]
    cfg = PRESETS["tiny"]
    planes = {"albedo_planes": torch.zeros(1, 3 * cfg.plane_channels, cfg.plane_res, cfg.plane_res)}
    planes["shading_planes"] = planes["albedo_planes"].clone()
    with torch.no_grad():
        opaque = _constant_density_net(60.0).render_lowres(planes, label)
        empty = _constant_density_net(-60.0).render_lowres(planes, label)
    # opaque everywhere: alpha 1 and the surface at the first sample (first bin centre after RAY_NEAR)
    first = cam.RAY_NEAR + 0.5 * (cam.RAY_FAR - cam.RAY_NEAR) / cfg.n_coarse
    assert torch.allclose(opaque["alpha"], torch.ones(1), atol=1e-4)
    assert float(opaque["depth"].max()) <= first + 1e-3
    assert torch.allclose(opaque["normal"][:, 2], torch.ones(1), atol=1e-4)
    # empty everywhere: alpha 0, depth at the far bound, normal facing the frontal camera (+z in EG3D world)
    assert float(empty["alpha"].max()) < 1e-6
    assert torch.allclose(empty["depth"], torch.full((1,), cam.RAY_FAR), atol=1e-4)
    _, dirs = camera_rays(label, cfg.render_res)
    facing = -dirs[0].T.reshape(1, 3, cfg.render_res, cfg.render_res)
    assert torch.allclose(empty["normal"], facing, atol=1e-4)
