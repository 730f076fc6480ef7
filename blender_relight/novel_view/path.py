"""The novel-view path of an engine: what an engine's ``camera_label`` branch calls to show a frame from a new
camera, relit with the same shading as the filmed view.

``NovelViewPath.relight`` re-poses the frame (``NovelViewRenderer``: plate, clip texture, mirror, fill; background
behind the old head), then relights the re-posed plate by the ratio the filmed view uses,
``plate × E_target / E_source (+ the highlight the plate lacks)``, both taken at the new view's G-buffer with
:class:`GeometryShading`, the geometry engine's shading (``blender_relight.shading``: every Blender light with
falloff, cone, area, cast shadow and specular, the SH remainder, the source light's key shaded the same way), so a
light means the same at the filmed and at a new view. Per-frame work (geometry, matte, source G-buffer, background,
shadow maps) is kept for the last few frames and per-view work (G-buffer, shading inputs, source shading, passes) for
the last few views, so a light change at a fixed new view costs only the target shading, as at the filmed view.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from typing import Callable

import numpy as np

from blender_relight.lighting.scene import SceneLighting
from blender_relight.novel_view import background, clip, render, source as source_mod
from blender_relight.novel_view.views import clamp_view

log = logging.getLogger(__name__)

KEEP = 4

#: Head directions (cosine between a vertex normal and the filmed camera's view of it) whose surface the shadow maps
#: of a new view are fitted to: everything a camera within the range (±30° yaw) can see of the head.
RECEIVER_COS = -0.5


def _receivers(source: render.SourceView, geometry) -> np.ndarray:
    """The points a frame's shadow maps are fitted to, the same for every new view of it (so the maps are built once
    per frame and light, not per camera): the head's vertices that face the filmed camera or turn away from it by
    less than ~120° (what any view in the range sees), a sparse sample of them."""
    from blender_relight import camera
    from blender_relight.geometry.head import vertex_normals

    verts = np.asarray(geometry.vertices, np.float64)
    normals = vertex_normals(verts, geometry.triangles)
    eye = camera.split_label(source.label)[0][:3, 3]
    to_eye = eye - verts
    cos = np.einsum("ij,ij->i", normals, to_eye) / np.maximum(np.linalg.norm(to_eye, axis=1), 1e-9)
    seen = verts[cos > RECEIVER_COS]
    return seen[:: max(1, len(seen) // 2000)].copy()


class GeometryShading:
    """The geometry engine's shading at a new view, done as the filmed view does it: ``shading.shade`` at ``size``²
    (the new view's G-buffer taken every other pixel: shading is smooth; its normals feathered across the face/shell
    seam at that size, ``raster.feather_seam``), the source light shaded alike
    (``shade.source_shading``), the ratio per shaded pixel carried to the pixels just
    past the mesh's edge (the nearest shaded pixel), resized to the head's box of the crop. Per view the shading
    inputs, the source light and the edge map are kept; shadow maps are kept per frame and light; a light change
    shades the target values only and makes pass images when they are read."""

    def __init__(self, size: int = 256, shadow_resolution: int = 128) -> None:
        self.size = int(size)
        self.shadow_resolution = int(shadow_resolution)

    def _view_state(self, view: render.NovelView, source: render.SourceView) -> dict:
        """What a light change at ``view`` reuses: made by :meth:`prepare` (begun beside the render when the path
        started it, see ``NovelViewPath.view``), kept with the view."""
        state = getattr(view, "_shading", None)
        if state is None:
            started = getattr(view, "_shading_started", None)
            state = started.result() if started is not None else self.prepare(view.gbuffer, view.view.label, source)
            view._shading = state
        return state

    def prepare(self, full, label: np.ndarray, source: render.SourceView) -> dict:
        """The shading inputs of G-buffer ``full`` (seen from ``label``; None where ``source`` has its own shaded
        head, which is rasterised here), the source light there, the edge map."""
        from blender_relight.engines import REACH
        from blender_relight.geometry.head import shadow_caster
        from blender_relight.geometry.raster import feather_seam
        from blender_relight.shading import ShadowCache, prepare
        from blender_relight.shading.shade import edge_fill, source_shading

        shaded = source.geometry if source.shading_geometry is None else source.shading_geometry
        if source.shading_geometry is not None:  # the filmed view's shading G-buffer, made at this camera
            small = feather_seam(source_mod.rasterize_head(shaded, label, self.size))
        else:  # the new view's G-buffer, every other pixel
            step = max(full.mask.shape[0] // self.size, 1)
            small = feather_seam(type(full)(**{k: (v[::step, ::step] if isinstance(v, np.ndarray) and v.ndim >= 2
                                                  else v) for k, v in vars(full).items()}))
        caster = getattr(source, "_caster", None)
        if caster is None:
            caster = source._caster = shadow_caster(shaded)
            source._shadows = ShadowCache()
            source._receivers = _receivers(source, shaded)
        inputs = dataclasses.replace(prepare(small, label), receivers=source._receivers)
        e_src, src_specular = source_shading(source.source_sh, caster, inputs, source._shadows,
                                             self.shadow_resolution)
        s = small.mask.shape[0]
        # pixels just past the mesh's edge take the nearest shaded pixel's ratio (as the filmed view's)
        fill = edge_fill(small.mask, REACH * s)
        state = {"inputs": inputs, "caster": caster, "shadows": source._shadows, "source": e_src,
                 "source_specular": src_specular, "fill": fill, "size": s}
        return state

    def target(self, state: dict, lighting: SceneLighting) -> tuple:
        """(shading result, E_target / E_source, the highlight the plate lacks) per shaded pixel of a view whose
        :meth:`prepare` gave ``state``: the part of a light change that needs no more of the view (a camera change
        runs it on the worker, beside the reprojection)."""
        from blender_relight.shading.shade import relight_values

        return relight_values(lighting, state["caster"], state["inputs"], state["shadows"], self.shadow_resolution,
                              state["source"], state["source_specular"])

    def __call__(self, view: render.NovelView, source: render.SourceView, lighting: SceneLighting,
                 box: tuple[slice, slice], shaded: tuple | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """(E_target / E_source on ``box`` of the crop (h, w, 3), the highlight the plate lacks there or None, pass
        makers {name: () -> image (S, S, C)}: shading, specular, per-light diffuse/specular/shadow). ``shaded``:
        :meth:`target` of this view and light when it was begun already."""
        import cv2

        from blender_relight.engines import pass_name

        state = self._view_state(view, source)
        result, ratio, extra = shaded if shaded is not None else self.target(state, lighting)
        size = view.gbuffer.mask.shape[0]
        s, fill = state["size"], state["fill"]
        rows, cols = box
        target = result.diffuse_values

        def image(values: np.ndarray, outside: float) -> np.ndarray:  # shaded values as an s² image (with edge)
            v = np.asarray(values, np.float32).reshape(len(values), -1)
            pad = np.full((1, v.shape[1]), outside, np.float32)
            return np.take(np.concatenate([v, pad]), fill, axis=0).reshape(s, s, -1)

        def crop_size(img: np.ndarray) -> np.ndarray:
            out = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
            return np.maximum(out.reshape(size, size, -1), 0.0).astype(np.float32)

        ratio_box = cv2.resize(image(ratio, 1.0), (size, size), interpolation=cv2.INTER_LINEAR)[rows, cols]
        spec_box = None
        if extra.max(initial=0.0) > 0:
            spec_box = cv2.resize(image(extra, 0.0), (size, size), interpolation=cv2.INTER_LINEAR)[rows, cols]
        makers = {"shading": lambda: crop_size(image(target, 0.0)),
                  "specular": lambda: crop_size(image(extra, 0.0)) * view.head_alpha[..., None]}
        for name, values in result.per_light_values.items():
            for kind, v in zip(("diffuse", "specular", "shadow"), values):
                makers[pass_name(name, kind)] = lambda v=v: crop_size(image(v, 0.0))
        return ratio_box, spec_box, makers


def _bbox(mask: np.ndarray, pad: int = 2) -> tuple[slice, slice]:
    """The box of ``mask``'s pixels grown by ``pad`` (from its rows and columns that hold any: no pixel list)."""
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return slice(0, 0), slice(0, 0)
    h, w = mask.shape
    return (slice(max(int(ys[0]) - pad, 0), min(int(ys[-1]) + pad + 1, h)),
            slice(max(int(xs[0]) - pad, 0), min(int(xs[-1]) + pad + 1, w)))


