"""What a relight is asked to light the head with: direct lights (each shaded on its own, with a shadow) plus
everything else as one RGB SH (world colour, HDRI, ambient, DPR-style SH files).

Why two parts: a second-order SH cannot hold a delta, so it cannot make a nose shadow or a highlight. Blender's point,
spot, area and sun lights are kept as :class:`~blender_relight.lighting.blender_lights.LightSpec` so an engine that
has the head's 3D geometry can shade each one with a shadow test and a specular lobe; the world and HDRI stay SH.
An engine without direct shading uses :meth:`SceneLighting.total_sh` (every light projected to SH), which is exactly
what the project did before direct lights existed.

Frame and units: the SH frame (head anchor axes: x right, y into the face, z up); lights in Blender's units relative
to the head anchor (``blender_lights`` module docstring); the SH is radiance SH in the DPR order
(``lighting.sh``), so ``irradiance_basis(n) @ sh`` is linear irradiance.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blender_relight.lighting import sh as shlib
from blender_relight.lighting.blender_lights import LightSpec, light_to_sh


@dataclass(frozen=True)
class SceneLighting:
    """Target lighting of one frame: ``sh`` (9, 3) for the world/ambient part, ``lights`` for direct lights."""

    sh: np.ndarray = field(default_factory=lambda: np.zeros((9, 3)))
    lights: tuple[LightSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sh", shlib.as_rgb(np.asarray(self.sh, dtype=np.float64)))
        object.__setattr__(self, "lights", tuple(self.lights))

    @classmethod
    def coerce(cls, lighting: "SceneLighting | np.ndarray") -> "SceneLighting":
        """A SceneLighting as it is, or an RGB (9, 3) / gray (9,) SH array as SH-only lighting."""
        return lighting if isinstance(lighting, SceneLighting) else cls(sh=np.asarray(lighting, dtype=np.float64))

    def total_sh(self) -> np.ndarray:
        """Everything as one RGB SH (9, 3): the lights projected to second order plus ``sh``."""
        total = np.array(self.sh, dtype=np.float64)
        for spec in self.lights:
            total = total + light_to_sh(spec)
        return total

    def key(self) -> bytes:
        """Bytes that identify this lighting (for resume hashes and caches)."""
        parts = [np.asarray(self.sh, np.float64).tobytes()]
        for spec in self.lights:
            parts.append(repr(spec).encode())
        return b"|".join(parts)
