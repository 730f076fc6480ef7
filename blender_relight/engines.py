"""Relight engines behind one interface: what turns an EG3D crop, its tracking and a target light (and camera) into
a relit crop with an alpha and compositing passes.

- ``NeuralEngine``: the project's 3D-aware model through ONNX Runtime (inference.runtime): per-frame encode (cached as
  tri-planes), temporal correction over a window of earlier frames, render at any camera, shade under any RGB SH.
  A light change re-runs only the shading step; a camera change re-runs render + shade. At the filmed viewpoint the
  output is the plate times the model's shading ratio (the input's detail kept); at a new viewpoint, the render.
- ``AnalyticEngine``: no learned weights: the tracked face mesh's normals and the estimated source lighting give
  ``image × E_target / E_source`` on the face. It cannot show new viewpoints (it says so once); it is what runs
  when no trained weights are installed and the floor the evaluation compares the model with.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from blender_relight.errors import ModelFileError, RelightError
from blender_relight.lighting.scene import SceneLighting

log = logging.getLogger(__name__)


@dataclass
class RelitCrop:
    """A relit 512² crop (linear RGB), its coverage alpha and compositing passes (each (512, 512, C) float32).

    The normal pass is in the head (SH) frame: x right, y into the face, z up — Blender's head-anchor axes."""

    image: np.ndarray
    alpha: np.ndarray
    passes: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the engine changed from the request (a clamped view)
    #: where the engine changed the light (crop size, [0, 1]) when that is not ``alpha``: a new view pastes the moved
    #: head and its surroundings (``alpha``) but relights only the head; the rest of the person is the body's
    #: (``body.py``). None: ``alpha``.
    relight_alpha: np.ndarray | None = None


class RelightEngine(Protocol):
    """What the pipeline needs from an engine."""

    name: str
    supports_novel_view: bool

    def needs_prepare(self, index: int, cache) -> bool:
        """Whether :meth:`prepare` still has work for the frame (analysis skips it otherwise: an instant resume)."""

    def prepare(self, index: int, crop_linear: np.ndarray, track, cache) -> None:
        """Per-frame work done once at analysis time (cached); nothing for engines that need none."""

    def relight(self, index: int, crop_linear: np.ndarray, track, lighting: "SceneLighting | np.ndarray",
                camera_label: np.ndarray | None, cache) -> RelitCrop:
        """Relight one tracked frame's crop under ``lighting`` (a :class:`SceneLighting`, or an RGB SH (9, 3)),
        seen from ``camera_label`` (or the source). Engines without direct-light shading use
        ``SceneLighting.coerce(lighting).total_sh()``."""


def _source_sh(track) -> np.ndarray:
    if track.source_sh is None:
        raise RelightError(f"frame {track.index}: no source lighting estimate in the cache; run `analyse` again")
    return np.asarray(track.source_sh, dtype=np.float64)


#: Frames whose per-frame results (geometry, matte, planes, G-buffers) an engine keeps: a light change or a scrub
#: back by a frame or two reuses them.
KEEP_FRAMES = 4


#: Frames whose temporal tokens (48 KB each) the neural engine keeps: a scrub over a 20-second clip rebuilds none.
TOKEN_FRAMES = 512


def _keep(cache: OrderedDict, key, value):
    """Store ``value`` under ``key`` in a small most-recent cache of :data:`KEEP_FRAMES` entries; return it."""
    cache[key] = value
    while len(cache) > KEEP_FRAMES:
        cache.popitem(last=False)
    return value


def _face_maps_and_matte(crop_linear: np.ndarray, track):
    """The tracked face mesh's maps at crop size and the plate's head-and-hair matte (the person matte with the mesh;
    ``head_proxy.head_alpha``): where a crop may be relit, shared by both engines."""
    from blender_relight import colour, face_geometry, head_proxy

    maps = face_geometry.render_face_maps(track.points_crop(), crop_linear.shape[:2], fill_holes=True)
    return maps, head_proxy.head_alpha(colour.linear_to_uint8_srgb(crop_linear), track.crop_mask(), maps.mask)


@dataclass
class _FrameGeometry:
    """Per-frame, light-independent maps of the analytic engine (crop size, float32)."""

    normals_sh: np.ndarray  # (H, W, 3) unit normals, head (SH) frame
    depth: np.ndarray  # (H, W, 1)
    alpha: np.ndarray  # (H, W) head matte
    albedo: np.ndarray  # (H, W, 3) the crop divided by its source shading (×π), 0 outside the matte


