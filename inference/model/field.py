"""The tri-plane decoder: per 3D sample, density + albedo + features from the albedo planes, normal + visibility +
features from the shading planes.

Why two heads: albedo (and the geometry, through density) must not depend on light, so only the albedo planes feed
them; normal refinement and visibility (self-shadowing, occlusion) live in the shading planes, and their head also
reads the albedo features because geometry is defined by the density there.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig
from .triplane import sample_triplane

#: The shader computes image = albedo × irradiance, and the project's photometric convention is radiance = ρ·E/π
#: (blender_relight/lighting/estimate.py, Blender), so the albedo the network carries is ρ/π. The sigmoid gives ρ in
#: [0, 1] and this scale makes it ρ/π: the logit of a typical skin albedo (ρ ≈ 0.4) is then near 0, where the sigmoid
#: has gradient. Without it, skin needs ρ/π ≈ 0.13 out of a plain sigmoid, a logit of -1.9 at init distance, and the
#: project's first CPU run drove that sigmoid into saturation at 0 (docs/training.md).
ALBEDO_SCALE = 1.0 / math.pi


def mlp(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """Two-layer MLP like EG3D's OSGDecoder, with LeakyReLU instead of its softplus: on CPU, ONNX Runtime's Softplus
    (exp + log per value) was the most expensive op of the whole render graph (profiled; docs/model.md)."""
    return nn.Sequential(nn.Linear(c_in, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, c_out))


class TriplaneField(nn.Module):
    """Decode samples (B, M, 3) from the two tri-planes into a dict of per-sample channels."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, h, f = cfg.plane_channels, cfg.field_hidden, cfg.feature_dim
        self.albedo_head = mlp(c, h, 1 + 3 + f)          # sigma, albedo rgb, albedo features
        self.shading_head = mlp(2 * c, h, 3 + 1 + f)     # normal, visibility logit, shading features

    @property
    def channels(self) -> int:
        """Channels composited by the renderer (everything except sigma)."""
        return 3 + 3 + 1 + 2 * self.cfg.feature_dim

    @staticmethod
    def join(albedo_planes: torch.Tensor, shading_planes: torch.Tensor) -> torch.Tensor:
        """Interleave the two tri-planes per plane into one (B, 3 * 2C, R, R) tri-plane.

        Why: one grid_sample over 2C channels computes each sample's bilinear weights once instead of twice
        (GridSample is the largest op of the render graph on CPU).
        """
        b, c3, r, _ = albedo_planes.shape
        return torch.cat([albedo_planes.reshape(b, 3, c3 // 3, r, r), shading_planes.reshape(b, 3, c3 // 3, r, r)],
                         dim=2).reshape(b, 2 * c3, r, r)

    def forward(self, joint_planes: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples (B, M, 3) of :meth:`join`'s planes -> sigma (B, M, 1) and values (B, M, channels): albedo(3),
        normal(3, unit), visibility(1), features."""
        c = self.cfg.plane_channels
        f = sample_triplane(joint_planes, points, self.cfg.box_warp)
        fa, fs = f[..., :c], f[..., c:]
        a = self.albedo_head(fa)
        s = self.shading_head(torch.cat([fa, fs], dim=-1))
        sigma = a[..., :1]
        albedo = (torch.sigmoid(a[..., 1:4]) * (1 + 2 * 0.001) - 0.001) * ALBEDO_SCALE   # EG3D's activation, / pi
        normal = s[..., :3]
        normal = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True).clamp(min=1e-6)  # unit per sample
        visibility = torch.sigmoid(s[..., 3:4])
        values = torch.cat([albedo, normal, visibility, a[..., 4:], s[..., 4:]], dim=-1)   # features stay linear
        return sigma, values
