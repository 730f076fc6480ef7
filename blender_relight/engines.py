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

import hashlib
import json
import logging
from collections import OrderedDict
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


class RelightEngine(Protocol):
    """What the pipeline needs from an engine."""

    name: str
    supports_novel_view: bool

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


def _keep(cache: OrderedDict, key, value):
    """Store ``value`` under ``key`` in a small most-recent cache of :data:`KEEP_FRAMES` entries; return it."""
    cache[key] = value
    while len(cache) > KEEP_FRAMES:
        cache.popitem(last=False)
    return value


def _face_maps_and_matte(crop_linear: np.ndarray, track):
    """The tracked face mesh's maps at crop size and the plate's head-and-hair matte (GrabCut seeded by the mesh;
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


class NeuralEngine:
    """The trained model through ONNX Runtime, with per-frame planes cached and a G-buffer cache for light changes."""

    name = "neural"
    supports_novel_view = True

    def __init__(self, weights_dir: str | Path | None = None, provider: str = "auto", temporal: bool = True) -> None:
        from inference.runtime import RelightRuntime, find_weights

        weights = Path(weights_dir) if weights_dir else find_weights()
        if weights is None:
            raise ModelFileError("no neural model weights found (inference/weights/default/model.json); "
                                 "reinstall the package or pass --weights FOLDER, or use --engine analytic")
        self.runtime = RelightRuntime(weights, provider=provider)
        # Cached planes belong to the encoder that made them: key them by the encode graph's identity.
        encode_meta = json.dumps(self.runtime.meta["graphs"]["encode"], sort_keys=True).encode()
        self.model_id = hashlib.sha1(encode_meta).hexdigest()[:16]
        self.temporal_enabled = temporal
        self._memory = None
        self._last_index: int | None = None
        self._planes: OrderedDict[int, dict] = OrderedDict()
        self._gbuffers: OrderedDict[tuple, dict] = OrderedDict()
        self._mattes: OrderedDict[int, np.ndarray] = OrderedDict()
        self._source_shading: OrderedDict[tuple, np.ndarray] = OrderedDict()
        log.info("neural engine: %s", self.runtime.describe())
        if not self.runtime.trained:
            log.warning("%s: model.json says these weights are not trained (%s); relit frames will be wrong",
                        weights, self.runtime.meta.get("warning", "random initial weights"))

    def _head_matte(self, index: int, crop_linear: np.ndarray, track) -> np.ndarray:
        """The plate's head and hair (GrabCut seeded by the face mesh, as the analytic engine's): the model's
        coverage is a learnt, smoother silhouette that spills onto the background beside the head, where the shading
        ratio would otherwise light the wall (a halo, seen in the demo). Kept for the last few frames."""
        if index not in self._mattes:
            _keep(self._mattes, index, _face_maps_and_matte(crop_linear, track)[1])
        return self._mattes[index]

    def prepare(self, index: int, crop_linear: np.ndarray, track, cache) -> None:
        if cache.get_planes(index, self.model_id) is None:
            cache.put_planes(index, self.runtime.encode(crop_linear, _source_sh(track)), self.model_id)

    def _frame_planes(self, index: int, crop_linear: np.ndarray, track, cache) -> dict:
        """Temporally corrected planes of frame ``index`` (memory follows the video; a jump resets it)."""
        if index in self._planes:
            return self._planes[index]
        planes = cache.get_planes(index, self.model_id)
        if planes is None:
            planes = self.runtime.encode(crop_linear, _source_sh(track))
            cache.put_planes(index, planes, self.model_id)
        if self.temporal_enabled:
            if self._last_index is None or index != self._last_index + 1:
                self._memory = None  # a jump on the timeline: start a fresh window
            planes, self._memory = self.runtime.temporal(planes, self._memory)
            self._last_index = index
        return _keep(self._planes, index, planes)

    def relight(self, index: int, crop_linear: np.ndarray, track, lighting: "SceneLighting | np.ndarray",
                camera_label: np.ndarray | None, cache) -> RelitCrop:
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


def make_engine(name: str = "auto", provider: str = "auto", weights_dir: str | Path | None = None) -> RelightEngine:
    """``auto``: the neural engine when trained weights are installed, else the analytic engine (said in the log)."""
    if name not in ("auto", "neural", "analytic"):
        raise RelightError(f"unknown engine {name!r}; use auto, neural or analytic")
    if name == "analytic":
        return AnalyticEngine()
    if name == "neural":
        return NeuralEngine(weights_dir, provider)
    from inference.runtime import find_weights

    weights = Path(weights_dir) if weights_dir else find_weights()
    if weights is not None and weights_are_trained(weights):
        return NeuralEngine(weights, provider)
    log.info("engine auto: no trained neural weights found; using the analytic engine (source view only)")
    return AnalyticEngine()
