"""Camera rays and depth samples in EG3D's convention.

Rays: the 25-float label holds cam2world (OpenCV axes: x right, y down, z forward) and normalised intrinsics; pixel
centres (i + 0.5) / res are lifted through K^-1 (with skew, as EG3D's RaySampler) and rotated to world. Depths run
from ``RAY_NEAR`` (2.25) to ``RAY_FAR`` (3.3) (blender_relight.camera). Coarse samples are stratified (bin centres at
inference, uniform jitter in training); importance samples invert the coarse weights' CDF (bin midpoints' u at
inference, so every run with the same inputs gives the same image).

ONNX: the inverse CDF uses a comparison count + gather instead of searchsorted, so it exports at opset 17.
"""
from __future__ import annotations

import torch

from blender_relight.camera import RAY_FAR, RAY_NEAR


def camera_rays(label: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Label (B, 25) -> ray origins (B, res*res, 3) and unit directions (B, res*res, 3), row-major pixels."""
    b = label.shape[0]
    cam2world = label[:, :16].reshape(b, 4, 4)
    k = label[:, 16:25].reshape(b, 3, 3)
    fx, fy, cx, cy, sk = k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 0, 1]
    t = (torch.arange(res, dtype=label.dtype, device=label.device) + 0.5) / res
    v, u = torch.meshgrid(t, t, indexing="ij")
    u = u.reshape(1, -1)
    v = v.reshape(1, -1)
    y_cam = (v - cy[:, None]) / fy[:, None]
    x_cam = (u - cx[:, None] - sk[:, None] * y_cam) / fx[:, None]
    d_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam)], dim=-1)  # (B, P, 3)
    rot = cam2world[:, :3, :3]
    d_world = d_cam @ rot.transpose(1, 2)
    d_world = d_world / torch.linalg.vector_norm(d_world, dim=-1, keepdim=True)
    origins = cam2world[:, None, :3, 3].expand(-1, d_world.shape[1], -1)
    return origins, d_world


def stratified_depths(shape: tuple[int, int], n: int, stochastic: bool, like: torch.Tensor,
                      near: float = RAY_NEAR, far: float = RAY_FAR) -> torch.Tensor:
    """(B, P, n) depths, one per equal bin of [near, far]: the centre, or a uniform jitter inside it in training."""
    delta = (far - near) / n
    base = near + delta * torch.arange(n, dtype=like.dtype, device=like.device)
    offset = torch.rand(shape + (n,), dtype=like.dtype, device=like.device) if stochastic else 0.5
    return base + delta * offset * torch.ones(shape + (n,), dtype=like.dtype, device=like.device)


def importance_depths(weights: torch.Tensor, n: int, stochastic: bool,
                      near: float = RAY_NEAR, far: float = RAY_FAR) -> torch.Tensor:
    """Inverse-CDF samples (B, P, n) from per-bin ``weights`` (B, P, N) over N equal bins of [near, far].

    As EG3D's importance sampler, the weights are smoothed (max over neighbours, then a floor of 0.01) so empty
    stretches of a ray still receive a few samples.
    """
    nb = weights.shape[-1]
    delta = (far - near) / nb
    padded = torch.cat([weights[..., :1], weights, weights[..., -1:]], dim=-1)
    smooth = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:]) + 0.01
    pdf = smooth / smooth.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1)                                 # (B, P, N): upper edge of each bin
    cdf_lo = torch.cat([torch.zeros_like(cdf[..., :1]), cdf[..., :-1]], dim=-1)
    if stochastic:
        u = torch.rand(weights.shape[:-1] + (n,), dtype=weights.dtype, device=weights.device)
    else:
        u = ((torch.arange(n, dtype=weights.dtype, device=weights.device) + 0.5) / n).expand(
            weights.shape[:-1] + (n,))
    # bin index = number of upper edges <= u (clamped): the ONNX-friendly searchsorted
    idx = (cdf.unsqueeze(-2) <= u.unsqueeze(-1)).to(weights.dtype).sum(dim=-1).clamp(max=nb - 1).long()
    lo = torch.gather(cdf_lo, -1, idx)
    p = torch.gather(pdf, -1, idx)
    frac = ((u - lo) / p).clamp(0.0, 1.0)
    return near + (idx.to(weights.dtype) + frac) * delta
