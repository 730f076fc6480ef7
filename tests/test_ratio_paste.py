"""The source-view paste (CropTransform.unwarp with reference=crop) multiplies the frame by the crop's shading ratio:
never negative, never NaN, the frame's own detail kept (the change-only paste it replaced went down to -0.18)."""
from __future__ import annotations

import numpy as np

from blender_relight.tracking import align
from blender_relight.video import read_image
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setup():
    from blender_relight.tracking.landmarks import MediapipeBackend

    frame8 = read_image(REPO / "blender_relight" / "samples" / "astronaut.jpg")
    with MediapipeBackend(max_num_faces=1, static_image_mode=True, small_faces=False) as backend:
        face = backend.detect(frame8)[0]
    t = align.CropTransform.from_landmarks(face.points)
    return frame8, t, align.face_mask(t.to_crop(face.points))


def _darkened_from_one_side(crop: np.ndarray) -> np.ndarray:
    """A strong darkening from one side (a side key's far side)."""
    u = np.linspace(0.0, 1.0, crop.shape[1], dtype=np.float32)[None, :, None]
    return crop * np.clip(1.6 * u - 0.2, 0.0, None)


def test_ratio_paste_is_non_negative_and_keeps_detail():
    from blender_relight import colour

    frame8, t, mask = _setup()
    frame = colour.uint8_srgb_to_linear(frame8)
    crop = t.warp(frame)
    # a strong darkening from one side (a side key's far side), with a crop resampled (smoothed) from the frame
    relit = _darkened_from_one_side(crop)
    out = t.unwarp(relit, frame, mask, reference=crop)
    assert np.isfinite(out).all() and out.min() >= 0.0
    # detail: where the ratio is 1 (no light change) the frame's pixels come back exactly
    same = t.unwarp(crop, frame, mask, reference=crop)
    assert np.abs(same - frame).max() < 1e-5
    # uint8 frames work too and stay in range
    out8 = t.unwarp(colour.linear_to_uint8_srgb(relit), frame8, mask, reference=colour.linear_to_uint8_srgb(crop))
    assert out8.dtype == np.uint8


def test_the_preview_paste_matches_resampling_mask_and_ratio_apart():
    """A float32 frame takes the one-warp path (the factor 1 + mask·(ratio - 1) resampled once), a float64 frame the
    general one (mask and ratio resampled apart): the same paste to well under an 8-bit level, only in the mask's
    region, and the same region outside the crop."""
    from blender_relight import colour

    frame8, t, mask = _setup()
    frame = colour.uint8_srgb_to_linear(frame8)
    crop = t.warp(frame)
    relit = _darkened_from_one_side(crop)
    fast = t.unwarp(relit, frame, mask, reference=crop)
    general = t.unwarp(relit, frame.astype(np.float64), mask, reference=crop)
    assert fast.dtype == np.float32 and general.dtype == np.float64
    assert np.abs(fast - general).max() < 5e-4
    assert np.abs(fast - general).mean() < 1e-6
    x0, y0, x1, y1 = t.frame_roi(frame.shape, mask)
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(fast[outside], frame[outside])  # nothing changes outside the mask's region
    assert np.abs(fast - frame).max() > 0.05  # and inside it the light did change
