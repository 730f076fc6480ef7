"""Estimate the lighting already present in a frame: RGB second-order SH from face pixels against face normals.

Image model (the project's one Lambertian convention, also what Blender renders): a diffuse surface of albedo ρ under
irradiance E has radiance ρ·E/π, and a linear pixel value of 1.0 is that radiance for ρ = 1, E = π (a white surface
in a uniform world of radiance 1). Irradiance is ``sh.irradiance_basis(n) @ sh``, so an estimated SH is directly
comparable with the SH of Blender lights (``blender_lights``) in Blender's units.

Albedo/light scale ambiguity: pixels only give ρ·E. We fix the mean face albedo to a constant skin albedo per channel,
:data:`REFERENCE_SKIN_ALBEDO`, and this is the only place that choice is made. Consequence: a face darker or more
saturated than the reference reads as dimmer or more coloured light; relighting by the ratio E_target/E_source then
keeps the face's own tone when the target equals the estimate. Local albedo changes (eyebrows, beard, lips, makeup)
and effects outside the model (specular highlights, cast shadows, hair) are handled as outliers.

Colour: the plate is assumed white-balanced. The per-channel fit above cannot tell a face's own colour from the
light's: with the reference albedo, any skin redder or darker-toned than the reference reads as a coloured light, and
the ratio E_target/E_source then repaints every face in the reference skin colour under a white target (measured on
the development photos: a face chroma of (1.81, 0.80, 0.39) relit to (1.32, 0.91, 0.76), the reference's
(1.30, 0.93, 0.77); docs/lighting.md). ``estimate_frame_sh`` therefore returns, by default, the fitted light made
neutral (:func:`white_balance`: one gain per channel that makes its mean irradiance over the front hemisphere grey),
so the face keeps its own colour and a target light's colour is applied on top of it. The price: a plate filmed under
a strongly coloured light keeps that cast as if it were the skin's. ``white_balanced=False`` gives the plain
per-channel fit (the lighting tests, the tracker's prior and the evaluation's estimator use it).

Robustness: pixels near saturation or near black are excluded; the fit is iteratively reweighted least squares on the
per-pixel relative residual shared by the three channels (Huber first, then Tukey's biweight, so speculars and hair
lose all weight), with a mild ridge prior that pulls band 2 (and less, band 1) toward zero.

Ill-posedness, and what is done about it: the visible normals cover only the front hemisphere, so the constant and
the front-back (y) terms are nearly collinear (condition number ≈ 50 on a frontal face). Three measures, measured in
docs/lighting.md: (1) the ridge toward zero is kept tiny, because a stronger one biases real front lights by 10-30 %;
(2) irradiance may not be negative at any normal of the sphere (a soft constraint at 64 directions): without it, real
faces' albedo (lips, brows, makeup) drives the unseen back of the light to large negative values; (3) an optional
``prior`` (the previous frame's estimate in a video) pulls the undecided directions toward it, which cuts the
frame-to-frame change 2-5x. Albedo gradients that follow the normals stay indistinguishable from light (a 5 %
left-right albedo gradient costs ≈ 10 % of the SH norm while the shading it predicts is off by only 2 %).

DPR's gray convention: DPR relights the L channel of an sRGB image, image = albedo × shading with shading =
``irradiance_basis(n) @ sh_gray`` (no 1/π). We map by luminance and that factor only:
``sh_gray = to_gray(sh_rgb) / π`` and back ``sh_rgb = π · as_rgb(sh_gray)`` (gray light). DPR's L is perceptual, not
linear, so its coefficients agree with ours in direction and balance but not exactly in scale; that difference is not
modelled here (see docs/lighting.md).
"""
from __future__ import annotations

import numpy as np

from blender_relight import face_geometry
from blender_relight.errors import RelightError
from blender_relight.lighting import sh as shlib

#: Name of the colour convention of ``estimate_frame_sh``'s default output; caches of source SH record it.
SOURCE_LIGHT_CONVENTION = "white-balanced (per-channel gain)"

