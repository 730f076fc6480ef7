"""Every term of the paper's losses (../shared/design/PAPER.md), with the offline substitutes this project uses.

- L1 on albedo, shading and RGB at the source and the re-posed view; a face-crop L1 on the RGB.
- Perceptual: LPIPS when the ``lpips`` package *and* its backbone weights are already on disk (never downloaded);
  otherwise MS-SSIM + image-gradient L1, which need no weights. :func:`make_perceptual` reports which one.
- Identity: a face-embedding network when one is given (a TorchScript file mapping face crops to embeddings);
  dlib's descriptor is not differentiable, so otherwise a feature loss on the face crop through the (frozen for this
  term) patch discriminator's intermediate features stands in; the run logs which.
- Adversarial: the non-saturating GAN loss (softplus) with a small patch discriminator.
- Tri-plane terms: L1 between predicted and teacher planes, only when the teacher provides planes.
- Temporal (short-term): a visibility mask times the perceptual distance between frame i and frame i-1 warped to i
  by a flow (exact for the teacher; OpenCV DIS flow for real video, see training/real_video.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error, optionally over a (broadcastable) mask's support."""
    if mask is None:
        return (pred - target).abs().mean()
    m = mask.expand_as(pred)
    return ((pred - target).abs() * m).sum() / m.sum().clamp(min=1.0)


