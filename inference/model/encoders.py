"""The two encoders: crop -> albedo tri-plane, crop + source lighting -> shading tri-plane.

Why one U-Net class for both: they differ only in the conditioning (the shading encoder is FiLM-modulated by the
source frame's RGB SH, so it can factor the input's lighting out of the appearance) and in their weights. A U-Net
gives every plane texel a receptive field over the whole face, which the side planes (xz, zx) need: they are not
aligned with the image.

Coordinate channels (x, y in [-1, 1]) are appended to the crop so the convolutions know where they are (the planes
are a fixed 3D frame, not translation invariant).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .config import ModelConfig

SH_DIM = 27  # RGB second-order SH, flattened (9, 3) row-major
TEMPLATE_DIVISOR = 4  # the learnt template tri-plane is plane_res / 4 on a side (a head's shared shape is smooth)


class FiLM(nn.Module):
    """Per-channel scale and shift from a condition vector (identity when the condition is zero at init)."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(cond).chunk(2, dim=1)
        return x * (1.0 + scale[:, :, None, None]) + shift[:, :, None, None]


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with LeakyReLU, optionally FiLM-conditioned after the first."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.film = FiLM(cond_dim, c_out) if cond_dim else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), 0.2)
        if self.film is not None and cond is not None:
            x = self.film(x, cond)
        return F.leaky_relu(self.conv2(x), 0.2)


def coordinate_channels(res: int) -> torch.Tensor:
    """(1, 2, res, res) pixel-centre coordinates x (right) and y (down) in [-1, 1]."""
    t = (torch.arange(res, dtype=torch.float32) + 0.5) / res * 2.0 - 1.0
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx, yy])[None]


class PlaneEncoder(nn.Module):
    """Crop (B, 3, image_res, image_res) [+ condition (B, cond_dim)] -> tri-plane (B, 3 * C, plane_res, plane_res)."""

    def __init__(self, cfg: ModelConfig, cond_dim: int = 0) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        widths = cfg.encoder_widths
        s = cfg.encoder_stem_stride
        self.register_buffer("coords", coordinate_channels(cfg.image_res), persistent=False)
        self.stem = nn.Conv2d(3 + 2, widths[0], kernel_size=s, stride=s)  # patchify down to plane_res
        self.stem_block = ConvBlock(widths[0], widths[0], cond_dim)
        self.down = nn.ModuleList(ConvBlock(widths[i], widths[i + 1], cond_dim) for i in range(len(widths) - 1))
        self.bottleneck = ConvBlock(widths[-1], widths[-1], cond_dim)
        self.up = nn.ModuleList(ConvBlock(widths[i + 1] + widths[i], widths[i], cond_dim)
                                for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], 3 * cfg.plane_channels, 1)
        # A learnt template tri-plane (coarse, upsampled) added to every prediction: what all heads share (where a
        # head is in EG3D's aligned frame, its rough shape) lives here, and the U-Net only writes the identity's
        # difference. Why: learning the shared silhouette through the encoder alone was the slowest part of the
        # first CPU run (coverage loss flat for hundreds of steps); a free parameter per texel learns it directly.
        self.template_res = max(1, cfg.plane_res // TEMPLATE_DIVISOR)
        self.template = nn.Parameter(torch.zeros(1, 3 * cfg.plane_channels, self.template_res, self.template_res))
        self.plane_res = cfg.plane_res

    def forward(self, crop: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.cat([crop, self.coords.expand(crop.shape[0], -1, -1, -1)], dim=1)
        x = self.stem_block(F.leaky_relu(self.stem(x), 0.2), cond)
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(F.avg_pool2d(x, 2), cond)
        x = self.bottleneck(x, cond)
        for block in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skips.pop()], dim=1), cond)
        template = F.interpolate(self.template, size=(self.plane_res, self.plane_res), mode="bilinear",
                                 align_corners=False)
        return self.head(x) + template


class AlbedoEncoder(PlaneEncoder):
    """Crop -> albedo tri-plane (density, albedo features): what does not change with light."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cond_dim=0)


class ShadingEncoder(PlaneEncoder):
    """Crop + source RGB SH -> shading tri-plane (normal refinement, visibility, residual features)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cond_dim=SH_DIM)

    def forward(self, crop: torch.Tensor,  # type: ignore[override]
                source_sh: torch.Tensor | None = None) -> torch.Tensor:
        if source_sh is None:
            raise ValueError("the shading encoder needs the source frame's SH (B, 9, 3)")
        return super().forward(crop, source_sh.reshape(source_sh.shape[0], SH_DIM))
