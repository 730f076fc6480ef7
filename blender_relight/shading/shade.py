"""Shade any G-buffer under a :class:`~blender_relight.lighting.scene.SceneLighting`: per light a Lambert diffuse
with Blender's falloff, cone and area extent, a cast-shadow test against the head mesh and a skin specular lobe; the
world/HDRI/ambient part as second-order SH.

Why per light and not all SH: a second-order SH cannot hold a delta, so it has no nose shadow, no hard terminator and
no highlight; users key with point, spot, area and sun lights. Each light's irradiance at each pixel comes from
``blender_lights.irradiance_columns`` (the unit formulas the SH projection uses, evaluated at the pixel instead of the
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
from blender_relight.lighting.blender_lights import LightSpec, area_samples, irradiance_columns, shadow_extent
from blender_relight.shading import frames, shadow

ROUGHNESS = 0.4
F0_SKIN = 0.028
#: Specular weight per G-buffer part (0 face mesh, 1 shell: hair, ears, neck).
SPECULAR_WEIGHT = (1.0, 0.25)
#: Patches per side an area light is summed over for its diffuse and specular.
AREA_GRID = 2
#: Below this fraction of the pixels reached by a light (or patch), its highlight is computed on those pixels alone
#: (gathering them costs more than it saves when most are reached).
COMPACT_FRACTION = 0.5
#: An area light no wider than this fraction of its distance to the nearest shaded point is shaded as one patch.
#: Measured on lp_d3 frame 30 against a 16×16 grid (square lights at 0.7-3 m from three directions): one patch is
#: then within 1.4 % of the diffuse peak and 4.6 % of the highlight's, the 2×2 grid's own error at width /
#: distance = 1/3 (1.3 % and 6.2 %) (tests/test_shading_direct.py checks the bound on a wall).
SMALL_AREA_FRACTION = 0.1
#: The distance (world units) the shadow lookup gives a sun (its penumbra: ``blender_lights.shadow_extent``).
SUN_DISTANCE = 1e3


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

    def __post_init__(self) -> None:
        # The same vectors as contiguous float32 columns (3, N), made once per G-buffer: a light's dot products are
        # then sums of three column products, not strided reductions over (N, 3) rows (4x slower in NumPy).
        def cols(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(np.asarray(a, np.float32).T)

        self.position_t = cols(self.position)
        self.normal_t = cols(self.normal)
        self.position_light_t = cols(self.position_light)
        self.normal_light_t = cols(self.normal_light)
        self.view_light_t = cols(self.view_light)


def prepare(gbuffer, camera_label: np.ndarray) -> ShadingInputs:
    """Gather a G-buffer's covered pixels for :func:`shade` (``camera_label``: the camera that made it)."""
    idx = np.flatnonzero(gbuffer.mask.reshape(-1))
    pos = np.take(gbuffer.position.reshape(-1, 3), idx, axis=0).astype(np.float64)  # take: several times faster
    nrm = np.take(gbuffer.normal.reshape(-1, 3), idx, axis=0).astype(np.float64)  # than fancy indexing of rows
    eye = cam.split_label(camera_label)[0][:3, 3]
    view = eye - pos
    length = view[:, 0] * view[:, 0] + view[:, 1] * view[:, 1]
    length += view[:, 2] * view[:, 2]
    view /= np.maximum(np.sqrt(length), 1e-9)[:, None]  # np.linalg.norm's sum, in the same order
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
    weight = np.take(weights.reshape(-1), idx).astype(np.float32)
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


