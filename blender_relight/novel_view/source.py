"""The filmed frame as a novel-view source: its crop, camera, head geometry (fitted to the whole-head matte) and the
geometry's G-buffer at the filmed camera, with the frame's estimated light.

The matte: the engine's whole-head matte (``head_proxy.head_matte``, inside the prior shell grown) united with the
person matte inside the tracker's face mask grown over the whole hairdo (``hair_matte``): a head is moved as one piece
only if all of its hair is in the matte — hair left outside stays on the wall when the head turns, with the old
head's inpainted hole between them (seen on the sample's wide hairdo). The head shell is refitted to that matte.
"""
from __future__ import annotations

import numpy as np

from blender_relight import colour, face_geometry, head_proxy
from blender_relight.errors import RelightError
from blender_relight.tracking import align
from blender_relight.novel_view.render import SourceView


#: The hair seed: the tracker's face mask with its forehead band raised to this many eye-to-mouth distances and
#: grown by this fraction of the crop side (hair beside the face, and a fringe of background to learn from).
HAIR_FOREHEAD = 1.4
HAIR_GROW = 0.10
#: Matte holes up to about this radius (crop px) are closed.
HOLE_PX = 6


#: The face oval's lower half in MediaPipe's mesh, from the subject's right ear level over the chin to the left: the
#: jaw line the body hangs from.
JAW_LINE = (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454)
MP_CHIN, MP_FOREHEAD = 152, 10
#: Below the jaw line (from BODY_BELOW under it: the jaw's own dark edge moves with it) the crop turns from head into
#: body, in face heights (forehead to chin): the head's matte ends there over BODY_EDGE (nearly sharp: a matte
#: fading over the neck drew the moved neck half see-through over the still one, a second jaw line), and what the
#: head's motion carries along fades out over BODY_RAMP below it (the neck is sheared smoothly, not cross-faded) ...
BODY_BELOW = 0.12
BODY_EDGE = 0.03
BODY_RAMP = 0.2
#: ... and beside the face from this many face heights above the chin (less BODY_BELOW: about the jaw's angle;
#: at 0.25 the sample's collar ring beside the jaw was still half carried and broke at ±15-30°).
BODY_SIDE = 0.35


