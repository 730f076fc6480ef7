"""Self-supervised terms on real frames (stage 2), and the real frames themselves.

Why: the synthetic teacher has exact labels but not real skin, hair and cameras. Real clips give four signals
without labels (../shared/design/ARCHITECTURE.md, "Training without the paper's generator"):
- reconstruction: encode frame t with its estimated lighting, render at its own camera, shade with that lighting:
  the result must be frame t on the face mask;
- cross-frame re-rendering: frame t's planes rendered at frame t+k's camera and shaded with t+k's lighting must
  give frame t+k (the person barely changes in k frames);
- lighting cycle: relight frame t to a random light, re-encode that image with that light, relight back to the
  source light: frame t again;
- albedo consistency: the albedo must not change with the light (cycle) nor between frames t and t+k at one camera.
Frames come from the tracking front end (``blender_relight.tracking.tracker.FaceTracker``: EG3D crop, camera label,
source RGB SH from ``lighting.estimate``). Clips in ``HELD_OUT_CLIPS`` never feed training.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from blender_relight import colour
from blender_relight.errors import RelightError
from blender_relight.io_utils import atomic_path
from blender_relight.lighting.estimate import SOURCE_LIGHT_CONVENTION
from training import losses as L
from training.batch import pool_to
from training.teacher.landmarks import HELD_OUT_CLIPS, shared_data_dir
from training.teacher.lights import sample_sh


@dataclass
class RealFrame:
    """One tracked real frame: sRGB uint8 EG3D crop, camera label, source SH, face mask (crop size)."""

    clip: str
    index: int
    crop: np.ndarray  # (S, S, 3) uint8 sRGB
    camera: np.ndarray  # (25,)
    sh: np.ndarray  # (9, 3)
    mask: np.ndarray  # (S, S) float32


def track_clip(path: Path, every: int = 2, limit: int = 16, start: int = 0) -> list[RealFrame]:
    """Track ``limit`` frames, ``every`` apart, from ``start``; frames without a confident face are dropped."""
    from blender_relight.tracking.tracker import FaceTracker

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RelightError(f"{path}: cannot open the clip; check the file")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    tracker = FaceTracker(fps=fps)
    out: list[RealFrame] = []
    i = 0
    try:
        while len(out) < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            tr = tracker.track(i, rgb)  # every frame goes through the tracker: its smoothing needs them in order
            if i >= start and (i - start) % every == 0 and tr.status == "tracked" and tr.source_sh is not None:
                out.append(RealFrame(path.stem, i, tr.transform.warp(rgb), tr.camera.astype(np.float32),
                                     np.asarray(tr.source_sh, np.float32), tr.crop_mask().astype(np.float32)))
            i += 1
    finally:
        cap.release()
        tracker.close()
    return out


def load_real_frames(cache: Path, held_out: bool = False, every: int = 2, limit: int = 16) -> list[RealFrame]:
    """Tracked frames of the training clips (or of the held-out ones), cached in an .npz."""
    cache = Path(cache)
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        # a cache made under another source-light convention (lighting.estimate) is rebuilt, not mixed in
        if "source_light" in z and str(z["source_light"]) == SOURCE_LIGHT_CONVENTION:
            meta = json.loads(str(z["meta"]))
            return [RealFrame(m["clip"], m["index"], z[f"crop{i}"], z[f"cam{i}"], z[f"sh{i}"],
                              z[f"mask{i}"].astype(np.float32)) for i, m in enumerate(meta)]
    vids = shared_data_dir() / "videos"
    if not vids.is_dir():
        raise RelightError(f"{vids}: shared clips not found; real-video terms need ../shared/data/videos")
    frames: list[RealFrame] = []
    for p in sorted(vids.glob("*.mp4")):
        if (p.stem in HELD_OUT_CLIPS) == held_out:
            frames += track_clip(p, every, limit)
    arrays = {}
    for i, f in enumerate(frames):
        arrays.update({f"crop{i}": f.crop, f"cam{i}": f.camera, f"sh{i}": f.sh, f"mask{i}": f.mask.astype(np.float16)})
    meta = json.dumps([{"clip": f.clip, "index": f.index} for f in frames])
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(meta), source_light=np.array(SOURCE_LIGHT_CONVENTION), **arrays)
    return frames


def frame_tensors(f: RealFrame, image_res: int, device) -> dict[str, torch.Tensor]:
    """Crop (linear, 1x3xSxS at image_res), mask, camera, SH as tensors."""
    lin = colour.srgb_to_linear(f.crop.astype(np.float32) / 255.0)
    crop = torch.from_numpy(np.ascontiguousarray(lin)).permute(2, 0, 1)[None]
    if crop.shape[-1] != image_res:
        crop = F.interpolate(crop, size=(image_res, image_res), mode="bilinear", align_corners=False, antialias=True)
    mask = torch.from_numpy(f.mask)[None, None]
    return {"crop": crop.to(device), "mask": mask.to(device), "camera": torch.from_numpy(f.camera)[None].to(device),
            "sh": torch.from_numpy(f.sh)[None].to(device)}


class RealVideoTerms:
    """Draws a pair of frames (t, t+k) of one training clip and returns the four self-supervised terms."""

    def __init__(self, image_res: int, loss_res: int, cache_dir: str | Path = "out/teacher", held_out: bool = False,
                 frames: list[RealFrame] | None = None) -> None:
        name = "real_heldout.npz" if held_out else "real_train.npz"
        self.frames = frames if frames is not None else load_real_frames(Path(cache_dir) / name, held_out)
        self.by_clip: dict[str, list[RealFrame]] = {}
        for f in self.frames:
            self.by_clip.setdefault(f.clip, []).append(f)
        self.clips = sorted(c for c, fs in self.by_clip.items() if len(fs) >= 2)
        if not self.clips:
            raise RelightError("no real clip with two tracked frames; real-video terms cannot run")
        self.image_res, self.loss_res = image_res, loss_res

    def pair(self, rng: np.random.Generator) -> tuple[RealFrame, RealFrame]:
        fs = self.by_clip[self.clips[rng.integers(len(self.clips))]]
        i = int(rng.integers(len(fs) - 1))
        return fs[i], fs[i + 1]

    def _masked(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, perc) -> torch.Tensor:
        r = self.loss_res
        p, t, m = pool_to(pred, r), pool_to(target, r), pool_to(mask, r)
        return L.l1(p, t, m) + perc(p * m, t * m)

    def terms(self, model, perc, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        dev = next(model.parameters()).device
        fa, fb = self.pair(rng)
        a, b = frame_tensors(fa, self.image_res, dev), frame_tensors(fb, self.image_res, dev)
        out_res = model.config.out_res

        def at_out(x):
            return pool_to(x, out_res) if x.shape[-1] != out_res else x

        planes_a = model.encode(a["crop"], a["sh"])
        g_aa = model.render(planes_a, a["camera"], stochastic=True)
        recon = model.shade(g_aa, a["sh"])["image"]
        terms = {"real_recon": self._masked(recon, at_out(a["crop"]), at_out(a["mask"]), perc)}
        g_ab = model.render(planes_a, b["camera"], stochastic=True)
        cross = model.shade(g_ab, b["sh"])["image"]
        terms["real_cross"] = self._masked(cross, at_out(b["crop"]), at_out(b["mask"]), perc)
        new_sh = torch.from_numpy(sample_sh(rng).astype(np.float32))[None].to(dev)
        relit = model.shade(g_aa, new_sh)["image"]
        alpha = g_aa["alpha"]
        crop_a = at_out(a["crop"])
        composite = relit * alpha + crop_a * (1 - alpha)  # the relit head over the frame's own background
        if composite.shape[-1] != self.image_res:
            composite = F.interpolate(composite, size=(self.image_res,) * 2, mode="bilinear", align_corners=False)
        planes_c = model.encode(composite, new_sh)
        g_c = model.render(planes_c, a["camera"], stochastic=True)
        back = model.shade(g_c, a["sh"])["image"]
        terms["real_cycle"] = self._masked(back, crop_a, at_out(a["mask"]), perc)
        planes_b = model.encode(b["crop"], b["sh"])
        g_ba = model.render(planes_b, a["camera"], stochastic=True)
        m = pool_to(at_out(a["mask"]), self.loss_res)
        alb = pool_to(g_aa["albedo"], self.loss_res) * math.pi
        terms["real_albedo"] = (L.l1(pool_to(g_c["albedo"], self.loss_res) * math.pi, alb.detach(), m)
                                + L.l1(pool_to(g_ba["albedo"], self.loss_res) * math.pi, alb, m))
        return terms
