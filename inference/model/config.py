"""Model sizes: one dataclass and the named presets.

Why presets: the paper's size (``paper``) is a GPU model; the ``default`` preset is the one that keeps a light change
interactive and a camera change at several frames per second on a 2-core CPU (figures in docs/model.md), and ``tiny``
keeps the tests fast. Everything shape-related in the network and in the ONNX export is derived from this config, and
``model.json`` stores it so the runtime can check the files it loads.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Every size of the relighting network (see docs/model.md for what each one costs)."""

    image_res: int = 512                 # input crop side (EG3D crop, linear RGB)
    plane_res: int = 256                 # tri-plane side
    plane_channels: int = 32             # channels per plane (there are three planes per tri-plane)
    encoder_widths: tuple[int, ...] = (32, 64, 128, 256)   # U-Net channels per level (level 0 at plane_res)
    encoder_stem_stride: int = 2         # image_res / (stem stride) = plane_res
    n_coarse: int = 48                   # stratified samples per ray
    n_importance: int = 48               # importance samples per ray
    render_res: int = 64                 # volume-rendered G-buffer side
    sr_factor: int = 8                   # super-resolution factor: output side = render_res * sr_factor
    field_hidden: int = 64               # tri-plane decoder MLP width
    feature_dim: int = 32                # rendered feature channels (input of super-resolution)
    sr_widths: tuple[int, ...] = (64, 32, 16)   # SR channels, coarse to fine (one per x2 stage, last reused)
    residual_dim: int = 8                # per-pixel features that the SH-conditioned shading residual reads
    shade_hidden: int = 16               # width of the shading-residual MLP
    temporal_tokens: int = 8             # token grid per plane side (tokens per frame = 3 * temporal_tokens**2)
    temporal_dim: int = 128              # attention width
    temporal_heads: int = 4
    temporal_window: int = 4             # k: earlier frames kept in the ring buffer
    box_warp: float = 1.0                # EG3D: world cube [-box_warp/2, box_warp/2]^3 maps onto the planes
    density_bias: float = -1.0           # EG3D: softplus(sigma - 1)

    @property
    def out_res(self) -> int:
        """Side of the super-resolved G-buffer and of the relit image."""
        return self.render_res * self.sr_factor

    @property
    def n_tokens(self) -> int:
        """Tokens per frame for the temporal network."""
        return 3 * self.temporal_tokens ** 2

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a config from a different model version)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})

    def validate(self) -> None:
        """Check the sizes fit together; raises ValueError naming the field."""
        if self.image_res % self.encoder_stem_stride or self.image_res // self.encoder_stem_stride != self.plane_res:
            raise ValueError("image_res / encoder_stem_stride must equal plane_res")
        if self.plane_res % (2 ** (len(self.encoder_widths) - 1)):
            raise ValueError("plane_res must be divisible by 2**(len(encoder_widths) - 1)")
        if self.sr_factor & (self.sr_factor - 1) or self.sr_factor < 1:
            raise ValueError("sr_factor must be a power of two")
        if self.plane_res % self.temporal_tokens:
            raise ValueError("plane_res must be divisible by temporal_tokens")
        if self.temporal_dim % self.temporal_heads:
            raise ValueError("temporal_dim must be divisible by temporal_heads")
        if self.feature_dim < 1 or self.residual_dim < 1:
            raise ValueError("feature_dim and residual_dim must be positive")


PRESETS: dict[str, ModelConfig] = {
    # The paper's public-code sizes: 3 x 32 x 256^2 planes, 48 + 48 samples, 64^2 render, x8 super-resolution.
    "paper": ModelConfig(),
    # Chosen by measurement on a 2-core CPU (docs/model.md): 3 x 24 x 128^2 planes, 16 + 16 samples, 32^2 render,
    # x16 super-resolution: light change ~50 fps, camera change ~11 fps, encode ~50 ms (once per frame, cached).
    "default": ModelConfig(
        plane_res=128, plane_channels=24, encoder_widths=(32, 64, 96, 128), encoder_stem_stride=4,
        n_coarse=16, n_importance=16, render_res=32, sr_factor=16, field_hidden=32, feature_dim=16,
        sr_widths=(32, 16, 12, 8), residual_dim=8, shade_hidden=16,
        temporal_tokens=8, temporal_dim=64, temporal_heads=4, temporal_window=4,
    ),
    # Tests only: everything small, 64^2 crops.
    "tiny": ModelConfig(
        image_res=64, plane_res=16, plane_channels=4, encoder_widths=(8, 16), encoder_stem_stride=4,
        n_coarse=6, n_importance=6, render_res=8, sr_factor=8, field_hidden=16, feature_dim=6,
        sr_widths=(8, 6), residual_dim=4, shade_hidden=8,
        temporal_tokens=4, temporal_dim=16, temporal_heads=2, temporal_window=3,
    ),
}


def get_preset(name: str) -> ModelConfig:
    """The preset called ``name``; ValueError listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
