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


def test_ratio_paste_is_non_negative_and_keeps_detail():
    from blender_relight import colour

    frame8, t, mask = _setup()
    frame = colour.uint8_srgb_to_linear(frame8)
    crop = t.warp(frame)
    # a strong darkening from one side (a side key's far side), with a crop resampled (smoothed) from the frame
    u = np.linspace(0.0, 1.0, 512, dtype=np.float32)[None, :, None]
    relit = crop * np.clip(1.6 * u - 0.2, 0.0, None)
    out = t.unwarp(relit, frame, mask, reference=crop)
    assert np.isfinite(out).all() and out.min() >= 0.0
    # detail: where the ratio is 1 (no light change) the frame's pixels come back exactly
    same = t.unwarp(crop, frame, mask, reference=crop)
    assert np.abs(same - frame).max() < 1e-5
    # uint8 frames work too and stay in range
    out8 = t.unwarp(colour.linear_to_uint8_srgb(relit), frame8, mask, reference=colour.linear_to_uint8_srgb(crop))
    assert out8.dtype == np.uint8