class ShadowCache:
    """Shadow maps of the current geometry by light (a change of one light of three rebuilds one map).

    A map depends on the light's position only (a sun's direction): a change of power, colour, cone, blend, size or
    a spot's aim keeps it, and so does a move so small that no shadow on the receivers would shift by more than
    :data:`REUSE_TEXELS` (``shadow.shadow_shift``: blockers up to the receivers' diameter in front; at 1.5 m from
    a head that is a move of ~3 mm)."""

    #: Largest shadow shift (texels, ~2 mm on a face at 128²) a map is kept for while its light moves.
    REUSE_TEXELS = 0.5

    def __init__(self, keep: int = 8) -> None:
        import threading

        self._maps: OrderedDict[tuple, shadow.ShadowMap] = OrderedDict()
        self.keep = keep
        self._lock = threading.Lock()  # lights may be shaded on worker threads (WORKERS)
        self.built = 0  # maps rasterised (for tests and benchmarks)

    def get(self, geometry, spec: LightSpec, resolution: int, receivers: np.ndarray | None = None
            ) -> shadow.ShadowMap:
        sun = spec.type == "SUN"
        where = frames.direction_to_eg3d(spec.direction) if sun else frames.light_frame_to_eg3d(spec.position)
        where = np.asarray(where, np.float64).reshape(3)
        group = (id(geometry), int(resolution), id(receivers), sun)
        with self._lock:
            for key in reversed(self._maps):
                sm = self._maps[key]
                if key[:4] == group and (key[4] == where.tobytes() or self.REUSE_TEXELS >= (
                        shadow.shadow_shift(sm, light_direction=where) if sun
                        else shadow.shadow_shift(sm, light_position=where))):
                    self._maps.move_to_end(key)
                    return sm
        if sun:
            sm = shadow.build_shadow_map(geometry, light_direction=where, resolution=resolution, receivers=receivers)
        else:
            sm = shadow.build_shadow_map(geometry, light_position=where, resolution=resolution, receivers=receivers)
        with self._lock:
            self.built += 1
            self._maps[group + (where.tobytes(),)] = sm
            while len(self._maps) > self.keep:
                self._maps.popitem(last=False)
        return sm


def _soft_size(spec: LightSpec) -> float:
    """The light's extent (world units) for its penumbra: an area light's sides, a point or spot light's diameter
    (``size``: Blender's radius × 2), a sun's angle at :data:`SUN_DISTANCE` (``blender_lights.shadow_extent``)."""
    return shadow_extent(spec, SUN_DISTANCE * frames.BLENDER_UNITS_PER_EG3D_UNIT) / frames.BLENDER_UNITS_PER_EG3D_UNIT


def _unique_names(lights) -> list[str]:
    names, seen = [], {}
    for i, spec in enumerate(lights):
        base = spec.name or f"light{i}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}.{seen[base] - 1:03d}")
    return names


