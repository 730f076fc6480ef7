"""The novel-view path of an engine: what an engine's ``camera_label`` branch calls to show a frame from a new
camera, relit with the same shading as the filmed view.

``NovelViewPath.relight`` re-poses the frame (``NovelViewRenderer``: plate, clip texture, mirror, fill; background
behind the old head), then relights the re-posed plate by the ratio the filmed view uses,
``plate × E_target / E_source (+ the highlight the plate lacks)``, both taken at the new view's G-buffer: with
:class:`GeometryShading` (the default) that is the geometry engine's shading (``blender_relight.shading``: every
Blender light with falloff, cone, area, cast shadow and specular, the SH remainder, the source light's key shaded the
same way), so a light means the same at the filmed and at a new view; :func:`sh_shade` is the plain SH fallback.
Per-frame work (geometry, matte, source G-buffer, background) is kept for the last few frames and per-view work
(G-buffer, shading inputs, source shading, passes) for the last few views, so a light change at a fixed new view
costs only the target shading.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable

import numpy as np

from blender_relight.lighting.scene import SceneLighting
from blender_relight.novel_view import background, clip, render, source as source_mod

log = logging.getLogger(__name__)

KEEP = 4

#: ``shade(view, source, lighting) -> (E_target (H, W, 3), E_source (H, W, 3) or None, specular to add or None,
#: per-light passes {name: (diffuse, specular, shadow)}[, ratio (H, W, 3)])``; E_source None: the view's own SH
#: source shading; a ratio given is used as it is (the shading computed it at its own size).
ShadeFn = Callable[..., tuple]


def sh_shade(view: render.NovelView, source: render.SourceView, lighting: SceneLighting):
    """Target irradiance as the lighting's total second-order SH at the G-buffer's normals (no shadows, no
    specular), evaluated on covered pixels only: the plain fallback."""
    from blender_relight.lighting import sh as shmath

    gbuffer = view.gbuffer
    mask = np.asarray(gbuffer.mask, bool)
    out = np.zeros(mask.shape + (3,), np.float32)
    n_sh = shmath.rotate_eg3d_to_sh(np.asarray(gbuffer.normal, np.float64)[mask])
    out[mask] = shmath.irradiance_basis(n_sh) @ shmath.as_rgb(lighting.total_sh())
    return out, None, None, {}, None


class GeometryShading:
    """The geometry engine's shading at a new view: ``shading.shade`` at ``size``² (the new view's G-buffer taken
    every other pixel: shading is smooth), target and source light shaded alike (the SH's key as a light with its
    cast shadow, ``shade.split_key``), carried past the mesh's edge and resized to the crop."""

    def __init__(self, size: int = 256, shadow_resolution: int = 128) -> None:
        self.size = int(size)
        self.shadow_resolution = int(shadow_resolution)

    def _view_state(self, view: render.NovelView, source: render.SourceView) -> dict:
        state = getattr(view, "_shading", None)
        if state is None:
            from blender_relight.geometry.head import shadow_caster
            from blender_relight.shading import ShadowCache, prepare, shade
            from blender_relight.shading.shade import extend, split_key

            full = view.gbuffer
            step = max(full.mask.shape[0] // self.size, 1)
            small = type(full)(**{k: (v[::step, ::step] if isinstance(v, np.ndarray) and v.ndim >= 2 else v)
                                  for k, v in vars(full).items()})
            inputs = prepare(small, view.view.label)
            caster = getattr(source, "_caster", None)
            if caster is None:
                caster = source._caster = shadow_caster(source.geometry)
                source._shadows = ShadowCache()
            src = shade(None, split_key(source.source_sh), caster, inputs=inputs, per_light=False,
                        shadow_resolution=self.shadow_resolution)
            state = {"inputs": inputs, "mask": small.mask, "caster": caster, "shadows": source._shadows,
                     "source": extend(src.diffuse, small.mask), "source_specular": src.specular}
            view._shading = state
        return state

    def __call__(self, view: render.NovelView, source: render.SourceView, lighting: SceneLighting):
        import cv2

        from blender_relight.shading import shade
        from blender_relight.shading.shade import extend, split_key

        state = self._view_state(view, source)
        world = split_key(lighting.sh)
        lighting = SceneLighting(sh=world.sh, lights=tuple(lighting.lights) + world.lights)
        result = shade(None, lighting, state["caster"], inputs=state["inputs"], shadows=state["shadows"],
                       shadow_resolution=self.shadow_resolution, per_light=True)
        size = view.gbuffer.mask.shape[0]
        up = (size, size)

        def big(img: np.ndarray) -> np.ndarray:
            out = cv2.resize(np.asarray(img, np.float32), up, interpolation=cv2.INTER_LINEAR)
            return out.reshape(size, size, -1)

        from blender_relight.lighting import analytic

        target_small = extend(result.diffuse, state["mask"])
        # The ratio at shading size, then resized (smooth), as the filmed view does it: a light change costs the same.
        reach = (state["source"].max(axis=2) > 0).astype(np.float32)
        ratio = big(analytic.relight_by_shading(np.ones_like(target_small), reach, state["source"], target_small))
        specular = big(np.maximum(result.specular - state["source_specular"], 0.0))
        per_light = {name: (big(lp.diffuse), big(lp.specular), big(lp.shadow)) for name, lp in result.per_light.items()}
        return big(target_small), None, specular, per_light, ratio


def _bbox(mask: np.ndarray, pad: int = 2) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return slice(0, 0), slice(0, 0)
    h, w = mask.shape
    return (slice(max(ys.min() - pad, 0), min(ys.max() + pad + 1, h)),
            slice(max(xs.min() - pad, 0), min(xs.max() + pad + 1, w)))


class NovelViewPath:
    """Re-pose + relight for engines. ``shade`` (see :data:`ShadeFn`) defaults to :func:`sh_shade`."""

    def __init__(self, frame_fn: Callable, shade: ShadeFn | None = None, use_clip_texture: bool = True) -> None:
        """``frame_fn(index, crop_linear, track) -> (HeadGeometry, matte)``: the engine's head of a frame."""
        from blender_relight.geometry import project

        self.frame_fn = frame_fn
        self.shade = shade or GeometryShading()
        self._sources: OrderedDict[int, render.SourceView] = OrderedDict()
        self._views: OrderedDict[tuple, render.NovelView] = OrderedDict()
        self._cache = None
        self.textures = clip.ClipTextures(self._make_source)
        self.plates = background.CleanPlates()
        self.use_clip_texture = use_clip_texture
        self.renderer = render.NovelViewRenderer(source_mod.rasterize_feathered, project, self._texture)
        self._current_geometry = None

    def _make_source(self, index: int, crop: np.ndarray, track) -> render.SourceView:
        geometry, matte = self.frame_fn(index, crop, track)
        plate = self.plates.get(self._cache) if self.use_clip_texture else None
        return source_mod.source_view(index, crop, track, geometry, matte, plate)

    def _texture(self):
        if not self.use_clip_texture or self._cache is None or self._current_geometry is None:
            return None
        return self.textures.get(self._cache, self._current_geometry)

    def source(self, index: int, crop_linear: np.ndarray, track) -> render.SourceView:
        """The frame as a source (kept for the last few frames; a frame whose camera changed, another clip's frame
        of the same index, is made again)."""
        src = self._sources.get(index)
        if src is not None and src.label.tobytes() != np.asarray(track.camera, np.float32).tobytes():
            src = None
        if src is None:
            src = self._make_source(index, crop_linear, track)
            self._sources[index] = src
            while len(self._sources) > KEEP:
                self._sources.popitem(last=False)
        return src

    def view(self, index: int, crop_linear: np.ndarray, track, camera_label: np.ndarray, cache) -> render.NovelView:
        """The re-posed frame at its source light (kept for the last few (frame, camera) pairs)."""
        key = (index, np.asarray(track.camera, np.float32).tobytes(), np.asarray(camera_label, np.float32).tobytes())
        nv = self._views.get(key)
        if nv is None:
            self._cache = cache
            src = self.source(index, crop_linear, track)
            self._current_geometry = src.geometry
            nv = self.renderer.render(src, camera_label)
            self._views[key] = nv
            while len(self._views) > KEEP:
                self._views.popitem(last=False)
        return nv

    def relight(self, index: int, crop_linear: np.ndarray, track, lighting, camera_label: np.ndarray, cache):
        """A RelitCrop of frame ``index`` seen from ``camera_label`` under ``lighting``."""
        from blender_relight.engines import RelitCrop
        from blender_relight.lighting import analytic

        lighting = SceneLighting.coerce(lighting)
        nv = self.view(index, crop_linear, track, camera_label, cache)
        src = self.source(index, crop_linear, track)
        target, source_shading, specular, per_light, *rest = self.shade(nv, src, lighting)
        head = nv.head_alpha
        image = np.array(nv.image, copy=True)
        box = _bbox(head > 0)
        if rest and rest[0] is not None:  # the shading made the ratio itself (at its own size)
            ratio = rest[0][box]
        else:  # the filmed view's ratio (lighting.analytic.relight_by_shading: guarded, clamped), on the head's box
            source_shading = nv.source_shading if source_shading is None else source_shading
            ratio = analytic.relight_by_shading(np.ones_like(target[box]), (head[box] > 0).astype(np.float32),
                                                source_shading[box], target[box])
        a = head[box][..., None]
        add = 0.0 if specular is None else specular[box]
        image[box] = nv.image[box] + a * (nv.image[box] * (ratio - 1.0) + add)
        passes = dict(self._light_free_passes(nv))
        passes["shading"] = np.maximum(target, 0.0).astype(np.float32)
        if specular is not None:
            passes["specular"] = (specular * head[..., None]).astype(np.float32)
        from blender_relight.engines import pass_name

        for name, (diffuse, spec, shadow) in per_light.items():
            for kind, value in (("diffuse", diffuse), ("specular", spec), ("shadow", shadow)):
                passes[pass_name(name, kind)] = np.maximum(value, 0.0).astype(np.float32)
        return RelitCrop(np.maximum(image, 0.0).astype(np.float32), nv.alpha, passes, list(nv.notes))

    @staticmethod
    def _light_free_passes(nv: render.NovelView) -> dict[str, np.ndarray]:
        """Albedo, normal, depth, alpha and the blend weights of a new view (kept with it: a light change reuses)."""
        cached = getattr(nv, "_passes", None)
        if cached is not None:
            return cached
        from blender_relight.lighting import sh as shmath

        covered = np.asarray(nv.gbuffer.mask, bool)
        albedo = np.where(covered[..., None], nv.image * np.pi / np.maximum(nv.source_shading, 1e-4), 0.0)
        normal = np.zeros(covered.shape + (3,), np.float32)
        normal[covered] = shmath.rotate_eg3d_to_sh(np.asarray(nv.gbuffer.normal, np.float64)[covered])
        depth = np.where(covered, nv.gbuffer.depth, 0.0)[..., None]
        passes = {"albedo": albedo.astype(np.float32), "normal": normal, "depth": depth.astype(np.float32),
                  "alpha": nv.alpha[..., None].astype(np.float32)}
        for name, w in nv.weights.items():
            passes[f"source_{name}"] = w[..., None].astype(np.float32)
        nv._passes = passes
        return passes
