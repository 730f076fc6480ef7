"""Second-order spherical harmonics (SH) in DPR's convention, the one lighting convention of this project.

Why DPR's: NeRFFaceLighting (the paper's teacher) and DPR (our peer and lighting estimator) both use it, so SH
estimated, interpolated or compared anywhere in the project means the same thing.

Convention (see ../shared/design/PAPER.md):
- 9 coefficients ordered 1, y, z, x, xy, yz, 3z²-1, xz, x²-y².
- Axes ("SH frame"): x image-right, z up, y pointing away from the viewer (into the face). In Blender this is the
  head anchor's local frame (head at the origin facing -Y), so a Blender light's position relative to the anchor
  needs no axis change. In EG3D world coordinates (y up, face toward +z): sh = (x, -z, y) of the world vector.
- Coefficients are *radiance* SH; the cosine-lobe factors pi, 2pi/3, pi/4 are folded into :func:`irradiance_basis`,
  so ``irradiance_basis(n) @ sh`` is irradiance at a surface of normal ``n``.
- Gray SH has shape (9,); RGB SH has shape (9, 3) (one column per channel).
"""
from __future__ import annotations

import numpy as np

SH_ORDER = ("1", "y", "z", "x", "xy", "yz", "3z2-1", "xz", "x2-y2")

_C0 = 0.5 / np.sqrt(np.pi)
_C1 = np.sqrt(3.0) / 2.0 / np.sqrt(np.pi)
_C2 = np.sqrt(15.0) / 2.0 / np.sqrt(np.pi)
_C3 = np.sqrt(5.0) / 4.0 / np.sqrt(np.pi)
_C4 = np.sqrt(15.0) / 4.0 / np.sqrt(np.pi)

#: Cosine-lobe convolution factors per coefficient (band 0: pi, band 1: 2pi/3, band 2: pi/4).
COSINE_LOBE = np.array([np.pi] + [2.0 * np.pi / 3.0] * 3 + [np.pi / 4.0] * 5)

#: EG3D world (x, y up, z toward the viewer) -> SH frame (x right, y into the face, z up).
EG3D_WORLD_TO_SH = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def fibonacci_sphere(count: int) -> np.ndarray:
    """``count`` nearly uniform unit directions (a Fibonacci spiral): where a light is tested or sampled over the
    whole sphere (non-negativity checks, the estimate's lobes)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def sh_basis(directions: np.ndarray) -> np.ndarray:
    """Real SH basis Y_k(d) for unit directions ``(..., 3)`` in the SH frame; returns ``(..., 9)``.

    Projecting a radiance function onto these gives the coefficients this project stores.
    """
    d = np.asarray(directions, dtype=np.float64)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    out = np.empty(d.shape[:-1] + (9,), dtype=np.float64)
    out[..., 0] = _C0
    out[..., 1] = _C1 * y
    out[..., 2] = _C1 * z
    out[..., 3] = _C1 * x
    out[..., 4] = _C2 * x * y
    out[..., 5] = _C2 * y * z
    out[..., 6] = _C3 * (3.0 * z * z - 1.0)
    out[..., 7] = _C2 * x * z
    out[..., 8] = _C4 * (x * x - y * y)
    return out


def irradiance_basis(normals: np.ndarray) -> np.ndarray:
    """DPR's shading basis: :func:`sh_basis` times the cosine lobe, so ``irradiance_basis(n) @ sh`` is irradiance."""
    return sh_basis(normals) * COSINE_LOBE


