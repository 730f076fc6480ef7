"""``NovelViewRenderer``: one frame seen from a new camera, at the frame's own (source) light, with its G-buffer.

Per pixel of the new view the head's colour is a blend, with weights that change continuously with the camera:
``plate`` (the filmed crop where the frame saw that surface: ``reproject``), else the clip ``texture`` (other frames
of the clip), else its ``mirror`` image, else a push-pull ``fill``. Texture colours are shading-normalised and are
re-shaded with the frame's source irradiance, so the result is a plate at the source light throughout; the engine
then relights it exactly as it relights the filmed view (``plate × E_target / E_source`` at the new view's normals).

Outside the new head: the frame's background with the old head filled from the clip's clean plate where other frames
saw behind it (``background``), else inpainted (``fill.inpainted_background``), carried along by the head's motion
near it, the torso (``SourceView.body``: collar and shoulders below the jaw) untouched. The returned ``alpha``
covers the old head and the new one, so a replace-paste of the crop into the full frame leaves no ghost of the old
head.
"""
from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from blender_relight.geometry.raster import scatter
from blender_relight.head_proxy import edge_fade
from blender_relight.novel_view import fill, reproject, texture as tex
from blender_relight.novel_view.views import ViewRequest, clamp_view  # noqa: F401 - ViewRequest in NovelView

log = logging.getLogger(__name__)

#: How far the old head region (the plate's matte) is grown before the background behind it is inpainted (crop px):
#: hair wisps and the matte's soft edge must not stay behind as a ghost.
OLD_HEAD_GROW_PX = 11
#: Feather of the new head's coverage edge (px): the geometry's silhouette is hard, a filmed edge is not.
EDGE_FEATHER_PX = 1.2
#: The same where the silhouette is the shell (hair) (px).
HAIR_FEATHER_PX = 3.0
#: Enclosed see-through holes in the new head's coverage up to this fraction of the crop are closed.
HOLE_FRACTION = 0.01
KEEP_FRAMES = 4
#: How far (fraction of the crop side, Gaussian sigma) the head's motion carries its surroundings along.
SURROUND_SIGMA = 0.06
#: Matte values over which a filmed point goes from background to head in the new view's coverage.
MATTE_ALPHA = (0.3, 0.7)
#: Matte values over which a filmed pixel goes from background (colour from elsewhere) to head (its own colour).
MATTE_COLOUR = (0.5, 0.95)
#: View offsets (degrees) over which the matte-edge colour rule fades in.
EDGE_RULE_DEG = (2.0, 8.0)
#: How far inside the matte (px, erosion) a filmed pixel must be for its colour to count as head.
COLOUR_ERODE_PX = 4
#: Head motion (crop px) over which what was behind the filmed head takes over from the filmed head itself.
REVEAL_PX = (0.5, 4.0)


@dataclass
class SourceView:
    """What the renderer needs of the filmed frame: its crop (linear RGB), camera, head geometry and its G-buffer at
    the filmed camera, the plate's head matte (crop size, [0, 1]) and the frame's estimated source light (9, 3)."""

    index: int
    crop: np.ndarray
    label: np.ndarray
    geometry: object  # blender_relight.geometry.head.HeadGeometry
    gbuffer: object  # blender_relight.geometry.raster.GBuffer at ``label``
    matte: np.ndarray
    source_sh: np.ndarray
    #: the clip's clean plate in this crop (``background.CleanPlate.crop``) and how far to trust it, if the clip has one
    clean_background: np.ndarray | None = None
    clean_weight: np.ndarray | None = None
    #: The head the engine shades at the filmed view and where its relight reaches there (crop size, [0, 1]): a new
    #: view is shaded on the same head and relit where the filmed view relights the same surface, so a light means
    #: the same at both and a camera leaving the filmed pose changes the relighting continuously. None: the moved
    #: head (``geometry``) and its coverage.
    shading_geometry: object | None = None
    relight_alpha: np.ndarray | None = None
    #: Where the crop is the body below the head (crop size, [0, 1], ``source.body_region``): the torso stays put, so
    #: the head's motion does not carry it along (the surroundings' flow is faded out over it). None: no body.
    body: np.ndarray | None = None


