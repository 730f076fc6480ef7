"""Analytic relighting by irradiance ratio, and shading images."""
from __future__ import annotations

import numpy as np
import pytest

from blender_relight.lighting import analytic
from blender_relight.lighting import sh


def _scene(h: int = 40, w: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = rng.normal(size=(h, w, 3))
    n[..., 1] = -np.abs(n[..., 1]) - 0.5  # facing the viewer
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    img = (rng.random((h, w, 3)) * 0.8).astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    mask[5:35, 5:45] = 1.0
    mask[5:35, 40:45] = 0.5  # a feathered edge
    return img, n, mask


SOURCE = sh.ambient_sh([0.5, 0.5, 0.5]) + sh.directional_light_sh([0.5, -1.0, 0.2], [2.0, 1.8, 1.6])
TARGET = sh.ambient_sh([0.3, 0.3, 0.4]) + sh.directional_light_sh([-0.8, -0.6, 0.3], [3.0, 2.0, 1.0])


def test_same_light_returns_the_input_exactly() -> None:
    img, n, mask = _scene()
    out = analytic.relight_ratio(img, n, mask, SOURCE, SOURCE.copy())
    assert out.dtype == np.float32 and np.array_equal(out, img)


def test_ratio_relights_inside_the_mask_only() -> None:
    img, n, mask = _scene()
    out = analytic.relight_ratio(img, n, mask, SOURCE, TARGET)
    assert np.array_equal(out[mask == 0], img[mask == 0])
    inside = mask == 1
    e_s = sh.irradiance(n[inside], SOURCE)
    e_t = sh.irradiance(n[inside], TARGET)
    assert e_s.min() > 0 and e_t.min() > 0  # no clamping at 0 in this scene
    # while the light's colour change is within bounds, luminance ratio × chroma ratio is the guarded per-channel ratio
    guard = analytic.GUARD_FRACTION * (sh.irradiance(n[mask > 0], SOURCE) @ sh.LUMINANCE).mean() + 1e-6
    assert np.allclose(out[inside], img[inside] * (e_t + guard) / (e_s + guard), rtol=1e-5)
    half = mask == 0.5
    full = analytic.relight_ratio(img, n, np.where(half, 1.0, mask), SOURCE, TARGET)
    assert np.allclose(out[half], 0.5 * (img[half] + full[half]), rtol=1e-5)


def test_doubling_the_light_doubles_the_face() -> None:
    img, n, mask = _scene()
    out = analytic.relight_ratio(img, n, mask, SOURCE, 2.0 * SOURCE)
    inside = mask == 1
    assert np.allclose(out[inside], 2.0 * img[inside], rtol=0.03)


def test_ratio_is_guarded_and_clamped() -> None:
    img, n, mask = _scene()
    dark_source = sh.directional_light_sh([1.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # leaves much of the face near black
    out = analytic.relight_ratio(img, n, mask, dark_source, 50.0 * SOURCE)
    assert np.all(np.isfinite(out))
    assert np.all(out <= img * analytic.MAX_RATIO + 1e-6)


def test_shading_image_is_irradiance_and_zero_outside() -> None:
    _, n, _ = _scene()
    n = n.copy()
    n[0, 0] = 0.0
    shade = analytic.shading_image(n, TARGET)
    assert shade.shape == n.shape and shade.dtype == np.float32
    assert np.all(shade[0, 0] == 0)
    assert np.allclose(shade[3, 4], sh.irradiance(n[3, 4], TARGET), rtol=1e-5)
    assert np.allclose(analytic.shading_image(n, sh.to_gray(TARGET))[3, 4], sh.irradiance(n[3, 4], sh.to_gray(TARGET)),
                       rtol=1e-5)


def test_empty_mask_and_bad_shapes() -> None:
    img, n, mask = _scene()
    assert np.array_equal(analytic.relight_ratio(img, n, np.zeros_like(mask), SOURCE, TARGET), img)
    with pytest.raises(ValueError):
        analytic.relight_ratio(img, n[:-1], mask, SOURCE, TARGET)


def test_a_channel_with_little_source_light_does_not_blow_up() -> None:
    """A warm source with almost no blue relit to white: a per-channel ratio multiplies blue by ~50 (a cyan/yellow
    blotch); the luminance ratio times the bounded chroma ratio changes blue at most MAX_CHROMA_RATIO times as much
    as the luminance."""
    img, n, mask = _scene()
    warm = sh.ambient_sh([0.4, 0.3, 0.008]) + sh.directional_light_sh([0.3, -1.0, 0.2], [2.0, 1.5, 0.04])
    white = sh.ambient_sh([0.35, 0.35, 0.35]) + sh.directional_light_sh([0.3, -1.0, 0.2], [1.8, 1.8, 1.8])
    out = analytic.relight_ratio(img, n, mask, warm, white)
    inside = mask == 1
    ratio = out[inside] / np.maximum(img[inside], 1e-6)
    lum = (sh.irradiance(n[inside], white) @ sh.LUMINANCE) / (sh.irradiance(n[inside], warm) @ sh.LUMINANCE)
    assert np.all(ratio[:, 2] <= lum * analytic.MAX_CHROMA_RATIO * 1.05)
    per_channel = sh.irradiance(n[inside], white)[:, 2] / sh.irradiance(n[inside], warm)[:, 2]
    assert per_channel.min() > 20  # what the old per-channel ratio did
    assert np.all(out >= 0) and np.all(np.isfinite(out))