#: Mean linear-RGB albedo assumed for the visible face (typical skin; see the module docstring for why it exists).
REFERENCE_SKIN_ALBEDO = np.array([0.56, 0.40, 0.33])

#: Pixels whose largest channel exceeds this (linear) are treated as clipped highlights.
SATURATION = 0.92
#: Pixels whose luminance is below this fraction of the face's median are treated as hair, shadow or noise.
DARK_FRACTION = 0.08
#: Ridge weights per SH band (relative to the data term's scale): band 0 free, band 1 mild, band 2 stronger.
RIDGE_BANDS = (0.0, 1e-6, 4e-6)
#: Weight of the optional prior SH (a neighbouring frame's estimate), same units as :data:`RIDGE_BANDS`. Measured on
#: real clips: it cuts the frame-to-frame spread of the coefficients 2-5x, see docs/lighting.md.
PRIOR_WEIGHT = 1e-2
#: At most this many pixels enter the fit (uniform subsampling; more adds time, not accuracy).
MAX_SAMPLES = 20000
#: ``estimate_frame_sh`` fits on the crop reduced to this side (area averaging); 0 keeps the crop's size.
FIT_SIZE = 256

#: Fewer usable pixels than this and there is nothing to estimate from.
MIN_PIXELS = 200

_BAND_OF = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])


class TooFewPixelsError(RelightError):
    """The face shows too few usable pixels (tiny, hidden, saturated or black) to estimate its lighting."""
_LUMA = np.array([0.2126, 0.7152, 0.0722])


def _fibonacci_sphere(count: int) -> np.ndarray:
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


#: Irradiance is checked for negativity at these normals over the whole sphere (see :data:`NONNEGATIVE_WEIGHT`).
_CHECK_BASIS = shlib.irradiance_basis(_fibonacci_sphere(64))
#: Directions a camera sees of a face (the front hemisphere, y < 0 in the SH frame), for :func:`white_balance`.
_SPHERE_128 = _fibonacci_sphere(128)
_FRONT_BASIS = shlib.irradiance_basis(_SPHERE_128[_SPHERE_128[:, 1] < 0])
#: Weight pulling negative irradiance (impossible light, typically behind the head where no pixel looks) up to 0.
NONNEGATIVE_WEIGHT = 0.1


def _robust_scale(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r - np.median(r)))) + 1e-6


