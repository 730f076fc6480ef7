"""The per-clip texture: the head's surface in its UV space, accumulated over frames of the clip.

Why: one frame shows one side of the head; a clip in which the head turns shows its other sides in other frames. The
head geometry's UV coordinates are stable over a clip (vertex i is always the same place on the head, expressions
included), so each frame's plate can be projected into UV space and accumulated: the video becomes a multi-view
capture of the face. Each texel keeps a weighted mean of what the frames that saw it well showed: the weight is the
same smooth trust as the plate lookup (visible, facing the camera, on the matte), raised to a power so the most
frontal view of a texel dominates (sharper) while the mean stays continuous. Colours are stored *shading-normalised*
(plate / E_source(n) of that frame), so frames under different light, and the mirrored side, agree; a render
re-shades them with its own frame's source light.

The mirror: mediapipe's mesh and the shell are left/right symmetric, so each vertex has a twin (nearest vertex of the
reflected head); rasterising the twins' UVs in UV space gives, for every texel, where its mirror image lies, and the
mirrored texture is one remap of the texture. Only texels whose twin is within ``MIRROR_MAX_DIST`` of the exact
reflection count as symmetric.

Memory: the accumulators only (T² × 5 float32: 5 MB at 512²); frames are streamed one at a time.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from blender_relight.lighting import sh as shmath
from blender_relight.novel_view import reproject, stored


TEXTURE_SIZE = 512
#: Weight exponent: the texel's best views dominate its mean (a sharper texture), the mean stays continuous.
WEIGHT_POWER = 4.0
#: A vertex whose reflected twin lies further than this (EG3D world units) is not part of the symmetric head.
MIRROR_MAX_DIST = 0.02
#: Frames a lazily built clip texture samples at most (evenly spread): bounds the one-off build time.
MAX_FRAMES = 24
FORMAT_VERSION = 1


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Outward unit vertex normals, the geometry package's (the same the G-buffers interpolate)."""
    from blender_relight.geometry.head import vertex_normals as head_normals

    return head_normals(vertices, triangles).astype(np.float32)


