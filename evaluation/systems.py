"""The systems the evaluation compares, behind one interface.

``system.relight(crop_linear, frame_track, target_sh_rgb) -> crop`` takes the EG3D 512² crop of one frame (float32
linear RGB), the tracker's record for that frame and the target lighting (RGB SH (9, 3), project convention), and
returns the relit crop (float32 linear RGB, same size). Frames arrive in clip order, so a system may keep state
(the temporal network's memory); :meth:`reset` starts a new clip or pass.

Why floors: a learned model must beat something honest. ``input`` (unchanged) scores what doing nothing scores;
``analytic`` (tracked geometry + SH ratio, no learning) scores what plain shading maths scores.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from blender_relight import colour
from blender_relight.errors import RelightError


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


class AnalyticRelight:
    """Floor: per-frame SH ratio relighting on the tracked face geometry (``blender_relight.lighting.analytic``)."""

    name = "analytic"

    def __init__(self) -> None:
        from blender_relight.lighting import analytic

        self._relight_ratio = analytic.relight_ratio

    def reset(self) -> None:
        pass

    def relight(self, crop_linear: np.ndarray, frame_track: object, target_sh_rgb: np.ndarray) -> np.ndarray:
        return self._relight_ratio(crop_linear, frame_track, target_sh_rgb)


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
    """Seconds spent per stage, summed over frames, for the speed table."""

    seconds: dict[str, float] = field(default_factory=dict)
    frames: int = 0

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def fps(self, stage: str) -> float:
        s = self.seconds.get(stage, 0.0)
        return self.frames / s if s > 0 else float("nan")


def available_names() -> list[str]:
    """System names the command accepts (project systems are named ``project-<preset>[-temporal]``)."""
    return ["input", "analytic", "dpr", "project"]


def build_systems(names: list[str], dpr_weights: str | os.PathLike | None, dpr: object | None = None
                  ) -> list[object]:
    """Instantiate the requested systems; those that cannot run here come back as :class:`Unavailable`."""
    out: list[object] = []
    for name in names:
        try:
            if name == "input":
                out.append(InputUnchanged())
            elif name == "analytic":
                out.append(AnalyticRelight())
            elif name == "dpr":
                if dpr is None:
                    from evaluation.dpr import DPR

                    dpr = DPR(dpr_weights)
                out.append(DPRSystem(dpr))
            elif name == "project":
                out.extend(project_systems())
            else:
                raise RelightError(f"unknown system {name!r}; choose from {', '.join(available_names())}")
        except (ImportError, AttributeError) as exc:
            out.append(Unavailable(name, f"not available in this checkout ({exc})"))
        except RelightError as exc:
            if name not in available_names():
                raise
            out.append(Unavailable(name, str(exc)))
    return out


def project_systems() -> list[object]:
    """This project through ``ClipSession``: every preset found, with and without the temporal network."""
    try:
        pipeline = importlib.import_module("blender_relight.pipeline")
    except ImportError as exc:
        return [Unavailable("project", f"blender_relight.pipeline not available ({exc})")]
    return ProjectSystem.all_variants(pipeline)


class ProjectSystem:
    """This project's relighting via ``blender_relight.pipeline.ClipSession`` (filled in once the pipeline lands)."""

    def __init__(self, pipeline: object, preset: str, temporal: bool) -> None:
        self.name = f"project-{preset}{'-temporal' if temporal else ''}"
        self._pipeline, self.preset, self.temporal = pipeline, preset, temporal

    @classmethod
    def all_variants(cls, pipeline: object) -> list[object]:
        return [Unavailable("project", "ClipSession adapter pending")]

    def reset(self) -> None:
        pass

    def relight(self, crop_linear: np.ndarray, frame_track: object, target_sh_rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError
