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
neutral (:func:`white_balance`: its luminance on every channel, in every direction, since the light's directional
colour cannot be told from the face's colour layout either), so the face keeps its own colour and a target light's
colour is applied on top of it. The price: a plate filmed under a strongly coloured light keeps that cast as if it
were the skin's. ``white_balanced=False`` gives the plain
per-channel fit (the lighting tests, the tracker's prior and the evaluation's estimator use it).

Robustness: pixels near saturation or near black are excluded; the fit is iteratively reweighted on the per-pixel
relative residual shared by the three channels (Huber first, then Tukey's biweight, so speculars, hair, brows, beard
and glasses lose all weight).

A well-posed light (the fit a physicist would accept; measured in docs/lighting.md):
(1) *non-negative radiance*: per channel the light is a non-negative combination of 160 distant point lights
    (:data:`LOBE_DIRECTIONS`) and a uniform ambient, solved by NNLS; the SH returned is that light's second-order
    projection, so it is the SH of a real, non-negative radiance. (A band-limited SH cannot itself be non-negative
    and sharp: its irradiance rings to −3.7 % of a point light's peak opposite it; relighting clamps at 0.)
(2) *a shape prior where the pixels cannot decide*: the visible normals cover only the front hemisphere, so the
    constant and front-back (y) terms and parts of band 2 are nearly collinear. On the eigen-directions of the data's
    normal matrix weaker than :data:`UNDECIDED_FRACTION` of its strongest, the SH is pulled toward
    :data:`PRIOR_SHAPE` (real portrait lighting: DPR's example lights and a frontal key with ambient) scaled to the
    estimate's own DC term; the shading on the visible normals is unchanged by it (< 0.5 % on a rendered sphere).
    Without (1) and (2) the unconstrained fit put frontal Yale lights behind the head (≈ 150° off).
(3) an optional ``prior`` (the previous frame's estimate in a video, ``tracking.tracker``) pulls every direction
    toward it with :data:`PRIOR_WEIGHT`: steadier over frames.

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
SOURCE_LIGHT_CONVENTION = "neutral (luminance on every channel); non-negative lobes + shape prior (v3)"

#: Mean linear-RGB albedo assumed for the visible face (typical skin; see the module docstring for why it exists).
REFERENCE_SKIN_ALBEDO = np.array([0.56, 0.40, 0.33])

#: Pixels whose largest channel exceeds this (linear) are treated as clipped highlights.
SATURATION = 0.92
#: Pixels whose luminance is below this fraction of the face's median are treated as hair, shadow or noise.
DARK_FRACTION = 0.08
#: Weight of the optional prior SH (a neighbouring frame's estimate), same units as :data:`SHAPE_BAND_WEIGHTS`. Measured on
#: real clips: it cuts the frame-to-frame spread of the coefficients 2-5x, see docs/lighting.md.
PRIOR_WEIGHT = 0.03
#: At most this many pixels enter the fit (uniform subsampling; more adds time, not accuracy).
MAX_SAMPLES = 20000
#: ``estimate_frame_sh`` fits on the crop reduced to this side (area averaging); 0 keeps the crop's size.
FIT_SIZE = 256
#: Leave the eyebrows out of the fit (``face_geometry.brow_mask``): measured on the 6 Yale dev subjects (every 2nd
#: photo), the dominant direction's median error falls 15.7° → 13.9° (frontal), 22.9° → 21.4° (mid), 16.1° → 14.9°
#: (side); leaving the moustache-and-chin zone out as well did not help (docs/lighting.md).
EXCLUDE_BROWS = True

#: Fewer usable pixels than this and there is nothing to estimate from.
MIN_PIXELS = 200

_BAND_OF = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])


class TooFewPixelsError(RelightError):
    """The face shows too few usable pixels (tiny, hidden, saturated or black) to estimate its lighting."""
_LUMA = np.array([0.2126, 0.7152, 0.0722])

#: Directions of the distant point lights the estimate is made of (Fibonacci sphere; 12-16° apart, finer than a
#: second-order SH can tell apart).
LOBE_DIRECTIONS = shlib.fibonacci_sphere(160)
#: Radiance SH ``(9, K + 1)`` of each lobe at unit strength: a point light per direction (``sh.directional_light_sh``)
#: and, last, a uniform ambient of the same irradiance (``sh.ambient_sh``).
LOBE_SH = np.concatenate([shlib.sh_basis(LOBE_DIRECTIONS).T, shlib.ambient_sh(np.full(3, 1.0 / np.pi))[:, :1]],
                         axis=1)

#: Shape prior: the second-order terms of real portrait lighting relative to its constant term, the mean of DPR's seven
#: example lights (DPR's repository, ``data/example_light``; rotations of one real light about the view axis, gray
#: DC 1.084, y −0.464, 3z²−1 +0.068, x²−y² +0.117, the other terms 0 in the mean) and a frontal key with ambient
#: (:func:`_frontal_ambient_light`), half each. Only ratios to the DC term are used, so the units do not matter.
def _frontal_ambient_light() -> np.ndarray:
    """A frontal key slightly from above with a quarter as much ambient: the plainest portrait light."""
    return shlib.to_gray(shlib.directional_light_sh([0.0, -1.0, 0.35], np.ones(3)) + shlib.ambient_sh(np.full(3, 0.25)))


_DPR_MEAN_LIGHT = np.array([1.084, -0.464, 0.0, 0.0, 0.0, 0.0, 0.068, 0.0, 0.117])
PRIOR_SHAPE = 0.5 * (_DPR_MEAN_LIGHT / _DPR_MEAN_LIGHT[0]) + 0.5 * (_frontal_ambient_light() / _frontal_ambient_light()[0])
#: Overall weight of the shape prior on the undecided directions (``shape_weight`` of :func:`estimate_sh`).
SHAPE_WEIGHT = 0.05
#: Eigen-directions of the data's normal matrix weaker than this fraction of its strongest are "undecided".
UNDECIDED_FRACTION = 0.005
#: ``_SHAPE_DEVIATION @ sh``: the SH minus the prior shape scaled to its DC term (zero for a light of the prior's
#: shape; linear in the SH, so the prior is a quadratic penalty).
_SHAPE_DEVIATION = np.eye(9) - np.outer(PRIOR_SHAPE / PRIOR_SHAPE[0], np.eye(9)[0])


def _robust_scale(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r - np.median(r)))) + 1e-6


