"""The novel-view path of an engine: what an engine's ``camera_label`` branch calls to show a frame from a new
camera, relit with the same shading as the filmed view.

``NovelViewPath.relight`` re-poses the frame (``NovelViewRenderer``: plate, clip texture, mirror, fill; background
behind the old head), then relights the re-posed plate by the ratio the filmed view uses,
``plate × E_target / E_source``, both irradiances taken at the new view's G-buffer normals: ``E_source`` from the
frame's estimated light, ``E_target`` from ``shade`` (the geometry engine's per-light shading with shadows when it
hands one over; else the target's total SH). Per-frame work (matte, geometry, source G-buffer, background) is kept
for the last few frames and the last new view's G-buffer is kept too, so a light change at a fixed new view costs
only the shading.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable

import numpy as np

from blender_relight.lighting.scene import SceneLighting
from blender_relight.novel_view import clip, render, source as source_mod

log = logging.getLogger(__name__)

KEEP = 4

#: ``shade(gbuffer, lighting, geometry, camera_label) -> (diffuse irradiance (H, W, 3), specular (H, W, 3) or None)``
ShadeFn = Callable[[object, SceneLighting, object, np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]


def sh_shade(gbuffer, lighting: SceneLighting, geometry, camera_label: np.ndarray):
    """Target irradiance as the lighting's total second-order SH at the G-buffer's normals (no shadows, no
    specular): what engines without per-light shading use. Evaluated on covered pixels only."""
    from blender_relight.lighting import sh as shmath

    mask = np.asarray(gbuffer.mask, bool)
    out = np.zeros(mask.shape + (3,), np.float32)
    n_sh = shmath.rotate_eg3d_to_sh(np.asarray(gbuffer.normal, np.float64)[mask])
    out[mask] = shmath.irradiance_basis(n_sh) @ shmath.as_rgb(lighting.total_sh())
    return out, None


def _bbox(mask: np.ndarray, pad: int = 2) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return slice(0, 0), slice(0, 0)
    h, w = mask.shape
    return (slice(max(ys.min() - pad, 0), min(ys.max() + pad + 1, h)),
            slice(max(xs.min() - pad, 0), min(xs.max() + pad + 1, w)))


class NovelViewPath:
    """Re-pose + relight for engines. ``shade`` (see :data:`ShadeFn`) defaults to :func:`sh_shade`."""

    def __init__(self, shade: ShadeFn | None = None, use_clip_texture: bool = True) -> None:
        from blender_relight.geometry import project, rasterize

        self.shade = shade or sh_shade
        self._sources: OrderedDict[int, render.SourceView] = OrderedDict()
        self._views: OrderedDict[tuple, render.NovelView] = OrderedDict()
        self._cache = None
        self.textures = clip.ClipTextures(self._source_for_texture)
        self.use_clip_texture = use_clip_texture
        self.renderer = render.NovelViewRenderer(rasterize, project, self._texture)
        self._current_geometry = None

    def _source_for_texture(self, index: int, crop: np.ndarray, track) -> render.SourceView:
        return source_mod.source_view(index, crop, track)

    def _texture(self):
        if not self.use_clip_texture or self._cache is None or self._current_geometry is None:
            return None
        return self.textures.get(self._cache, self._current_geometry)

    def source(self, index: int, crop_linear: np.ndarray, track) -> render.SourceView:
        """The frame as a source (kept for the last few frames)."""
        src = self._sources.get(index)
        if src is None:
            src = source_mod.source_view(index, crop_linear, track)
            self._sources[index] = src
            while len(self._sources) > KEEP:
                self._sources.popitem(last=False)
        return src

    def view(self, index: int, crop_linear: np.ndarray, track, camera_label: np.ndarray, cache) -> render.NovelView:
        """The re-posed frame at its source light (kept for the last few (frame, camera) pairs)."""
        key = (index, np.asarray(camera_label, np.float32).tobytes())
        nv = self._views.get(key)
        if nv is None:
            src = self.source(index, crop_linear, track)
            self._cache, self._current_geometry = cache, src.geometry
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
        src = self._sources.get(index) or self.source(index, crop_linear, track)
        diffuse, specular = self.shade(nv.gbuffer, lighting, src.geometry, nv.view.label)
        head = nv.head_alpha
        # The filmed view's ratio (lighting.analytic.relight_by_shading), on the head's bounding box only.
        image = np.array(nv.image, copy=True)
        box = _bbox(head > 0)
        image[box] = analytic.relight_by_shading(nv.image[box], head[box], nv.source_shading[box], diffuse[box])
        if specular is not None:
            image = image + np.asarray(specular, np.float32) * head[..., None]
        passes = dict(self._light_free_passes(nv))
        passes["shading"] = np.asarray(diffuse, np.float32)
        return RelitCrop(image.astype(np.float32), nv.alpha, passes, list(nv.notes))

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