def body_region(points_crop: np.ndarray, size: int, ramp: float = BODY_RAMP) -> np.ndarray:
    """(size, size) float32 [0, 1]: where the filmed crop is the body below the head (collar, shoulders, the neck's
    base), which stays put when a new camera turns the head: 0 above the jaw line (``BODY_BELOW`` under it), rising
    to 1 ``ramp`` face heights further down; beside the face (where the jaw line rises to the ears) the line stays at
    the jaw's angle, ``BODY_SIDE`` face heights above the chin: hair beside the face moves with the head, what
    hangs below the jaw and rests on the shoulders stays with them.

    Why: the person matte counts collar and shoulders as person and the head region takes them in under the chin;
    moved with the head they were pulled sideways with the chin (the sample's collar ring) and the torso tore."""
    p = np.asarray(points_crop, np.float64)[:, :2]
    up = p[MP_FOREHEAD] - p[MP_CHIN]
    height = max(float(np.hypot(*up)), 1.0)
    up /= height
    right = np.array([-up[1], up[0]])
    jaw = p[list(JAW_LINE)] - p[MP_CHIN]
    ju, jv = jaw @ right, -(jaw @ up)  # along the eye line, and down the face
    order = np.argsort(ju)
    ju, jv = ju[order], jv[order]
    gx, gy = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    dx, dy = gx - p[MP_CHIN, 0], gy - p[MP_CHIN, 1]
    u = dx * right[0] + dy * right[1]
    v = -(dx * up[0] + dy * up[1])
    cut = np.maximum(np.interp(u, ju, jv), -BODY_SIDE * height)
    t = np.clip((v - cut - BODY_BELOW * height) / (ramp * height), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def hair_matte(crop_linear: np.ndarray, points_crop: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """(H, W) [0, 1] matte of head and hair inside the grown face mask: ``labels`` (the engine's cached
    ``head_proxy.head_labels`` of the frame) when given, else made now (``head_proxy.head_alpha``)."""
    size = crop_linear.shape[0]
    seed = align.face_mask(points_crop, size, forehead=HAIR_FOREHEAD, grow=HAIR_GROW)
    if labels is not None:
        return head_proxy.labels_to_alpha(labels, seed, (size, size))
    maps = face_geometry.render_face_maps(points_crop, crop_linear.shape[:2], fill_holes=True)
    return head_proxy.head_alpha(colour.linear_to_uint8_srgb(crop_linear), seed, maps.mask)


def whole_head(track, crop_linear: np.ndarray, engine_matte: np.ndarray, labels: np.ndarray | None = None):
    """(HeadGeometry, matte) for moving the head: the union of the engine's matte and :func:`hair_matte` (from the
    engine's cached ``labels`` when given), and the head shell fitted to it."""
    from blender_relight.geometry import head_geometry

    import cv2

    matte = np.maximum(np.asarray(engine_matte, np.float32), hair_matte(crop_linear, track.points_crop(), labels))
    # A matte may leave small holes where skin is shadowed like the wall (beside the jaw, under the ear); seen through,
    # they showed the background as pale patches on a turned head. A closing fills holes up to ~HOLE_PX across.
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * HOLE_PX + 1, 2 * HOLE_PX + 1))
    matte = np.maximum(matte, cv2.morphologyEx(matte, cv2.MORPH_CLOSE, k))
    # The body below the jaw stays with the torso (``body_region``); the shell is cut to the matte's visual hull
    # (no part of it drawn see-through at a new view where it reached past the filmed hair).
    matte = matte * (1.0 - body_region(track.points_crop(), matte.shape[0], BODY_EDGE))
    return head_geometry(track, matte, carve=True), matte


def rasterize_head(geometry, camera_label: np.ndarray, size: int = 512):
    """The geometry package's G-buffer of a frame's head, its vertex normals computed once per head (a camera change
    re-rasterises the same mesh). Normals as rasterised, not feathered across the face/shell seam: reprojection
    weighs and the clip texture normalises with these; shading feathers its own, smaller G-buffer
    (``path.GeometryShading``), as the filmed view does."""
    from blender_relight.geometry import rasterize
    from blender_relight.geometry.head import vertex_normals

    normals = getattr(geometry, "_vertex_normals", None)
    if normals is None:
        normals = geometry._vertex_normals = vertex_normals(geometry.vertices, geometry.triangles)
    return rasterize(geometry, camera_label, size, vertex_normals=normals)


def source_view(index: int, crop_linear: np.ndarray, track, geometry, matte: np.ndarray, shading_geometry=None,
                relight_alpha: np.ndarray | None = None, plate=None) -> SourceView:
    """Everything the renderer needs of a tracked frame (``track``: a FrameTrack with a source light);
    ``shading_geometry`` and ``relight_alpha``: the engine's shaded head and relight reach at the filmed view
    (``SourceView``); ``plate``: the clip's ``background.CleanPlate`` (None: the background behind the head is
    inpainted only)."""
    if track.source_sh is None:
        raise RelightError(f"frame {track.index}: no source lighting estimate in the cache; run `analyse` again")
    crop = np.asarray(crop_linear, dtype=np.float32)
    gbuffer = rasterize_head(geometry, track.camera, crop.shape[0])
    reach = None if relight_alpha is None else np.clip(np.asarray(relight_alpha, np.float32), 0.0, 1.0)
    clean = (None, None) if plate is None else plate.crop(track.transform.matrix, crop.shape[0])
    return SourceView(index, crop, np.asarray(track.camera, np.float32), geometry, gbuffer,
                      np.clip(np.asarray(matte, np.float32), 0.0, 1.0), np.asarray(track.source_sh, np.float64),
                      shading_geometry=shading_geometry, relight_alpha=reach, clean_background=clean[0],
                      clean_weight=clean[1], body=body_region(track.points_crop(), crop.shape[0]))