class AnalyticEngine:
    """Tracked geometry + SH ratio; source view only."""

    name = "analytic"
    supports_novel_view = False

    def __init__(self) -> None:
        self._warned_view = False
        self._geometry_cache: OrderedDict[int, _FrameGeometry] = OrderedDict()

    def needs_prepare(self, index: int, cache) -> bool:
        return False

    def prepare(self, index: int, crop_linear: np.ndarray, track, cache) -> None:
        return None

    def _geometry(self, index: int, crop_linear: np.ndarray, track) -> "_FrameGeometry":
        """What a frame's crop gives independently of the target light; kept for the last few frames because a
        light change does not move the geometry."""
        from blender_relight import head_proxy
        from blender_relight.lighting import analytic
        from blender_relight.lighting import sh as shmath

        if index in self._geometry_cache:
            return self._geometry_cache[index]
        maps, alpha = _face_maps_and_matte(crop_linear, track)
        normals_cam = head_proxy.head_normals(maps.normals, maps.mask, alpha)
        rot = np.asarray(track.camera_c2w(), dtype=np.float64)[:3, :3]
        normals_sh = shmath.rotate_eg3d_to_sh(normals_cam.reshape(-1, 3) @ rot.T).reshape(normals_cam.shape)
        # The albedo pass depends on the frame and its source light, not on the target: computed once per frame.
        source_shading = analytic.shading_image(normals_sh, _source_sh(track))
        albedo = (crop_linear * np.pi / np.maximum(source_shading, 1e-3) * (alpha[..., None] > 0)).astype(np.float32)
        entry = _FrameGeometry(normals_sh.astype(np.float32), maps.depth[..., None].astype(np.float32), alpha, albedo)
        return _keep(self._geometry_cache, index, entry)

    def relight(self, index: int, crop_linear: np.ndarray, track, lighting: "SceneLighting | np.ndarray",
                camera_label: np.ndarray | None, cache) -> RelitCrop:
        from blender_relight.lighting import analytic

        lighting = SceneLighting.coerce(lighting)  # direct lights shaded exactly (no shadow), the rest as SH
        if camera_label is not None and not self._warned_view:
            log.warning("the analytic engine renders the source view only; install trained weights "
                        "(the neural engine) for new camera angles")
            self._warned_view = True
        geo = self._geometry(index, crop_linear, track)
        image = analytic.relight_to_lighting(crop_linear, geo.normals_sh, geo.alpha, _source_sh(track), lighting)
        passes = {"albedo": geo.albedo, "shading": analytic.lighting_shading(geo.normals_sh, lighting),
                  "normal": geo.normals_sh, "depth": geo.depth, "alpha": geo.alpha[..., None]}
        return RelitCrop(image.astype(np.float32), geo.alpha, passes)


@dataclass
class _HeadFrame:
    """Per-frame, light-independent state of the geometry engine (crop size S, shading size s, N shaded pixels)."""

    geometry: object  # geometry.HeadGeometry
    caster: object  # the geometry shadow maps draw (geometry.head.shadow_caster)
    inputs: object  # shading.ShadingInputs of the shading-size G-buffer
    shadows: object  # shading.ShadowCache of this frame's geometry
    source: np.ndarray  # (N, 3) the plate's own irradiance at the shaded pixels
    source_specular: np.ndarray  # (N, 3) the highlight the plate's own key gives (already in the plate)
    fill: np.ndarray  # (s*s,) for each shading pixel the shaded pixel whose value it takes (N: none, ratio 1)
    box: tuple[slice, slice]  # the crop's rows and columns the matte touches
    alpha: np.ndarray  # (S, S) soft head matte
    plate_in: np.ndarray  # (box, 3) plate × alpha inside the box
    plate_out: np.ndarray  # (box, 3) plate × (1 - alpha) inside the box
    alpha_box: np.ndarray  # (box, 3) alpha inside the box, per channel
    #: () -> {"albedo" (S, S, 3), "normal" (S, S, 3) head (SH) frame, "depth" (S, S, 1) camera-space, 0 where
    #: empty}: made only when a pass is asked for (the crop-size G-buffer they need took half a frame change's time,
    #: for passes the live preview never shows)
    make_passes: Callable[[], dict[str, np.ndarray]]
    #: the head-and-hair matte before the head region limits it (``head_proxy.head_labels``, 128² uint8): new views
    #: take the whole hairdo from it
    labels: np.ndarray | None = None
    _passes: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def pass_image(self, name: str) -> np.ndarray:
        """The light-independent pass ``name`` (albedo, normal, depth), made on first use and kept."""
        if self._passes is None:
            self._passes = self.make_passes()
        return self._passes[name]

    @property
    def albedo(self) -> np.ndarray:
        return self.pass_image("albedo")

    @property
    def normal_sh(self) -> np.ndarray:
        return self.pass_image("normal")

    @property
    def depth(self) -> np.ndarray:
        return self.pass_image("depth")


