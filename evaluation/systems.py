"""The systems the evaluation compares, behind one interface.

``system.relight(crop_linear, frame_track, target_sh_rgb) -> crop`` takes the EG3D 512² crop of one frame (float32
linear RGB), the tracker's record for that frame and the target lighting (RGB SH (9, 3), project convention), and
returns the relit crop (float32 linear RGB, same size). Frames arrive in clip order, so a system may keep state
(the temporal network's memory); :meth:`reset` starts a pass, an optional ``begin_clip(path)`` a clip, and an optional
``last_stage_seconds`` dict reports the time of each stage of the last frame.

Why floors: a learned model must beat something honest. ``input`` (unchanged) scores what doing nothing scores;
``analytic`` (tracked geometry + SH ratio, no learning) scores what plain shading maths scores. ``geometry`` is the
product's default engine (3D head, per-light shading with cast shadows), scored the same way.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from blender_relight import colour
from blender_relight.errors import RelightError
from inference.runtime import read_model_meta


class System(Protocol):
    name: str

    def reset(self) -> None: ...

    def relight(self, crop_linear: np.ndarray, frame_track: object, target_sh_rgb: np.ndarray) -> np.ndarray: ...


class InputUnchanged:
    """Floor: returns the input crop; its lighting error is the distance from the input's lighting to the target."""

    name = "input"

    def reset(self) -> None:
        pass

    def relight(self, crop_linear: np.ndarray, frame_track: object, target_sh_rgb: np.ndarray) -> np.ndarray:
        return crop_linear


#: Camera axes (OpenCV: x right, y down, z forward) of a direction given in the image's SH axes (x right, y away
#: from the viewer, z up: DPR's convention for a light in the picture).
_IMAGE_SH_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def image_light_to_head(target_sh_rgb: np.ndarray, frame_track: object) -> np.ndarray:
    """A target light given in the image's axes (the protocol's: DPR's lights, which DPR applies in the picture) as
    the engines take it, in the head's SH frame: turned by the frame's head pose (``camera_c2w``), so the light stays
    fixed to the camera while the head turns, as it does for DPR. The frontal camera leaves it unchanged.

    Why: the product's engines light in the head anchor's axes (a Blender light in the rig), so without this a
    head turning by θ turned the protocol's light by θ in the picture, which DPR's estimator (in the picture's
    axes) reads as lighting error and, under the static light, as instability."""
    from blender_relight.lighting import sh

    c2w = np.asarray(frame_track.camera_c2w(), dtype=np.float64)[:3, :3]
    return sh.rotate_sh(target_sh_rgb, sh.EG3D_WORLD_TO_SH @ c2w @ _IMAGE_SH_TO_CAMERA)


def head_light_to_image(sh_rgb: np.ndarray, frame_track: object) -> np.ndarray:
    """The inverse of :func:`image_light_to_head` (a head-frame estimate in the picture's axes)."""
    from blender_relight.lighting import sh

    c2w = np.asarray(frame_track.camera_c2w(), dtype=np.float64)[:3, :3]
    return sh.rotate_sh(sh_rgb, (sh.EG3D_WORLD_TO_SH @ c2w @ _IMAGE_SH_TO_CAMERA).T)


class MemoryCache:
    """The per-frame store an engine's ``prepare``/``relight`` may use (planes of the neural engine), in memory."""

    def __init__(self) -> None:
        self._planes: dict = {}

    def has_planes(self, index: int, model_id: str = "") -> bool:
        return (index, model_id) in self._planes

    def get_planes(self, index: int, model_id: str = "", expected: dict | None = None):
        """As ``ClipCache.get_planes`` (``expected`` shapes are the file's check; in memory nothing is damaged)."""
        return self._planes.get((index, model_id))

    def put_planes(self, index: int, planes, model_id: str = ""):
        self._planes[(index, model_id)] = planes
        return planes