@dataclass
class NovelView:
    """A re-posed frame at its source light.

    ``image``: the crop seen from the new camera (new head over the inpainted background); ``alpha``: where the crop
    changed (old head ∪ new head), the paste mask; ``head_alpha``: the new head's coverage; ``gbuffer``: the new
    view's G-buffer; ``weights``: the blend weights per source (plate, texture, mirror, fill; (H, W) each, summing to
    1 on the head)."""

    image: np.ndarray
    alpha: np.ndarray
    head_alpha: np.ndarray
    gbuffer: object
    weights: dict[str, np.ndarray]
    view: ViewRequest
    notes: list[str] = field(default_factory=list)
    #: where the relight applies (H, W): the source's ``relight_alpha`` carried to the new view (head_alpha without
    #: one)
    relight_alpha: np.ndarray | None = None


def source_irradiance(normals_world: np.ndarray, source_sh: np.ndarray) -> np.ndarray:
    """E_source (…, 3) at world normals: the frame's SH light in the head's frame (lights are fixed to the head, so a
    new camera sees the same irradiance on the same surface)."""
    return tex.normalising_shading(normals_world.reshape(-1, 3), source_sh).reshape(normals_world.shape[:-1] + (3,))


def _smooth_fill(weighted_colour: np.ndarray, weight: np.ndarray, work: int = 256) -> np.ndarray:
    """Push-pull fill at ``work``² (the fill is smooth; a quarter of the pixels), upsampled. ``weighted_colour`` is
    colour × weight."""
    size = weight.shape[0]
    c = cv2.resize(weighted_colour, (work, work), interpolation=cv2.INTER_AREA)
    w = cv2.resize(weight, (work, work), interpolation=cv2.INTER_AREA)
    filled = fill.push_pull(c / np.maximum(w, 1e-6)[..., None], w)
    return cv2.resize(filled, (size, size), interpolation=cv2.INTER_LINEAR)


#: Side of the grid a source's gain to the plate is worked out on, the range the gain is held to, and every how
#: many head pixels it is measured at (the gain is smooth: a few samples per grid cell).
GAIN_WORK = 64
GAIN_RANGE = (0.5, 2.0)
GAIN_STRIDE = 8