#: How far past the head mesh's edge (fraction of the side) the matte's soft edge takes the nearest shaded pixel's ratio.
REACH = 0.04


@functools.lru_cache(maxsize=1)
def _matte_id() -> str:
    """Name under which the clip's cache keeps the geometry engine's matte labels: the source of the code they
    depend on (matte, head shell, raster), so a change to it makes stored labels stale instead of wrong."""
    from blender_relight import head_proxy, matting
    from blender_relight.geometry import head, raster

    h = hashlib.sha1()
    for module in (head_proxy, matting, head, raster):
        h.update(Path(module.__file__).read_bytes())
    return f"geometry-matte-v3-{h.hexdigest()[:12]}"  # v3: the person matte (uint8) and the shell


def pass_name(light: str, kind: str) -> str:
    """Name of a per-light pass (``light_<name>_<kind>``; kind: diffuse, specular, shadow), safe as an EXR layer."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in light) or "light"
    return f"light_{safe}_{kind}"


class LazyPasses(Mapping):
    """Passes made on first access: a light drag in the preview wants the image only, and resizing a dozen pass
    images to the crop would cost more than the shading. Reads like a dict (``get``, ``items``, ``in``)."""

    def __init__(self, ready: dict[str, np.ndarray], makers: dict[str, "Callable[[], np.ndarray]"]) -> None:
        self._values = dict(ready)
        self._makers = {k: v for k, v in makers.items() if k not in self._values}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._values:
            self._values[name] = self._makers.pop(name)()
        return self._values[name]

    def __iter__(self):
        return iter(list(self._values) + list(self._makers))

    def __len__(self) -> int:
        return len(self._values) + len(self._makers)


def _at_fill(values: np.ndarray, outside: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Per shading pixel, the value (N, C) of the shaded pixel ``fill`` names (``outside`` (1, C) where it names
    none, index N), float32. ``np.take``: five times faster than fancy indexing of the rows."""
    return np.take(np.concatenate([values, outside]).astype(np.float32, copy=False), fill, axis=0)


