"""Temporal consistency: cross-attention from the current frame's plane tokens to a ring buffer of earlier frames.

Why this shape (and not the paper's public code, which attends over a sequence of length one and freezes its memory
after five frames): every frame's albedo and shading tri-planes are pooled to a grid of tokens (3 planes x t x t),
the current tokens attend over themselves and over the tokens of the last k frames (a ring buffer that moves with the
video), and the attended result corrects the planes by a smooth, upsampled residual. The module is stateless per
call: ``memory`` (B, k, N, D) and ``memory_valid`` (B, k) go in and the updated ring comes out, so the cache, the
ONNX graph and training all see the same function. Slot k - 1 is the newest; invalid slots (the start of a clip)
are masked out, and the current frame is always attendable so the softmax is never empty.

The output projection starts at zero: an untrained temporal module is the identity. Its input (the pooled plane
features) and the input of its output head are layer-normalised: trained planes are large (values of several units),
and without the normalisation the first optimiser step on the zero head (every weight moves by about the learning
rate, times unnormalised tokens of that size) shifted every plane by several units and ended the density in the
project's first stage-2 run (docs/training.md).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .config import ModelConfig

MASK_VALUE = -1.0e4  # additive attention mask; finite so fp16 graphs stay NaN-free


class TemporalAttention(nn.Module):
    """(albedo planes, shading planes, memory, valid) -> (corrected planes, new memory, new valid)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c2, d = 2 * cfg.plane_channels, cfg.temporal_dim
        self.norm_in = nn.LayerNorm(c2)
        self.embed = nn.Linear(c2, d)
        self.pos = nn.Parameter(torch.randn(1, cfg.n_tokens, d) * 0.02)
        self.age = nn.Parameter(torch.randn(cfg.temporal_window + 1, d) * 0.02)  # 0 = current frame
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.norm_out = nn.LayerNorm(d)
        self.head = nn.Linear(d, c2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def empty_memory(self, batch: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero memory and an all-invalid mask for the first frame of a clip."""
        cfg = self.cfg
        return (torch.zeros(batch, cfg.temporal_window, cfg.n_tokens, cfg.temporal_dim, device=device),
                torch.zeros(batch, cfg.temporal_window, device=device))

    def tokens(self, albedo_planes: torch.Tensor, shading_planes: torch.Tensor) -> torch.Tensor:
        """Planes (B, 3C, R, R) x 2 -> embedded tokens (B, N, D) with positions."""
        b, c3 = albedo_planes.shape[:2]
        t = self.cfg.temporal_tokens
        pooled = [F.adaptive_avg_pool2d(p, t).reshape(b, 3, c3 // 3, t * t) for p in (albedo_planes, shading_planes)]
        feats = torch.cat(pooled, dim=2).permute(0, 1, 3, 2).reshape(b, 3 * t * t, 2 * (c3 // 3))
        return self.embed(self.norm_in(feats)) + self.pos

    def forward(self, albedo_planes: torch.Tensor, shading_planes: torch.Tensor, memory: torch.Tensor,
                memory_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        b, c3, r, _ = albedo_planes.shape
        k, n, d, h = cfg.temporal_window, cfg.n_tokens, cfg.temporal_dim, cfg.temporal_heads
        x = self.tokens(albedo_planes, shading_planes)                        # (B, N, D)
        ages = self.age[1:].flip(0)                                           # slot j has age k - j
        mem = memory + ages[None, :, None, :]
        kv_in = torch.cat([x + self.age[0], mem.reshape(b, k * n, d)], dim=1)  # (B, (k + 1) N, D)
        valid = torch.cat([torch.ones_like(memory_valid[:, :1]), memory_valid], dim=1)   # current first
        # reorder mask to match kv_in: current tokens, then slots 0..k-1
        mask = valid.unsqueeze(-1).expand(-1, -1, n).reshape(b, 1, 1, (k + 1) * n)
        q = self.q(self.norm_q(x)).reshape(b, n, h, d // h).transpose(1, 2)
        kv = self.kv(self.norm_kv(kv_in)).reshape(b, (k + 1) * n, 2, h, d // h)
        key, val = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        scores = q @ key.transpose(-1, -2) * (float(d // h) ** -0.5) + (1.0 - mask) * MASK_VALUE
        att = torch.softmax(scores, dim=-1) @ val                             # (B, H, N, D/H)
        y = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        y = y + self.mlp(self.norm_mlp(y))
        delta = self.head(self.norm_out(y))                                                  # (B, N, 2C)
        t = cfg.temporal_tokens
        c = c3 // 3
        delta = delta.reshape(b, 3, t, t, 2 * c).permute(0, 1, 4, 2, 3).reshape(b * 3, 2 * c, t, t)
        delta = F.interpolate(delta, size=(r, r), mode="bilinear", align_corners=False).reshape(b, 3, 2 * c, r, r)
        new_albedo = albedo_planes + delta[:, :, :c].reshape(b, c3, r, r)
        new_shading = shading_planes + delta[:, :, c:].reshape(b, c3, r, r)
        new_memory = torch.cat([memory[:, 1:], x.unsqueeze(1)], dim=1)
        new_valid = torch.cat([memory_valid[:, 1:], torch.ones_like(memory_valid[:, :1])], dim=1)
        return new_albedo, new_shading, new_memory, new_valid
