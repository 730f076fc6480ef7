"""One-Euro filter (Casiez et al., CHI 2012), vectorised over any array shape, for landmarks, crops and poses.

Why One-Euro: per-frame landmarks jitter by a fraction of a pixel, which the relit output turns into flicker (the
paper's authors' own advice was to smooth keypoints). A fixed low-pass trades jitter for lag; One-Euro adapts its
cut-off to the signal's speed: heavy smoothing when the head is still, almost none during a fast turn. Each element
gets its own cut-off, so a moving mouth does not unfreeze a still forehead.

``strength`` scales the smoothing: 0 disables it, 1 is the documented default (see ``DEFAULT_STRENGTH`` and
docs/tracking.md for the jitter and lag it gives), 2 smooths about twice as hard at rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_STRENGTH = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


@dataclass
class OneEuroParams:
    """Filter constants in the signal's own units.

    ``min_cutoff`` (Hz): cut-off at rest (lower = smoother, more lag on slow drifts). ``beta`` (1 / signal unit):
    how fast the cut-off rises with speed (higher = less lag when moving). ``d_cutoff`` (Hz): cut-off of the speed
    estimate itself.
    """

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0

    def scaled(self, strength: float) -> "OneEuroParams":
        """Stronger smoothing lowers the rest cut-off and the speed gain together (lag on turns stays small)."""
        s = max(float(strength), 1e-6)
        return OneEuroParams(self.min_cutoff / s, self.beta / s, self.d_cutoff)


# Defaults per kind of signal, tuned on the dev clips (benchmarks/bench_tracking.py reports what they give).
LANDMARK_PX = OneEuroParams(min_cutoff=0.6, beta=0.04)  # landmark coordinates in frame pixels (scaled by face size)
POSE_RAD = OneEuroParams(min_cutoff=0.5, beta=3.0)  # rotation vector components in radians


class OneEuroFilter:
    """Stateful filter over arrays of a fixed shape; ``filter(x, t)`` returns the smoothed array (float64).

    ``unit`` rescales the input before the speed test, so one parameter set serves faces of any size (pass the
    face size in px over a reference size, for instance). ``strength`` 0 passes values through.
    """

    def __init__(self, params: OneEuroParams, fps: float = 30.0, strength: float = DEFAULT_STRENGTH) -> None:
        self.base = params
        self.fps = float(fps)
        self.strength = float(strength)
        self.params = params.scaled(strength)
        self.reset()

    def reset(self) -> None:
        """Forget the history (after a cut, a lost face or a seek)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def filter(self, x: np.ndarray, t: float | None = None, unit: float = 1.0) -> np.ndarray:
        """Smooth one sample ``x`` taken at time ``t`` seconds (default: one frame after the previous one)."""
        x = np.asarray(x, dtype=np.float64)
        if self.strength <= 0.0:
            return x.copy()
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            self._t = 0.0 if t is None else float(t)
            return x.copy()
        t_new = (self._t + 1.0 / self.fps) if t is None else float(t)
        dt = max(t_new - self._t, 1e-6)
        p = self.params
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(p.d_cutoff, dt) * (dx - self._dx)
        cutoff = p.min_cutoff + p.beta * np.abs(self._dx) / max(unit, 1e-9)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t_new
        return self._x.copy()

    __call__ = filter


def smooth_sequence(values: np.ndarray, params: OneEuroParams, fps: float = 30.0,
                    strength: float = DEFAULT_STRENGTH, unit: float = 1.0) -> np.ndarray:
    """Filter a whole (T, ...) sequence at once (offline helper for benchmarks and tests)."""
    f = OneEuroFilter(params, fps, strength)
    return np.stack([f(v, unit=unit) for v in np.asarray(values, dtype=np.float64)])