def irradiance(normals: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Irradiance at unit normals ``(..., 3)`` under SH ``(9,)`` -> ``(...)`` or ``(9, C)`` -> ``(..., C)``."""
    return irradiance_basis(normals) @ np.asarray(sh, dtype=np.float64)


def directional_light_sh(direction: np.ndarray, irradiance_rgb: np.ndarray) -> np.ndarray:
    """Radiance SH (9, 3) of a distant light toward ``direction`` (SH frame, from the surface to the light).

    ``irradiance_rgb`` is the irradiance it gives a surface facing it (Blender's sun strength × colour). The SH
    projection of a delta is ``E · Y_k(ω)``; its irradiance approximates ``E · max(0, n·ω)``.
    """
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    return np.outer(sh_basis(d), np.asarray(irradiance_rgb, dtype=np.float64).reshape(3))


def ambient_sh(radiance_rgb: np.ndarray) -> np.ndarray:
    """Radiance SH (9, 3) of a uniform environment of radiance ``Lw``; its irradiance is ``pi · Lw`` everywhere."""
    sh = np.zeros((9, 3))
    # Projection of a constant over the sphere: Lw · Y_0 · 4π; irradiance is then π · Y_0 · coefficient = π · Lw.
    sh[0] = np.asarray(radiance_rgb, dtype=np.float64).reshape(3) * _C0 * 4.0 * np.pi
    return sh


def as_rgb(sh: np.ndarray) -> np.ndarray:
    """Accept gray (9,) or RGB (9, 3) SH and return RGB (9, 3) (gray is copied to the three channels)."""
    sh = np.asarray(sh, dtype=np.float64)
    if sh.shape == (9,):
        return np.repeat(sh[:, None], 3, axis=1)
    if sh.shape == (9, 3):
        return sh
    if sh.shape == (27,):
        return sh.reshape(9, 3)
    raise ValueError(f"SH must have shape (9,), (9, 3) or (27,), got {sh.shape}")


#: Rec. 709 luminance weights of linear RGB.
LUMINANCE = np.array([0.2126, 0.7152, 0.0722])


def to_gray(sh: np.ndarray) -> np.ndarray:
    """RGB SH (9, 3) to DPR's gray SH (9,), with Rec. 709 luminance weights (what DPR relights: Lab's L)."""
    sh = as_rgb(sh)
    return sh @ LUMINANCE


def rotate_eg3d_to_sh(vectors: np.ndarray) -> np.ndarray:
    """Directions or normals ``(..., 3)`` in EG3D world coordinates to the SH frame."""
    return np.asarray(vectors, dtype=np.float64) @ EG3D_WORLD_TO_SH.T


def load_dpr_light(path: str, scale: float = 1.0) -> np.ndarray:
    """Read a DPR example light file (9 numbers, one per line) as gray SH (9,), optionally scaled (DPR's demo: 0.7)."""
    values = np.loadtxt(path, dtype=np.float64).reshape(-1)
    if values.shape != (9,):
        raise ValueError(f"{path}: expected 9 SH coefficients, found {values.size}")
    return values * scale


def interpolate(sh_a: np.ndarray, sh_b: np.ndarray, t: float) -> np.ndarray:
    """Linear interpolation of SH coefficients (what the paper's demo schedule does between keyed lights)."""
    return (1.0 - t) * np.asarray(sh_a, dtype=np.float64) + t * np.asarray(sh_b, dtype=np.float64)


#: Gains of SH bands 0, 1 and 2 that take a DPR light (gray SH of the Lab L shading of an 8-bit sRGB image) to this
#: project's linear radiance SH: fitted so that our ratio relight under the converted light changes a face's linear
#: luminance as DPR's own relight does under the DPR light (``python -m evaluation.dpr_units``; docs/lighting.md).
#: One map per band because a linear map that commutes with rotations of the light can only scale each band.
DPR_BAND_GAINS = (1.924, 3.677, 6.712)


def band_gains_vector(gains) -> np.ndarray:
    """Per-coefficient (9,) factors from three per-band gains."""
    g = np.asarray(gains, dtype=np.float64).reshape(3)
    return g[np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])]


def dpr_to_rgb_sh(sh_gray: np.ndarray) -> np.ndarray:
    """DPR's gray SH (9,) -> white linear radiance SH (9, 3): THE conversion (CLI ``--sh file.txt``, the evaluation's
    schedule, the training lights)."""
    g = np.asarray(sh_gray, dtype=np.float64)
    if g.shape != (9,):
        raise ValueError(f"DPR gray SH must have shape (9,), got {g.shape}")
    return as_rgb(g * band_gains_vector(DPR_BAND_GAINS))


def rgb_to_dpr_sh(sh_rgb: np.ndarray) -> np.ndarray:
    """Linear radiance SH (9, 3) -> DPR's gray SH (9,) by luminance; the inverse of :func:`dpr_to_rgb_sh` on gray
    lights (what DPR is given as a target, and how estimates are compared with DPR-convention targets)."""
    return to_gray(sh_rgb) / band_gains_vector(DPR_BAND_GAINS)


_ROTATION_SAMPLES = fibonacci_sphere(64)
_ROTATION_FIT = np.linalg.pinv(sh_basis(_ROTATION_SAMPLES))


def rotate_sh(sh: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """SH ``(9,)`` or ``(9, C)`` of a light turned by the 3×3 ``rotation`` (SH-frame vectors, ``d' = R d``): the
    radiance ``L'(d) = L(Rᵀ d)``. Exact for second order (rotations keep each band; the least-squares projection of a
    band-limited function on 64 directions recovers it to rounding)."""
    r = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    turned = sh_basis(_ROTATION_SAMPLES @ r)  # Y(Rᵀ d) for each sample d (rows: dᵀ R = (Rᵀ d)ᵀ)
    return (_ROTATION_FIT @ turned) @ np.asarray(sh, dtype=np.float64)
