"""Analytic relighting by irradiance ratio: the ``analytic`` engine and the evaluation's floor.

Why a ratio: with the Lambertian model pixel = albedo · E(n) / π, the albedo cancels in
``pixel · E_target(n) / E_source(n)``, so a frame can be relit from tracked normals and an estimated source SH with
no network. It cannot remove cast shadows or speculars of the input, and it is only as good as the normals; that is
why it is a floor, not the product.
"""
from __future__ import annotations

import numpy as np

from blender_relight.lighting import sh as shlib

#: Largest brightening factor allowed (a light turned up beyond this is clipped, not amplified noise).
MAX_RATIO = 8.0
#: Denominator guard as a fraction of the mean source luminance of the shading inside the mask.
GUARD_FRACTION = 0.02
#: Largest change of a channel relative to the luminance (a target light's colour against the source's).
MAX_CHROMA_RATIO = 2.0
#: Rec. 709 luminance weights of linear RGB.
LUMINANCE = shlib.LUMINANCE


def shading_image(normals_sh: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Irradiance image ``(H, W, 3)`` float32 of SH ``(9, 3)`` (or gray (9,)) at unit normals ``(H, W, 3)``;
    0 where the normal is zero (outside the face)."""
    n = np.asarray(normals_sh, dtype=np.float64)
    valid = np.einsum("...i,...i->...", n, n) > 0.25
    out = shlib.irradiance_basis(n) @ shlib.as_rgb(sh)
    out[~valid] = 0.0
    return out.astype(np.float32)


def relight_ratio(image_linear: np.ndarray, normals_sh: np.ndarray, mask: np.ndarray, source_sh: np.ndarray,
                  target_sh: np.ndarray, max_ratio: float = MAX_RATIO) -> np.ndarray:
    """``image · E_target(n) / E_source(n)`` inside the (feathered, [0, 1]) mask, the input outside.

    Irradiances at the normals are clamped at 0 (second-order SH rings negative behind a strong light); the ratio
    itself is :func:`relight_by_shading`'s.
    """
    m = _mask_2d(mask)
    if np.asarray(normals_sh).shape[:2] != m.shape:
        raise ValueError(f"normals {np.shape(normals_sh)} and mask {m.shape} must match")
    basis = shlib.irradiance_basis(np.asarray(normals_sh, dtype=np.float64))
    e_src = np.maximum(basis @ shlib.as_rgb(source_sh), 0.0)
    e_tgt = np.maximum(basis @ shlib.as_rgb(target_sh), 0.0)
    return relight_by_shading(image_linear, m, e_src, e_tgt, max_ratio)


def lighting_shading(normals_sh: np.ndarray, lighting) -> np.ndarray:
    """Irradiance image ``(H, W, 3)`` float32 of a :class:`SceneLighting` (or an SH array) at unit normals.

    Direct lights (SUN, POINT, SPOT and area lights small for their distance) are shaded exactly,
    ``E · max(0, n·ω)``, without a shadow; everything else (the SH part, large area lights) through second-order
    SH. Why: a second-order SH cannot hold a point light: it leaves 6 % of the key on the far side (its
    irradiance at n = −ω is E/16) and rings negative around the terminator, so a key from the side could not darken
    the far side as real photographs do (Yale: docs/evaluation.md).
    """
    from blender_relight.lighting.scene import SceneLighting

    lighting = SceneLighting.coerce(lighting)
    n = np.asarray(normals_sh, dtype=np.float64)
    valid = np.einsum("...i,...i->...", n, n) > 0.25
    sh_part = np.array(lighting.sh, dtype=np.float64)
    out = np.zeros(n.shape[:-1] + (3,), dtype=np.float64)
    for spec in lighting.lights:
        exact = _direct_light(spec)
        if exact is None:
            sh_part = sh_part + _light_sh(spec)
            continue
        omega, e_rgb = exact
        out += np.maximum(n @ omega, 0.0)[..., None] * e_rgb
    out += np.maximum(shlib.irradiance_basis(n) @ sh_part, 0.0)
    out[~valid] = 0.0
    return out.astype(np.float32)


#: An area light whose size is below this fraction of its distance is shaded as a point (its lobe is that narrow).
SMALL_AREA = 0.25


def _light_sh(spec) -> np.ndarray:
    from blender_relight.lighting.blender_lights import light_to_sh

    return light_to_sh(spec)


def _direct_light(spec) -> tuple[np.ndarray, np.ndarray] | None:
    """(unit direction head -> light, RGB irradiance facing it) of a light that acts as a point, else None."""
    from blender_relight.lighting.blender_lights import light_irradiance

    if spec.type == "SUN":
        d = -np.asarray(spec.direction, dtype=np.float64)
        return d / np.linalg.norm(d), spec.rgb() * float(spec.power)
    offset = np.asarray(spec.position, dtype=np.float64).reshape(3)
    r = float(np.linalg.norm(offset))
    if r < 1e-9:
        return None
    if spec.type == "AREA" and max(float(spec.size), float(spec.size_y)) > SMALL_AREA * r:
        return None
    return offset / r, spec.rgb() * light_irradiance(spec)


def relight_to_lighting(image_linear: np.ndarray, normals_sh: np.ndarray, mask: np.ndarray, source_sh: np.ndarray,
                        lighting, max_ratio: float = MAX_RATIO) -> np.ndarray:
    """:func:`relight_by_shading` from the source SH's irradiance to :func:`lighting_shading` of ``lighting``."""
    m = _mask_2d(mask)
    if np.asarray(normals_sh).shape[:2] != m.shape:
        raise ValueError(f"normals {np.shape(normals_sh)} and mask {m.shape} must match")
    return relight_by_shading(image_linear, m, shading_image(normals_sh, source_sh),
                              lighting_shading(normals_sh, lighting), max_ratio)



def relight_by_shading(image_linear: np.ndarray, mask: np.ndarray, source_shading: np.ndarray,
                       target_shading: np.ndarray, max_ratio: float = MAX_RATIO) -> np.ndarray:
    """``image · S_target / S_source`` inside the (feathered, [0, 1]) mask, the input outside, for any per-pixel
    shading images ``(H, W, 3)`` (analytic irradiance here, the network's learned shading in the neural engine).

    The ratio is a *luminance* ratio times a bounded *chroma* ratio: ``(L_t + g) / (L_s + g)`` with ``L`` the Rec. 709
    luminance of the shading and ``g`` a small guard (:data:`GUARD_FRACTION` of the mean source luminance in the
    mask), times the change of the light's colour ``(S_t / L_t) / (S_s / L_s)`` clamped to
    [1 / :data:`MAX_CHROMA_RATIO`, :data:`MAX_CHROMA_RATIO`]. Why not one ratio per channel: where one channel's
    source shading is small (a blue-poor warm light on a cheek turned away) its ratio blows up while the others do
    not, which paints yellow/cyan blotches; the luminance ratio darkens and brightens all channels alike, and the
    light's colour is applied only as far as it is plausible. ``target == source`` returns the input exactly; the
    whole ratio is clamped to ``[0, max_ratio]``.
    """
    img = np.asarray(image_linear, dtype=np.float32)
    m = _mask_2d(mask)
    if img.shape[:2] != m.shape or np.shape(source_shading)[:2] != m.shape or np.shape(target_shading)[:2] != m.shape:
        raise ValueError(f"image {img.shape}, shadings {np.shape(source_shading)}, {np.shape(target_shading)} and "
                         f"mask {m.shape} must match")
    import cv2

    inside = m > 0
    x, y, w, h = cv2.boundingRect(inside.astype(np.uint8))
    if w == 0 or h == 0:
        return img.copy()
    # The mask's bounding box only, whole arrays in float32, no boolean gathers (a light drag calls this per
    # redraw): outside the mask the weight is 0 and the input comes back unchanged.
    box = (slice(y, y + h), slice(x, x + w))
    inside, weight, plate = inside[box], m[box], img[box]
    e_src = np.maximum(np.asarray(source_shading)[box].astype(np.float32, copy=False), np.float32(0.0))
    e_tgt = np.maximum(np.asarray(target_shading)[box].astype(np.float32, copy=False), np.float32(0.0))
    l_src = _luminance(e_src)
    guard = GUARD_FRACTION * float(l_src[inside].mean()) + 1e-6
    ratio = shading_ratio(e_src, e_tgt, max_ratio, guard=guard, source_luminance=l_src)
    ratio -= np.float32(1.0)
    ratio *= _three(weight)
    ratio *= plate
    ratio += plate
    np.maximum(ratio, np.float32(0.0), out=ratio, where=_three(inside))
    out = img.copy()
    out[box] = ratio
    return out


def _luminance(e: np.ndarray) -> np.ndarray:
    """Rec. 709 luminance of (..., 3) shadings, in their own precision (float32 stays float32)."""
    return e @ LUMINANCE.astype(e.dtype)


def _three(x: np.ndarray) -> np.ndarray:
    """(...,) -> (..., 3), the value in each channel: NumPy broadcasts a (..., 1) against (..., 3) 25× slower
    than it combines two (..., 3) arrays, so the hot path repeats the plane once (cv2.merge) instead."""
    import cv2

    x = np.ascontiguousarray(x)
    if x.size == 0 or x.ndim > 2 or x.dtype not in (np.float32, np.float64, np.bool_, np.uint8):
        return np.repeat(x[..., None], 3, axis=-1)
    plane = x.view(np.uint8) if x.dtype == np.bool_ else x
    return cv2.merge([plane, plane, plane]).reshape(x.shape + (3,)).view(x.dtype)


def shading_ratio(e_src: np.ndarray, e_tgt: np.ndarray, max_ratio: float = MAX_RATIO, guard: float | None = None,
                  source_luminance: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel RGB ratio ``(..., 3)`` from non-negative source and target shadings ``(..., 3)`` (``(N, 3)`` or
    images): luminance ratio times bounded chroma ratio (see :func:`relight_by_shading`), in the inputs' precision.

    ``guard``: the denominators' guard (default :data:`GUARD_FRACTION` of the mean source luminance);
    ``source_luminance``: the source's luminance when the caller has it. The chroma factor of a channel is its own
    guarded ratio over the luminance ratio, clamped to [1/:data:`MAX_CHROMA_RATIO`, :data:`MAX_CHROMA_RATIO`], so
    the product is that channel's ratio clamped to [L/c, L·c] for the luminance ratio L."""
    e_src, e_tgt = np.asarray(e_src), np.asarray(e_tgt)
    if e_src.dtype != np.float32 or e_tgt.dtype != np.float32:
        e_src, e_tgt = e_src.astype(np.float64), e_tgt.astype(np.float64)
    l_src = _luminance(e_src) if source_luminance is None else source_luminance
    l_tgt = _luminance(e_tgt)
    if guard is None:
        guard = GUARD_FRACTION * float(l_src.mean()) + 1e-6
    lum_ratio = _three((l_tgt + guard) / (l_src + guard))
    per_channel = (e_tgt + guard) / (e_src + guard)  # each light's chroma guarded alike: a black target keeps its hue
    np.maximum(per_channel, lum_ratio * (1.0 / MAX_CHROMA_RATIO), out=per_channel)
    np.minimum(per_channel, lum_ratio * MAX_CHROMA_RATIO, out=per_channel)
    return np.clip(per_channel, 0.0, float(max_ratio), out=per_channel)


def _mask_2d(mask: np.ndarray) -> np.ndarray:
    m = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    return m[..., 0] if m.ndim == 3 else m