def matched_gain(size: int, pixels: np.ndarray, plate: np.ndarray, other: np.ndarray, weight: np.ndarray,
                 where: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(gain, near): the per-channel gain (len(where), 3) that brings ``other`` (a source's colour at the source
    light, at the head pixels ``pixels``, flat indices into size²) to the plate's colour, smooth over the image:
    the ratio of the two push-pull fills of ``plate`` and ``other`` weighted by ``weight`` (where both are trusted),
    binned on a ``GAIN_WORK``² grid, read at the flat pixel indices ``where``, and the plate's smooth fill there
    (None, and a gain of 1, where the two do not overlap).

    Why: the clip texture and its mirror image are stored shading-normalised by each frame's estimated light and
    re-shaded by this frame's; where that estimate is lopsided (a key from one side that the frame does not have)
    the mirrored side came out far darker and greyer than the cheek it continues (a dark band down a turned
    head's side on lp_s18). Matched to the plate where they overlap, only their detail is taken."""
    if where.size == 0 or float(weight.sum()) < 2.0:
        return np.ones((where.size, 3), np.float32), None
    k = GAIN_WORK
    ys, xs = np.divmod(pixels, size)
    cell = (ys * k // size) * k + xs * k // size
    ws = np.bincount(cell, weight, k * k).reshape(k, k)
    norm = np.maximum(ws, 1e-9)[..., None]
    num = np.stack([np.bincount(cell, weight * plate[:, c], k * k) for c in range(3)], 1).reshape(k, k, 3) / norm
    den = np.stack([np.bincount(cell, weight * other[:, c], k * k) for c in range(3)], 1).reshape(k, k, 3) / norm
    support = np.clip(ws / max(float(np.percentile(ws[ws > 0], 50)), 1e-9), 0.0, 1.0).astype(np.float32)
    pp_num = fill.push_pull(num.astype(np.float32), support)
    pp_den = fill.push_pull(den.astype(np.float32), support)
    gain = np.clip(pp_num / np.maximum(pp_den, 1e-4), GAIN_RANGE[0], GAIN_RANGE[1]).astype(np.float32)
    gain = cv2.resize(cv2.GaussianBlur(gain, (0, 0), 1.5), (size, size), interpolation=cv2.INTER_LINEAR)
    near = cv2.resize(cv2.GaussianBlur(pp_num, (0, 0), 1.5), (size, size), interpolation=cv2.INTER_LINEAR)
    return gain.reshape(-1, 3)[where], near.reshape(-1, 3)[where]


#: Brightness ratios (either way) between a texture or mirror colour and the plate's smooth colour around it over
#: which the source goes from used to not used.
AGREE_RATIO = (1.5, 2.2)


def agreement(colour: np.ndarray, near: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: 1 where ``colour`` (N, 3, as seen) is within ``AGREE_RATIO`` of ``near`` (the plate's smooth
    colour there) in brightness, falling to 0 beyond."""
    a = colour.sum(axis=1) + 1e-4
    b = near.sum(axis=1) + 1e-4
    ratio = np.maximum(a / b, b / a)
    return (1.0 - reproject.smoothstep(AGREE_RATIO[0], AGREE_RATIO[1], ratio)).astype(np.float32)


_WORKER = None


def submit(fn: Callable, *args):
    """Run ``fn(*args)`` on the novel-view worker thread (one: with the caller that is the 2 cores the path is
    sized for; NumPy and OpenCV release the GIL in their loops). Returns a Future."""
    global _WORKER
    if _WORKER is None:
        from concurrent.futures import ThreadPoolExecutor

        _WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="novel-view")
    return _WORKER.submit(fn, *args)


@functools.lru_cache(maxsize=2)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each (size, size) float32 (read-only, shared)."""
    gx, gy = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    gx.setflags(write=False)
    gy.setflags(write=False)
    return gx, gy


def _length(v: np.ndarray) -> np.ndarray:
    """Euclidean length over the last axis of a (..., 2) array (np.linalg.norm over a short last axis is slow)."""
    return np.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])


def coverage_edge(mask: np.ndarray, part: np.ndarray) -> np.ndarray:
    """The new head's coverage (H, W) feathered at its silhouette: :data:`EDGE_FEATHER_PX` where the outline is the
    face mesh (a cheek or jaw against the wall: a filmed edge is a pixel or so wide), :data:`HAIR_FEATHER_PX` where it
    is the shell (hair: wisps, not a cut line; a 1-pixel edge drew the shell's smooth outline as a paper cut-out)."""
    covered = np.asarray(mask, bool)
    inner = cv2.erode(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    face = cv2.GaussianBlur(inner, (0, 0), EDGE_FEATHER_PX) * 1.5
    hair = cv2.GaussianBlur(inner, (0, 0), HAIR_FEATHER_PX) * 1.5
    # which of the two the outline is, as a smooth weight (made at a quarter of the size: it only blends two edges)
    h, w = covered.shape
    small = (max(w // 4, 1), max(h // 4, 1))
    shell = cv2.resize(((np.asarray(part) >= 1) & covered).astype(np.float32), small, interpolation=cv2.INTER_AREA)
    cover = cv2.resize(covered.astype(np.float32), small, interpolation=cv2.INTER_AREA)
    sigma = HAIR_FEATHER_PX / 4.0
    weight = cv2.GaussianBlur(shell, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(cover, (0, 0), sigma), 1e-6)
    weight = np.clip(cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return face + weight * (hair - face)


def close_small_holes(alpha: np.ndarray, max_fraction: float = HOLE_FRACTION) -> tuple[np.ndarray, np.ndarray | None]:
    """(``alpha`` (H, W) with its small enclosed holes made opaque with their rims, the holes (bool) or None when there
    were none): a hole is a see-through region (alpha ≤ 0.5) that the head surrounds on every side and that is
    smaller than ``max_fraction`` of the image. Why: where the shell's jaw or
    neck projects just outside the filmed matte (the wall between hair and collar), the visual-hull rule made a
    patch of wall show through the middle of the turned cheek; a real head has no such hole, and the gaps that are
    real (between the jaw and the shoulder) reach the head's outline, so they stay."""
    clear = (alpha <= 0.5).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(clear, connectivity=4)
    if n <= 1:
        return alpha, None
    h, w = alpha.shape
    x, y, bw, bh, area = (stats[:, k] for k in range(5))
    touches = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    small = (~touches) & (area <= max_fraction * h * w)
    small[0] = False  # label 0: the opaque pixels
    if not small.any():
        return alpha, None
    holes = small[labels]
    out = alpha.copy()
    # opaque with its soft rim (the coverage's feather around it, which let the wall through in part)
    out[cv2.dilate(holes.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0] = 1.0
    return out, holes


def fill_holes(image: np.ndarray, holes: np.ndarray, known: np.ndarray, amount: np.ndarray, sigma: float = 4.0
               ) -> None:
    """``image`` (H, W, 3) on ``holes`` moved, in place and by ``amount`` (H, W) [0, 1] (the smooth fill's share of
    each pixel: colour a source gave is kept), to the Gaussian-weighted mean of the ``known`` pixels around them
    (normalised convolution on the holes' box: they are small, and so is the cost). Why: the fill had reached into
    the hole from the wall it showed, and drew a pale patch in the cheek once the hole was closed."""
    ys, xs = np.nonzero(holes)
    pad = int(3 * sigma) + 1
    h, w = holes.shape
    rows = slice(max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, h))
    cols = slice(max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, w))
    weight = (known[rows, cols] & ~holes[rows, cols]).astype(np.float32)
    box = image[rows, cols]
    num = cv2.GaussianBlur(np.ascontiguousarray(box * weight[..., None]), (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    inside = holes[rows, cols]
    share = amount[rows, cols][inside][:, None]
    box[inside] += share * (num[inside] / np.maximum(den[inside], 1e-6)[:, None] - box[inside])


def plate_trust(matte: np.ndarray) -> np.ndarray:
    """Where a filmed pixel's colour is the head's (H, W) [0, 1]: well inside the matte (eroded by
    ``COLOUR_ERODE_PX``, then ``MATTE_COLOUR``). The matte's soft edge (kept at 128², feathered) is wider than the
    hair's and its pixels there are part wall; taken as head colour they painted a grey, glassy band on a turned
    head's side. The plate lookup and the clip texture use the same rule."""
    k = 2 * COLOUR_ERODE_PX + 1
    inner = cv2.erode(np.asarray(matte, np.float32), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return reproject.smoothstep(MATTE_COLOUR[0], MATTE_COLOUR[1], inner).astype(np.float32)


class NovelViewRenderer:
    """Renders new views of frames; keeps per-frame work (background, source depth) for the last few frames.

    ``rasterize(geometry, label, size)`` and ``project(points, label, size)`` are the geometry package's; the clip
    texture comes from ``texture_provider()`` (None: the frame's own plate and its mirror only)."""

    def __init__(self, rasterize: Callable, project: Callable,
                 texture_provider: Callable[[], "tex.ClipTexture | None"] | None = None) -> None:
        self.rasterize = rasterize
        self.project = project
        self.texture_provider = texture_provider
        self._frames: OrderedDict[int, dict] = OrderedDict()
        self._warned_clamp = False

    # -- per frame ---------------------------------------------------------------------------------------------------
    def _frame(self, source: SourceView) -> dict:
        key = source.index
        entry = self._frames.get(key)
        if entry is not None and entry["label"].tobytes() == np.asarray(source.label, np.float32).tobytes():
            return entry
        matte = np.clip(np.asarray(source.matte, np.float32), 0.0, 1.0)

        def grown(mask: np.ndarray, px: int) -> np.ndarray:
            k = 2 * px + 1
            out = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
            return np.clip(cv2.GaussianBlur(out, (0, 0), max(px / 3.0, 1.0)), 0.0, 1.0).astype(np.float32)

        colour_trust = plate_trust(matte)
        relit = np.ones_like(matte) if source.relight_alpha is None else np.asarray(source.relight_alpha, np.float32)
        crop = np.asarray(source.crop, np.float32)
        filmed = np.concatenate([crop, matte[..., None], colour_trust[..., None], relit[..., None]], 2)
        # Where the surroundings may move: not on the body. (The old head's grown edge below the jaw is still
        # replaced by what was behind it where the head moved away: it holds the jaw's own shadow, which stayed on
        # the still neck as a second jaw line.)
        still = None
        if source.body is not None:
            still = np.ascontiguousarray(1.0 - np.clip(np.asarray(source.body, np.float32), 0.0, 1.0))
        entry = {"label": np.asarray(source.label, np.float32), "filmed": np.ascontiguousarray(filmed),
                 "depth_min": reproject.min_depth(source.gbuffer.depth), "still": still,
                 # the filmed head as the background sees it: the matte (its faint wisps included) grown by a few
                 # pixels, its soft edge stopping short of the last hair; the hole the background is painted into,
                 # the region it replaces the carried-along crop in (one mask: with the matte's core as the second,
                 # the wisps between the two stood beside a turned head as arcs echoing the old outline), and the
                 # new-view paste's extent
                 "old_head": grown((matte > 0.05).astype(np.float32), OLD_HEAD_GROW_PX), "background": None,
                 "behind": None, "crop_relit": np.ascontiguousarray(np.concatenate([crop, relit[..., None]], 2))}
        self._frames[key] = entry
        while len(self._frames) > KEEP_FRAMES:
            self._frames.popitem(last=False)
        return entry

    def _background(self, source: SourceView, entry: dict) -> np.ndarray:
        if entry["background"] is None:
            background = fill.inpainted_background(source.crop, entry["old_head"])
            if source.clean_background is not None and source.clean_weight is not None:
                # what other frames of the clip saw behind the head, where they agree; the inpainting elsewhere
                w = (np.asarray(source.clean_weight, np.float32) * entry["old_head"])[..., None]
                background = background * (1.0 - w) + np.asarray(source.clean_background, np.float32) * w
            entry["background"] = background.astype(np.float32)
        return entry["background"]

    def _surroundings(self, source: SourceView, entry: dict, pixels: np.ndarray, xy: np.ndarray | None,
                      mask: np.ndarray, away: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the new view shows around the new head, where that differs from the crop (0..1), and the source's
        relight reach carried along with it.

        The head's image motion (new pixel -> where the frame saw it) is extrapolated outward (push-pull) and fades
        with the distance from the new head (Gaussian, ``SURROUND_SIGMA`` of the crop side): hair and collar just
        outside the matte move along with the head instead of tearing from it, the torso and the far background
        stay put. Where the warped position falls on the filmed head, the inpainted background replaces it in
        proportion to how far the head moved there (``REVEAL_PX``), so the old head never shows twice and a camera
        at the filmed pose gives back the crop itself."""
        size = mask.shape[0]
        crop = np.asarray(source.crop, np.float32)
        if xy is None or pixels.size == 0:
            return crop, np.zeros(mask.shape, np.float32), entry["crop_relit"][..., 3].copy()
        if size & (size - 1) == 0:  # a power of two (the 512² crop): a shift and a mask, not an int64 divmod
            ys, xs = pixels >> (size.bit_length() - 1), pixels & (size - 1)
        else:
            ys, xs = np.divmod(pixels, size)
        flow = np.zeros((size * size, 2), np.float32)
        scatter(flow, pixels, xy - np.stack([xs, ys], 1).astype(np.float32))
        small = 128  # the extrapolated flow is smooth: push-pull it at a quarter of the size
        f_small = cv2.resize(flow.reshape(size, size, 2), (small, small), interpolation=cv2.INTER_AREA)
        w_small = cv2.resize(mask.astype(np.float32), (small, small), interpolation=cv2.INTER_AREA)
        f_small = fill.push_pull(f_small / np.maximum(w_small, 1e-6)[..., None], w_small)
        f_ext = cv2.resize(f_small, (size, size), interpolation=cv2.INTER_LINEAR)
        dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
        fade = np.exp(-0.5 * (dist / (SURROUND_SIGMA * size)) ** 2).astype(np.float32)
        if entry.get("still") is not None:
            fade *= entry["still"]  # the torso stays put: the collar is not pulled along with the chin
        # the flow's two components as separate (contiguous) images: the arithmetic below runs on plain arrays
        bg_x, bg_y = f_ext[..., 0] * fade, f_ext[..., 1] * fade
        gx, gy = _pixel_grid(size)
        mx, my = gx + bg_x, gy + bg_y
        warped = cv2.remap(entry["crop_relit"], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        out, relit = warped[..., 0:3], warped[..., 3]  # views: blended in place below
        motion = np.sqrt(bg_x * bg_x + bg_y * bg_y)
        moved = reproject.smoothstep(0.05, 0.5, motion)
        # What was behind the filmed head, and the old head itself, matter only where a warped position can fall on
        # the old head: its box grown by twice the largest motion (a reflected border tap included).
        if entry.get("behind") is None:
            behind = np.concatenate([self._background(source, entry), entry["old_head"][..., None]], axis=2)
            ys_h, xs_h = np.nonzero(entry["old_head"] > 0)
            entry["behind"] = np.ascontiguousarray(behind)
            entry["head_box"] = (ys_h.min(), ys_h.max(), xs_h.min(), xs_h.max()) if ys_h.size else None
        if entry["head_box"] is not None:
            reach = int(np.ceil(2.0 * float(motion.max()))) + 2
            y0, y1, x0, x1 = entry["head_box"]
            rows = slice(max(y0 - reach, 0), min(y1 + reach + 1, size))
            cols = slice(max(x0 - reach, 0), min(x1 + reach + 1, size))
            sub = cv2.remap(entry["behind"], np.ascontiguousarray(mx[rows, cols]), np.ascontiguousarray(my[rows, cols]),
                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            # (at least ``away``: once the view has turned, the filmed head beside the new one has turned with it,
            # even where its outline moved without its surface moving much: at ±15° the hair beyond the new outline
            # stayed as a strand where the flow there was 1-2 px)
            r = sub[..., 3] * np.maximum(reproject.smoothstep(REVEAL_PX[0], REVEAL_PX[1], _length(f_ext[rows, cols])),
                                         np.float32(away))
            # colour: o + r (behind − o) on the box, all four channels in one contiguous pass (the fourth, the
            # relight reach, is set after: what was behind the old head is wall, not relit)
            o = warped[rows, cols]
            reach_box = o[..., 3] * (1.0 - r)
            step = sub - o
            step *= np.repeat(r[..., None], 4, axis=2)
            o += step
            o[..., 3] = reach_box
            moved[rows, cols] = np.maximum(moved[rows, cols], r)
        return out, moved, relit

    # -- a new view --------------------------------------------------------------------------------------------------
    def render(self, source: SourceView, target_label: np.ndarray, clamp: bool = True,
               on_gbuffer: Callable | None = None) -> NovelView:
        """``source`` seen from ``target_label`` (clamped to the range around the filmed pose unless ``clamp`` is
        False), at the source light. ``on_gbuffer(gbuffer, label)`` is called as soon as the new view's G-buffer
        exists (the path starts its shading then, beside the reprojection)."""
        view = clamp_view(source.label, target_label) if clamp else clamp_view(source.label, target_label, 1e9, 1e9)
        notes = []
        if view.clamped:
            notes.append(view.describe())
            (log.debug if self._warned_clamp else log.warning)("%s", view.describe())
            self._warned_clamp = True
        crop = np.asarray(source.crop, np.float32)
        size = crop.shape[0]
        entry = self._frame(source)
        gb = self.rasterize(source.geometry, view.label, size)
        if on_gbuffer is not None:
            on_gbuffer(gb, view.label)
        mask = np.asarray(gb.mask, bool)
        pixels = np.flatnonzero(mask.reshape(-1))
        hw = size * size
        weights = {name: np.zeros(hw, np.float32) for name in ("plate", "texture", "mirror", "fill")}
        head = np.zeros((hw, 3), np.float32)
        normals = np.take(gb.normal.reshape(-1, 3), pixels, axis=0)
        head_alpha = np.zeros(hw, np.float32)
        relight = np.zeros(hw, np.float32)
        if pixels.size:
            # No matte factor here: where the shell reaches past the filmed head, the plate's colour there is
            # background and the coverage below takes the matte's value, so it stays see-through.
            # Near the filmed pose the edge stays as filmed (it composites back to the plate); the matte-edge and
            # grazing rules take over as the view turns away (continuously: no pop).
            away = float(reproject.smoothstep(EDGE_RULE_DEG[0], EDGE_RULE_DEG[1], np.hypot(view.yaw_deg,
                                                                                            view.pitch_deg)))
            hit = reproject.lookup(gb.position, gb.normal, pixels, source.label, entry["depth_min"], None,
                                   self.project, view.label, graze=away)
            # what surrounds the new head needs only where its pixels came from: made beside the blend below
            surroundings = submit(self._surroundings, source, entry, pixels, hit.xy, mask, away)
            filmed = reproject.sample(entry["filmed"], hit.xy)  # crop, matte, colour trust, relight in one tap
            plate, matte_at, colour_ok, relit_at = filmed[:, 0:3], filmed[:, 3], filmed[:, 4], filmed[:, 5]
            # The plate's colour is taken where the frame saw the point and the point is head there; on the
            # matte's soft edge the filmed pixel is part background, so its colour comes from the other sources
            # while the coverage below keeps the edge's transparency.
            w_seen = hit.weight
            w_plate = w_seen * (1.0 - away * (1.0 - colour_ok))
            # What the plate does not give, in order: the clip texture, its mirror image, a smooth fill. Colours of
            # these are shading-normalised (÷ E_source), so they are blended as such and re-shaded once. Only the
            # pixels the plate leaves open are looked up.
            rest = 1.0 - w_plate
            seen = w_plate[:, None] * plate
            open_ = np.flatnonzero(rest > 0)
            texture = self.texture_provider() if self.texture_provider is not None else None
            if open_.size:
                e = tex.normalising_shading(np.take(normals, open_, axis=0), source.source_sh)
                other = np.zeros((open_.size, 3), np.float32)
                left = rest[open_]
                if texture is not None:
                    uv_all = np.take(gb.uv.reshape(-1, 2), pixels, axis=0)
                    uv = np.take(uv_all, open_, axis=0)
                    sub = np.arange(0, pixels.size, GAIN_STRIDE)  # where the gain to the plate is measured
                    e_sub = None
                    for name, mirrored in (("texture", False), ("mirror", True)):
                        colour, trust = texture.sample(uv, mirrored=mirrored)
                        use = np.clip(trust / 0.5, 0.0, 1.0)  # a texel seen with half trust is used fully
                        if use.max(initial=0.0) > 0.0:
                            # matched to the plate where both see the head (a smooth gain, extended outward)
                            c_sub, t_sub = texture.sample(uv_all[sub], mirrored=mirrored)
                            if e_sub is None:
                                e_sub = tex.normalising_shading(normals[sub], source.source_sh)
                            gain, near = matched_gain(size, pixels[sub], plate[sub], c_sub * e_sub,
                                                      w_plate[sub] * np.clip(t_sub / 0.5, 0.0, 1.0),
                                                      pixels[open_])
                            colour = colour * gain
                            # ... and not used where it still disagrees with the plate's colour around it (an
                            # asymmetric hairdo mirrors hair onto the other cheek)
                            if near is not None:
                                use = use * agreement(colour * e, near)
                        w = left * use
                        other += w[:, None] * colour
                        weights[name][pixels[open_]] = w
                        left = left - w
                rest[open_] = left
                other *= e
                other += np.take(seen, open_, axis=0)
                scatter(seen, open_, other)
            weights["plate"][pixels] = w_plate
            weights["fill"][pixels] = np.maximum(rest, 0.0)
            scatter(head, pixels, seen)
            if np.any(rest > 0):
                # The fill: push-pull of the colour known so far over the whole head, in image space. It works on
                # the colour as seen, not shading-normalised: dividing grazing filmed pixels by a small source
                # irradiance and re-shading them at a squarer normal drew bright streaks (a glassy look) at the
                # head's sides.
                known_w = np.zeros(hw, np.float32)
                known_w[pixels] = 1.0 - rest
                filled = _smooth_fill(head.reshape(size, size, 3), known_w.reshape(size, size)).reshape(-1, 3)
                need = np.flatnonzero(rest > 0)  # elsewhere the fill's weight is 0: the pixel is kept as it is
                at = pixels[need]
                add = np.take(filled, at, axis=0)
                add *= rest[need][:, None]
                add += np.take(head, at, axis=0)
                scatter(head, at, add)
            # Coverage: the filmed head's silhouette bounds the head (a visual hull from one view): every point of
            # the head, seen or hidden, projects into the filmed matte. So a point of the new view is head as far as
            # the matte at its projection says (sharpened: its soft edge is wider than the hair's), whether the
            # frame saw it or not. (Counting every hidden point as head drew the prior shell's unseen sides, wider
            # than the real head, as an opaque pale balloon filled from the background's colours.) A point projecting
            # outside the crop takes the matte at the crop's edge (the sample's replicated border): the head goes on
            # past the crop only where the matte runs off it. (Counted as head there, the shell's crown above a crop
            # cut through the hair stood as a detached cap over a notch seen from above, and the neck below the crop
            # as a bib over the collar; ``geometry.head`` carves the crown to the same hull.)
            head_alpha[pixels] = reproject.smoothstep(MATTE_ALPHA[0], MATTE_ALPHA[1], matte_at)
            v = hit.visible
            relight[pixels] = v * relit_at + (1.0 - v)  # surface the frame did not see is relit as head
        head_alpha = head_alpha.reshape(size, size)
        head_alpha, holes = close_small_holes(np.clip(np.minimum(head_alpha, coverage_edge(mask, gb.part)), 0.0, 1.0))
        if holes is not None:  # a closed hole's smooth fill takes the colour of the head around it (it was wall's)
            fill_holes(head.reshape(size, size, 3), holes, head_alpha > 0.5, weights["fill"].reshape(size, size))
        if pixels.size:
            background, moved, relight_around = surroundings.result()
        else:
            background, moved, relight_around = self._surroundings(source, entry, pixels, None, mask)
        image = head.reshape(size, size, 3)
        image -= background
        image *= head_alpha[..., None]
        image += background  # background · (1 − a) + head · a
        # The paste fades out toward the crop's edges as the engine's matte does (``head_proxy.edge_fade``): the
        # torso and hair the head's motion carries along meet the untouched frame without a line at the crop's edge.
        alpha = np.maximum(np.maximum(entry["old_head"], head_alpha), moved) * edge_fade(size)
        # The relight's reach: the new head's, and around it what the surroundings carried along (as composited)
        relight = relight_around + head_alpha * (relight.reshape(size, size) - relight_around)
        if source.relight_alpha is None:
            relight = head_alpha
        return NovelView(image.astype(np.float32, copy=False), alpha.astype(np.float32), head_alpha.astype(np.float32),
                         gb, {k: v.reshape(size, size) for k, v in weights.items()}, view, notes,
                         np.clip(relight, 0.0, 1.0).astype(np.float32))
