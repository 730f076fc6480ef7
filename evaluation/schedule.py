"""Lighting schedules the evaluation applies to every clip.

Why these: the paper's demo video relights with DPR's seven example lights (×0.7, DPR's own demo scale), each held
for a while with linear interpolation between them; lighting error is measured along that schedule. Instability needs
a target that does not change, so a second pass holds one light over the whole clip.
"""
from __future__ import annotations

import os

import numpy as np

from blender_relight.lighting import sh as shmod
from evaluation.dpr import example_lights

HOLD_FRAMES = 20  #: frames each example light is held
BLEND_FRAMES = 20  #: frames of linear interpolation from one light to the next
STATIC_LIGHT = 0  #: index of the example light held over the whole clip for the instability pass


def keyed_schedule(keys: list[np.ndarray], n_frames: int, hold: int = HOLD_FRAMES,
                   blend: int = BLEND_FRAMES) -> np.ndarray:
    """Gray SH per frame ``(n_frames, 9)``: each key held ``hold`` frames, then ``blend`` frames blending linearly to
    the next; the cycle repeats (last key blends back to the first) so any clip length is covered."""
    if not keys:
        raise ValueError("keyed_schedule needs at least one light")
    period = hold + blend
    out = np.empty((n_frames, 9))
    for f in range(n_frames):
        k, phase = divmod(f % (period * len(keys)), period)
        a, b = keys[k], keys[(k + 1) % len(keys)]
        t = 0.0 if phase < hold else (phase - hold + 1) / (blend + 1)
        out[f] = shmod.interpolate(a, b, t)
    return out


def demo_schedule(light_folder: str | os.PathLike, n_frames: int) -> np.ndarray:
    """The paper demo's schedule over ``n_frames``: DPR's seven example lights ×0.7, gray SH ``(n_frames, 9)``."""
    return keyed_schedule(example_lights(light_folder), n_frames)


def static_schedule(light_folder: str | os.PathLike, n_frames: int, index: int = STATIC_LIGHT) -> np.ndarray:
    """One example light (×0.7) held over the whole clip, gray SH ``(n_frames, 9)``."""
    return np.repeat(example_lights(light_folder)[index][None], n_frames, axis=0)