def estimate_sh(image_linear: np.ndarray, normals_sh: np.ndarray, mask: np.ndarray,
                albedo: np.ndarray = REFERENCE_SKIN_ALBEDO, iterations: int = 8, prior: np.ndarray | None = None,
                prior_weight: float | None = None) -> np.ndarray:
    """RGB radiance SH ``(9, 3)`` of the light on a face, from linear pixels, unit normals in the SH frame and a
    mask of usable face pixels (bool or weights in [0, 1]).

    ``prior``: an RGB SH the answer is pulled toward (with ``prior_weight``) in the directions the pixels cannot
    decide (``prior_weight``, default :data:`PRIOR_WEIGHT`), typically the previous frame's estimate in a video: real faces' albedo (lips, brows, makeup) otherwise
    drives the front/back balance of the light from frame to frame while the shading it predicts barely changes.

    Raises :class:`TooFewPixelsError` when fewer than :data:`MIN_PIXELS` pixels are usable (the caller marks the
    frame and keeps a neighbour's estimate).
    """
    img = np.asarray(image_linear, dtype=np.float64)
    nrm = np.asarray(normals_sh, dtype=np.float64)
    m = np.asarray(mask)
    if img.shape[:2] != nrm.shape[:2] or img.shape[:2] != m.shape[:2]:
        raise ValueError(f"image {img.shape}, normals {nrm.shape} and mask {m.shape} must share height and width")
    weight0 = m.astype(np.float64).reshape(-1)
    pix = img.reshape(-1, 3)
    n = nrm.reshape(-1, 3)
    norm = np.linalg.norm(n, axis=1)
    usable = (weight0 > 0.5) & (norm > 0.5) & np.all(np.isfinite(pix), axis=1) & (pix.max(axis=1) < SATURATION)
    idx = np.flatnonzero(usable)
    if idx.size >= MIN_PIXELS:
        luma = pix[idx] @ _LUMA
        idx = idx[luma > DARK_FRACTION * np.median(luma)]
    if idx.size < MIN_PIXELS:
        raise TooFewPixelsError(f"only {idx.size} usable face pixels (need {MIN_PIXELS}) to estimate the lighting: "
                                "the face is too small, hidden, over-exposed or black in this frame")
    if idx.size > MAX_SAMPLES:
        idx = idx[np.linspace(0, idx.size - 1, MAX_SAMPLES).astype(np.int64)]

    # Model: pixel_c = (albedo_c / π) · B(n) · sh_c, so fitting y_c = π · pixel_c / albedo_c against B gives sh_c.
    B = shlib.irradiance_basis(n[idx] / norm[idx, None])
    y = pix[idx] * (np.pi / np.asarray(albedo, dtype=np.float64).reshape(1, 3))
    prior_w = weight0[idx]
    scale = float(np.mean(B[:, 0] ** 2))  # makes the ridge weights independent of the pixel count and basis scale
    ridge = np.diag([RIDGE_BANDS[b] for b in _BAND_OF]) * scale

    pull = np.zeros((9, 3))
    if prior is not None:
        pw = PRIOR_WEIGHT if prior_weight is None else float(prior_weight)
        ridge = ridge + np.eye(9) * pw * scale
        pull = shlib.as_rgb(prior) * pw * scale

    w = prior_w.copy()
    coeffs = np.zeros((9, 3))
    for it in range(iterations):
        Bw = B * w[:, None]
        A = Bw.T @ B / max(w.sum(), 1e-12) + ridge
        rhs = Bw.T @ y / max(w.sum(), 1e-12) + pull
        coeffs = np.linalg.solve(A, rhs)
        for ch in range(3):  # irradiance must not be negative anywhere: pull the offending normals to 0
            A_c = A
            for _ in range(4):
                neg = (_CHECK_BASIS @ coeffs[:, ch]) < 0.0
                if not neg.any():
                    break
                Bn = _CHECK_BASIS[neg]
                A_c = A_c + NONNEGATIVE_WEIGHT * scale * (Bn.T @ Bn) / len(_CHECK_BASIS)
                coeffs[:, ch] = np.linalg.solve(A_c, rhs[:, ch])
        pred = B @ coeffs
        # Relative residual (albedo changes are multiplicative), combined over channels by luminance weight.
        level = np.maximum(pred @ _LUMA, 1e-3 * max(float(np.median(y @ _LUMA)), 1e-9))
        r = ((y - pred) @ _LUMA) / level
        s = _robust_scale(r)
        u = r / s
        if it < 2:  # Huber: a safe start from least squares
            c = 1.345
            rw = np.where(np.abs(u) <= c, 1.0, c / np.maximum(np.abs(u), 1e-12))
        else:  # Tukey's biweight: gross outliers (speculars, hair) get zero weight
            c = 4.685
            rw = np.where(np.abs(u) < c, (1.0 - (u / c) ** 2) ** 2, 0.0)
        w = prior_w * rw
    return coeffs


def white_balance(sh_rgb: np.ndarray) -> np.ndarray:
    """The light with its overall colour made neutral: one gain per channel so that the mean irradiance over the
    directions a camera sees of a face (the front hemisphere) is grey with the same luminance; everything else kept.

    Why only a per-channel gain: that is exactly what the fit cannot tell from the skin's colour (a face's albedo
    colour is a per-channel factor over the whole face), while the light's directional colour (a warm key against a
    cool fill) is measured, and dividing it out per channel is what removes it from the plate. Why the mean over the
    front hemisphere and not the ambient term: the fit pins down the irradiance on the normals it sees, while its
    ambient term alone is nearly collinear with the front-back term (module docstring). A neutral light is returned
    unchanged.
    """
    sh = np.asarray(sh_rgb, dtype=np.float64)
    mean = np.maximum(_FRONT_BASIS @ sh, 0.0).mean(axis=0)       # (3,) mean irradiance per channel
    if np.any(mean <= 1e-9):  # no light on some channel: the luminance light on every channel
        return shlib.as_rgb(shlib.to_gray(sh))
    return sh * (float(mean @ shlib.LUMINANCE) / mean)[None, :]


