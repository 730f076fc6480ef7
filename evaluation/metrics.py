"""The paper's metrics, computed from the output alone (real relit video has no ground truth).

Why each one, and the choices made (see ../shared/design/PAPER.md, "Its metrics"):
- lighting error: L2 over the 9 gray SH coefficients (DPR convention) between an estimate of the relit frame's
  lighting and the target; reported with two independent estimators (DPR's network and the project's geometric
  one) so that no system is judged only by an estimator it was built around. RGB: L2 over the 27 coefficients.
- lighting instability: with a constant target, the RMS distance of each frame's estimate to the mean estimate
  (the norm of the per-coefficient standard deviation over frames), in the same units as the lighting error.
- identity: cosine similarity of dlib's 128-d ResNet face descriptors (face-recognition-models), input vs relit.
- warping error: relit frame t−1 warped to t by OpenCV DIS flow computed on the *input* frames, mean absolute
  difference over face pixels that pass a forward-backward occlusion check (Sundaram et al. 2010).
- pose error: rotation angle and camera-centre distance between estimated and reference EG3D 25-d cameras.
"""
from __future__ import annotations

import cv2
import numpy as np

from blender_relight import camera
from blender_relight.errors import RelightError


# ---------------------------------------------------------------- lighting
def lighting_error(estimated: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame L2 distance between SH estimates and targets: ``(N, 9)`` or ``(N, 9, 3)`` → ``(N,)``."""
    est, tgt = np.asarray(estimated, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if est.shape != tgt.shape:
        raise ValueError(f"estimate {est.shape} and target {tgt.shape} differ")
    return np.linalg.norm(est.reshape(len(est), -1) - tgt.reshape(len(tgt), -1), axis=1)


#: The first-order SH coefficients (DPR order 1, y, z, x, ...) whose response to the target the report gives.
DIRECTION_COEFFICIENTS = {"x": 3, "y": 1, "z": 2}


def coefficient_slope(estimated: np.ndarray, target: np.ndarray, index: int) -> float:
    """Least-squares slope of the estimated SH coefficient ``index`` on the target's over frames (``(N, 9)`` each):
    1 when the relit frames' light follows the target's direction fully, 0 when it does not move; NaN when the
    target does not vary."""
    est, tgt = np.asarray(estimated, dtype=np.float64)[:, index], np.asarray(target, dtype=np.float64)[:, index]
    ok = np.isfinite(est) & np.isfinite(tgt)
    if ok.sum() < 2 or np.std(tgt[ok]) < 1e-9:
        return float("nan")
    t = tgt[ok] - tgt[ok].mean()
    return float(t @ (est[ok] - est[ok].mean()) / (t @ t))


def lighting_instability(estimated: np.ndarray) -> float:
    """Spread over frames of SH estimates ``(N, 9)`` / ``(N, 9, 3)`` under a constant target:
    ``sqrt(Σ_k var_k)``, the RMS distance of a frame's estimate to the mean estimate (0 for a constant sequence)."""
    est = np.asarray(estimated, dtype=np.float64)
    if len(est) < 2:
        return float("nan")
    return float(np.sqrt(est.reshape(len(est), -1).var(axis=0).sum()))


# ---------------------------------------------------------------- warping
_DIS: cv2.DISOpticalFlow | None = None


def _flow(a_gray: np.ndarray, b_gray: np.ndarray) -> np.ndarray:
    """DIS optical flow (medium preset) from ``a`` to ``b``: ``a(x) ≈ b(x + flow(x))``."""
    global _DIS
    if _DIS is None:
        _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _DIS.calc(a_gray, b_gray, None)


def _gray8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flow_and_visibility(input_prev: np.ndarray, input_cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow (t → t−1) on the input frames and the mask of pixels of t that are visible in t−1.

    Visibility: the forward flow at the back-projected point must undo the backward flow,
    ``|b + f(x+b)|² < 0.01 (|b|² + |f(x+b)|²) + 0.5``, and the point must land inside the image.
    """
    prev, cur = _gray8(input_prev), _gray8(input_cur)
    back = _flow(cur, prev)
    fwd = _flow(prev, cur)
    fwd_at = _warp(fwd, back)
    h, w = back.shape[:2]
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    px, py = gx + back[..., 0], gy + back[..., 1]
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    err = np.sum((back + fwd_at) ** 2, axis=-1)
    ok = err < 0.01 * (np.sum(back ** 2, axis=-1) + np.sum(fwd_at ** 2, axis=-1)) + 0.5
    return back, ok & inside


def warping_error(relit_prev: np.ndarray, relit_cur: np.ndarray, input_prev: np.ndarray, input_cur: np.ndarray,
                  mask: np.ndarray | None = None) -> float:
    """Mean |relit_t − warp(relit_{t−1})| over visible pixels of ``mask`` (face pixels of frame t).

    Images are float ``(H, W, 3)`` on the same scale (the run uses display sRGB in [0, 1]); NaN if no pixel counts.
    """
    back, visible = flow_and_visibility(input_prev, input_cur)
    warped = _warp(np.asarray(relit_prev, dtype=np.float32), back)
    keep = visible if mask is None else visible & (np.asarray(mask) > 0.5)
    if not keep.any():
        return float("nan")
    diff = np.abs(np.asarray(relit_cur, dtype=np.float32) - warped)
    return float(diff[keep].mean())


# ---------------------------------------------------------------- pose
def pose_error(estimated_label: np.ndarray, reference_label: np.ndarray) -> tuple[float, float]:
    """(rotation error in degrees, camera-centre distance in EG3D world units) between two 25-d camera labels."""
    a = np.asarray(estimated_label, dtype=np.float64)[:16].reshape(4, 4)
    b = np.asarray(reference_label, dtype=np.float64)[:16].reshape(4, 4)
    return camera.rotation_angle_deg(a[:3, :3], b[:3, :3]), float(np.linalg.norm(a[:3, 3] - b[:3, 3]))


# ---------------------------------------------------------------- identity
class IdentityEmbedder:
    """dlib's ResNet face descriptor (128-d) via the model files of ``face-recognition-models``.

    Why dlib: it runs offline from pip-installable files. Landmarks (5-point model) come from the *input* crop and
    are reused for the relit crop, so a relighting that fools the detector cannot change where the face is read.
    """

    def __init__(self) -> None:
        missing = []
        try:
            import dlib  # noqa: F401
        except ImportError:
            missing.append("dlib (pip install dlib-bin)")
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # it imports the deprecated pkg_resources
                import face_recognition_models  # noqa: F401
        except ImportError:
            missing.append("face-recognition-models (pip install face-recognition-models)")
        if missing:
            raise RelightError("identity metric needs " + " and ".join(missing) + "; install them or skip identity")
        import dlib
        import face_recognition_models as frm

        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self._dlib = dlib

    def landmarks(self, rgb8: np.ndarray):
        """5-point face shape in an 8-bit RGB crop (largest detection; whole central region if none is found)."""
        rects = self._detector(rgb8, 0)
        if len(rects):
            rect = max(rects, key=lambda r: r.width() * r.height())
        else:  # EG3D crops put the face in the middle ~half of the image
            h, w = rgb8.shape[:2]
            rect = self._dlib.rectangle(int(w * 0.25), int(h * 0.28), int(w * 0.75), int(h * 0.78))
        return self._shape(rgb8, rect)

    def embed(self, rgb8: np.ndarray, shape=None) -> np.ndarray:
        rgb8 = np.ascontiguousarray(rgb8)
        shape = self.landmarks(rgb8) if shape is None else shape
        return np.asarray(self._net.compute_face_descriptor(rgb8, shape), dtype=np.float64)

    def similarity(self, input_rgb8: np.ndarray, relit_rgb8: np.ndarray) -> float:
        """Cosine similarity of the descriptors of input and relit crops (1 = same embedding)."""
        shape = self.landmarks(np.ascontiguousarray(input_rgb8))
        return cosine(self.embed(input_rgb8, shape), self.embed(relit_rgb8, shape))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two descriptors."""
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def identity_embedder_or_reason() -> tuple[IdentityEmbedder | None, str]:
    """The embedder, or None and the reason it is unavailable (the report says why the column is empty)."""
    try:
        return IdentityEmbedder(), ""
    except RelightError as exc:
        return None, str(exc)

