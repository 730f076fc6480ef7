"""RelightNet: the whole network, split along the seams the runtime uses.

    encode   (per frame, cached)       crop + source SH            -> albedo planes, shading planes
    temporal (per frame, stateless)    planes + ring-buffer memory -> corrected planes, new memory
    render   (per camera)              planes + 25-d EG3D camera   -> G-buffer at out_res (via low-res + SR)
    shade    (per light, cheap)        G-buffer + target RGB SH    -> image, shading

A light change re-runs only ``shade``; a camera change ``render`` + ``shade``; the encoders run once per frame.
``forward`` chains them for training and returns every intermediate the losses need.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig, get_preset
from .encoders import AlbedoEncoder, ShadingEncoder
from .field import TriplaneField
from .renderer import render_gbuffer
from .shading import Shader
from .superres import SuperResolution
from .temporal import TemporalAttention


class RelightNet(nn.Module):
    """The relighting network (see docs/model.md for shapes and conventions)."""

    def __init__(self, config: ModelConfig | str = "default") -> None:
        super().__init__()
        cfg = get_preset(config) if isinstance(config, str) else config
        cfg.validate()
        self.config = cfg
        self.albedo_encoder = AlbedoEncoder(cfg)
        self.shading_encoder = ShadingEncoder(cfg)
        self.temporal_net = TemporalAttention(cfg)
        self.field = TriplaneField(cfg)
        self.superres = SuperResolution(cfg)
        self.shader = Shader(cfg)

    # --- the four seams -------------------------------------------------------------------------------------------
    def encode(self, crop: torch.Tensor, source_sh: torch.Tensor) -> dict[str, torch.Tensor]:
        """Crop (B, 3, image_res, image_res) linear RGB + source SH (B, 9, 3) -> planes (B, 3C, R, R) each."""
        return {"albedo_planes": self.albedo_encoder(crop), "shading_planes": self.shading_encoder(crop, source_sh)}

    def empty_memory(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero memory (B, k, N, D) and all-invalid mask (B, k) for the first frame of a clip."""
        return self.temporal_net.empty_memory(batch, next(self.parameters()).device)

    def temporal(self, planes: dict[str, torch.Tensor], memory: torch.Tensor | None = None,
                 memory_valid: torch.Tensor | None = None
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Correct the planes with attention over earlier frames; returns (planes, memory, memory_valid)."""
        a = planes["albedo_planes"]
        if memory is None:
            memory, memory_valid = self.temporal_net.empty_memory(a.shape[0], a.device)
        elif memory_valid is None:
            memory_valid = torch.ones(memory.shape[:2], device=a.device)
        na, ns, memory, memory_valid = self.temporal_net(a, planes["shading_planes"], memory, memory_valid)
        return {"albedo_planes": na, "shading_planes": ns}, memory, memory_valid

    def render_lowres(self, planes: dict[str, torch.Tensor], camera: torch.Tensor,
                      stochastic: bool = False) -> dict[str, torch.Tensor]:
        """Volume-rendered G-buffer at render_res (camera (B, 25) EG3D label)."""
        return render_gbuffer(self.field, self.config, planes["albedo_planes"], planes["shading_planes"], camera,
                              stochastic)

    def render(self, planes: dict[str, torch.Tensor], camera: torch.Tensor,
               stochastic: bool = False) -> dict[str, torch.Tensor]:
        """G-buffer at out_res: albedo, normal (unit, EG3D world), visibility, depth, alpha, features."""
        return self.superres(self.render_lowres(planes, camera, stochastic))

    def shade(self, gbuffer: dict[str, torch.Tensor], sh_rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Relight a G-buffer with RGB SH (B, 9, 3): image, shading, irradiance, residual (B, 3, H, W)."""
        return self.shader(gbuffer, sh_rgb)

    # --- training ---------------------------------------------------------------------------------------------------
    def forward(self, crop: torch.Tensor, source_sh: torch.Tensor, target_sh: torch.Tensor, cameras: torch.Tensor,
                memory: torch.Tensor | None = None, memory_valid: torch.Tensor | None = None,
                use_temporal: bool = True, stochastic: bool | None = None) -> dict[str, torch.Tensor]:
        """Everything the losses need.

        ``cameras`` is (B, 25) or (B, V, 25) (e.g. the source view and a re-posed view); with V views every image
        output is (B, V, C, H, W), otherwise (B, C, H, W). ``stochastic`` (default: ``self.training``) jitters the
        ray samples. Returns albedo, shading, normal, image, visibility, depth, alpha, irradiance, residual (at
        out_res), lowres_albedo, lowres_normal, lowres_alpha, the planes (after the temporal step) and raw_planes
        (before it), and memory / memory_valid for the next frame.
        """
        stochastic = self.training if stochastic is None else stochastic
        raw = self.encode(crop, source_sh)
        if use_temporal:
            planes, memory, memory_valid = self.temporal(raw, memory, memory_valid)
        else:
            planes = raw
        multi = cameras.dim() == 3
        cams = cameras if multi else cameras.unsqueeze(1)
        b, v = cams.shape[:2]
        rep = {k: t.repeat_interleave(v, dim=0) for k, t in planes.items()}
        low = self.render_lowres(rep, cams.reshape(b * v, 25), stochastic)
        g = self.superres(low)
        s = self.shade(g, target_sh.repeat_interleave(v, dim=0))
        out: dict[str, torch.Tensor] = {}
        for name, t in list(g.items()) + list(s.items()):
            out[name] = t
        for name in ("albedo", "normal", "alpha"):
            out["lowres_" + name] = low[name]
        if multi:
            out = {k: t.reshape((b, v) + t.shape[1:]) for k, t in out.items()}
        out.update({"albedo_planes": planes["albedo_planes"], "shading_planes": planes["shading_planes"],
                    "raw_albedo_planes": raw["albedo_planes"], "raw_shading_planes": raw["shading_planes"]})
        if memory is not None:
            out["memory"], out["memory_valid"] = memory, memory_valid
        return out


def randomize_weights(net: nn.Module, seed: int = 0, gain: float = 1.0) -> nn.Module:
    """Overwrite every parameter with seeded random values (fan-in scaled), including the zero-initialised heads.

    Why: the default initialisation starts several heads at zero (temporal correction, FiLM, shading residual) so an
    untrained model is well behaved; parity tests and benchmarks need those paths to carry real numbers, or an export
    bug in them could not show.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * gain / fan_in ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return net
