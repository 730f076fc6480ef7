"""Development data for the tests: where ../shared/data is, and landmarks of a real frame (skipping when absent)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_frame_bgr(clip: str, frame: int = 0) -> np.ndarray:
    """Frame ``frame`` of ``../shared/data/videos/<clip>`` as OpenCV decodes it (BGR uint8); skips when absent."""
    video = DATA / "videos" / clip
    if not video.exists():
        pytest.skip(f"{video} not found: the real-face checks need ../shared/data")
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
    ok, image = cap.read()
    cap.release()
    assert ok, f"cannot decode frame {frame} of {video}"
    return image


def real_frame_landmarks(clip: str, frame: int = 0) -> np.ndarray:
    """Mediapipe landmarks (478, 3) in frame pixels of frame ``frame`` of ``../shared/data/videos/<clip>``."""
    from blender_relight.tracking.landmarks import MediapipeBackend

    image = real_frame_bgr(clip, frame)
    with MediapipeBackend(max_num_faces=1, static_image_mode=True, small_faces=False) as backend:
        faces = backend.detect(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    assert faces, f"no face found in frame {frame} of {clip}"
    return faces[0].points
