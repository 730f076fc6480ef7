"""Teacher samples -> training tensors (batched, at the model's input size and at the loss resolution).

Why a separate step: the teacher renders at a modest size (CPU cost); the model takes ``image_res`` crops, so the
input is upsampled once here, and predictions are pooled down to the teacher's size for the losses.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.teacher.base import TeacherSample, View


def _img(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return t.permute(2, 0, 1) if t.dim() == 3 else t.unsqueeze(0)


def _views(views: list[View]) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("image", "albedo", "shading", "normals", "depth", "mask"):
        out[name] = torch.stack([_img(getattr(v, name)) for v in views])
    out["albedo"] = out["albedo"] * out["mask"]  # premultiplied, as the renderer composites
    out["camera"] = torch.stack([torch.from_numpy(v.camera) for v in views])
    out["face"] = torch.stack([torch.from_numpy(np.asarray(v.face, np.float32)) for v in views])
    return out


def collate(samples: list[TeacherSample], image_res: int, device: torch.device | str = "cpu") -> dict:
    """Stack samples: ``input`` (B, 3, image_res²), SH (B, 9, 3), cameras (B, V, 25), targets (B, V, C, r, r)."""
    def up(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == image_res:
            return x
        return F.interpolate(x, size=(image_res, image_res), mode="bilinear", align_corners=False)

    per = [_views(s.views) for s in samples]
    b = {k: torch.stack([p[k] for p in per]) for k in per[0]}
    b["input"] = up(torch.stack([_img(s.input_image) for s in samples]))
    b["sh_src"] = torch.stack([torch.from_numpy(s.sh_src) for s in samples])
    b["sh_tgt"] = torch.stack([torch.from_numpy(s.sh_tgt) for s in samples])
    if all(s.prev_views is not None for s in samples):
        prev = [_views(s.prev_views) for s in samples]
        b["prev"] = {k: torch.stack([p[k] for p in prev]) for k in prev[0]}
        b["prev"]["input"] = up(torch.stack([_img(s.prev_input_image) for s in samples]))
        b["flow_prev"] = torch.stack([torch.from_numpy(np.stack(s.flow_prev)) for s in samples])  # (B, V, H, W, 2)
        b["visible_prev"] = torch.stack([torch.from_numpy(np.stack(s.visible_prev)) for s in samples])
    if all(s.planes is not None for s in samples):
        b["planes"] = {k: torch.stack([torch.from_numpy(s.planes[k]) for s in samples]) for k in samples[0].planes}

    def move(x):
        if isinstance(x, dict):
            return {k: move(v) for k, v in x.items()}
        return x.to(device)

    return move(b)


def pool_to(x: torch.Tensor, res: int) -> torch.Tensor:
    """Area-pool (N, C, H, W) to ``res``² (H a multiple of res) or bilinear when not a multiple."""
    if x.shape[-1] == res:
        return x
    if x.shape[-1] % res == 0:
        return F.avg_pool2d(x, x.shape[-1] // res)
    return F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False, antialias=True)


def unit(x: torch.Tensor) -> torch.Tensor:
    """Normalise vectors along dim 1 (zero stays zero)."""
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp(min=1e-6)
