"""Target lights and cameras as a user types them: parsing and validation of the CLI's light arguments and ``--sh``
files, in one place, with a one-line :class:`RelightError` for anything that would give a black or blown-out head.

Conventions of each input (docs/lighting.md):
- ``--sh FILE.txt``: DPR's convention (9 numbers, gray, shading of Lab L), converted by ``sh.dpr_to_rgb_sh``;
- ``--sh FILE.json`` / ``FILE.npy``: this project's linear radiance SH, RGB (9, 3), gray (9,) or flat (27,); a .json
  is either a bare array (``[[r, g, b], ...]``) or an object with an ``"sh"`` array;
- ``--light-dir/--light-colour/--light-strength/--ambient``: a distant light (irradiance ``strength`` on a surface
  facing it, Blender's sun units) plus a uniform ambient radiance, as a :class:`SceneLighting` whose light is a
  ``LightSpec`` SUN (so an engine with geometry shades it with a shadow).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from blender_relight.errors import RelightError
from blender_relight.lighting import sh as shlib

#: Largest accepted irradiance of a light or SH coefficient magnitude (linear units; a face is ~1). Beyond this the
#: half-float shading graphs overflow (65504) and any result is a white or black head.
MAX_STRENGTH = 1e4
#: Camera ranges (degrees): beyond these the head is seen from behind or from straight above, which no engine shows.
YAW_RANGE = (-90.0, 90.0)
PITCH_RANGE = (-60.0, 60.0)


def parse_floats(text: str, n: int, what: str) -> np.ndarray:
    """``n`` comma-separated finite numbers."""
    try:
        values = np.array([float(v) for v in str(text).split(",")])
    except ValueError:
        raise RelightError(f"{what} must be {n} comma-separated numbers, got {text!r}") from None
    if values.size != n:
        raise RelightError(f"{what} must be {n} comma-separated numbers, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise RelightError(f"{what} must be finite numbers (no nan or inf), got {text!r}")
    return values


def check_number(value: float, what: str, low: float = 0.0, high: float = MAX_STRENGTH) -> float:
    """A finite number within [low, high], or a one-line error."""
    v = float(value)
    if not math.isfinite(v):
        raise RelightError(f"{what} must be a finite number, got {value!r}")
    if not low <= v <= high:
        raise RelightError(f"{what} must be between {low:g} and {high:g}, got {v:g}")
    return v


def check_sh(sh: np.ndarray, source: str) -> np.ndarray:
    """An RGB SH (9, 3) that is finite, not absurdly strong and lights something; else a one-line error."""
    sh = np.asarray(sh, dtype=np.float64)
    if not np.all(np.isfinite(sh)):
        raise RelightError(f"{source}: the SH has nan or inf values")
    if np.abs(sh).max() > MAX_STRENGTH:
        raise RelightError(f"{source}: SH coefficients up to {np.abs(sh).max():.3g}; the limit is {MAX_STRENGTH:g} "
                           "(a face is lit by values around 1)")
    if not np.any(shlib.irradiance(_SPHERE, sh) > 1e-6):
        raise RelightError(f"{source}: this SH gives no light from any direction (all zero or negative): the head "
                           "would be black")
    return sh


_SPHERE = shlib.fibonacci_sphere(256)


def load_sh_file(path: str | Path, scale: float = 1.0) -> np.ndarray:
    """Read an SH light file as this project's linear RGB radiance SH (9, 3) (module docstring: the forms)."""
    path = Path(path)
    scale = check_number(scale, "--sh-scale", 0.0, MAX_STRENGTH)
    if not path.is_file():
        raise RelightError(f"{path}: light file not found; give a DPR .txt (9 numbers), .json or .npy SH file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            values = np.loadtxt(path, dtype=np.float64).reshape(-1)
            if values.shape != (9,):
                raise ValueError(f"expected 9 SH coefficients (DPR's format), found {values.size}")
            if not np.all(np.isfinite(values)):
                raise RelightError(f"{path}: the SH has nan or inf values")
            sh = shlib.dpr_to_rgb_sh(values * scale)
        elif suffix == ".npy":
            sh = shlib.as_rgb(np.load(path, allow_pickle=False)) * scale
        elif suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                if "sh" not in data:
                    raise ValueError('a JSON object needs an "sh" array (or give the bare 9x3 array)')
                data = data["sh"]
            sh = shlib.as_rgb(np.asarray(data, dtype=np.float64)) * scale
        else:
            raise RelightError(f"{path}: unknown light file type; use .txt (DPR), .json or .npy")
    except RelightError:
        raise
    except (ValueError, TypeError, OSError, UnicodeDecodeError) as exc:
        raise RelightError(f"{path}: not a valid SH light file ({exc})") from exc
    return check_sh(sh, str(path))


def directional_lighting(direction: str, colour: str, strength: float, ambient: str):
    """A SUN light toward ``direction`` (head frame) of irradiance ``strength × colour``, plus ambient radiance."""
    from blender_relight.lighting.blender_lights import LightSpec
    from blender_relight.lighting.scene import SceneLighting

    d = parse_floats(direction, 3, "--light-dir")
    if np.linalg.norm(d) < 1e-6:
        raise RelightError("--light-dir must not be 0,0,0: it is the direction toward the light")
    c = parse_floats(colour, 3, "--light-colour")
    if c.min() < 0:
        raise RelightError(f"--light-colour must not be negative, got {colour!r}")
    s = check_number(strength, "--light-strength")
    amb = parse_floats(ambient, 3, "--ambient") if "," in str(ambient) else \
        np.full(3, check_number(_float(ambient, "--ambient"), "--ambient"))
    if amb.min() < 0 or amb.max() > MAX_STRENGTH:
        raise RelightError(f"--ambient must be between 0 and {MAX_STRENGTH:g}, got {ambient!r}")
    if s * c.max() <= 0 and amb.max() <= 0:
        raise RelightError("the light has no strength and there is no ambient: the head would be black")
    d = d / np.linalg.norm(d)
    # A SUN's direction is where it points (its -Z): from the light toward the head, the opposite of --light-dir.
    spec = LightSpec("SUN", colour=tuple(c), power=s, direction=tuple(-d), name="cli")
    return SceneLighting(sh=shlib.ambient_sh(amb), lights=(spec,))


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise RelightError(f"{what} must be a number or R,G,B, got {text!r}") from None


def camera_angles(yaw: float | None, pitch: float | None) -> tuple[float, float] | None:
    """Validated camera yaw and pitch in degrees: NaN/inf refused, values beyond :data:`YAW_RANGE` /
    :data:`PITCH_RANGE` clamped with a warning that says so. None when neither is given."""
    if yaw is None and pitch is None:
        return None
    out = []
    for value, what, (low, high) in ((yaw, "--yaw", YAW_RANGE), (pitch, "--pitch", PITCH_RANGE)):
        v = 0.0 if value is None else float(value)
        if not math.isfinite(v):
            raise RelightError(f"{what} must be a finite number of degrees, got {value!r}")
        if not low <= v <= high:
            clamped = min(max(v, low), high)
            print(f"warning: {what} {v:g} is outside {low:g}..{high:g} degrees; using {clamped:g}", file=sys.stderr)
            v = clamped
        out.append(v)
    return out[0], out[1]