class NovelViewPath:
    """Re-pose + relight for engines, with the geometry engine's shading (:class:`GeometryShading`)."""

    def __init__(self, frame_fn: Callable, shade: "GeometryShading | None" = None, use_clip_texture: bool = True
                 ) -> None:
        """``frame_fn(index, crop_linear, track) -> (HeadGeometry, matte[, shading HeadGeometry, relight alpha])``:
        the head of a frame to move, and optionally the head the engine shades and its relight reach at the filmed
        view (``render.SourceView``)."""
        from blender_relight.geometry import project

        self.frame_fn = frame_fn
        self.shade = shade or GeometryShading()
        self._sources: OrderedDict[int, render.SourceView] = OrderedDict()
        self._views: OrderedDict[tuple, render.NovelView] = OrderedDict()
        self._cache = None
        self.textures = clip.ClipTextures(self._make_source)
        self.plates = background.CleanPlates()
        self.use_clip_texture = use_clip_texture
        self.renderer = render.NovelViewRenderer(source_mod.rasterize_head, project, self._texture)
        self._current_geometry = None

    def _make_source(self, index: int, crop: np.ndarray, track) -> render.SourceView:
        geometry, matte, *engine_head = self.frame_fn(index, crop, track)
        plate = self.plates.get(self._cache) if self.use_clip_texture else None
        return source_mod.source_view(index, crop, track, geometry, matte, *engine_head, plate=plate)

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

    def view(self, index: int, crop_linear: np.ndarray, track, camera_label: np.ndarray, cache,
             lighting: SceneLighting | None = None) -> render.NovelView:
        """The re-posed frame at its source light (kept for the last few (frame, camera) pairs). ``lighting``: the
        light the view is wanted under, whose shading (``GeometryShading.target``) then begins on the worker as
        soon as the view's shading inputs exist (``nv._target_started``)."""
        key = (index, np.asarray(track.camera, np.float32).tobytes(), np.asarray(camera_label, np.float32).tobytes())
        nv = self._views.get(key)
        if nv is None:
            self._cache = cache
            src = self.source(index, crop_linear, track)
            self._current_geometry = src.geometry
            started = []

            def start_shading(gbuffer, label: np.ndarray) -> None:  # beside the reprojection, on the worker
                started.append(render.submit(self.shade.prepare, gbuffer, label, src))
                if lighting is not None:  # queued behind it on the one worker: its state is ready when it runs
                    started.append(render.submit(lambda: self.shade.target(started[0].result(), lighting)))

            if src.shading_geometry is not None:
                # The shaded head is the frame's own: its G-buffer needs the camera only, so its shading begins on
                # the worker before the moved head is rasterised (the two rasters and the reprojection overlap).
                # The label is the one the renderer clamps the camera to (the same call).
                start_shading(None, clamp_view(src.label, camera_label).label)
                nv = self.renderer.render(src, camera_label)
            else:
                nv = self.renderer.render(src, camera_label, on_gbuffer=start_shading)
            nv._shading_started = started[0] if started else None
            nv._target_started = (lighting, started[1]) if len(started) > 1 else None
            self._views[key] = nv
            while len(self._views) > KEEP:
                self._views.popitem(last=False)
        return nv

    def relight(self, index: int, crop_linear: np.ndarray, track, lighting, camera_label: np.ndarray, cache):
        """A RelitCrop of frame ``index`` seen from ``camera_label`` under ``lighting``: the re-posed plate times
        the shading ratio plus the highlights it lacks, under the new head's coverage. Passes are made when read."""
        from blender_relight.engines import LazyPasses, RelitCrop

        lighting = SceneLighting.coerce(lighting)
        nv = self.view(index, crop_linear, track, camera_label, cache, lighting)
        src = self.source(index, crop_linear, track)
        reach = nv.head_alpha if nv.relight_alpha is None else nv.relight_alpha
        box = getattr(nv, "_box", None)
        if box is None:
            box = nv._box = _bbox(reach > 0)
        begun, nv._target_started = getattr(nv, "_target_started", None), None  # once: later lights shade here
        shaded = begun[1].result() if begun is not None and begun[0] is lighting else None
        ratio, add, makers = self.shade(nv, src, lighting, box, shaded)
        image = np.array(nv.image, copy=True)
        plate = nv.image[box]
        # plate + a (plate (ratio − 1) + add), in place on the box (the same arithmetic, no temporaries)
        out = np.subtract(ratio, 1.0, dtype=np.float32)
        out *= plate
        if add is not None:
            out += add
        out *= reach[box][..., None]
        out += plate
        image[box] = np.maximum(out, 0.0, out=out)
        ready, light_free = self._light_free_passes(nv, src)
        return RelitCrop(image.astype(np.float32, copy=False), nv.alpha, LazyPasses(ready, {**light_free, **makers}),
                         list(nv.notes), np.asarray(reach, np.float32))

    @staticmethod
    def _light_free_passes(nv: render.NovelView, source: render.SourceView) -> tuple[dict, dict]:
        """(ready, makers) of a new view's light-free passes: alpha and the blend weights at hand, albedo, normal and
        depth made when read (kept with the view: a light change reuses them)."""
        cached = getattr(nv, "_passes", None)
        if cached is not None:
            return cached
        from blender_relight.lighting import sh as shmath
        from blender_relight.novel_view import texture

        covered = np.asarray(nv.gbuffer.mask, bool)

        def albedo() -> np.ndarray:  # the plate over the frame's own light at the new view's normals
            e_src = np.zeros(covered.shape + (3,), np.float32)
            e_src[covered] = texture.normalising_shading(nv.gbuffer.normal[covered], source.source_sh)
            out = np.where(covered[..., None], nv.image * np.pi / np.maximum(e_src, 1e-4), 0.0)
            return out.astype(np.float32)

        def normal() -> np.ndarray:  # feathered across the seam, as the filmed view's pass
            from blender_relight.geometry.raster import feather_seam

            feathered = feather_seam(dataclasses.replace(nv.gbuffer)).normal
            out = np.zeros(covered.shape + (3,), np.float32)
            out[covered] = shmath.rotate_eg3d_to_sh(np.asarray(feathered, np.float64)[covered])
            return out

        def depth() -> np.ndarray:
            return np.where(covered, nv.gbuffer.depth, 0.0)[..., None].astype(np.float32)

        ready = {"alpha": nv.alpha[..., None].astype(np.float32)}
        for name, w in nv.weights.items():
            ready[f"source_{name}"] = w[..., None].astype(np.float32)
        nv._passes = (ready, {"albedo": albedo, "normal": normal, "depth": depth})
        return nv._passes
