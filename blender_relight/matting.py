"""The person matte of a crop: mediapipe's bundled selfie-segmentation network (offline, ~7 ms at 512² on a CPU).

Why a network and not GrabCut: the head matte decides which pixels follow a new light and which pixels move with the
head at a new camera. GrabCut separates by colour, and skin, a warm wall and brown hair share colours: on real dev
clips it took in wall beside the jaw and a picture frame beside the hair, and left hair out; those became a pale
"balloon" around a turned head and hair that kept the old light. The selfie-segmentation model (the general,
256 × 256 one of mediapipe 0.10.21's solutions, bundled in the wheel) follows the hair's outline on the same frames.
It segments the whole person: callers intersect it with their head region (the head shell's silhouette, grown).

One segmenter per process, behind a lock: a mediapipe graph is not safe to call from two threads at once (the
Blender job worker and the main thread may both relight).
"""
from __future__ import annotations

import threading

import numpy as np

from blender_relight.errors import RelightError

_lock = threading.Lock()
_segmenter = None


def _get_segmenter():
    global _segmenter
    if _segmenter is None:
        try:
            from mediapipe.python.solutions import selfie_segmentation
        except ImportError as exc:  # pragma: no cover - mediapipe is a hard dependency
            raise RelightError(f"mediapipe is not importable ({exc}); install mediapipe==0.10.21") from exc
        try:
            # model 0: the general model (256 × 256 input), better on head-and-shoulders crops than the landscape one
            _segmenter = selfie_segmentation.SelfieSegmentation(model_selection=0)
        except (RuntimeError, FileNotFoundError) as exc:
            raise RelightError(f"mediapipe's selfie-segmentation model did not load ({exc}); reinstall "
                               "mediapipe==0.10.21 (its wheel bundles the model)") from exc
    return _segmenter


def person_matte(crop_srgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much each pixel of an 8-bit sRGB RGB crop is the person (head, hair, body)."""
    img = np.ascontiguousarray(np.asarray(crop_srgb, dtype=np.uint8)[..., :3])
    if img.ndim != 3 or img.shape[0] < 8 or img.shape[1] < 8:
        raise RelightError(f"person matte: expected an RGB image, got shape {img.shape}")
    with _lock:
        result = _get_segmenter().process(img)
    mask = result.segmentation_mask
    if mask is None:
        return np.zeros(img.shape[:2], np.float32)
    return np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