class EngineRelight:
    """A product engine by name (``engines.make_engine``: ``analytic``, ``geometry``, ...) at the filmed view, its
    relit crop composited over the input with the engine's alpha as the session pastes it.

    ``analytic`` is the floor of plain SH-ratio maths with no learning (tracked mesh normals,
    ``lighting.analytic.relight_ratio``) and ``geometry`` the product's default engine (the head's 3D geometry
    shaded per light with cast shadows: ``engines.GeometryEngine``), so both rows are exactly what users get: the
    session's body relight (``body.BodyRelight``: neck, shoulders and chest below the head follow the light) is
    applied to the crop as the session applies it to the frame. (Without it the protocol scored a relit head on a
    body still under the filmed light, which no user sees: the paper's crop shows the shoulders.)"""

    def __init__(self, name: str) -> None:
        self.name = name
        self.begin_clip(None)

    def begin_clip(self, path: Path | None) -> None:
        """A fresh engine and cache for each clip: engines keep per-frame products (the matte, the fitted head) by
        frame index, as a session does for its one clip. (Shared over clips, every clip after the first was relit
        with the first clip's matte at the same frame indices: a halo of the wrong head's outline on the
        background, in the protocol's figures until this fix.)"""
        from blender_relight.engines import make_engine

        from blender_relight.body import BodyRelight

        self.engine = make_engine(self.name)
        self.cache = MemoryCache()
        self.body = BodyRelight()

    def reset(self) -> None:
        pass

    def relight_lighting(self, index: int, crop_linear: np.ndarray, frame_track: object, lighting) -> np.ndarray:
        """Relight under a ``SceneLighting`` or an RGB SH (9, 3)."""
        self.engine.prepare(index, crop_linear, frame_track, self.cache)
        relit = self.engine.relight(index, crop_linear, frame_track, lighting, None, self.cache)
        from blender_relight.lighting.scene import SceneLighting
        from blender_relight.tracking.align import CropTransform

        alpha = np.clip(np.asarray(relit.alpha, dtype=np.float32), 0.0, 1.0)
        alpha = alpha[..., None] if alpha.ndim == 2 else alpha
        image = (alpha * relit.image + (1.0 - alpha) * crop_linear).astype(np.float32)
        if getattr(frame_track, "source_sh", None) is None:
            return image
        # the session's call (pipeline.relight at the filmed view), with the crop as the frame: the head's weight
        # is alpha² (the engine's image is blended by alpha and pasted by it again), the base the unrelit crop
        size = crop_linear.shape[0]
        return self.body.apply(index, image, crop_linear, colour.linear_to_uint8_srgb(crop_linear),
                               CropTransform(np.eye(3)[:2], size), alpha[..., 0] ** 2, frame_track.camera,
                               frame_track.source_sh, SceneLighting.coerce(lighting).total_sh())

    def relight(self, crop_linear: np.ndarray, frame_track: object, target_sh_rgb: np.ndarray) -> np.ndarray:
        """The clip protocol's call: ``target_sh_rgb`` in the image's axes (:func:`image_light_to_head`)."""
        return self.relight_lighting(getattr(frame_track, "index", 0), crop_linear, frame_track,
                                     image_light_to_head(target_sh_rgb, frame_track))


class DPRSystem:
    """Peer: DPR on the same EG3D crop, relighting Lab's L as DPR's demo does (8-bit sRGB, OpenCV Lab, a and b kept).

    DPR is gray: the target is reduced to DPR's gray convention with ``rgb_sh_to_dpr_gray`` (colour is ignored, as
    DPR ignores it).
    """

    name = "dpr"

    def __init__(self, dpr: "DPR") -> None:  # noqa: F821 (evaluation.dpr imports torch; keep it lazy)
        from blender_relight.lighting.estimate import rgb_sh_to_dpr_gray

        self._dpr = dpr
        self._to_gray = rgb_sh_to_dpr_gray

    def reset(self) -> None:
        pass

    def relight(self, crop_linear: np.ndarray, frame_track: object, target_sh_rgb: np.ndarray) -> np.ndarray:
        bgr = cv2.cvtColor(colour.linear_to_uint8_srgb(crop_linear), cv2.COLOR_RGB2BGR)
        relit, _ = self._dpr.relight_bgr(bgr, self._to_gray(target_sh_rgb))
        return colour.uint8_srgb_to_linear(cv2.cvtColor(relit, cv2.COLOR_BGR2RGB))


@dataclass
class Unavailable:
    """A system that could not be built here, with the reason the report prints."""

    name: str
    reason: str


@dataclass
class Timings:
    """Seconds per stage for each relit frame, for the speed table.

    Frames/s come from the *median* frame time: the first frame pays one-off warm-up (allocations, graph
    optimisation) and other jobs on a shared machine add outliers; the median is what a long clip sees.
    """

    per_frame: list[dict[str, float]] = field(default_factory=list)

    def add_frame(self, stages: dict[str, float]) -> None:
        self.per_frame.append(dict(stages))

    @property
    def frames(self) -> int:
        return len(self.per_frame)

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(k for f in self.per_frame for k in f))

    def median_seconds(self, stage: str | None = None) -> float:
        """Median seconds per frame of one stage, or of all stages together (``None``)."""
        if not self.per_frame:
            return float("nan")
        values = [sum(f.values()) if stage is None else f.get(stage, 0.0) for f in self.per_frame]
        return float(np.median(values))

    def fps(self, stage: str | None = None) -> float:
        s = self.median_seconds(stage)
        return 1.0 / s if s > 0 else float("nan")


#: Product engines the command scores by name at the filmed view (:class:`EngineRelight`).
ENGINE_SYSTEMS = ("analytic", "geometry")


def available_names() -> list[str]:
    """System names the command accepts (project systems are named ``project-<preset>[-temporal]``)."""
    return ["input", *ENGINE_SYSTEMS, "dpr", "project"]