@dataclass
class UVLayout:
    """Which triangle and barycentrics each covered texel of the UV square lies on (fixed for a clip's topology)."""

    size: int
    texels: np.ndarray  # (N,) flat indices into size²
    vertex_ids: np.ndarray  # (N, 3) int64
    bary: np.ndarray  # (N, 3) float32

    @staticmethod
    def build(uv: np.ndarray, triangles: np.ndarray, size: int = TEXTURE_SIZE) -> "UVLayout":
        """Rasterise the mesh in UV space (u right, v down, texel centres at integers), both windings. A head of the
        geometry package's layout is laid out with all the triangles any of its frames has
        (``head.atlas_triangles``), so the layout, and what is built on it, is the same whichever frame gave it."""
        from blender_relight.geometry.raster import raster_screen

        uv = np.asarray(uv, dtype=np.float64)
        tris = np.asarray(layout_triangles(len(uv), triangles), dtype=np.int64)
        hits = raster_screen(uv * size - 0.5, np.zeros(len(uv)), tris, (size, size), cull="none")
        bary = np.asarray(hits.bary, np.float32)
        bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-6)
        return UVLayout(size, np.asarray(hits.pixel, np.int64), tris[hits.triangle], bary)

    def interpolate(self, values: np.ndarray) -> np.ndarray:
        """Per-vertex values (V, C) at the covered texels (N, C)."""
        v = np.asarray(values, dtype=np.float32)
        return (self.bary[:, 0:1] * v[self.vertex_ids[:, 0]] + self.bary[:, 1:2] * v[self.vertex_ids[:, 1]]
                + self.bary[:, 2:3] * v[self.vertex_ids[:, 2]])

    def image(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Per-texel values (N, C) as a (size, size, C) image."""
        out = np.full((self.size * self.size, values.shape[1]), fill, np.float32)
        out[self.texels] = values
        return out.reshape(self.size, self.size, -1)


def layout_triangles(num_vertices: int, triangles: np.ndarray) -> np.ndarray:
    """The triangles UV-space work lays out for a mesh: the head layout's full set where it is one, else its own."""
    from blender_relight.geometry.head import atlas_triangles

    full = atlas_triangles(num_vertices)
    return np.asarray(triangles) if full is None else full


def mirror_twins(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(twin index, symmetric?) per vertex of a head mesh.

    By topology where the mesh is the geometry package's head (face landmarks + shell grid): a face landmark's twin
    is its mirror landmark (``tracking.pose.mirror_permutation`` of the symmetric template), a shell vertex at
    direction (θ, φ) has the one at (θ, −φ); all of them count as symmetric. Any other mesh: the nearest vertex to
    each vertex's reflection x -> -x in EG3D world (the head sits at the origin facing +z), symmetric where that is
    within ``MIRROR_MAX_DIST``."""
    from blender_relight.geometry import head as geo
    from blender_relight.tracking import pose

    v = np.asarray(vertices, dtype=np.float64)
    shell_n = (geo.SHELL_ROWS + 1) * (geo.SHELL_COLS + 1)
    if len(v) == geo.NUM_FACE + shell_n:
        face = pose.mirror_permutation(pose.load_template().points[:geo.NUM_FACE])
        grid = np.arange(shell_n).reshape(geo.SHELL_ROWS + 1, geo.SHELL_COLS + 1)
        shell = grid[:, ::-1].reshape(-1) + geo.NUM_FACE
        return np.concatenate([face, shell]).astype(np.int64), np.ones(len(v), bool)
    from scipy.spatial import cKDTree

    dist, twin = cKDTree(v).query(v * np.array([-1.0, 1.0, 1.0]))
    return twin.astype(np.int64), dist < MIRROR_MAX_DIST


class TextureAccumulator:
    """Streams frames into the clip texture (weighted mean of shading-normalised colour + best trust per texel)."""

    def __init__(self, uv: np.ndarray, triangles: np.ndarray, size: int = TEXTURE_SIZE) -> None:
        self.layout = UVLayout.build(uv, triangles, size)
        self.triangles = np.asarray(triangles)
        n = len(self.layout.texels)
        self._sum = np.zeros((n, 3), np.float64)
        self._wsum = np.zeros(n, np.float64)
        self._best = np.zeros(n, np.float32)
        self.frames: list[int] = []
        self._twins: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, index: int, crop: np.ndarray, vertices: np.ndarray, label: np.ndarray,
            source_depth_min: np.ndarray, matte: np.ndarray | None, source_sh: np.ndarray, project) -> None:
        """Project frame ``index``'s plate into UV space and accumulate it."""
        if self._twins is None:
            self._twins = mirror_twins(vertices)
        pos = self.layout.interpolate(vertices)
        nrm = self.layout.interpolate(vertex_normals(vertices, self.triangles))
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
        everything = np.arange(len(pos))
        hit = reproject.lookup(pos, nrm, everything, label, source_depth_min, matte, project)
        keep = np.flatnonzero(hit.weight > 1e-3)
        if keep.size == 0:
            return
        colour = reproject.sample(crop, hit.xy[keep])
        e_src = normalising_shading(nrm[keep], source_sh)
        w = hit.weight[keep].astype(np.float64) ** WEIGHT_POWER
        self._sum[keep] += w[:, None] * colour / e_src
        self._wsum[keep] += w
        np.maximum.at(self._best, keep, hit.weight[keep])
        self.frames.append(int(index))

    def result(self) -> "ClipTexture":
        """The texture as it is stored (float16, :meth:`ClipTexture.save`): a session that built it and one that
        loads it render the same frames."""
        layout = self.layout
        mean = self._sum / np.maximum(self._wsum, 1e-12)[:, None]
        colour = layout.image(mean.astype(np.float32)).astype(np.float16).astype(np.float32)
        trust = layout.image(self._best[:, None])[..., 0].astype(np.float16).astype(np.float32)
        twins, symmetric = self._twins if self._twins is not None else (None, None)
        return ClipTexture(colour, trust, sorted(self.frames), layout, twins, symmetric)


def normalising_shading(normals_world: np.ndarray, source_sh: np.ndarray) -> np.ndarray:
    """Source irradiance E(n) (N, 3) used to normalise texture colours, with a floor (a quarter of its ambient
    term: the estimate has no bounce light, which keeps the underside of a chin far from black) so grazing or
    back-facing normals under a one-sided light do not blow colours up when relit.

    Evaluated as what it is, a quadratic polynomial of the world normal (the SH frame's rotation and the cosine
    lobe folded into 10 coefficients per channel), in float32: a new view evaluates it at every head pixel."""
    sh = shmath.as_rgb(np.asarray(source_sh, dtype=np.float64))
    n = np.asarray(normals_world, dtype=np.float32).reshape(-1, 3)
    e = _monomials(n) @ _quadratic_form(sh).astype(np.float32)
    floor = 0.25 * np.maximum(sh[0] * shmath.COSINE_LOBE[0] * 0.5 / np.sqrt(np.pi), 1e-4)
    return np.maximum(e, floor[None, :].astype(np.float32))


def _monomials(n: np.ndarray) -> np.ndarray:
    """(N, 10) monomials of degree ≤ 2 of (N, 3) vectors: x², y², z², xy, yz, xz, x, y, z, 1."""
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    out = np.empty((len(n), 10), n.dtype)
    out[:, 0], out[:, 1], out[:, 2] = x * x, y * y, z * z
    out[:, 3], out[:, 4], out[:, 5] = x * y, y * z, x * z
    out[:, 6], out[:, 7], out[:, 8] = x, y, z
    out[:, 9] = 1.0
    return out


def _quadratic_form(sh_rgb: np.ndarray) -> np.ndarray:
    """(10, 3) coefficients of ``irradiance_basis(rotate_eg3d_to_sh(n)) @ sh`` on :func:`_monomials` of world
    normals: solved from 32 vectors of several lengths (the identity is exact for any vector: both sides are the
    same quadratic polynomial of n)."""
    probe = shmath.fibonacci_sphere(32) * np.linspace(0.5, 1.5, 32)[:, None]
    exact = shmath.irradiance_basis(shmath.rotate_eg3d_to_sh(probe)) @ sh_rgb
    coef, *_ = np.linalg.lstsq(_monomials(probe), exact, rcond=None)
    return coef


@dataclass
class ClipTexture:
    """The clip's texture in UV space: ``colour`` (T, T, 3) shading-normalised, ``trust`` (T, T) the best trust any
    frame gave the texel (0 = never seen), the frames it came from; the mirror map is built on demand."""

    colour: np.ndarray
    trust: np.ndarray
    frames: list[int]
    layout: UVLayout | None = None
    twins: np.ndarray | None = None
    symmetric: np.ndarray | None = None
    _mirror: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def size(self) -> int:
        return int(self.colour.shape[0])

    uv: np.ndarray | None = None

    def attach(self, uv: np.ndarray, triangles: np.ndarray, vertices: np.ndarray) -> None:
        """Give a stored texture (which keeps only colours) the layout and mirror twins of the clip's geometry."""
        if self.layout is None:
            self.layout = UVLayout.build(uv, triangles, self.size)
        if self.twins is None:
            self.twins, self.symmetric = mirror_twins(vertices)
        self.uv = np.asarray(uv, dtype=np.float32)

    def mirrored(self) -> tuple[np.ndarray, np.ndarray]:
        """(colour, trust) of the mirror texture: each texel takes its mirror twin's texel (0 trust off the
        symmetric head). Built once, after :meth:`attach`."""
        if self._mirror is None:
            if self.layout is None or self.twins is None or self.uv is None:
                return np.zeros_like(self.colour), np.zeros_like(self.trust)
            twin_uv = self.uv[self.twins] * self.size - 0.5
            at = self.layout.interpolate(np.concatenate([twin_uv, self.symmetric[:, None].astype(np.float32)], 1))
            m = self.layout.image(at[:, :2], fill=-10.0)
            sym = self.layout.image(at[:, 2:3])[..., 0]
            mx, my = np.ascontiguousarray(m[..., 0]), np.ascontiguousarray(m[..., 1])
            colour = cv2.remap(self.colour, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            trust = cv2.remap(self.trust, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            self._mirror = (colour, (trust * reproject.smoothstep(0.5, 1.0, sym)).astype(np.float32))
        return self._mirror

    def sample(self, uv_pixels: np.ndarray, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(colour (N, 3), trust (N,)) at UV coordinates (N, 2), of the texture or of its mirror image."""
        key = "_both_mirrored" if mirrored else "_both"
        both = self.__dict__.get(key)
        if both is None:  # colour and trust as one 4-channel image: one remap per lookup (kept)
            colour, trust = self.mirrored() if mirrored else (self.colour, self.trust)
            both = self.__dict__[key] = np.ascontiguousarray(np.concatenate([colour, trust[..., None]], axis=2))
        xy = np.asarray(uv_pixels, dtype=np.float32) * self.size - 0.5
        s = reproject.sample(both, xy)
        return s[:, :3], s[:, 3]

    # -- storage ---------------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        stored.save_arrays(path, FORMAT_VERSION, {"colour": self.colour, "trust": self.trust,
                                                  "frames": np.asarray(self.frames, np.int64)})

    @staticmethod
    def load(path: Path) -> "ClipTexture | None":
        """The stored texture, or None when absent or unreadable (it is then rebuilt)."""
        data = stored.load_arrays(path, FORMAT_VERSION, ("colour", "trust", "frames"), "clip texture")
        if data is None:
            return None
        colour, trust = data["colour"], data["trust"]
        if colour.ndim != 3 or colour.shape[:2] != trust.shape or not np.isfinite(colour).all():
            return None
        return ClipTexture(colour, trust, [int(i) for i in data["frames"]])


def _code_identity() -> bytes:
    """The source of the modules a texture's content depends on (head geometry, matte, reprojection, this one): a
    change to any of them makes stored textures stale."""
    from blender_relight import head_proxy
    from blender_relight.geometry import head
    from blender_relight.novel_view import render, source

    h = hashlib.sha1()
    for module in (head, head_proxy, reproject, render, source):
        h.update(Path(module.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.digest()


def texture_key(uv: np.ndarray, triangles: np.ndarray, size: int, frames: Iterable[int], extra: str = "") -> str:
    """What a stored clip texture depends on: the UV layout, the topology, its size and frames, the code that makes
    it, and ``extra`` (the tracking settings, which change every frame's pose)."""
    h = hashlib.sha1(_code_identity())
    h.update(np.asarray(uv, np.float32).tobytes())
    h.update(np.asarray(layout_triangles(len(uv), triangles), np.int32).tobytes())
    h.update(f"{size}|{FORMAT_VERSION}|{list(frames)}|{extra}".encode())
    return h.hexdigest()[:16]
