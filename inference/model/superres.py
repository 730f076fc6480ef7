"""Super-resolution of the low-resolution G-buffer to the output size.

Why residual on bilinear: albedo, normal, visibility, depth and alpha are already meaningful at low resolution; the
network only adds detail (``base + learned``), so an untrained or lightly trained model still produces a sane
G-buffer and training starts from the upsampled render. Depth and alpha are upsampled only (they are geometry and
the mask; the compositor wants them smooth). The network also produces ``residual_dim`` per-pixel features that
the shading residual reads. Stages are x2 each (bilinear + 3x3 conv), channels tapering from ``sr_widths`` so the
512^2 convolutions stay narrow (they dominate the cost; see docs/model.md).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from blender_relight.camera import RADIUS

from .config import ModelConfig


class SuperResolution(nn.Module):
    """Low-res G-buffer dict -> out_res G-buffer dict (albedo, normal, visibility, depth, alpha, features)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = cfg.sr_widths
        stages = int(math.log2(cfg.sr_factor))
        c_in = 3 + 3 + 1 + 1 + 1 + 2 * cfg.feature_dim
        self.inp = nn.Conv2d(c_in, widths[0], 3, padding=1)
        self.inp2 = nn.Conv2d(widths[0], widths[0], 3, padding=1)
        w = [widths[min(i, len(widths) - 1)] for i in range(stages + 1)]
        self.ups = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 3, padding=1) for i in range(stages))
        self.out = nn.Conv2d(w[-1], 3 + 3 + 1 + cfg.residual_dim, 1)
        nn.init.normal_(self.out.weight, std=1e-3)   # start near the upsampled render
        nn.init.zeros_(self.out.bias)

    def forward(self, g: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        size = (self.cfg.out_res, self.cfg.out_res)
        x = torch.cat([g["albedo"], g["normal"], g["visibility"], g["depth"] - RADIUS, g["alpha"], g["features"]],
                      dim=1)
        x = F.leaky_relu(self.inp2(F.leaky_relu(self.inp(x), 0.2)), 0.2)
        for conv in self.ups:
            x = F.leaky_relu(conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)), 0.2)
        delta = self.out(x)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        albedo = (up(g["albedo"]) + delta[:, 0:3]).clamp(min=0.0)
        normal = up(g["normal"]) + delta[:, 3:6]
        normal = normal / torch.linalg.vector_norm(normal, dim=1, keepdim=True).clamp(min=1e-6)
        visibility = (up(g["visibility"]) + delta[:, 6:7]).clamp(0.0, 1.0)
        return {"albedo": albedo, "normal": normal, "visibility": visibility, "depth": up(g["depth"]),
                "alpha": up(g["alpha"]).clamp(0.0, 1.0), "features": delta[:, 7:]}