def _resized_box(img: np.ndarray, size: int, rows: slice, cols: slice) -> np.ndarray:
    """``cv2.resize(img, (size, size))[rows, cols]`` (bilinear), resizing only the part of ``img`` the box needs
    (with a pixel of border) when ``size`` is a whole multiple of its side: the same values (a pixel-centred
    bilinear upscale by a whole factor maps a block to a block), at the cost of the box instead of the crop."""
    import cv2

    s = img.shape[0]
    f = size // s
    if f * s != size or img.shape[1] != s:
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)[rows, cols]
    r0, c0 = max(rows.start // f - 1, 0), max(cols.start // f - 1, 0)
    r1, c1 = min(-(-rows.stop // f) + 1, s), min(-(-cols.stop // f) + 1, s)
    block = cv2.resize(np.ascontiguousarray(img[r0:r1, c0:c1]), ((c1 - c0) * f, (r1 - r0) * f),
                       interpolation=cv2.INTER_LINEAR)
    return block[rows.start - r0 * f:rows.stop - r0 * f, cols.start - c0 * f:cols.stop - c0 * f]


class GeometryEngine:
    """The head's 3D geometry shaded per light: at the filmed view ``plate × E_target / E_source + specular`` under
    a soft whole-head matte.

    Geometry: the tracked face mesh lifted along the crop camera's rays, joined to a head shell fitted to the plate's
    head matte (``geometry.head``). ``E_target`` is every Blender light's Lambert irradiance with its falloff, cone,
    area extent and cast shadow (shadow maps of that mesh) plus the SH remainder; the specular is a GGX skin lobe
    (``shading.shade``). ``E_source`` is the frame's estimated source light shaded the same way (its directional key
    exact and with its cast shadow, the rest SH), so the plate's own light gives the plate back. Per frame, geometry,
    G-buffers, matte, source shading and albedo are kept (``_keep``), so a light change costs only the shading, done
    at ``shading_size``² and resized to the crop (shading is smooth; the plate keeps its full detail).
    """

    name = "geometry"
    supports_novel_view = True  # new views: blender_relight.novel_view (the plate reprojected on this head)

    def __init__(self, shading_size: int = 256, shadow_resolution: int = 128) -> None:
        self.shading_size = int(shading_size)
        self.shadow_resolution = int(shadow_resolution)
        self._frames: OrderedDict[int, _HeadFrame] = OrderedDict()
        self._warned_view = False
        self._novel_path = None

    def needs_prepare(self, index: int, cache) -> bool:
        """Whether analysis still has to make the frame's head matte (or the novel-view engine its own work)."""
        own = cache is not None and not cache.has_planes(index, _matte_id())
        other = self.novel_view_engine is not None and getattr(self.novel_view_engine, "needs_prepare",
                                                               lambda i, c: False)(index, cache)
        return own or other

    def prepare(self, index: int, crop_linear: np.ndarray, track, cache) -> None:
        """At analysis: the frame's head-and-hair matte and head-shell silhouette (the costly, light- and
        camera-independent part of its matte), so a frame change only reads them."""
        if cache is not None and not cache.has_planes(index, _matte_id()):
            self._matte_bits(index, crop_linear, track, cache)
        if self.novel_view_engine is not None:
            self.novel_view_engine.prepare(index, crop_linear, track, cache)

    @staticmethod
    def _matte_bits(index: int, crop_linear: np.ndarray, track, cache, geometry=None) -> tuple[np.ndarray, np.ndarray]:
        """(head-and-hair matte ``head_proxy.head_labels``, uint8; prior head shell's silhouette, bool), both
        ``head_proxy.MATTE_SIZE``²: from the clip's cache when analysis made them, else computed now (and cached
        when there is a cache)."""
        import cv2

        from blender_relight import colour, head_proxy
        from blender_relight.geometry import head_geometry, rasterize

        side = head_proxy.MATTE_SIZE
        packed = (side * side + 7) // 8

        def bits(a: np.ndarray) -> np.ndarray:
            return np.unpackbits(a)[:side * side].reshape(side, side).astype(bool)

        if cache is not None:
            stored = cache.get_planes(index, _matte_id(), {"labels": (side, side), "shell": (packed,)})
            if stored is not None and stored["labels"].dtype == np.uint8:
                return stored["labels"], bits(stored["shell"])
        prior = rasterize(head_geometry(track) if geometry is None else geometry, track.camera, side)
        # the network sees the crop at its own input size: reduced (area mean, in linear light) before the sRGB
        # conversion
        seg = head_proxy.SEGMENT_SIZE
        small = colour.linear_to_uint8_srgb(cv2.resize(crop_linear, (seg, seg), interpolation=cv2.INTER_AREA))
        labels = head_proxy.head_labels(small, prior.mask & (prior.part == 0))
        if cache is not None:
            cache.put_planes(index, {"labels": labels, "shell": np.packbits(prior.mask.reshape(-1))}, _matte_id())
        return labels, prior.mask

    #: An engine that renders new camera angles for this one (``make_engine("auto")`` gives it the neural engine
    #: when trained weights are installed); None: new views are :meth:`_novel_view`'s.
    novel_view_engine: "RelightEngine | None" = None

    def _frame(self, index: int, crop_linear: np.ndarray, track, cache=None) -> _HeadFrame:
        """Everything of frame ``index`` that does not depend on the target light (kept for the last few frames;
        the matte comes from the clip's ``cache`` when analysis made it)."""
        import cv2

        from blender_relight import head_proxy
        from blender_relight.geometry import head_geometry, rasterize
        from blender_relight.geometry.head import shadow_caster
        from blender_relight.geometry.raster import feather_seam
        from blender_relight.lighting import sh as shmath
        from blender_relight.shading import ShadowCache, prepare
        from blender_relight.shading.shade import edge_fill, extend, source_shading

        if index in self._frames:
            return self._frames[index]
        size = crop_linear.shape[0]
        up = (size, size)
        # The prior shell (head with hair, placed on the face) bounds the region the matte is looked for in; the
        # shell is then fitted to the matte, so hair beyond the prior shape follows the light too. (With GrabCut's
        # matte the fitted outline wandered from frame to frame: warping error 0.0189 fitted against 0.0071 on
        # lp_d3; the person matte is steady: 0.0091 fitted against 0.0083 prior under a side key, frames 30-37,
        # input 0.0059 / 0.0049 over the same grown mattes.)
        hair_labels, shell = self._matte_bits(index, crop_linear, track, cache)  # the prior head only if not cached
        matte = head_proxy.head_matte(None, shell, None, size=size, labels=hair_labels)
        geometry = head_geometry(track, matte)
        caster = shadow_caster(geometry)
        small = feather_seam(rasterize(geometry, track.camera, self.shading_size))
        inputs = prepare(small, track.camera)
        shadows = ShadowCache()
        # The plate's own light, shaded as a target's SH part is (``shade.source_shading``): the same light as
        # target changes nothing; its key's highlight is what the plate already shows.
        e_src, src_specular = source_shading(_source_sh(track), caster, inputs, shadows, self.shadow_resolution)
        # pixels just past the mesh's edge take the ratio of the nearest shaded pixel (the matte reaches them softly)
        s = self.shading_size
        fill = edge_fill(small.mask, REACH * s)
        # the matte ends where the (fitted) mesh ends, softly: reaching 12 % further into the hair added flicker
        # (GrabCut's matte: warping error 0.0140 against 0.0071; the person matte: 0.0098 against 0.0091). The
        # shading-size mesh coverage at crop size: its edge is within a crop pixel of the crop-size raster's, far
        # less than the 3-pixel feather.
        mesh = cv2.resize(small.mask.astype(np.uint8), up, interpolation=cv2.INTER_LINEAR)
        cover = cv2.GaussianBlur(cv2.erode(mesh, np.ones((5, 5), np.uint8)).astype(np.float32), (0, 0), 3.0)
        alpha = (matte * cover).astype(np.float32)
        rows, cols = np.nonzero(alpha > 1e-4)
        box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)) \
            if rows.size else (slice(0, 0), slice(0, 0))
        a3 = alpha[box][..., None]

        def make_passes() -> dict[str, np.ndarray]:
            src_img = np.zeros((s * s, 3), np.float32)
            src_img[inputs.index] = e_src
            src_full = cv2.resize(extend(src_img.reshape(s, s, 3), small.mask), up, interpolation=cv2.INTER_LINEAR)
            full = feather_seam(rasterize(geometry, track.camera, size))
            return {"albedo": (crop_linear * np.pi / np.maximum(src_full, 1e-3)
                               * (alpha[..., None] > 1e-3)).astype(np.float32),
                    "normal": shmath.rotate_eg3d_to_sh(full.normal).astype(np.float32),
                    "depth": np.where(full.mask, full.depth, 0.0).astype(np.float32)[..., None]}

        entry = _HeadFrame(geometry, caster, inputs, shadows, e_src, src_specular,
                           fill, box, alpha, (crop_linear[box] * a3).astype(np.float32),
                           (crop_linear[box] * (1.0 - a3)).astype(np.float32),
                           np.repeat(a3, 3, axis=2).astype(np.float32), make_passes, hair_labels)
        return _keep(self._frames, index, entry)

    def _novel_view(self, index: int, crop_linear: np.ndarray, track, lighting: SceneLighting,
                    camera_label: np.ndarray, cache) -> RelitCrop:
        """A new camera: the plate reprojected onto this frame's head (``blender_relight.novel_view``), relit by the
        same shading as the filmed view."""
        return self.novel_view_path().relight(index, crop_linear, track, lighting, camera_label, cache)

    def novel_view_path(self):
        """The novel-view path on this engine's heads (geometry and matte of :meth:`_frame`) and shading."""
        if self._novel_path is None:
            from blender_relight.novel_view.path import GeometryShading, NovelViewPath

            from blender_relight.novel_view.source import whole_head

            def head(index: int, crop_linear: np.ndarray, track):  # moved: the whole head; shaded as filmed
                frame = self._frame(index, crop_linear, track)
                return (*whole_head(track, crop_linear, frame.alpha, frame.labels), frame.geometry, frame.alpha)

            self._novel_path = NovelViewPath(head, GeometryShading(self.shading_size, self.shadow_resolution))
        return self._novel_path

    def _filmed_view(self, index: int, crop_linear: np.ndarray, track, lighting: SceneLighting,
                     with_passes: bool = True) -> RelitCrop:
        """The filmed camera: the plate times the shading ratio plus new highlights under the matte. Passes are made
        when read (:class:`LazyPasses`); ``with_passes`` False leaves them out altogether."""
        import cv2

        from blender_relight.shading.shade import relight_values

        frame = self._frame(index, crop_linear, track)
        # direct lights with their cast shadows, the SH part (world, a DPR file) as SH, as the source is shaded
        result, ratio, extra = relight_values(lighting, frame.caster, frame.inputs, frame.shadows,
                                              self.shadow_resolution, frame.source, frame.source_specular)
        flat = frame.inputs.index
        s = self.shading_size
        size = crop_linear.shape[0]
        target = result.diffuse_values
        ones = np.ones((1, 3), np.float32)
        ratio_img = _at_fill(ratio, ones, frame.fill).reshape(s, s, 3)
        rows, cols = frame.box
        h, w = rows.stop - rows.start, cols.stop - cols.start
        image = crop_linear.copy()
        if h and w:
            def to_box(img: np.ndarray) -> np.ndarray:  # the shading image at crop size, the matte's box of it
                return _resized_box(img, size, rows, cols)

            out = cv2.add(cv2.multiply(to_box(ratio_img), frame.plate_in), frame.plate_out)
            if extra.max(initial=0.0) > 0:
                spec_img = _at_fill(extra, 0 * ones, frame.fill).reshape(s, s, 3)
                out = cv2.add(out, cv2.multiply(to_box(spec_img), frame.alpha_box))
            image[rows, cols] = np.maximum(out, 0.0)
        up = (size, size)

        def resized(img: np.ndarray) -> np.ndarray:
            big = cv2.resize(img, up, interpolation=cv2.INTER_LINEAR)
            return np.maximum(big.reshape(size, size, -1), 0.0).astype(np.float32)

        ready = {"alpha": frame.alpha[..., None]}
        makers = {"albedo": lambda: frame.albedo, "normal": lambda: frame.normal_sh, "depth": lambda: frame.depth,
                  "shading": lambda: resized(_at_fill(target, 0 * ones, frame.fill).reshape(s, s, 3)),
                  "specular": lambda: resized(_at_fill(extra, 0 * ones, frame.fill).reshape(s, s, 3))}
        def light_pass(values: np.ndarray) -> np.ndarray:
            channels = values.shape[1] if values.ndim == 2 else 1
            img = np.zeros((s * s, channels), np.float32)
            img[flat] = values.reshape(len(flat), channels)
            return resized(img.reshape(s, s, channels))

        for name, values in result.per_light_values.items():
            for kind, v in zip(("diffuse", "specular", "shadow"), values):
                makers[pass_name(name, kind)] = lambda v=v: light_pass(v)
        if not with_passes:
            return RelitCrop(image.astype(np.float32, copy=False), frame.alpha, {})
        return RelitCrop(image.astype(np.float32, copy=False), frame.alpha, LazyPasses(ready, makers))

    def relight(self, index: int, crop_linear: np.ndarray, track, lighting: "SceneLighting | np.ndarray",
                camera_label: np.ndarray | None, cache) -> RelitCrop:
        lighting = SceneLighting.coerce(lighting)
        if camera_label is None or self.novel_view_engine is None:
            self._frame(index, crop_linear, track, cache)  # kept: the views below find it (with the cached matte)
        if camera_label is not None:
            if self.novel_view_engine is not None:
                return self.novel_view_engine.relight(index, crop_linear, track, lighting, camera_label, cache)
            from blender_relight.novel_view.views import is_filmed_view

            if not is_filmed_view(track.camera, camera_label):  # the frame's own camera is the filmed view itself
                return self._novel_view(index, crop_linear, track, lighting, camera_label, cache)
        return self._filmed_view(index, crop_linear, track, lighting)


class NeuralEngine:
    """The trained model through ONNX Runtime, with per-frame planes cached and a G-buffer cache for light changes."""

    name = "neural"
    supports_novel_view = True

    def __init__(self, weights_dir: str | Path | None = None, provider: str = "auto", temporal: bool = True,
                 novel_views: bool = True) -> None:
        from inference.runtime import RelightRuntime, find_weights

        #: New views from the plate reprojected on the head geometry (True) or from the model's own render (False,
        #: what the evaluation compares against).
        self.novel_views = novel_views
        self._novel_path = None

        weights = Path(weights_dir) if weights_dir else find_weights()
        if weights is None:
            raise ModelFileError("no neural model weights found (inference/weights/default/model.json); "
                                 "reinstall the package or pass --weights FOLDER, or use --engine analytic")
        self.runtime = RelightRuntime(weights, provider=provider)
        # Cached planes belong to the encoder that made them: key them by the encode graph's identity.
        encode_meta = json.dumps(self.runtime.meta["graphs"]["encode"], sort_keys=True).encode()
        self.model_id = hashlib.sha1(encode_meta).hexdigest()[:16]
        self.temporal_enabled = temporal
        self.window = int(self.runtime.shapes["memory"][1])  # earlier frames the temporal step attends to
        #: ``index -> (crop_linear, track) | None`` for frames before the one relit (set by the ClipSession): the
        #: temporal window is rebuilt from them on a jump. Without it only cached planes can fill the window.
        self.frame_source = None
        self._tokens: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._planes: OrderedDict[int, dict] = OrderedDict()
        self._gbuffers: OrderedDict[tuple, dict] = OrderedDict()
        self._mattes: OrderedDict[int, np.ndarray] = OrderedDict()
        self._source_shading: OrderedDict[tuple, np.ndarray] = OrderedDict()
        log.info("neural engine: %s", self.runtime.describe())
        if not self.runtime.trained:
            log.warning("%s: model.json says these weights are not trained (%s); relit frames will be wrong",
                        weights, self.runtime.meta.get("warning", "random initial weights"))

    def novel_view_path(self):
        """The plate-reprojection path new views take: the geometry engine's (its heads and shading)."""
        if self._novel_path is None:
            self._novel_path = GeometryEngine().novel_view_path()
        return self._novel_path

    def _head_matte(self, index: int, crop_linear: np.ndarray, track) -> np.ndarray:
        """The plate's head and hair (the person matte with the face mesh, as the analytic engine's): the model's
        coverage is a learnt, smoother silhouette that spills onto the background beside the head, where the shading
        ratio would otherwise light the wall (a halo, seen in the demo). Kept for the last few frames."""
        if index not in self._mattes:
            _keep(self._mattes, index, _face_maps_and_matte(crop_linear, track)[1])
        return self._mattes[index]

    @property
    def plane_shapes(self) -> dict[str, tuple[int, ...]]:
        """What a frame's cached planes must hold (a file with other keys or shapes is damaged)."""
        return {k: tuple(self.runtime.shapes[k][1:]) for k in ("albedo_planes", "shading_planes")}

    def needs_prepare(self, index: int, cache) -> bool:
        """Whether analysis still has to encode the frame (no plane file yet; a damaged one is found when read)."""
        return not cache.has_planes(index, self.model_id)

    def prepare(self, index: int, crop_linear: np.ndarray, track, cache) -> None:
        if cache.get_planes(index, self.model_id, self.plane_shapes) is None:
            planes = self._raw_planes(index, crop_linear, track, cache)
            if self.temporal_enabled:  # the frame's temporal tokens now, while its planes are at hand (a later jump
                self._frame_tokens(index, cache, planes)  # to any analysed frame then rebuilds no window)

    def _raw_planes(self, index: int, crop_linear: np.ndarray, track, cache) -> dict:
        """The encoder's planes of one frame (from the clip's cache, else encoded now and cached)."""
        planes = cache.get_planes(index, self.model_id, self.plane_shapes)
        if planes is None:
            encoded = self.runtime.encode(crop_linear, _source_sh(track))
            # The stored form (8-bit) is what is used, now as on every later read: `relight` on a clip never
            # analysed gives the frames `analyse` then `relight` gives.
            planes = cache.put_planes(index, encoded, self.model_id) or encoded
        return planes

    def _frame_tokens(self, index: int, cache, planes: dict | None = None) -> np.ndarray | None:
        """Frame ``index``'s temporal memory tokens, or None where the frame has no face (which ends the window).

        A frame's tokens depend on its own planes only (the temporal graph embeds the input planes; the memory is
        a first-in first-out list of those embeddings), so they are computed once per frame and kept.
        """
        if index in self._tokens:
            self._tokens.move_to_end(index)
            return self._tokens[index]
        tokens = None
        track = cache.get_track(index)
        if track is not None and track.tracked:
            planes = planes if planes is not None else cache.get_planes(index, self.model_id, self.plane_shapes)
            if planes is None and self.frame_source is not None:
                source = self.frame_source(index)
                if source is not None:
                    planes = self._raw_planes(index, source[0], source[1], cache)
            if planes is not None:
                tokens = self.runtime.temporal(planes, None)[1]["tokens"][-1]
        self._tokens[index] = tokens
        while len(self._tokens) > TOKEN_FRAMES:
            self._tokens.popitem(last=False)
        return tokens

    def _memory_before(self, index: int, cache) -> dict | None:
        """The temporal memory of frame ``index``: the tokens of the tracked frames just before it (at most
        :attr:`window`, stopping at the first frame without a face), oldest first, as a frame-by-frame run from
        the clip's start would have left it."""
        tokens = []
        for j in range(index - 1, max(index - self.window, 0) - 1, -1):
            t = self._frame_tokens(j, cache)
            if t is None:
                break
            tokens.append(t)
        if not tokens:
            return None
        memory = self.runtime.empty_memory()
        for slot, t in enumerate(reversed(tokens), start=self.window - len(tokens)):
            memory["tokens"][slot] = t
            memory["valid"][slot] = 1.0
        return memory

    def _frame_planes(self, index: int, crop_linear: np.ndarray, track, cache) -> dict:
        """Temporally corrected planes of frame ``index``: a function of the clip and the frame alone.

        The window is the frames before ``index`` whatever was relit before (a scrub, a jump, rendering out of
        order): their tokens are rebuilt from their planes when not kept, so frame N after a scrub is frame N of a
        run in order. Kept for the last few frames.
        """
        if index in self._planes:
            return self._planes[index]
        planes = self._raw_planes(index, crop_linear, track, cache)
        if self.temporal_enabled:
            planes, memory = self.runtime.temporal(planes, self._memory_before(index, cache))
            self._tokens[index] = memory["tokens"][-1]
        return _keep(self._planes, index, planes)

    def relight(self, index: int, crop_linear: np.ndarray, track, lighting: "SceneLighting | np.ndarray",
                camera_label: np.ndarray | None, cache) -> RelitCrop:
        from blender_relight.novel_view.views import is_filmed_view

        if camera_label is not None and is_filmed_view(track.camera, camera_label):
            camera_label = None  # the frame's own camera is the filmed view itself
        if camera_label is not None and self.novel_views:
            # New views re-pose the filmed plate on the tracked head geometry (blender_relight.novel_view): the
            # model's render is a blurry stranger at new views (docs/novel_views.md has the measurement).
            return self.novel_view_path().relight(index, crop_linear, track, lighting, camera_label, cache)
        sh_rgb = SceneLighting.coerce(lighting).total_sh()
        camera = np.asarray(track.camera if camera_label is None else camera_label, dtype=np.float32)
        key = (index, camera.tobytes())
        gbuffer = self._gbuffers.get(key)
        if gbuffer is None:
            gbuffer = _keep(self._gbuffers, key,
                            self.runtime.render(self._frame_planes(index, crop_linear, track, cache), camera))
        image, passes = self.runtime.shade(gbuffer, np.asarray(sh_rgb, dtype=np.float32))
        passes = {k: np.asarray(v, dtype=np.float32) for k, v in passes.items()}
        alpha = passes["alpha"].reshape(image.shape[:2])
        if camera_label is None:
            # The source view keeps the plate: the filmed pixels times the model's shading ratio (target over source
            # light), so skin, hair and eyes keep every detail of the input and only the light changes. New views
            # cannot, and show the render.
            from blender_relight.lighting import analytic

            alpha = alpha * self._head_matte(index, crop_linear, track)
            source = self._source_shading.get(key)  # the frame's own light: shaded once, not per light change
            if source is None:
                source = _keep(self._source_shading, key,
                               self.runtime.shade(gbuffer, _source_sh(track).astype(np.float32))[1]["shading"])
            image = analytic.relight_by_shading(crop_linear, alpha, source, passes["shading"])
        # One convention for every engine's passes: albedo ρ (the network carries ρ/π, premultiplied by its
        # coverage), normals in the head (SH) frame.
        covered = passes["alpha"][..., None]
        passes["albedo"] = np.where(covered > 1e-3, passes["albedo"] * np.pi / np.maximum(covered, 1e-3),
                                    0.0).astype(np.float32)
        from blender_relight.lighting import sh as shmath

        passes["normal"] = shmath.rotate_eg3d_to_sh(passes["normal"]).astype(np.float32)
        return RelitCrop(image.astype(np.float32), alpha, passes)


def weights_are_trained(weights_dir: Path) -> bool:
    """True when the folder's model.json says its weights came from training (not a random-init export)."""
    from inference.runtime import read_model_meta

    return bool(read_model_meta(Path(weights_dir), strict=False).get("trained"))


def _model_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a model folder (None when it is one), without loading any graph."""
    from inference.runtime import read_model_meta

    if not folder.exists():
        return f"model folder {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is a file, not a model folder"
    try:
        read_model_meta(folder, strict=True)
    except ModelFileError as exc:
        return str(exc)
    return None


def make_engine(name: str = "auto", provider: str = "auto", weights_dir: str | Path | None = None) -> RelightEngine:
    """``auto``: the geometry engine, at the filmed view (measured better than the neural and analytic engines on
    real photos under known lights: docs/ARCHITECTURE.md) and at new camera angles (the plate reprojected on the
    tracked head: identity 0.97-0.99 where the model's render scores 0.88, docs/novel_views.md).

    A model folder that was asked for (``weights_dir``) must be a model, under every engine choice: an empty,
    missing or unreadable one is a ModelFileError, never a silent fall-back to another engine; under ``auto`` a
    model folder that was asked for runs the neural engine with it."""
    if name not in ("auto", "neural", "analytic", "geometry"):
        raise RelightError(f"unknown engine {name!r}; use auto, neural, analytic or geometry")
    if weights_dir is not None:
        problem = _model_folder_problem(Path(weights_dir))
        if problem is not None:
            raise ModelFileError(f"{problem}; choose a folder written by `python -m inference.export` "
                                 "(it holds model.json and the .onnx graphs), or leave the model folder empty for "
                                 "the shipped model")
    if name == "analytic":
        return AnalyticEngine()
    if name == "geometry":
        return GeometryEngine()
    if name == "neural" or weights_dir is not None:  # a model folder asked for under auto: that model runs
        if name == "auto" and not weights_are_trained(Path(weights_dir)):
            raise ModelFileError(f"{weights_dir}: its model.json says the weights are not trained; train them "
                                 "(docs/training.md) or leave the model folder empty")
        return NeuralEngine(weights_dir, provider)
    return GeometryEngine()