def build_systems(names: list[str], dpr_weights: str | os.PathLike | None, dpr: object | None = None,
                  project_options: dict | None = None) -> list[object]:
    """Instantiate the requested systems; those that cannot run here come back as :class:`Unavailable`."""
    out: list[object] = []
    for name in names:
        try:
            if name == "input":
                out.append(InputUnchanged())
            elif name in ENGINE_SYSTEMS:
                out.append(EngineRelight(name))
            elif name == "dpr":
                if dpr is None:
                    from evaluation.dpr import DPR

                    dpr = DPR(dpr_weights)
                out.append(DPRSystem(dpr))
            elif name == "project":
                out.extend(project_systems(**(project_options or {})))
            else:
                raise RelightError(f"unknown system {name!r}; choose from {', '.join(available_names())}")
        except (ImportError, AttributeError) as exc:
            out.append(Unavailable(name, f"not available in this checkout ({exc})"))
        except RelightError as exc:
            if name not in available_names():
                raise
            out.append(Unavailable(name, str(exc)))
    return out


def preset_folders(extra: list[str | os.PathLike] | None = None) -> list[Path]:
    """Exported model folders: ``inference/weights/*/model.json`` plus any folders given on the command line."""
    root = Path(__file__).resolve().parents[1] / "inference" / "weights"
    found = sorted(p.parent for p in root.glob("*/model.json")) if root.is_dir() else []
    for folder in extra or []:
        folder = Path(folder)
        if not (folder / "model.json").is_file():
            raise RelightError(f"{folder}: no model.json; pass a folder written by `python -m inference.export`")
        found.append(folder)
    return found


def project_systems(weights: list[str | os.PathLike] | None = None, allow_untrained: bool = False,
                    cache_root: str | os.PathLike | None = None) -> list[object]:
    """This project through ``ClipSession``: every preset found, with and without the temporal network."""
    folders = preset_folders(weights)
    if not folders:
        return [Unavailable("project", "no exported model (inference/weights/*/model.json); export one with "
                                       "`python -m inference.export` or pass --weights DIR")]
    out: list[object] = []
    for folder in folders:
        meta = read_model_meta(folder, strict=False)
        label = f"project-{meta.get('preset', folder.name)}"
        if not meta.get("trained") and not allow_untrained:
            out.append(Unavailable(label, f"{folder}: model.json says the weights are untrained (random init); "
                                          "train and export, or pass --allow-untrained to time it"))
            continue
        for temporal in (False, True):
            out.append(ProjectSystem(folder, temporal, label + ("" if meta.get("trained") else "-UNTRAINED"),
                                     cache_root))
    return out


class ProjectSystem:
    """This project's neural relighting through ``blender_relight.pipeline.ClipSession`` and its cache.

    Per clip a ClipSession owns the cache of encoded planes (as in the product: the static pass reuses the planes the
    demo pass encoded) and the neural engine; the relit crop is composited over the input crop with the engine's
    alpha, which is what the session pastes into the frame. The runtime's four graphs are timed separately.
    """

    STAGES = ("encode", "temporal", "render", "shade")

    def __init__(self, folder: Path, temporal: bool, label: str, cache_root: str | os.PathLike | None) -> None:
        from blender_relight.engines import NeuralEngine

        self.name = f"{label}{'-temporal' if temporal else '-no-temporal'}"
        self.folder, self.temporal = folder, temporal
        self.engine = NeuralEngine(folder, temporal=temporal)
        self.last_stage_seconds: dict[str, float] = {}
        for stage in self.STAGES:  # time each graph where it runs
            setattr(self.engine.runtime, stage, self._timed(stage, getattr(self.engine.runtime, stage)))
        self._cache_root = Path(cache_root) if cache_root else None
        self.session = None

    def _timed(self, stage: str, fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.last_stage_seconds[stage] = self.last_stage_seconds.get(stage, 0.0) + time.perf_counter() - t0
        return run

    def begin_clip(self, path: Path) -> None:
        from blender_relight.pipeline import ClipSession

        if self.session is not None:
            self.session.close()
        cache = (self._cache_root or Path(tempfile.gettempdir()) / "relight-eval-cache") / self.name
        self.session = ClipSession(path, cache_dir=cache, engine=self.engine)
        self.session.cache.clear_planes()  # encode afresh, so encode speed is measured

    def reset(self) -> None:
        """Nothing to do: the engine starts a fresh temporal window by itself when the frame index jumps back."""

    def relight(self, crop_linear: np.ndarray, frame_track: object, target_sh_rgb: np.ndarray) -> np.ndarray:
        self.last_stage_seconds = {}
        relit = self.engine.relight(frame_track.index, crop_linear, frame_track,
                                    image_light_to_head(target_sh_rgb, frame_track), None, self.session.cache)
        alpha = np.clip(relit.alpha, 0.0, 1.0)[..., None]
        return (alpha * relit.image + (1.0 - alpha) * crop_linear).astype(np.float32)
