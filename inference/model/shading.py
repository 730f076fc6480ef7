"""The cheap, light-dependent step: RGB SH irradiance at the predicted normal x visibility + a learned residual.

Why analytic: Blender lights are coloured and can sit anywhere; the irradiance of any RGB second-order SH at a
normal is exact maths, so the relit image responds correctly even to lights training never saw, and a light change
costs only this step. The convention is blender_relight.lighting.sh's, to the constant: EG3D-world normals are
rotated to the SH frame with ``EG3D_WORLD_TO_SH`` and the basis uses the same constants and cosine lobe
(tests/test_model_shading.py checks equality with ``sh.irradiance``). The residual (cast shadows, sheen, what SH
irradiance misses) is a per-pixel MLP over the super-resolved residual features, conditioned on the SH by an
additive per-image bias; it starts near zero.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from blender_relight.lighting import sh as sh_np

from .config import ModelConfig
from .encoders import SH_DIM


def irradiance_basis(normal_sh: torch.Tensor) -> torch.Tensor:
    """Unit normals (B, 3, H, W) in the SH frame -> DPR irradiance basis (B, 9, H, W), as sh.irradiance_basis."""
    x, y, z = normal_sh[:, 0], normal_sh[:, 1], normal_sh[:, 2]
    c0, c1, c2, c3, c4 = (float(v) for v in (sh_np._C0, sh_np._C1, sh_np._C2, sh_np._C3, sh_np._C4))
    lobe = [float(v) for v in sh_np.COSINE_LOBE]
    basis = [c0 * torch.ones_like(x), c1 * y, c1 * z, c1 * x, c2 * x * y, c2 * y * z, c3 * (3.0 * z * z - 1.0),
             c2 * x * z, c4 * (x * x - y * y)]
    return torch.stack([b * w for b, w in zip(basis, lobe)], dim=1)


def eg3d_to_sh_frame(normal: torch.Tensor) -> torch.Tensor:
    """EG3D-world vectors (B, 3, H, W) to the SH frame with ``sh.EG3D_WORLD_TO_SH``."""
    m = torch.tensor(np.asarray(sh_np.EG3D_WORLD_TO_SH).tolist(), dtype=normal.dtype, device=normal.device)
    b, _, h, w = normal.shape
    return (m @ normal.reshape(b, 3, h * w)).reshape(b, 3, h, w)


def sh_irradiance(normal_eg3d: torch.Tensor, sh_rgb: torch.Tensor) -> torch.Tensor:
    """Irradiance (B, 3, H, W) of RGB SH (B, 9, 3) at unit EG3D-world normals (B, 3, H, W).

    Written as MatMuls, not einsum: ONNX Runtime's CPU Einsum took half of the shade graph's time (profiled).
    """
    basis = irradiance_basis(eg3d_to_sh_frame(normal_eg3d))
    b, k, h, w = basis.shape
    return (sh_rgb.transpose(1, 2) @ basis.reshape(b, k, h * w)).reshape(b, 3, h, w)


class Shader(nn.Module):
    """G-buffer at out_res + target RGB SH -> image = albedo x (irradiance x visibility + residual)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(cfg.residual_dim, cfg.shade_hidden, 1)
        self.cond = nn.Linear(SH_DIM, cfg.shade_hidden)
        self.fc2 = nn.Conv2d(cfg.shade_hidden, 3, 1)
        nn.init.normal_(self.fc2.weight, std=1e-3)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, g: dict[str, torch.Tensor], sh_rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return image, shading, irradiance and residual (B, 3, H, W); the image is linear RGB >= 0."""
        irr = sh_irradiance(g["normal"], sh_rgb)
        b, c, h, w = g["features"].shape
        bias = self.cond(sh_rgb.reshape(b, SH_DIM)) + self.fc1.bias                     # (B, hidden)
        # the 1x1 convolutions as MatMuls over (B, C, H*W): on CPU, ONNX Runtime's Conv reorders the layout
        # around each call, which cost more than the arithmetic here (profiled)
        hidden = self.fc1.weight.flatten(1) @ g["features"].reshape(b, c, h * w) + bias[:, :, None]
        residual = self.fc2.weight.flatten(1) @ F.leaky_relu(hidden, 0.2) + self.fc2.bias[:, None]
        residual = residual.reshape(b, 3, h, w)
        shading = irr * g["visibility"] + residual
        image = (g["albedo"] * shading).clamp(min=0.0)
        return {"image": image, "shading": shading, "irradiance": irr, "residual": residual}