def _light_terms(spec: LightSpec, inputs: ShadingInputs, part: slice, shadow_map, roughness: float, f0: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One light's (diffuse irradiance, specular radiance, visibility) on the covered pixels ``part``, before its
    colour, its visibility's smoothing and the specular weight. ``shadow_map``: a Future of the light's map, or None
    (no cast shadows).

    Float32 columns throughout; the shadow lookup runs only where the light arrives (facing it, inside its cone)."""
    px, py, pz = inputs.position_light_t[:, part]
    nx, ny, nz = inputs.normal_light_t[:, part]
    vx, vy, vz = inputs.view_light_t[:, part]
    n_dot_v = inputs.n_dot_v[part]
    diffuse = np.zeros(px.shape, np.float32)
    specular = np.zeros(px.shape, np.float32)
    for sample in _samples(spec, inputs.receivers):
        e, lx, ly, lz = irradiance_columns(sample, px, py, pz)
        n_dot_l = np.maximum(nx * lx + ny * ly + nz * lz, 0.0)
        arriving = e * n_dot_l  # 0 where the surface faces away or the light's cone ends
        diffuse += arriving
        terms = (e, n_dot_l, lx, ly, lz, nx, ny, nz, vx, vy, vz, n_dot_v)
        reached = np.flatnonzero(arriving > 0)
        if len(reached) < COMPACT_FRACTION * arriving.size:  # a rim, back light or narrow spot: its highlight
            specular[reached] += _specular(*(a[reached] if np.ndim(a) else a for a in terms), roughness, f0)
        else:
            specular += _specular(*terms, roughness, f0)
    lit = np.flatnonzero(diffuse > 0)
    vis = np.zeros(px.shape, np.float32)  # no light reaches a point that faces away (or is out of the cone)
    if shadow_map is None or lit.size == 0:
        vis[lit] = 1.0
        return diffuse, specular, vis
    if spec.type == "SUN":
        dist: np.ndarray | float = SUN_DISTANCE
    else:
        x, y, z = (float(c) for c in np.asarray(spec.position, np.float64).reshape(3))
        dx, dy, dz = px[lit] - x, py[lit] - y, pz[lit] - z
        dist = np.sqrt(dx * dx + dy * dy + dz * dz) * np.float32(1.0 / frames.BLENDER_UNITS_PER_EG3D_UNIT)
    points = np.take(inputs.position_t[:, part], lit, axis=1)  # take: 4x faster than [:, lit] here
    normals = np.take(inputs.normal_t[:, part], lit, axis=1)
    vis[lit] = shadow.visibility_columns(shadow_map.result(), points, normals, _soft_size(spec), dist)
    return diffuse, specular, vis


def _specular(e, n_dot_l, lx, ly, lz, nx, ny, nz, vx, vy, vz, n_dot_v, roughness: float, f0: float) -> np.ndarray:
    """The GGX lobe's reflected radiance for irradiance ``e`` from unit direction ``l`` at normal ``n``, view ``v``
    (columns; 0 where n·l = 0: Smith masking)."""
    hx, hy, hz = lx + vx, ly + vy, lz + vz  # the half vector (unnormalised)
    inv_h = 1.0 / np.maximum(np.sqrt(hx * hx + hy * hy + hz * hz), np.float32(1e-9))
    n_dot_h = np.clip((nx * hx + ny * hy + nz * hz) * inv_h, 0.0, 1.0)
    v_dot_h = np.clip((vx * hx + vy * hy + vz * hz) * inv_h, 0.0, 1.0)
    return e * _ggx(n_dot_l, n_dot_v, n_dot_h, v_dot_h, roughness, f0)


def _samples(spec: LightSpec, receivers: np.ndarray | None = None) -> list[LightSpec]:
    """What a light is summed over: an area light's patches (:data:`AREA_GRID`², one for a light small for its
    distance to the nearest of ``receivers`` (EG3D world), :data:`SMALL_AREA_FRACTION`), any other light itself."""
    if spec.type != "AREA" or spec.size <= 0:
        return [spec]
    if receivers is not None and len(receivers):
        width = max(float(spec.size), float(spec.size_y) if spec.shape in ("RECTANGLE", "ELLIPSE") else 0.0)
        where = frames.light_frame_to_eg3d(np.asarray(spec.position, np.float64))
        nearest = float(np.sqrt(((np.asarray(receivers) - where) ** 2).sum(1).min()))
        if width <= SMALL_AREA_FRACTION * nearest * frames.BLENDER_UNITS_PER_EG3D_UNIT:
            return area_samples(spec, 1)
    return area_samples(spec, AREA_GRID)


def _smooth(values: np.ndarray, inputs: ShadingInputs, sigma: float = 0.8) -> np.ndarray:
    """A per-pixel quantity blurred by ``sigma`` pixels over the covered pixels only: the percentage-closer filter's
    few taps leave a ragged shadow edge; this evens it at the cost of a 3×3 blur."""
    import cv2

    h, w = inputs.shape
    den = inputs.__dict__.get("_smooth_den")
    if den is None:  # the blurred coverage: the same for every light of this G-buffer
        cover = np.zeros(h * w, np.float32)
        cover[inputs.index] = 1.0
        den = cv2.GaussianBlur(cover.reshape(h, w), (3, 3), sigma).reshape(-1)[inputs.index]
        den = inputs.__dict__.setdefault("_smooth_den", 1.0 / np.maximum(den, 1e-6))
    img = np.zeros(h * w, np.float32)
    img[inputs.index] = values
    out = cv2.GaussianBlur(img.reshape(h, w), (3, 3), sigma).reshape(-1)[inputs.index] * den
    out[values <= 0] = 0.0  # what faces away stays unlit
    return out


_POOL = None
#: Fewer covered pixels than this are shaded in one piece (splitting them costs more than it saves).
SPLIT_PIXELS = 8192
#: Worker threads for the lights (1: serial). Measured on the 2-core VM with its second core idle (15:33, lp_d3
#: frame 30, three moving shadowed lights): serial 19.3 ms wall, two threads on pixel halves 31.4 ms, two threads on
#: whole lights no faster than serial and 30 % more CPU: NumPy's operations on ~15 000 pixels last a few µs each,
#: too short for two threads to share the GIL profitably (two plain NumPy loops on two threads did not run faster
#: than one either, while two processes did). Kept settable for machines where it pays.
WORKERS = 1


def _pool():
    """:data:`WORKERS` worker threads (NumPy and OpenCV release the GIL): a light's pixels in two halves side by
    side, and shadow maps rasterised side by side."""
    global _POOL
    if _POOL is None or _POOL._max_workers != WORKERS:
        from concurrent.futures import ThreadPoolExecutor

        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL = ThreadPoolExecutor(max_workers=max(1, WORKERS), thread_name_prefix="relight-shade")
    return _POOL


class _Done:
    """A finished value with a Future's ``result()`` (the serial path)."""

    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value


