"""sRGB <-> linear light, and integer <-> float conversions.

Why one module: the pipeline works in linear float32 RGB (1.0 = sRGB white) and converts exactly once on decode and
once on encode, so every stage agrees on what a pixel value means. The transfer functions are the exact piecewise
IEC 61966-2-1 formulas (not a 2.2 gamma), so a decode/encode round trip of 8-bit values is lossless.
"""
from __future__ import annotations

import numpy as np

_A = 0.055
_THRESH_SRGB = 0.04045  # sRGB-encoded value where the linear segment ends
_THRESH_LINEAR = 0.0031308  # linear value where the linear segment ends


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded floats (0..1, values outside pass through the same formula, sign-symmetric) -> linear float32."""
    x = np.asarray(srgb, dtype=np.float32)
    a = np.abs(x)
    lin = np.where(a <= _THRESH_SRGB, a / 12.92, ((a + _A) / (1.0 + _A)) ** 2.4)
    return (np.sign(x) * lin).astype(np.float32, copy=False)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear floats -> sRGB-encoded float32 (no clipping: HDR values above 1 stay above 1)."""
    x = np.asarray(linear, dtype=np.float32)
    a = np.abs(x)
    enc = np.where(a <= _THRESH_LINEAR, a * 12.92, (1.0 + _A) * np.power(a, 1.0 / 2.4) - _A)
    return (np.sign(x) * enc).astype(np.float32, copy=False)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 (or float) image -> float32 in 0..1 of the integer range, no transfer function applied."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise TypeError(f"unsupported image dtype {image.dtype}; expected uint8, uint16 or float")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float 0..1 -> uint8 with rounding and clipping."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Float 0..1 -> uint16 with rounding and clipping."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 65535.0), 0, 65535).astype(np.uint16)


_LUT8 = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)


def uint8_srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB image -> linear float32 through a 256-entry table (decode hot path: a lookup, no pow)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    return _LUT8[image]


def linear_to_uint8_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear float image -> uint8 sRGB (clipped to 0..1 white)."""
    return to_uint8(linear_to_srgb(np.clip(linear, 0.0, 1.0)))


def linear_to_uint16_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear float image -> uint16 sRGB (clipped to 0..1 white), for 16-bit PNG export."""
    return to_uint16(linear_to_srgb(np.clip(linear, 0.0, 1.0)))
