"""The teacher seam: anything that yields supervised relighting examples in the project's conventions.

Why a seam: the paper's teacher (NeRFFaceLighting's generator), a light-stage dataset or INSTA frames with fitted
geometry can replace the synthetic heads without touching the losses or the loop. A teacher returns
:class:`TeacherSample` objects; arrays are float32 numpy, images (H, W, 3) linear RGB, SH (9, 3) in DPR's
convention and the SH frame, cameras EG3D's 25-float labels, normals unit vectors in EG3D world coordinates.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np


@dataclass
class View:
    """Ground truth of one camera under the target lighting. ``image == albedo * shading`` (zero off the head)."""

    camera: np.ndarray  # (25,)
    image: np.ndarray  # (H, W, 3)
    albedo: np.ndarray  # (H, W, 3)
    shading: np.ndarray  # (H, W, 3)
    normals: np.ndarray  # (H, W, 3) EG3D world, zero off the head
    depth: np.ndarray  # (H, W) distance along the ray from the camera centre, zero off the head
    mask: np.ndarray  # (H, W) coverage in [0, 1]
    face: np.ndarray  # (4,) face box x0, y0, x1, y1 in pixels (for the face-crop loss)


@dataclass
class TeacherSample:
    """One training example: an input frame, a target lighting, targets at the input view and a re-posed view.

    ``prev_*`` is the previous frame of a short sequence (small head motion) with the exact flow that maps each
    pixel of each current view to the previous frame (``flow_prev``, pixels) and its visibility mask; they
    feed the short-term temporal loss. ``planes`` holds teacher tri-planes when the teacher has them (ours: None).
    """

    input_image: np.ndarray  # (H, W, 3) lit by sh_src, over a background
    sh_src: np.ndarray  # (9, 3)
    sh_tgt: np.ndarray  # (9, 3)
    views: list[View]  # [input camera, re-posed camera]
    prev_input_image: np.ndarray | None = None
    prev_views: list[View] | None = None  # the previous frame at [its own input camera, the same re-posed camera]
    flow_prev: list[np.ndarray] | None = None  # per view (H, W, 2): current pixel -> previous frame pixel
    visible_prev: list[np.ndarray] | None = None  # per view (H, W): 1 where that point is visible in both
    planes: dict[str, np.ndarray] | None = None
    meta: dict = field(default_factory=dict)


class Teacher(abc.ABC):
    """A source of :class:`TeacherSample`; ``resolution`` is the side of the square images it renders."""

    resolution: int
    #: Whether samples carry teacher tri-planes (enables the paper's tri-plane loss terms).
    provides_planes: bool = False

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> TeacherSample:
        """Draw one example (identity, lights, cameras) from ``rng``."""
