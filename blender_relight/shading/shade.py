"""Shade any G-buffer under a :class:`~blender_relight.lighting.scene.SceneLighting`: per light a Lambert diffuse
with Blender's falloff, cone and area extent, a cast-shadow test against the head mesh and a skin specular lobe; the
world/HDRI/ambient part as second-order SH.

Why per light and not all SH: a second-order SH cannot hold a delta, so it has no nose shadow, no hard terminator and
no highlight; users key with point, spot, area and sun lights. Each light's irradiance at each pixel comes from
``blender_lights.irradiance_at`` (the unit formulas the SH projection uses, evaluated at the pixel instead of the
head's centre), so a light means the same thing in every engine.

Units: ``diffuse`` is irradiance E (W/m² in Blender's units; a Lambertian surface of albedo ρ shows ρ·E/π);
``specular`` is reflected radiance (what adds to the pixel directly). Geometry in EG3D world, lights in the anchor
frame: ``shading.frames`` converts. Everything returned is finite and non-negative.

Specular: GGX (Trowbridge-Reitz) with Smith-Schlick masking and Schlick's Fresnel, roughness 0.4 and F0 0.028
(skin's index ~1.4), masked by ``specular_weight`` per part (face skin 1, shell 0.25: hair and the neck are not
modelled apart). Large area lights are summed over a grid of their patches (2×2 by default) so their size widens
both the falloff and the highlight; their shadow is one map at the centre with a penumbra from their size.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from blender_relight import camera as cam
from blender_relight.lighting import sh as shlib
from blender_relight.lighting.blender_lights import LightSpec, area_samples, irradiance_at
from blender_relight.shading import frames, shadow

ROUGHNESS = 0.4
F0_SKIN = 0.028
#: Specular weight per G-buffer part (0 face mesh, 1 shell: hair, ears, neck).
SPECULAR_WEIGHT = (1.0, 0.25)
#: Patches per side an area light is summed over for its diffuse and specular.
AREA_GRID = 2
#: Softness assumed for lights whose size Blender does not hand over (point/spot radius, sun angle), world units.
DEFAULT_SOFT_SIZE = 0.05


@dataclass
class LightPasses:
    """One light's contribution: ``diffuse`` irradiance (H, W, 3) with its shadow, ``specular`` radiance (H, W, 3),
    ``shadow`` (H, W, 1) in [0, 1]: the fraction of the light that reaches the point (1 lit, 0 in a cast shadow, and
    0 where the surface faces away from the light or is outside a spot's cone)."""

    diffuse: np.ndarray
    specular: np.ndarray
    shadow: np.ndarray


@dataclass
class ShadingResult:
    """Total ``diffuse`` irradiance (direct lights with shadows + SH remainder) and ``specular`` radiance, each
    (H, W, 3) float32, ``sh_diffuse`` the SH part alone, and the passes of each light by name."""

    diffuse: np.ndarray
    specular: np.ndarray
    sh_diffuse: np.ndarray
    per_light: dict[str, LightPasses] = field(default_factory=dict)
    #: each light's (diffuse (N, 3), specular (N, 3), visibility (N,)) at the covered pixels, always filled: what a
    #: caller that wants a light's pass only sometimes keeps instead of the images
    per_light_values: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: the totals at the covered pixels (N, 3), always filled (``diffuse``/``specular`` images may be skipped)
    diffuse_values: np.ndarray | None = None
    specular_values: np.ndarray | None = None


@dataclass
class ShadingInputs:
    """What shading needs from a G-buffer, gathered once (a light change reuses it): the covered pixels' positions and
    normals in both frames, view directions, the SH basis and per-pixel specular weights."""

    shape: tuple[int, int]
    index: np.ndarray  # (N,) flat covered pixels
    position: np.ndarray  # (N, 3) EG3D world
    normal: np.ndarray  # (N, 3) EG3D world, unit
    position_light: np.ndarray  # (N, 3) anchor frame
    normal_light: np.ndarray  # (N, 3) anchor frame
    view_light: np.ndarray  # (N, 3) unit, toward the camera, anchor frame
    n_dot_v: np.ndarray  # (N,)
    irradiance_basis: np.ndarray  # (N, 9)
    specular_weight: np.ndarray  # (N,)
    receivers: np.ndarray  # (M, 3) EG3D world: a sparse sample of ``position`` that shadow maps are fitted to


def prepare(gbuffer, camera_label: np.ndarray) -> ShadingInputs:
    """Gather a G-buffer's covered pixels for :func:`shade` (``camera_label``: the camera that made it)."""
    idx = np.flatnonzero(gbuffer.mask.reshape(-1))
    pos = gbuffer.position.reshape(-1, 3)[idx].astype(np.float64)
    nrm = gbuffer.normal.reshape(-1, 3)[idx].astype(np.float64)
    eye = cam.split_label(camera_label)[0][:3, 3]
    view = eye - pos
    view /= np.maximum(np.linalg.norm(view, axis=1, keepdims=True), 1e-9)
    n_l = shlib.rotate_eg3d_to_sh(nrm)
    v_l = shlib.rotate_eg3d_to_sh(view)
    # the specular weight of each part, feathered across the face/shell border (a step there would draw a line
    # through a highlight on the forehead)
    import cv2

    h, w = gbuffer.mask.shape
    weights = np.asarray(SPECULAR_WEIGHT, np.float32)[np.minimum(gbuffer.part, 1)] * gbuffer.mask
    sigma = 0.015 * max(h, w)
    cover = cv2.GaussianBlur(gbuffer.mask.astype(np.float32), (0, 0), sigma)
    weights = cv2.GaussianBlur(weights.astype(np.float32), (0, 0), sigma) / np.maximum(cover, 1e-6)
    weight = weights.reshape(-1)[idx].astype(np.float32)
    f32 = np.float32
    return ShadingInputs(gbuffer.mask.shape, idx, pos.astype(f32), nrm.astype(f32),
                         frames.eg3d_to_light_frame(pos).astype(f32), n_l.astype(f32), v_l.astype(f32),
                         np.maximum(np.einsum("ij,ij->i", n_l, v_l), 0.0).astype(f32),
                         shlib.irradiance_basis(n_l).astype(f32), weight, pos[:: max(1, len(pos) // 2000)].copy())


def _ggx(n_dot_l: np.ndarray, n_dot_v: np.ndarray, n_dot_h: np.ndarray, v_dot_h: np.ndarray,
         roughness: float, f0: float) -> np.ndarray:
    """Cook-Torrance GGX factor D·G·F / (4 n·v) (times E·(n·l)/(n·l) it is the reflected radiance)."""
    a2 = float(roughness) ** 4  # α = roughness²
    denom = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0
    d = a2 / (np.pi * denom * denom)
    k = float(roughness) ** 2 / 2.0
    g = (n_dot_l / (n_dot_l * (1 - k) + k)) * (n_dot_v / (n_dot_v * (1 - k) + k))
    f = f0 + (1.0 - f0) * (1.0 - v_dot_h) ** 5
    return d * g * f / (4.0 * np.maximum(n_dot_v, 1e-3))


def _light_key(spec: LightSpec) -> str:
    return repr(spec)


class ShadowCache:
    """Shadow maps of the current geometry by light (a change of one light of three rebuilds one map)."""

    def __init__(self, keep: int = 8) -> None:
        import threading

        self._maps: OrderedDict[tuple, shadow.ShadowMap] = OrderedDict()
        self.keep = keep
        self._lock = threading.Lock()  # lights are shaded on two threads

    def get(self, geometry, spec: LightSpec, resolution: int, receivers: np.ndarray | None = None
            ) -> shadow.ShadowMap:
        key = (id(geometry), _light_key(spec), resolution, id(receivers))
        with self._lock:
            sm = self._maps.get(key)
        if sm is None:
            if spec.type == "SUN":
                sm = shadow.build_shadow_map(geometry, light_direction=frames.direction_to_eg3d(spec.direction),
                                             resolution=resolution, receivers=receivers)
            else:
                sm = shadow.build_shadow_map(geometry, light_position=frames.light_frame_to_eg3d(spec.position),
                                             resolution=resolution, receivers=receivers)
            with self._lock:
                self._maps[key] = sm
                while len(self._maps) > self.keep:
                    self._maps.popitem(last=False)
        return sm


def _soft_size(spec: LightSpec) -> float:
    """The light's extent (world units) for its penumbra."""
    if spec.type == "AREA":
        sy = spec.size_y if spec.shape in ("RECTANGLE", "ELLIPSE") else spec.size
        return float(np.sqrt(max(spec.size, 0.0) * max(sy, 0.0))) / frames.BLENDER_UNITS_PER_EG3D_UNIT
    if spec.type == "SUN":
        return 0.0
    return max(float(spec.size), DEFAULT_SOFT_SIZE) / frames.BLENDER_UNITS_PER_EG3D_UNIT


def _unique_names(lights) -> list[str]:
    names, seen = [], {}
    for i, spec in enumerate(lights):
        base = spec.name or f"light{i}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}.{seen[base] - 1:03d}")
    return names


def _shade_light(spec: LightSpec, inputs: ShadingInputs, caster, cache: "ShadowCache", shadow_resolution: int,
                 roughness: float, f0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One light's (diffuse irradiance, specular radiance, visibility) per covered pixel (N,), before its colour.

    Work is done only where the light arrives (facing it, inside its cone): a side light skips half the head."""
    n_pix = len(inputs.index)
    samples = area_samples(spec, AREA_GRID) if spec.type == "AREA" and spec.size > 0 else [spec]
    diffuse = np.zeros(n_pix, np.float32)
    specular = np.zeros(n_pix, np.float32)
    n, v = inputs.normal_light, inputs.view_light
    for sample in samples:
        e, to_light = irradiance_at(sample, inputs.position_light)
        e = e.astype(np.float32)
        to_light = np.asarray(to_light, np.float32)
        n_dot_l = n[:, 0] * to_light[:, 0] + n[:, 1] * to_light[:, 1] + n[:, 2] * to_light[:, 2]
        idx = np.flatnonzero((n_dot_l > 0) & (e > 0))
        if idx.size == 0:
            continue
        nl, el, tl, nn, vv = n_dot_l[idx], e[idx], to_light[idx], n[idx], v[idx]
        diffuse[idx] += el * nl
        half = tl + vv
        half *= (1.0 / np.maximum(np.sqrt((half * half).sum(1)), 1e-9))[:, None]
        n_dot_h = np.clip((nn * half).sum(1), 0.0, 1.0)
        v_dot_h = np.clip((vv * half).sum(1), 0.0, 1.0)
        specular[idx] += el * _ggx(nl, inputs.n_dot_v[idx], n_dot_h, v_dot_h, roughness, f0)
    lit = np.flatnonzero(diffuse > 0)
    vis = np.zeros(n_pix, np.float32)  # no light reaches a point that faces away (or is out of the cone)
    if caster is None or lit.size == 0:
        vis[lit] = 1.0
    else:
        sm = cache.get(caster, spec, shadow_resolution, inputs.receivers)
        if spec.type == "SUN":
            dist: np.ndarray | float = 1e3
        else:
            offset = np.asarray(spec.position, np.float32) - inputs.position_light[lit]
            dist = np.sqrt((offset * offset).sum(1)) / np.float32(frames.BLENDER_UNITS_PER_EG3D_UNIT)
        vis[lit] = shadow.visibility(sm, inputs.position[lit], inputs.normal[lit], _soft_size(spec), dist)
        vis = _smooth(vis, inputs)
    return diffuse * vis, specular * vis * inputs.specular_weight, vis


def _smooth(values: np.ndarray, inputs: ShadingInputs, sigma: float = 0.8) -> np.ndarray:
    """A per-pixel quantity blurred by ``sigma`` pixels over the covered pixels only: the percentage-closer filter's
    few taps leave a ragged shadow edge; this evens it at the cost of a 3×3 blur."""
    import cv2

    h, w = inputs.shape
    img = np.zeros(h * w, np.float32)
    img[inputs.index] = values
    cover = np.zeros(h * w, np.float32)
    cover[inputs.index] = 1.0
    num = cv2.GaussianBlur(img.reshape(h, w), (3, 3), sigma).reshape(-1)
    den = cv2.GaussianBlur(cover.reshape(h, w), (3, 3), sigma).reshape(-1)
    out = num[inputs.index] / np.maximum(den[inputs.index], 1e-6)
    return np.where(values > 0, out, 0.0).astype(np.float32)  # what faces away stays unlit


_POOL = None


def _pool():
    """Two worker threads (NumPy and OpenCV release the GIL): lights are shaded side by side on 2 cores."""
    global _POOL
    if _POOL is None:
        import os
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1)),
                                   thread_name_prefix="relight-shade")
    return _POOL


def shade(gbuffer, lighting, shadow_geometry=None, camera_label: np.ndarray | None = None,
          inputs: ShadingInputs | None = None, shadows: ShadowCache | None = None,
          shadow_resolution: int = shadow.DEFAULT_RESOLUTION, roughness: float = ROUGHNESS, f0: float = F0_SKIN,
          per_light: bool = True, images: bool = True) -> ShadingResult:
    """Shade ``gbuffer`` (geometry.raster.GBuffer, any camera) under ``lighting`` (SceneLighting or SH array).

    ``shadow_geometry``: the HeadGeometry that casts shadows (None: no cast shadows, only the terminator).
    ``camera_label``: the camera of the G-buffer (for the view direction of the specular); ``inputs`` from
    :func:`prepare` instead, to reuse over light changes; ``shadows`` a :class:`ShadowCache` to reuse maps.
    ``per_light``: also return each light's passes as images; ``images`` False returns the totals only as values at
    the covered pixels (``diffuse_values``, ``specular_values``; the image fields are then None): a light drag needs
    no more.
    """
    from blender_relight.lighting.scene import SceneLighting

    lighting = SceneLighting.coerce(lighting)
    if inputs is None:
        if camera_label is None:
            camera_label = getattr(gbuffer, "camera", None)
        if camera_label is None:
            raise ValueError("shade needs the G-buffer's camera_label (or prepared inputs) for the view direction")
        inputs = prepare(gbuffer, camera_label)
    h, w = inputs.shape
    n_pix = len(inputs.index)

    def image(values: np.ndarray, channels: int = 3) -> np.ndarray:
        out = np.zeros((h * w, channels), np.float32)
        out[inputs.index] = np.asarray(values, np.float32).reshape(n_pix, channels)
        return out.reshape(h, w, channels)

    sh_part = np.maximum(inputs.irradiance_basis @ lighting.sh.astype(np.float32), 0.0)
    total_d = sh_part.copy()
    total_s = np.zeros((n_pix, 3), np.float32)
    passes: dict[str, LightPasses] = {}
    values: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    cache = shadows if shadows is not None else ShadowCache()
    names = _unique_names(lighting.lights)
    jobs = [(name, spec) for name, spec in zip(names, lighting.lights)]
    if len(jobs) > 1:
        futures = [_pool().submit(_shade_light, spec, inputs, shadow_geometry, cache, shadow_resolution, roughness,
                                  f0) for _, spec in jobs]
        results = [f.result() for f in futures]
    else:
        results = [_shade_light(spec, inputs, shadow_geometry, cache, shadow_resolution, roughness, f0)
                   for _, spec in jobs]
    for (name, spec), (diffuse, specular, vis) in zip(jobs, results):
        colour = spec.rgb().astype(np.float32)
        d_rgb = diffuse[:, None] * colour
        s_rgb = specular[:, None] * colour
        total_d += d_rgb
        total_s += s_rgb
        values[name] = (d_rgb, s_rgb, vis)
        if per_light:
            passes[name] = LightPasses(image(d_rgb), image(s_rgb), image(vis, 1))
    total_d = np.nan_to_num(total_d, nan=0.0, posinf=0.0, copy=False)
    total_s = np.nan_to_num(total_s, nan=0.0, posinf=0.0, copy=False)
    if not images:
        return ShadingResult(None, None, None, passes, values, total_d, total_s)
    return ShadingResult(image(total_d), image(total_s), image(sh_part), passes, values, total_d, total_s)


def extend(image: np.ndarray, mask: np.ndarray, sigmas: tuple[float, ...] = (2.0, 6.0)) -> np.ndarray:
    """``image`` (H, W, C) carried from ``mask`` outward (normalised convolution, widening passes): what a shading
    image needs before it is resized or used beyond the mesh's edge, so the edge does not bleed black."""
    import cv2

    out = np.asarray(image, np.float32).copy()
    have = np.asarray(mask, bool).copy()
    for sigma in sigmas:
        w = have.astype(np.float32)
        num = cv2.GaussianBlur(out * w[..., None], (0, 0), sigma)
        den = cv2.GaussianBlur(w, (0, 0), sigma)
        if num.ndim == 2:
            num = num[..., None]
        fill = (~have) & (den > 1e-3)
        out[fill] = num[fill] / den[fill][:, None]
        have |= fill
    return out


def sh_key_light(sh_rgb: np.ndarray, name: str = "source key") -> LightSpec | None:
    """The directional part of a radiance SH as a sun: direction from its first-order band, irradiance the band's
    length (a distant light of irradiance E has first-order coefficients E·Y₁(ω)). What the plate's own highlights
    came from, for engines that must not add a highlight the plate already has; None for a light with no direction."""
    sh = shlib.as_rgb(sh_rgb)
    c1 = 0.5 * np.sqrt(3.0 / np.pi)
    first = np.stack([sh[3], sh[1], sh[2]], 0)  # (x, y, z) × RGB
    gray = first @ shlib.LUMINANCE
    length = float(np.linalg.norm(gray))
    if length < 1e-9:
        return None
    # no brighter than the SH's DC allows (a distant light of E has DC E·Y₀): the rest must stay a non-negative
    # ambient; an ill-conditioned estimate with a first band beyond its DC gives a weaker key, not a negative world
    c0 = 0.5 / np.sqrt(np.pi)
    limit = max(float(sh[0] @ shlib.LUMINANCE) / c0, 0.0)
    strength = min(length / c1, limit)
    if strength <= 1e-9:
        return None
    per_channel = np.minimum(np.linalg.norm(first, axis=0) / c1, np.maximum(sh[0], 0.0) / c0)
    return LightSpec("SUN", colour=tuple(per_channel / strength), power=strength, direction=-gray / length, name=name)


def split_key(sh_rgb: np.ndarray) -> "SceneLighting":
    """An SH light as its directional key (:func:`sh_key_light`) plus the SH remainder: shaded by :func:`shade` it
    gives the same light with an exact cosine and a cast shadow for the key, which is how a target light is shaded,
    so the same light as source and target gives a ratio of exactly 1."""
    from blender_relight.lighting.blender_lights import light_to_sh
    from blender_relight.lighting.scene import SceneLighting

    sh = shlib.as_rgb(sh_rgb)
    key = sh_key_light(sh)
    if key is None:
        return SceneLighting(sh=sh)
    return SceneLighting(sh=sh - light_to_sh(key), lights=(key,))