# --- perceptual --------------------------------------------------------------------------------------------------
def _gauss(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, win: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    c = x.shape[1]
    g = _gauss(win, 1.5, x.device, x.dtype)
    kx = g.view(1, 1, 1, win).repeat(c, 1, 1, 1)
    ky = g.view(1, 1, win, 1).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kx, padding=(0, win // 2), groups=c), ky, padding=(win // 2, 0), groups=c)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
    return lum * cs, cs


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (7-px Gaussian window) of images in [0, 1]-ish, (B, C, H, W)."""
    return _ssim_parts(x, y)[0].mean()


def ms_ssim(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003 weights renormalised to ``scales`` levels); differentiable."""
    w = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    vals = []
    for s in range(scales):
        full, cs = _ssim_parts(x, y)
        vals.append((full if s == scales - 1 else cs).mean().clamp(min=1e-4))
        if s < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.prod(torch.stack(vals) ** w)


def gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical image gradients (edges and texture, what plain L1 blurs)."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(x) - dx(y)).abs().mean() + (dy(x) - dy(y)).abs().mean()


def _tonemap(x: torch.Tensor) -> torch.Tensor:
    """Linear light -> a perceptual-ish [0, 1] range (gamma 1/2.2 after a soft clip) for the perceptual terms."""
    return (x.clamp(min=0) / (1 + x.clamp(min=0))).mul(2).clamp(max=1).add(1e-6).pow(1 / 2.2)


class OfflinePerceptual(nn.Module):
    """MS-SSIM + gradient L1 on tone-mapped images: the LPIPS substitute that needs no downloaded weights."""

    name = "ms-ssim+gradient (LPIPS weights not available offline)"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        tx, ty = _tonemap(x), _tonemap(y)
        scales = 3 if min(x.shape[-2:]) >= 64 else 1
        return (1 - ms_ssim(tx, ty, scales)) + gradient_l1(tx, ty)


class LPIPSPerceptual(nn.Module):
    """LPIPS (Zhang et al. 2018) through the ``lpips`` package, used only when its weights are already on disk."""

    def __init__(self, net) -> None:
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.name = "lpips (alex)"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(_tonemap(x) * 2 - 1, _tonemap(y) * 2 - 1).mean()


def lpips_available() -> bool:
    """True when ``lpips`` is importable and torchvision's AlexNet weights are in the torch hub cache (no download)."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    return any(ckpt.glob("alexnet-owt-*.pth"))


def make_perceptual() -> nn.Module:
    """LPIPS if available offline, else the MS-SSIM + gradient substitute; ``.name`` says which (log it)."""
    if lpips_available() and os.environ.get("RELIGHT_NO_LPIPS") != "1":
        import lpips

        return LPIPSPerceptual(lpips.LPIPS(net="alex", verbose=False))
    return OfflinePerceptual()


# --- face crop, identity -------------------------------------------------------------------------------------------
def face_crop(img: torch.Tensor, boxes: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Crop each image's face box (B, 4: x0, y0, x1, y1 in pixels) to ``size``² with bilinear sampling."""
    B, _, H, W = img.shape
    x0, y0, x1, y1 = boxes.unbind(1)
    theta = torch.zeros(B, 2, 3, dtype=img.dtype, device=img.device)
    theta[:, 0, 0] = (x1 - x0) / W
    theta[:, 0, 2] = (x0 + x1) / W - 1
    theta[:, 1, 1] = (y1 - y0) / H
    theta[:, 1, 2] = (y0 + y1) / H - 1
    grid = F.affine_grid(theta, (B, img.shape[1], size, size), align_corners=False)
    return F.grid_sample(img, grid, align_corners=False)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (4 strided convs): per-patch real/fake logits; its features also serve the identity term."""

    def __init__(self, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        w = [channels, width, width * 2, width * 4, width * 4]
        self.blocks = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 4, stride=2, padding=1) for i in range(4))
        self.head = nn.Conv2d(w[-1], 1, 3, padding=1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, h = [], _tonemap(x) * 2 - 1
        for b in self.blocks:
            h = F.leaky_relu(b(h), 0.2)
            feats.append(h)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])


def adversarial_g(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(fake))."""
    return F.softplus(-d_fake).mean()


def adversarial_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: softplus(-D(real)) + softplus(D(fake))."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


class IdentityLoss(nn.Module):
    """1 - cosine similarity of face embeddings of prediction and target face crops.

    With ``embedder_path`` (a TorchScript face-embedding network, e.g. an ArcFace export) it uses that network;
    otherwise the discriminator's features of the face crop (weights not updated by this term) stand in:
    a feature-matching loss, since dlib's descriptor cannot pass gradients.
    """

    def __init__(self, embedder_path: str | None = None) -> None:
        super().__init__()
        self.embedder = None
        if embedder_path:
            self.embedder = torch.jit.load(embedder_path).eval()
            for p in self.embedder.parameters():
                p.requires_grad_(False)
        self.name = (f"face embedding {Path(embedder_path).name}" if embedder_path
                     else "discriminator feature matching on the face crop (no differentiable face embedder offline)")

    def forward(self, pred_face: torch.Tensor, target_face: torch.Tensor, disc: PatchDiscriminator) -> torch.Tensor:
        if self.embedder is not None:
            a = self.embedder(_tonemap(pred_face) * 2 - 1)
            b = self.embedder(_tonemap(target_face) * 2 - 1)
            return (1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean()
        params = list(disc.parameters())
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            fa, fb = disc.features(pred_face), disc.features(target_face.detach())
            loss = sum((1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean() for a, b in zip(fa, fb))
        finally:
            for p, f in zip(params, flags):
                p.requires_grad_(f)
        return loss / len(fa)


# --- temporal -----------------------------------------------------------------------------------------------------
def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` (B, C, H, W) at pixel + flow (B, H, W, 2, pixels): the previous frame seen from the current."""
    B, _, H, W = img.shape
    ys, xs = torch.meshgrid(torch.arange(H, device=img.device, dtype=img.dtype) + 0.5,
                            torch.arange(W, device=img.device, dtype=img.dtype) + 0.5, indexing="ij")
    gx = (xs + flow[..., 0]) / W * 2 - 1
    gy = (ys + flow[..., 1]) / H * 2 - 1
    return F.grid_sample(img, torch.stack([gx, gy], -1), align_corners=False, padding_mode="border")


def temporal_loss(cur: torch.Tensor, prev: torch.Tensor, flow: torch.Tensor, visible: torch.Tensor,
                  perceptual: nn.Module) -> torch.Tensor:
    """Short-term temporal loss: M_s · (perceptual + L1) between frame i and frame i-1 warped to i."""
    m = visible.unsqueeze(1)
    w = warp(prev, flow)
    return perceptual(cur * m, w * m) + l1(cur, w, m)


# --- occupancy (ours: the teacher knows where the surface is) ---------------------------------------------------
def occupancy_loss(field, joint_planes: torch.Tensor, cameras: torch.Tensor, depth: torch.Tensor, hit: torch.Tensor,
                   density_bias: float, step: float = 0.1) -> torch.Tensor:
    """Direct supervision of the tri-plane density from the teacher's ray depth.

    Why: the coverage (alpha) loss reaches the density only through the whole compositing integral and learns the
    silhouette slowly; the teacher's depth says exactly which ray segments are empty (camera to surface) and which are
    inside the head (just behind the surface). Opacity over a ``step``-long segment, 1 - exp(-softplus(σ + bias)·step),
    is pushed to 0 at free points and to 1 at inside points (binary cross-entropy, so a near-empty start still gets
    a strong gradient). ``depth``/``hit``: (N, r, r) ray distance and coverage.
    """
    from blender_relight import camera as cam
    from inference.model.sampler import camera_rays

    n, r = depth.shape[0], depth.shape[-1]
    origins, dirs = camera_rays(cameras, r)
    t_star = depth.reshape(n, -1)
    h = hit.reshape(n, -1) > 0.5
    u = torch.rand(n, t_star.shape[1], 2, device=depth.device, dtype=depth.dtype)
    far_free = torch.where(h, (t_star - 0.02).clamp(min=cam.RAY_NEAR), torch.full_like(t_star, cam.RAY_FAR))
    t_free = cam.RAY_NEAR + u[..., 0] * (far_free - cam.RAY_NEAR)
    t_in = t_star + 0.005 + u[..., 1] * 0.035
    pts = torch.cat([origins + dirs * t_free[..., None], origins + dirs * t_in[..., None]], dim=1)
    sigma, _ = field(joint_planes, pts)
    tau = F.softplus(sigma[..., 0] + density_bias) * step  # optical depth of the segment
    p = t_star.shape[1]
    # binary cross-entropy on the segment's opacity 1 - exp(-tau): free -> -log(exp(-tau)) = tau, inside -> -log(1-exp(-tau))
    free = tau[:, :p].clamp(max=10.0)
    inside = -torch.log((-torch.expm1(-tau[:, p:])).clamp(min=1e-4))
    return free.mean() + (inside * h).sum() / h.sum().clamp(min=1)


# --- the paper's groups -------------------------------------------------------------------------------------------
@dataclass
class LossWeights:
    """λ of the paper's total loss (its values are not published; these are ours, in docs/training.md)."""

    albedo: float = 1.0
    shading: float = 1.0
    rgb: float = 1.0
    adv: float = 0.02
    face: float = 1.0  # λ_f
    identity: float = 0.1
    planes_albedo: float = 1.0  # λ_g (only with teacher planes)
    planes_shading: float = 1.0  # λ_s (only with teacher planes)
    geometry: float = 0.5  # ours: normals and coverage, which our teacher provides exactly
    temporal: float = 0.5
    perceptual: float = 0.5
