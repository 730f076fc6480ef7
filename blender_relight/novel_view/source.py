"""The filmed frame as a novel-view source: a head-and-hair matte, the head geometry fitted to it, its G-buffer.

Why a matte of its own: the relighting matte (``head_proxy.head_alpha`` seeded by the tracker's face mask) stops a
little above the hairline, which is right for relighting skin but wrong for moving the head: hair outside it would
stay behind when the head turns. Here GrabCut is seeded with a mask grown over the whole hair (the face mask with a
taller forehead band and a wider margin), and the head shell is fitted to that outline, so the hair moves with the
head.
"""
from __future__ import annotations

import numpy as np

from blender_relight import colour, face_geometry, head_proxy
from blender_relight.novel_view.render import SourceView
from blender_relight.tracking import align

#: The GrabCut seed: the tracker's face mask with its forehead band raised to this many eye-to-mouth distances ...
HAIR_FOREHEAD = 1.4
#: ... and grown by this fraction of the crop side (hair beside the face, a fringe of background to learn from).
HAIR_GROW = 0.10


def head_and_hair_matte(crop_linear: np.ndarray, points_crop: np.ndarray) -> np.ndarray:
    """(H, W) [0, 1] matte of head and hair in the crop."""
    size = crop_linear.shape[0]
    maps = face_geometry.render_face_maps(points_crop, crop_linear.shape[:2], fill_holes=True)
    seed = align.face_mask(points_crop, size, forehead=HAIR_FOREHEAD, grow=HAIR_GROW)
    return head_proxy.head_alpha(colour.linear_to_uint8_srgb(crop_linear), seed, maps.mask)


def source_view(index: int, crop_linear: np.ndarray, track, matte: np.ndarray | None = None) -> SourceView:
    """Everything the renderer needs of a tracked frame (``track``: a FrameTrack with a source light)."""
    from blender_relight.geometry import head_geometry, rasterize

    crop = np.asarray(crop_linear, dtype=np.float32)
    if matte is None:
        matte = head_and_hair_matte(crop, track.points_crop())
    geometry = head_geometry(track, matte)
    gbuffer = rasterize(geometry, track.camera, crop.shape[0])
    if track.source_sh is None:
        from blender_relight.errors import RelightError

        raise RelightError(f"frame {track.index}: no source lighting estimate in the cache; run `analyse` again")
    return SourceView(index, crop, np.asarray(track.camera, np.float32), geometry, gbuffer, matte,
                      np.asarray(track.source_sh, np.float64))