def _shade_lights(lights, inputs: ShadingInputs, caster, cache: ShadowCache, shadow_resolution: int,
                  roughness: float, f0: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every light's (diffuse, specular, visibility) (N,) before its colour: the shadow maps first (one task each),
    then each light's pixels (in two halves on :data:`WORKERS` > 1 threads: split by pixels rather than by lights,
    both workers are busy for one light or three), then each light's visibility smoothed (it needs the whole
    image). Serial by default (:data:`WORKERS`)."""
    n_pix = len(inputs.index)
    pool = _pool() if WORKERS > 1 and (len(lights) > 1 or n_pix >= SPLIT_PIXELS) else None
    parts = [slice(0, n_pix // 2), slice(n_pix // 2, n_pix)] if pool is not None and n_pix >= SPLIT_PIXELS \
        else [slice(0, n_pix)]

    def run(fn, *args):
        return pool.submit(fn, *args) if pool is not None else _Done(fn(*args))

    # maps are queued before any shading task, so a task waiting on its map never waits on a task behind it
    maps = [None if caster is None else run(cache.get, caster, spec, shadow_resolution, inputs.receivers)
            for spec in lights]
    terms = [[run(_light_terms, spec, inputs, part, sm, roughness, f0) for part in parts]
             for spec, sm in zip(lights, maps)]
    out = []
    for spec, pieces in zip(lights, terms):
        pieces = [t.result() for t in pieces]
        diffuse, specular, vis = (np.concatenate(k) if len(pieces) > 1 else k[0] for k in zip(*pieces))
        if caster is not None:
            vis = _smooth(vis, inputs)
        out.append((diffuse * vis, specular * vis * inputs.specular_weight, vis))
    return out


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

    # Totals in planes (3, N), made interleaved (N, 3) by cv2.merge at the end: a (N, 1) × (3,) broadcast costs
    # NumPy 25× what a plane product does.
    basis_t = inputs.__dict__.get("_basis_t")
    if basis_t is None:
        basis_t = inputs.__dict__.setdefault("_basis_t", np.ascontiguousarray(inputs.irradiance_basis.T))
    sh_t = np.maximum(lighting.sh.astype(np.float32).T @ basis_t, 0.0)  # (3, N)
    total_d_t = sh_t.copy()
    total_s_t = np.zeros((3, n_pix), np.float32)
    passes: dict[str, LightPasses] = {}
    values: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    cache = shadows if shadows is not None else ShadowCache()
    names = _unique_names(lighting.lights)
    jobs = [(name, spec) for name, spec in zip(names, lighting.lights)]
    results = _shade_lights(lighting.lights, inputs, shadow_geometry, cache, shadow_resolution, roughness, f0)
    for (name, spec), (diffuse, specular, vis) in zip(jobs, results):
        colour = spec.rgb().astype(np.float32)
        d_rgb_t = np.multiply.outer(colour, diffuse)
        s_rgb_t = np.multiply.outer(colour, specular)
        total_d_t += d_rgb_t
        total_s_t += s_rgb_t
        d_rgb, s_rgb = _interleaved(d_rgb_t), _interleaved(s_rgb_t)
        values[name] = (d_rgb, s_rgb, vis)
        if per_light:
            passes[name] = LightPasses(image(d_rgb), image(s_rgb), image(vis, 1))
    for total in (total_d_t, total_s_t):  # finite by construction; a guard that costs one pass when it is
        if not np.isfinite(total).all():
            np.nan_to_num(total, nan=0.0, posinf=0.0, copy=False)
    total_d, total_s = _interleaved(total_d_t), _interleaved(total_s_t)
    if not images:
        return ShadingResult(None, None, None, passes, values, total_d, total_s)
    return ShadingResult(image(total_d), image(total_s), image(_interleaved(sh_t)), passes, values, total_d, total_s)


def _interleaved(planes: np.ndarray) -> np.ndarray:
    """(3, N) float32 planes -> (N, 3) rows (cv2.merge: 30× faster than NumPy's transposed copy)."""
    import cv2

    if planes.shape[1] == 0:
        return np.zeros((0, 3), np.float32)
    return cv2.merge([planes[0], planes[1], planes[2]]).reshape(-1, 3)


def edge_fill(mask: np.ndarray, reach_px: float) -> np.ndarray:
    """For every pixel of a shading-size image (flat, H·W), the shaded pixel whose value it takes: itself on
    ``mask``, the nearest mask pixel within ``reach_px`` of it, else N (= the number of mask pixels: "none", the
    caller's ratio 1). Shaded pixels are numbered as ``np.nonzero(mask)`` orders them (the shading inputs' order).
    Why: the matte reaches softly past the mesh's edge, and those pixels must take the ratio of the surface next to
    them, not 1 or black."""
    import cv2

    m = np.asarray(mask, bool)
    n = int(m.sum())
    outside = (~m).astype(np.uint8)
    dist, labels = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(m)
    label_to_vec = np.full(labels.max() + 1, n, np.int64)
    label_to_vec[labels[ys, xs]] = np.arange(n)  # zero pixels of ``outside`` are the shaded ones
    return np.where(dist.reshape(-1) <= reach_px, label_to_vec[labels.reshape(-1)], n)


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


def source_shading(source_sh: np.ndarray, caster, inputs: ShadingInputs, shadows: ShadowCache | None = None,
                   shadow_resolution: int = shadow.DEFAULT_RESOLUTION) -> tuple[np.ndarray, np.ndarray]:
    """The plate's own light at the shaded pixels, (diffuse (N, 3), specular (N, 3)): the two things a relight
    divides by and subtracts.

    Diffuse: the estimate's SH irradiance, shaded exactly as a target's SH part is, so the plate's own light as the
    target gives a ratio of exactly 1, and an SH light (a DPR file, Blender's world) is shaded as the smooth light
    it describes. (Reading an SH light as the sharpest sun its first band allows plus an SH rest, with the sun's
    exact cosine and cast shadow, made DPR lights read weaker than DPR's own relight by DPR's estimator: x slope
    0.61 against 0.76 on lp_d3; docs/evaluation.md.) The plate's own cast shadows are therefore kept, not lifted:
    the estimate's direction is not sharp enough (15-20° median error on Yale) to divide a shadow edge out.
    Specular: the highlight of the estimate's directional key (:func:`sh_key_light`), what the plate's own
    highlights came from, so that a target light's highlight is added only where the plate lacks one.
    """
    from blender_relight.lighting.scene import SceneLighting

    sh = shlib.as_rgb(source_sh)
    diffuse = shade(None, SceneLighting(sh=sh), inputs=inputs, per_light=False, images=False).diffuse_values
    key = sh_key_light(sh)
    if key is None:
        return diffuse, np.zeros_like(diffuse)
    highlight = shade(None, SceneLighting(sh=np.zeros((9, 3)), lights=(key,)), caster, inputs=inputs,
                      shadows=shadows, shadow_resolution=shadow_resolution, per_light=False, images=False)
    return diffuse, highlight.specular_values


def relight_values(lighting, caster, inputs: ShadingInputs, shadows: ShadowCache | None, shadow_resolution: int,
                   source: np.ndarray, source_specular: np.ndarray) -> tuple[ShadingResult, np.ndarray, np.ndarray]:
    """One light change at one view, per shaded pixel: (the target's :class:`ShadingResult`, the ratio
    E_target / E_source (``analytic.shading_ratio``: luminance ratio times a bounded chroma ratio), the highlight the
    plate lacks (the target's specular less the plate's own, :func:`source_shading`)). The filmed view and every new
    view relight with this, so a light means the same change wherever the camera is."""
    from blender_relight.lighting import analytic

    result = shade(None, lighting, caster, inputs=inputs, shadows=shadows, shadow_resolution=shadow_resolution,
                   per_light=False, images=False)
    ratio = np.asarray(analytic.shading_ratio(source, result.diffuse_values), dtype=np.float32)
    extra = np.maximum(result.specular_values - source_specular, 0.0)
    return result, ratio, extra
