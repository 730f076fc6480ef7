"""Random RGB SH lights for the teacher: soft and hard key lights from any side (back and rim included), fill,
coloured lights, and DPR's example lights.

Why these: the model must relight under coloured Blender lights from anywhere, not only FFHQ-like frontal gray
light; second-order SH cannot be truly hard, so "hard" here means a strong single key over little ambient.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from blender_relight.lighting import sh as shm


def _direction(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A unit direction in the SH frame (x right, y into the face, z up) toward the light."""
    if kind == "front":
        az, el = rng.uniform(-0.8, 0.8), rng.uniform(-0.3, 0.9)
    elif kind == "side":
        az, el = rng.choice([-1, 1]) * rng.uniform(1.1, 1.9), rng.uniform(-0.4, 0.7)
    else:  # back / rim
        az, el = rng.choice([-1, 1]) * rng.uniform(2.0, np.pi), rng.uniform(-0.2, 0.9)
    # azimuth 0 = toward the viewer (-y), positive = image right (+x)
    return np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])


def _colour(rng: np.random.Generator, saturated: bool) -> np.ndarray:
    if saturated:
        c = rng.uniform(0.05, 1.0, 3)
        c[rng.integers(3)] = 1.0
    else:  # near-white, warm to cool
        t = rng.uniform(-1, 1)
        c = np.array([1.0 + 0.15 * t, 1.0, 1.0 - 0.2 * t])
    return c / c.mean()


def random_sh(rng: np.random.Generator) -> np.ndarray:
    """A random RGB radiance SH (9, 3), irradiance of a few units (pixel = ρ·E/π ≈ 0.1-0.6 for skin)."""
    kinds = ["front", "side", "back"]
    key = rng.choice(kinds, p=[0.45, 0.35, 0.2])
    hard = rng.uniform() < 0.35
    sh = shm.ambient_sh(_colour(rng, rng.uniform() < 0.15) * (rng.uniform(0.03, 0.12) if hard else rng.uniform(0.08, 0.3)))
    sh += shm.directional_light_sh(_direction(rng, key), _colour(rng, rng.uniform() < 0.3) * rng.uniform(0.6, 1.6))
    for _ in range(rng.integers(0, 3)):
        sh += shm.directional_light_sh(_direction(rng, rng.choice(kinds)),
                                       _colour(rng, rng.uniform() < 0.4) * rng.uniform(0.1, 0.6))
    return sh * np.pi * rng.uniform(0.7, 1.4)


def dpr_lights(data_dir: Path) -> list[np.ndarray]:
    """DPR's seven example lights (×0.7, as its demo) as RGB SH in this project's units, through the project's one
    conversion ``sh.dpr_to_rgb_sh`` (per-band gains measured by ``evaluation.dpr_units``), so a DPR light means the
    same light to the teacher as to the CLI, the evaluation's schedule and the engines."""
    paths = sorted((Path(data_dir) / "dpr" / "example_light").glob("rotate_light_0*.txt"))
    return [shm.dpr_to_rgb_sh(shm.load_dpr_light(str(p), 0.7)) for p in paths]


def sample_sh(rng: np.random.Generator, dpr: list[np.ndarray] | None = None) -> np.ndarray:
    """Random SH, sometimes one of DPR's example lights scaled and tinted."""
    if dpr and rng.uniform() < 0.15:
        return dpr[rng.integers(len(dpr))] * rng.uniform(0.7, 1.3) * _colour(rng, rng.uniform() < 0.3)
    return random_sh(rng)
