"""Environment lighting: an equirectangular HDRI (Blender's World texture) -> RGB second-order SH at the head.

Why: users light with HDRIs as often as with lamps; nine coefficients per channel keep all of an HDRI that a
Lambertian face can show (the cosine lobe filters out the rest), so an HDRI costs the same as a light at shade time.

Mapping (Cycles' ``direction_to_equirectangular``): the top row is Blender's +Z (zenith); a world direction with
azimuth φ = atan2(y, x) sits at u = (π − φ) / 2π, so the image centre looks along +X, the left quarter along +Y and the
right quarter along −Y. Pixel (row r, column c) of an H×W image is the direction of polar angle θ = π (r + ½) / H
and u = (c + ½) / W. Each pixel's weight is its exact solid angle (2π/W)(cos θ_top − cos θ_bottom), so the weights
sum to 4π and a constant map projects to ``sh.ambient_sh`` (to 1e-4 of its norm at 64 rows).

Frame: directions go from Blender world axes to the head anchor's axes (the SH frame) with the anchor's rotation
(``world_to_anchor = R_anchorᵀ``); a rotation of the World texture (a Mapping node) composes in front of it.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from blender_relight.errors import RelightError
from blender_relight.lighting import sh as shlib

#: HDRIs are reduced to at most this width before projection (area averaging keeps the integral; the cosine lobe
#: removes all detail finer than a few degrees anyway).
PROJECTION_WIDTH = 256


def equirect_directions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions ``(H, W, 3)`` in Blender world axes and solid angles ``(H, W)`` of an equirect image's pixels."""
    theta = np.pi * (np.arange(height) + 0.5) / height
    u = (np.arange(width) + 0.5) / width
    phi = np.pi - 2.0 * np.pi * u
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    dirs = np.stack(np.broadcast_arrays(st * np.cos(phi)[None, :], st * np.sin(phi)[None, :], ct), axis=-1)
    edges = np.cos(np.pi * np.arange(height + 1) / height)
    solid = np.broadcast_to(((2.0 * np.pi / width) * (edges[:-1] - edges[1:]))[:, None], (height, width))
    return dirs, solid


def hdri_to_sh(image: np.ndarray | str | os.PathLike, rotation: np.ndarray | None = None, strength: float = 1.0,
               world_rotation: np.ndarray | None = None) -> np.ndarray:
    """Radiance SH ``(9, 3)`` in the head anchor's frame of an equirectangular RGB radiance map.

    ``image``: an ``(H, W, 3)`` array, or the path of an .hdr/.exr file (read once and kept, reduced, in memory
    until the file changes, so an animated anchor re-projects without re-reading).
    ``rotation``: the head anchor's ``matrix_world`` (3x3 or 4x4); its rotation takes anchor axes to world axes
    (scale is removed). ``world_rotation``: optional 3x3 rotation applied to texture lookups (the World's Mapping
    node). ``strength``: the Background node's strength.
    """
    if isinstance(image, (str, os.PathLike)):
        p = Path(image)
        img = _reduced_hdri(str(p), p.stat().st_mtime_ns if p.exists() else 0)
    else:
        img = _reduce(np.asarray(image, dtype=np.float32))
    h, w = img.shape[:2]
    dirs, solid = equirect_directions(h, w)
    d = dirs.reshape(-1, 3)
    if world_rotation is not None:
        # the texture is looked up at R·d for a world direction d; a pixel's texture direction t is seen at Rᵀ·t
        d = d @ np.asarray(world_rotation, dtype=np.float64)[:3, :3]
    if rotation is not None:
        A = np.asarray(rotation, dtype=np.float64)[:3, :3]
        A = A / np.linalg.norm(A, axis=0, keepdims=True)
        d = d @ A  # world -> anchor: Aᵀ·d for each row
    basis = shlib.sh_basis(d)  # (N, 9)
    return float(strength) * (basis * solid.reshape(-1, 1)).T @ img.reshape(-1, 3)


def _reduce(img: np.ndarray) -> np.ndarray:
    """Validate, drop alpha, replace non-finite values and reduce to :data:`PROJECTION_WIDTH` by area averaging."""
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"HDRI must be (H, W, 3) RGB, got shape {img.shape}")
    img = np.nan_to_num(img[..., :3], nan=0.0, posinf=0.0, neginf=0.0)
    if img.shape[1] > PROJECTION_WIDTH:
        import cv2

        w = PROJECTION_WIDTH
        h = max(2, int(round(img.shape[0] * w / img.shape[1])))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return img.astype(np.float64)


@functools.lru_cache(maxsize=4)
def _reduced_hdri(path: str, mtime_ns: int) -> np.ndarray:
    return _reduce(read_hdri(path))


def read_hdri(path: str | os.PathLike) -> np.ndarray:
    """Read an .hdr (Radiance RGBE) or .exr HDRI as linear float32 RGB ``(H, W, 3)``."""
    p = Path(path)
    if not p.is_file():
        raise RelightError(f"HDRI {p} not found; choose an existing .hdr or .exr file")
    if p.suffix.lower() not in (".hdr", ".exr", ".pic"):
        raise RelightError(f"HDRI {p} is not .hdr or .exr; convert it to Radiance .hdr or OpenEXR")
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # OpenCV reads EXR only when this is set
    import cv2

    img = cv2.imread(str(p), cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise RelightError(f"HDRI {p} could not be decoded; re-save it as Radiance .hdr or uncompressed/ZIP OpenEXR")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    rgb = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb, dtype=np.float32)