def dominant_direction(sh: np.ndarray) -> np.ndarray:
    """Unit SH-frame direction of a light's first-order (luminance) term: where its light mostly comes from."""
    g = shlib.to_gray(sh) if np.ndim(sh) == 2 or np.size(sh) == 27 else np.asarray(sh, dtype=np.float64)
    v = np.array([g[3], g[1], g[2]])
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else np.array([0.0, -1.0, 0.0])


def _fit_lobes(G: np.ndarray, h: np.ndarray, scale: float, prior: np.ndarray | None, prior_weight: float,
               shape_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The non-negative light that best explains the data: ``min (Sw − c)ᵀG(Sw − c)`` over lobe weights ``w ≥ 0``
    (``G``, ``h``: the weighted normal equations, so ``c = G⁻¹h`` is the plain least-squares SH), plus the shape
    prior on bands 1-2 and the optional temporal ``prior``. Returns the SH ``(9,)`` and the weights."""
    from scipy.optimize import nnls

    R = np.linalg.cholesky(G + 1e-9 * scale * np.eye(9)).T  # G = RᵀR
    b = np.linalg.solve(R.T, h)
    rows, rhs = [R @ LOBE_SH], [b]
    # The shape prior acts only where the pixels cannot decide: on the eigen-directions of G weaker than
    # UNDECIDED_FRACTION of its largest (a front hemisphere of normals leaves DC/y and parts of band 2 collinear).
    g, V = np.linalg.eigh(G)
    undecided = V[:, g < UNDECIDED_FRACTION * g.max()]
    if shape_weight > 0 and undecided.shape[1]:
        rows.append(np.sqrt(shape_weight * scale) * (undecided.T @ _SHAPE_DEVIATION @ LOBE_SH))
        rhs.append(np.zeros(undecided.shape[1]))
    if prior is not None:
        rows.append(np.sqrt(prior_weight * scale) * LOBE_SH)
        rhs.append(np.sqrt(prior_weight * scale) * prior)
    rows.append(np.sqrt(1e-6 * scale) * np.eye(LOBE_SH.shape[1]))  # makes the answer unique; changes nothing else
    rhs.append(np.zeros(LOBE_SH.shape[1]))
    weights, _ = nnls(np.vstack(rows), np.concatenate(rhs), maxiter=50 * LOBE_SH.shape[1])
    return LOBE_SH @ weights, weights


def estimate_sh(image_linear: np.ndarray, normals_sh: np.ndarray, mask: np.ndarray,
                albedo: np.ndarray = REFERENCE_SKIN_ALBEDO, iterations: int = 8, prior: np.ndarray | None = None,
                prior_weight: float | None = None, return_weights: bool = False, shape_weight: float | None = None):
    """RGB radiance SH ``(9, 3)`` of the light on a face, from linear pixels, unit normals in the SH frame and a
    mask of usable face pixels (bool or weights in [0, 1]).

    The answer is the projection of a non-negative radiance: per channel, non-negative weights on
    :data:`LOBE_DIRECTIONS` (distant point lights) plus a uniform ambient (module docstring). ``return_weights``:
    also return those weights ``(K + 1, 3)`` (the last row is the ambient).

    ``prior``: an RGB SH the answer is pulled toward (with ``prior_weight``, default :data:`PRIOR_WEIGHT`), typically
    the previous frame's estimate in a video: what the pixels leave undecided then stays as it was.

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
    scale = float(np.mean(B[:, 0] ** 2))  # makes the prior weights independent of the pixel count and basis scale
    pw = PRIOR_WEIGHT if prior_weight is None else float(prior_weight)
    sw = SHAPE_WEIGHT if shape_weight is None else float(shape_weight)
    prior_rgb = None if prior is None else shlib.as_rgb(prior)

    w = prior_w.copy()
    coeffs = np.zeros((9, 3))
    lobes = np.zeros((LOBE_SH.shape[1], 3))
    for it in range(iterations):
        Bw = B * w[:, None]
        total = max(w.sum(), 1e-12)
        G = Bw.T @ B / total
        H = Bw.T @ y / total
        for ch in range(3):
            coeffs[:, ch], lobes[:, ch] = _fit_lobes(G, H[:, ch], scale,
                                                     None if prior_rgb is None else prior_rgb[:, ch], pw, sw)
        pred = B @ coeffs
        # Relative residual (albedo changes are multiplicative), combined over channels by luminance weight.
        level = np.maximum(pred @ _LUMA, 1e-3 * max(float(np.median(y @ _LUMA)), 1e-9))
        r = ((y - pred) @ _LUMA) / level
        s = _robust_scale(r)
        u = r / s
        if it < 2:  # Huber: a safe start from least squares
            c = 1.345
            rw = np.where(np.abs(u) <= c, 1.0, c / np.maximum(np.abs(u), 1e-12))
        else:  # Tukey's biweight: gross outliers (speculars, hair, brows, glasses) get zero weight
            c = 4.685
            rw = np.where(np.abs(u) < c, (1.0 - (u / c) ** 2) ** 2, 0.0)
        w = prior_w * rw
    return (coeffs, lobes) if return_weights else coeffs


def white_balance(sh_rgb: np.ndarray) -> np.ndarray:
    """The light made neutral: its luminance on all three channels (``sh.as_rgb(sh.to_gray(sh_rgb))``), in every
    direction. A neutral light is returned unchanged.

    Why: one face cannot tell the light's colour from the skin's. For the overall colour that is plain (a redder face
    reads as a redder light); it holds for the light's *directional* colour too, because a face's own colour varies
    with the direction its surface faces (red cheeks and nose tip, a yellower forehead, a darker beard or jaw in the
    hair's shade), and the per-channel fit reads that layout as light of a different colour from each side. Dividing
    that out painted blotches: under a white light, face cells changed chroma by up to 0.63 per channel (lp_s18: a
    green jaw; lp_d13: a grey lower face) against at most 0.10 with the neutral source (``python -m
    evaluation.pixels``, docs/evaluation.md). The price: a plate filmed under a strongly coloured light, or a warm key
    against a cool fill, keeps those colours as if they were the skin's (the target's colour is applied on top).
    (An earlier version kept the directional colour and neutralised only the mean over the front hemisphere.)
    """
    sh = np.asarray(sh_rgb, dtype=np.float64)
    return shlib.as_rgb(shlib.to_gray(sh))


def estimate_frame_sh(crop_linear: np.ndarray, points_crop: np.ndarray, cam2world: np.ndarray | None = None,
                      albedo: np.ndarray = REFERENCE_SKIN_ALBEDO, prior: np.ndarray | None = None,
                      white_balanced: bool = True) -> np.ndarray:
    """RGB SH ``(9, 3)`` (SH frame) of the light on the tracked face in an EG3D crop; neutral unless
    ``white_balanced`` is False (the module docstring says why).

    ``points_crop``: face landmarks in crop pixels (x right, y down, z away); ``cam2world``: the frame's EG3D
    cam2world (4x4 or 3x3; its rotation takes camera-space normals to EG3D world, then to the SH frame).
    Eyes and the inner mouth are left out (the open tesselation), the brows too (:data:`EXCLUDE_BROWS`), and a 3-pixel erosion drops silhouette pixels
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
    if EXCLUDE_BROWS:
        mask &= ~face_geometry.brow_mask(points_crop, crop.shape[:2], grow_px=max(1, round(2 * crop.shape[1] / 256)))
    rot = np.asarray(cam2world, dtype=np.float64)[:3, :3]
    n_world = maps.normals.reshape(-1, 3).astype(np.float64) @ rot.T
    n_sh = shlib.rotate_eg3d_to_sh(n_world).reshape(maps.normals.shape)
    fitted = estimate_sh(crop, n_sh, mask, albedo, prior=prior)
    return white_balance(fitted) if white_balanced else fitted


def rgb_sh_to_dpr_gray(sh_rgb: np.ndarray) -> np.ndarray:
    """RGB SH (9, 3) to DPR's gray SH (9,): ``sh.rgb_to_dpr_sh`` (the one conversion; its docstring says why)."""
    return shlib.rgb_to_dpr_sh(sh_rgb)


def dpr_gray_to_rgb_sh(sh_gray: np.ndarray) -> np.ndarray:
    """DPR's gray SH (9,) to a white RGB SH (9, 3) in this project's units: ``sh.dpr_to_rgb_sh``."""
    return shlib.dpr_to_rgb_sh(sh_gray)
