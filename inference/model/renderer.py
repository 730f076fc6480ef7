"""Volume rendering of the tri-plane field into a low-resolution G-buffer.

Why a G-buffer and not colour: the light is applied after super-resolution (shading.py), so one render per camera
serves every light. Compositing follows NeRF/EG3D quadrature (alpha = 1 - exp(-softplus(sigma - 1) * delta),
transmittance as exp of a cumulative sum, which exports to ONNX where cumprod does not). Coarse and importance
samples are merged and sorted by depth (ONNX TopK) before compositing, as EG3D does.

Normals are unit per sample and composited with the ray's empty remainder facing the camera (-direction), so the
normalised result is well conditioned everywhere, background included. Depth is the expected depth with the empty
remainder of a ray placed at the far bound, so background pixels get a well-defined depth (RAY_FAR) instead of
EG3D's NaN-then-clamp.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from blender_relight.camera import RAY_FAR

from .config import ModelConfig
from .field import TriplaneField
from .sampler import camera_rays, importance_depths, stratified_depths

#: Order and channel counts of the low-resolution G-buffer (before the features, which have 2 * feature_dim).
GBUFFER_BASE = (("albedo", 3), ("normal", 3), ("visibility", 1), ("depth", 1), ("alpha", 1))


def _evaluate(field: TriplaneField, joint_planes: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor,
              depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Field at depths (B, P, N) along rays -> sigma (B, P, N, 1), values (B, P, N, C)."""
    b, p, n = depths.shape
    pts = origins.unsqueeze(2) + dirs.unsqueeze(2) * depths.unsqueeze(-1)
    sigma, values = field(joint_planes, pts.reshape(b, p * n, 3))
    return sigma.reshape(b, p, n, 1), values.reshape(b, p, n, -1)


def _weights(sigma: torch.Tensor, depths: torch.Tensor, density_bias: float) -> torch.Tensor:
    """Per-sample compositing weights (B, P, N) for sorted depths (the last sample's interval ends at RAY_FAR)."""
    deltas = torch.cat([depths[..., 1:] - depths[..., :-1], (RAY_FAR - depths[..., -1:]).clamp(min=1e-3)], dim=-1)
    tau = F.softplus(sigma.squeeze(-1) + density_bias) * deltas
    alpha = 1.0 - torch.exp(-tau)
    transmittance = torch.exp(-(torch.cumsum(tau, dim=-1) - tau))   # exclusive: light reaching sample i
    return alpha * transmittance


def render_gbuffer(field: TriplaneField, cfg: ModelConfig, albedo_planes: torch.Tensor, shading_planes: torch.Tensor,
                   camera: torch.Tensor, stochastic: bool = False) -> dict[str, torch.Tensor]:
    """Render (B, C, render_res, render_res) maps: albedo, normal (unit, EG3D world), visibility, depth, alpha,
    features (2 * feature_dim)."""
    b, r = camera.shape[0], cfg.render_res
    origins, dirs = camera_rays(camera, r)
    p = origins.shape[1]
    joint = field.join(albedo_planes, shading_planes)
    z_c = stratified_depths((b, p), cfg.n_coarse, stochastic, camera)
    sigma_c, val_c = _evaluate(field, joint, origins, dirs, z_c)
    if cfg.n_importance > 0:
        with torch.no_grad():
            w_c = _weights(sigma_c, z_c, cfg.density_bias)
        z_f = importance_depths(w_c.detach(), cfg.n_importance, stochastic)
        sigma_f, val_f = _evaluate(field, joint, origins, dirs, z_f.detach())
        z_all = torch.cat([z_c, z_f], dim=-1)
        z, order = torch.sort(z_all, dim=-1)
        sigma = torch.gather(torch.cat([sigma_c, sigma_f], dim=2), 2, order.unsqueeze(-1))
        vals_all = torch.cat([val_c, val_f], dim=2)
        values = torch.gather(vals_all, 2, order.unsqueeze(-1).expand(-1, -1, -1, vals_all.shape[-1]))
    else:
        z, sigma, values = z_c, sigma_c, val_c
    w = _weights(sigma, z, cfg.density_bias).unsqueeze(-1)           # (B, P, N, 1)
    comp = (w * values).sum(dim=2)                                   # (B, P, C)
    acc = w.sum(dim=2)                                               # (B, P, 1)
    depth = (w.squeeze(-1) * z).sum(dim=-1, keepdim=True) + (1.0 - acc) * RAY_FAR
    normal = comp[..., 3:6] - (1.0 - acc) * dirs     # the empty rest of a ray faces the camera
    normal = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True).clamp(min=1e-6)

    def image(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(b, x.shape[-1], r, r)

    return {"albedo": image(comp[..., 0:3]), "normal": image(normal), "visibility": image(comp[..., 6:7]),
            "depth": image(depth), "alpha": image(acc), "features": image(comp[..., 7:])}
