"""Blender lights and world colour -> RGB second-order SH around the head, in Blender's own units (pure maths).

Why no bpy: the Blender glue reads the light's type, colour, power and matrix and hands the numbers to
:class:`LightSpec`; everything below is testable without Blender and identical for every Blender version.

Units (measured with Cycles, ../shared/design/PAPER.md): the irradiance ``E`` a light gives a surface at the head
that faces it is
- sun: its strength (W/m²);
- point: ``P / (4π r²)``;
- spot: the point value times Blender's cone mask ``smoothstep((cos θ - cos(size/2)) / ((1 - cos(size/2))·blend))``,
  θ the angle between the spot axis and the head as seen from the light;
- area: ``P / (π r²) · cos θ_e`` for a small light (θ_e: emission angle at the light). Large or near area lights are
  integrated over an 8×8 grid of patches, each a small area light, so their size widens the SH lobe as in Blender;
- world: a uniform colour ``Lw`` (colour × strength) gives ``π · Lw`` from every direction.
Each light adds ``colour · E · Y_k(ω)`` to the radiance SH (``sh.directional_light_sh``), ω from the head to the
light. A second-order SH cannot hold a delta: the irradiance it gives the facing normal is ``E`` times the
band-limit factor ``DIRECTIONAL_PEAK_FACTOR`` (= 1.0625, see :func:`band_limit_factor`), not exactly ``E``.

Frame: positions and directions are in the head anchor's frame, which is the SH frame (x right, y into the face,
z up), in Blender world units (metres) with the anchor's scale removed; :func:`relative_to_anchor` does that from
two ``matrix_world`` values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blender_relight.lighting import sh as shlib

LIGHT_TYPES = ("POINT", "SUN", "SPOT", "AREA")
AREA_SHAPES = ("SQUARE", "RECTANGLE", "DISK", "ELLIPSE")
_AREA_GRID = 8


def band_limit_factor(direction: np.ndarray = (0.0, -1.0, 0.0)) -> float:
    """Irradiance at the normal facing a unit directional light, as a second-order SH gives it (exact: 1).

    ``Σ_l A_l · Σ_m Y_lm(ω)²`` = π·1/(4π) + (2π/3)·3/(4π) + (π/4)·5/(4π) = 1/4 + 1/2 + 5/16 = 1.0625 for every
    direction (the addition theorem): the truncated cosine lobe overshoots its peak by 6.25 %.
    """
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    return float(shlib.irradiance(d, shlib.sh_basis(d)))


#: Irradiance at the facing normal per unit of a directional light's E, after projection to second-order SH.
DIRECTIONAL_PEAK_FACTOR = band_limit_factor()


@dataclass
class LightSpec:
    """One Blender light, as seen from the head anchor.

    ``power``: watts for POINT, SPOT and AREA, strength (W/m²) for SUN (Blender's ``energy`` either way).
    ``colour``: linear RGB. ``temperature`` (kelvin), when given, multiplies the colour by :func:`blackbody_rgb`
    (Blender's "use temperature"). ``exposure`` multiplies the power by 2**exposure (Blender's light exposure).
    ``position``: the light's location relative to the head, metres, anchor axes (ignored for SUN).
    ``direction``: where the light points (its local -Z), anchor axes (ignored for POINT).
    ``spot_size``: full cone angle in radians; ``spot_blend`` in [0, 1].
    ``size``/``size_y``: area light extent (metres); ``shape``: SQUARE, RECTANGLE, DISK or ELLIPSE;
    ``axis_x``: the area light's local +X in anchor axes (orientation of a rectangle; any perpendicular if None).
    For POINT and SPOT, ``size`` is the light's diameter (metres: twice Blender's Radius, ``shadow_soft_size``),
    which sets how soft its shadows are (``blender_lights.shadow_extent``) and nothing else.
    ``angle``: a SUN's angular diameter (radians, Blender's Angle): its shadows' penumbra widens with the distance
    from the blocker, ``2·tan(angle/2)`` per unit of gap, as Blender's; 0 is a hard sun.
    """

    type: str
    colour: tuple[float, float, float] | np.ndarray = (1.0, 1.0, 1.0)
    power: float = 1000.0
    position: tuple[float, float, float] | np.ndarray = (0.0, -1.0, 0.0)
    direction: tuple[float, float, float] | np.ndarray = (0.0, 1.0, 0.0)
    spot_size: float = np.radians(45.0)
    spot_blend: float = 0.15
    size: float = 0.25
    size_y: float = 0.25
    shape: str = "SQUARE"
    axis_x: tuple[float, float, float] | np.ndarray | None = None
    temperature: float | None = None
    exposure: float = 0.0
    angle: float = 0.0
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.type = str(self.type).upper()
        if self.type not in LIGHT_TYPES:
            raise ValueError(f"light type must be one of {LIGHT_TYPES}, got {self.type!r}")
        self.shape = str(self.shape).upper()
        if self.shape not in AREA_SHAPES:
            raise ValueError(f"area shape must be one of {AREA_SHAPES}, got {self.shape!r}")

    def rgb(self) -> np.ndarray:
        """Linear RGB colour including temperature, times 2**exposure."""
        c = np.asarray(self.colour, dtype=np.float64).reshape(3)
        if self.temperature is not None:
            c = c * blackbody_rgb(self.temperature)
        return c * 2.0 ** float(self.exposure)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(3)
    n = np.linalg.norm(v)
    if n < 1e-12:
        raise ValueError("zero-length direction")
    return v / n


def spot_mask(cos_angle: float | np.ndarray, spot_size: float, spot_blend: float) -> np.ndarray:
    """Blender's spot cone mask: 0 outside the cone, smoothstep over the blend band inside its edge, else 1.
    A float32 array stays float32 (the shader's columns)."""
    cos_half = np.cos(0.5 * float(spot_size))
    cos_angle = np.asarray(cos_angle)
    if cos_angle.dtype != np.float32:
        cos_angle = cos_angle.astype(np.float64)
    spread = (1.0 - cos_half) * float(spot_blend)
    if spread <= 1e-12:
        return (cos_angle > cos_half).astype(cos_angle.dtype)
    t = np.clip((cos_angle - cos_half) * (1.0 / spread), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def shadow_extent(spec: LightSpec, sun_distance: float) -> float:
    """Width (metres) of the emitter as a shadow sees it, for a penumbra ``width · gap / (distance - gap)``: an area
    light's (geometric mean of its sides), a point or spot light's diameter (``size``), and for a sun the width its
    angular diameter has at ``sun_distance`` (the distance the shadow lookup gives a sun), so the penumbra is
    ``2·tan(angle/2)`` per unit of gap (Blender's sun angle). Negative sizes count as 0 (a hard light)."""
    if spec.type == "AREA":
        sy = spec.size_y if spec.shape in ("RECTANGLE", "ELLIPSE") else spec.size
        return float(np.sqrt(max(float(spec.size), 0.0) * max(float(sy), 0.0)))
    if spec.type == "SUN":
        angle = min(max(float(spec.angle), 0.0), np.radians(179.0))
        return 2.0 * float(np.tan(0.5 * angle)) * float(sun_distance)
    return max(float(spec.size), 0.0)


def _area_patches(spec: LightSpec, grid: int = _AREA_GRID) -> tuple[np.ndarray, np.ndarray]:
    """Patch centres (K, 3) relative to the light and patch areas (K,) of an area light's emitting surface
    (``grid``² patches, fewer for a disk or ellipse)."""
    normal = _unit(spec.direction)
    if spec.axis_x is not None:
        ax = np.asarray(spec.axis_x, dtype=np.float64).reshape(3)
        ax = ax - normal * (ax @ normal)
    else:
        helper = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        ax = np.cross(helper, normal)
    ax = _unit(ax)
    ay = np.cross(normal, ax)
    sx = float(spec.size)
    sy = float(spec.size_y) if spec.shape in ("RECTANGLE", "ELLIPSE") else sx
    g = (np.arange(grid) + 0.5) / grid - 0.5  # patch centres in [-0.5, 0.5]
    u, v = np.meshgrid(g, g, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    if spec.shape in ("DISK", "ELLIPSE"):
        keep = u * u + v * v <= 0.25
        u, v = u[keep], v[keep]
    area = np.full(u.size, sx * sy / grid**2)
    return np.outer(u * sx, ax) + np.outer(v * sy, ay), area


def light_irradiance(spec: LightSpec) -> float:
    """Irradiance (W/m², before colour) the light gives a surface at the head facing it (small-light formulas)."""
    if spec.type != "SUN" and float(np.dot(spec.position, spec.position)) < 1e-12:
        raise ValueError(f"light {spec.name!r} sits at the head's centre; move it away from the head anchor")
    return float(irradiance_at(spec, np.zeros((1, 3)))[0][0])


def irradiance_at(spec: LightSpec, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per surface point (N, 3; anchor axes, Blender units): the irradiance (N,) the light gives a surface there
    that faces it, and the unit direction (N, 3) from the point to the light. The same small-light formulas as
    :func:`light_irradiance` (which is this at the head's centre), evaluated where each point is: falloff with its
    own distance, the spot cone and an area light's emission angle as that point sees them (:func:`irradiance_columns`
    on the points' coordinates)."""
    pts = np.asarray(points)
    pts = pts.reshape(-1, 3) if pts.dtype == np.float32 else pts.astype(np.float64).reshape(-1, 3)  # float32 stays
    e, lx, ly, lz = irradiance_columns(spec, pts[:, 0], pts[:, 1], pts[:, 2])
    towards = np.stack([np.broadcast_to(c, e.shape) for c in (lx, ly, lz)], 1).astype(pts.dtype, copy=False)
    return e.astype(pts.dtype, copy=False), towards


def irradiance_columns(spec: LightSpec, x: np.ndarray, y: np.ndarray, z: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray | float, np.ndarray | float, np.ndarray | float]:
    """:func:`irradiance_at` on coordinate columns (each (N,), anchor axes, Blender units; float32 stays float32):
    the irradiance (N,) and the three components of the unit direction to the light (scalars for a sun). Why
    columns: a shader works on one component at a time; (N, 3) rows cost a strided reduction per dot product."""
    dtype = np.float32 if np.asarray(x).dtype == np.float32 else np.float64
    power = float(spec.power)
    if spec.type == "SUN":
        d = -_unit(spec.direction)
        return np.full(np.shape(x), power, dtype), float(d[0]), float(d[1]), float(d[2])
    px, py, pz = (float(c) for c in np.asarray(spec.position, dtype=np.float64).reshape(3))
    dx, dy, dz = px - x, py - y, pz - z
    r2 = np.maximum(dx * dx + dy * dy + dz * dz, dtype(1e-12))
    inv_r = 1.0 / np.sqrt(r2)
    lx, ly, lz = dx * inv_r, dy * inv_r, dz * inv_r
    if spec.type == "POINT":
        return (power / (4.0 * np.pi)) / r2, lx, ly, lz
    ax, ay, az = (float(c) for c in _unit(spec.direction))
    cos_axis = -(lx * ax + ly * ay + lz * az)  # the point seen from the light's axis
    if spec.type == "SPOT":
        return (power / (4.0 * np.pi)) / r2 * spot_mask(cos_axis, spec.spot_size, spec.spot_blend), lx, ly, lz
    return (power / np.pi) / r2 * np.maximum(cos_axis, 0.0), lx, ly, lz  # AREA: its emission cosine


def area_samples(spec: LightSpec, grid: int) -> list[LightSpec]:
    """An area light as ``grid``² small area lights (its patches, each with its share of the power): what a shader
    sums to get the size of a large or near area light into its falloff and cosine terms."""
    if spec.type != "AREA":
        return [spec]
    rel, areas = _area_patches(spec, grid)
    share = areas / areas.sum()
    centre = np.asarray(spec.position, dtype=np.float64).reshape(3)
    return [LightSpec("AREA", spec.colour, float(spec.power) * float(w), centre + r, spec.direction, size=0.0,
                      size_y=0.0, shape="SQUARE", temperature=spec.temperature, exposure=spec.exposure,
                      name=spec.name) for r, w in zip(rel, share)]


def light_to_sh(spec: LightSpec) -> np.ndarray:
    """Radiance SH (9, 3) of one light at the head (SH frame), in Blender's irradiance units."""
    colour = spec.rgb()
    if spec.type == "SUN":
        return shlib.directional_light_sh(-_unit(spec.direction), colour * float(spec.power))
    if spec.type in ("POINT", "SPOT"):
        offset = np.asarray(spec.position, dtype=np.float64).reshape(3)
        return shlib.directional_light_sh(offset, colour * light_irradiance(spec))
    # AREA: sum of small Lambertian patches with radiance P / (π A); each gives P/(π A) · cos θ_e · dA / r².
    if float(spec.size) <= 1e-6 or (spec.shape in ("RECTANGLE", "ELLIPSE") and float(spec.size_y) <= 1e-6):
        offset = np.asarray(spec.position, dtype=np.float64).reshape(3)  # a zero-size area light: the small formula
        return shlib.directional_light_sh(offset, colour * light_irradiance(spec))
    centre = np.asarray(spec.position, dtype=np.float64).reshape(3)
    normal = _unit(spec.direction)
    rel, areas = _area_patches(spec)
    pts = centre + rel  # patch positions relative to the head
    r2 = np.einsum("ij,ij->i", pts, pts)
    if np.any(r2 < 1e-12):
        raise ValueError(f"area light {spec.name!r} touches the head's centre; move it away from the head anchor")
    dirs = pts / np.sqrt(r2)[:, None]  # head -> patch
    cos_e = np.maximum(0.0, -(dirs @ normal))
    radiance = float(spec.power) / (np.pi * areas.sum())
    e = radiance * cos_e * areas / r2
    basis = shlib.sh_basis(dirs)  # (K, 9)
    return np.outer(basis.T @ e, colour)


def world_colour_sh(colour: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Radiance SH (9, 3) of a uniform world (Background colour × strength); irradiance π·Lw everywhere."""
    return shlib.ambient_sh(np.asarray(colour, dtype=np.float64).reshape(3) * float(strength))


def scene_sh(lights: list[LightSpec] | tuple[LightSpec, ...], world: np.ndarray | None = None) -> np.ndarray:
    """Sum of the lights' SH and the world's SH (``world``: an RGB SH (9, 3), e.g. from :func:`world_colour_sh` or
    ``environment.hdri_to_sh``; None for a black world)."""
    total = np.zeros((9, 3))
    for spec in lights:
        total += light_to_sh(spec)
    if world is not None:
        total += shlib.as_rgb(world)
    return total


def relative_to_anchor(light_matrix_world: np.ndarray,
                       anchor_matrix_world: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, direction, axis_x) of a light in the anchor's axes, metres (the anchor's scale is removed).

    Blender lights point along their local -Z; an area light's width runs along its local +X.
    """
    M = np.asarray(light_matrix_world, dtype=np.float64)
    A = np.eye(4) if anchor_matrix_world is None else np.asarray(anchor_matrix_world, dtype=np.float64)
    rot = A[:3, :3] / np.linalg.norm(A[:3, :3], axis=0, keepdims=True)  # anchor axes, unit length
    position = rot.T @ (M[:3, 3] - A[:3, 3])
    direction = rot.T @ _unit(-M[:3, 2])
    axis_x = rot.T @ _unit(M[:3, 0])
    return position, direction, axis_x


# --- blackbody -----------------------------------------------------------------------------------------------------
# CIE 1931 2° colour-matching functions, the multi-lobe Gaussian fit of Wyman, Sloan & Shirley (JCGT 2013),
# accurate to about 1 % of the tabulated functions, which is well below what a light's colour needs.

def _g(x: np.ndarray, mu: float, s1: float, s2: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / np.where(x < mu, s1, s2)) ** 2)


def _cie_xyz(lam_nm: np.ndarray) -> np.ndarray:
    x = (1.056 * _g(lam_nm, 599.8, 37.9, 31.0) + 0.362 * _g(lam_nm, 442.0, 16.0, 26.7)
         - 0.065 * _g(lam_nm, 501.1, 20.4, 26.2))
    y = 0.821 * _g(lam_nm, 568.8, 46.9, 40.5) + 0.286 * _g(lam_nm, 530.9, 16.3, 31.1)
    z = 1.217 * _g(lam_nm, 437.0, 11.8, 36.0) + 0.681 * _g(lam_nm, 459.0, 26.0, 13.8)
    return np.stack([x, y, z], axis=-1)


_XYZ_TO_REC709 = np.array([[3.2404542, -1.5371385, -0.4985314],
                           [-0.9692660, 1.8760108, 0.0415560],
                           [0.0556434, -0.2040259, 1.0572252]])
_LAMBDA = np.arange(380.0, 781.0, 5.0)
_CMF = _cie_xyz(_LAMBDA)


def blackbody_rgb(kelvin: float) -> np.ndarray:
    """Linear Rec. 709 colour of a blackbody at ``kelvin``, normalised to luminance 1 as Blender's Blackbody node
    does (so a temperature changes the hue of a light, never its power). Negative components (very low
    temperatures fall outside Rec. 709) are clipped to 0; temperatures below 800 K are taken as 800 K."""
    t = float(kelvin)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"blackbody temperature must be positive kelvin, got {kelvin}")
    t = max(t, 800.0)  # below this the visible spectrum is vanishingly dim and the colour is pure red anyway
    lam = _LAMBDA * 1e-9
    c2 = 1.4387769e-2  # second radiation constant h·c/k (m·K)
    spectrum = 1.0 / (lam**5 * np.expm1(c2 / (lam * t)))  # Planck's law up to a constant
    xyz = spectrum @ _CMF
    rgb = np.maximum(_XYZ_TO_REC709 @ xyz, 0.0)
    return rgb / (rgb @ np.array([0.2126, 0.7152, 0.0722]))