def estimate_frame_sh(crop_linear: np.ndarray, points_crop: np.ndarray, cam2world: np.ndarray | None = None,
                      albedo: np.ndarray = REFERENCE_SKIN_ALBEDO, prior: np.ndarray | None = None,
                      white_balanced: bool = True) -> np.ndarray:
    """RGB SH ``(9, 3)`` (SH frame) of the light on the tracked face in an EG3D crop; neutral unless
    ``white_balanced`` is False (the module docstring says why).

    ``points_crop``: face landmarks in crop pixels (x right, y down, z away); ``cam2world``: the frame's EG3D
    cam2world (4x4 or 3x3; its rotation takes camera-space normals to EG3D world, then to the SH frame).
    Eyes and the inner mouth are left out (the open tesselation), and a 3-pixel erosion drops silhouette pixels
    whose colour mixes with the background. ``prior``: see :func:`estimate_sh` (pass the previous frame's estimate
    when tracking a video). A tracker ``FrameTrack`` (anything with ``points_crop()`` and ``camera_c2w()``) may be
    passed as ``points_crop`` with ``cam2world`` left out.
    """
    import cv2

    if cam2world is None:
        if not (hasattr(points_crop, "points_crop") and hasattr(points_crop, "camera_c2w")):
            raise TypeError("estimate_frame_sh needs cam2world, or a FrameTrack in place of points_crop")
        points_crop, cam2world = points_crop.points_crop(), points_crop.camera_c2w()

    crop = np.asarray(crop_linear, dtype=np.float32)
    h, w = crop.shape[:2]
    if FIT_SIZE and max(h, w) > FIT_SIZE:  # nine numbers need no 512² maps: fit at FIT_SIZE, 4x less work
        f = FIT_SIZE / max(h, w)
        size = (max(1, round(h * f)), max(1, round(w * f)))
        crop = cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        pts = np.asarray(points_crop, dtype=np.float64).copy()
        pts[:, :2] = (pts[:, :2] + 0.5) * np.array([size[1] / w, size[0] / h]) - 0.5  # pixel centres stay centres
        pts[:, 2] *= size[1] / w
        points_crop = pts
    maps = face_geometry.render_face_maps(points_crop, crop.shape[:2])
    erode = max(3, 2 * round(3 * crop.shape[1] / 512) + 1)  # ≈ 3 crop pixels at 512²
    mask = cv2.erode(maps.mask.astype(np.uint8), np.ones((erode, erode), np.uint8)) > 0
    rot = np.asarray(cam2world, dtype=np.float64)[:3, :3]
    n_world = maps.normals.reshape(-1, 3).astype(np.float64) @ rot.T
    n_sh = shlib.rotate_eg3d_to_sh(n_world).reshape(maps.normals.shape)
    fitted = estimate_sh(crop, n_sh, mask, albedo, prior=prior)
    return white_balance(fitted) if white_balanced else fitted


def rgb_sh_to_dpr_gray(sh_rgb: np.ndarray) -> np.ndarray:
    """Project RGB SH (9, 3) to DPR's gray SH (9,): luminance, divided by π (DPR's shading multiplies albedo
    directly, ours is irradiance and radiance is albedo × irradiance / π)."""
    return shlib.to_gray(sh_rgb) / np.pi


def dpr_gray_to_rgb_sh(sh_gray: np.ndarray) -> np.ndarray:
    """DPR's gray SH (9,) to a white RGB SH (9, 3) in this project's irradiance units (inverse of
    :func:`rgb_sh_to_dpr_gray` for gray lights)."""
    g = np.asarray(sh_gray, dtype=np.float64)
    if g.shape != (9,):
        raise ValueError(f"DPR gray SH must have shape (9,), got {g.shape}")
    return shlib.as_rgb(g) * np.pi
