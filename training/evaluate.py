"""``python -m training.evaluate --weights runs/X/model.safetensors --out runs/X/eval``: held-out metrics and sheets.

Held-out synthetic identities (textures and shapes from clips never used in training, lp_d13 and lp_d18):
PSNR/SSIM of albedo, of relit images under lights drawn fresh (not the training stream), and at novel views
(yaw ±15°, ±30°). Real held-out frames: reconstruction PSNR at the source view and lighting, on the face mask.
Also the "copy the input" floor for relighting, so a number can be read against doing nothing. Two contact sheets:
``contact_sheet.png`` (held-out identities and frames: development data, never committed) and ``sample_sheet.png``
(the package's public-domain sample photo, the one the model card shows).
PSNR is computed in sRGB over the head (target mask), SSIM over the whole 256² image (black background in both).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from blender_relight import camera as cam
from blender_relight import colour
from blender_relight.contact_sheet import save_contact_sheet
from blender_relight.io_utils import atomic_path
from blender_relight.lighting.analytic import relight_by_shading
from inference.model import RelightNet
from inference.model.checkpoint import load_checkpoint, read_checkpoint
from training.batch import pool_to
from training.losses import ssim
from training.teacher.lights import sample_sh

NOVEL_YAWS = (-30.0, -15.0, 15.0, 30.0)


def _srgb(x: np.ndarray) -> np.ndarray:
    return colour.linear_to_srgb(np.clip(x, 0, 1))


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of linear images compared in sRGB, over ``mask`` when given."""
    d = (_srgb(pred) - _srgb(target)) ** 2
    if mask is not None:
        m = np.broadcast_to(mask[..., None] > 0.5, d.shape)
        mse = float(d[m].mean()) if m.any() else float(d.mean())
    else:
        mse = float(d.mean())
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def ssim_np(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of linear images compared in sRGB."""
    t = lambda x: torch.from_numpy(_srgb(x)).permute(2, 0, 1)[None].float()  # noqa: E731
    return float(ssim(t(pred), t(target)))


class Relighter:
    """The network behind the three calls evaluation needs (encode once, render per camera, shade per light)."""

    def __init__(self, model: RelightNet, res: int) -> None:
        self.model, self.res = model.eval(), res

    @torch.no_grad()
    def encode(self, image: np.ndarray, sh: np.ndarray) -> dict:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        n = self.model.config.image_res
        if x.shape[-1] != n:
            x = F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False)
        return self.model.encode(x, torch.from_numpy(np.asarray(sh, np.float32))[None])

    @torch.no_grad()
    def render(self, planes: dict, label: np.ndarray) -> dict:
        return self.model.render(planes, torch.from_numpy(np.asarray(label, np.float32))[None])

    @torch.no_grad()
    def shade(self, g: dict, sh: np.ndarray) -> dict[str, np.ndarray]:
        s = self.model.shade(g, torch.from_numpy(np.asarray(sh, np.float32))[None])
        out = {"image": s["image"], "shading": s["shading"], "albedo": g["albedo"], "alpha": g["alpha"]}
        return {k: pool_to(v, self.res)[0].permute(1, 2, 0).numpy() for k, v in out.items()}


def evaluate_synthetic(rel: Relighter, teacher, n: int, seed: int) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    acc: dict[str, list[float]] = {}
    rows = []

    def add(k, v):
        acc.setdefault(k, []).append(v)

    for i in range(n):
        ident = teacher.identity(rng)
        sh_src = sample_sh(rng, teacher.dpr)
        lights = [sample_sh(rng) for _ in range(4)]
        label0 = cam.make_label(cam.orbit_camera(np.radians(rng.uniform(-8, 8)), np.radians(rng.uniform(-8, 8))))
        g0 = teacher.gbuffer(ident, ident.shape_cm, label0)
        v_src = teacher.view(g0, label0, sh_src)
        bg = np.full((teacher.resolution, teacher.resolution, 3), rng.uniform(0.05, 0.5), np.float32)
        inp = teacher.composite(v_src, g0, sh_src, bg)
        planes = rel.encode(inp, sh_src)
        gp = rel.render(planes, label0)
        p = rel.shade(gp, sh_src)
        add("albedo_psnr", psnr(p["albedo"], v_src.albedo * v_src.mask[..., None], v_src.mask))
        add("albedo_ssim", ssim_np(p["albedo"] * np.pi, v_src.albedo * v_src.mask[..., None] * np.pi))
        add("recon_psnr", psnr(p["image"], v_src.image, v_src.mask))
        relit = []
        for L in lights:
            v = teacher.view(g0, label0, L)
            q = rel.shade(gp, L)
            relit.append(q["image"])
            add("relit_psnr", psnr(q["image"], v.image, v.mask))
            add("relit_ssim", ssim_np(q["image"], v.image))
            add("relit_copy_input_psnr", psnr(v_src.image, v.image, v.mask))
            # the product at the filmed viewpoint: the input × the model's shading ratio (NeuralEngine)
            plate = relight_by_shading(inp, p["alpha"][..., 0], p["shading"], q["shading"])
            add("relit_plate_psnr", psnr(plate, v.image, v.mask))
        views = []
        for yaw in NOVEL_YAWS:
            lab = cam.make_label(cam.orbit_camera(np.radians(yaw), 0.0))
            g = teacher.gbuffer(ident, ident.shape_cm, lab)
            v = teacher.view(g, lab, lights[0])
            q = rel.shade(rel.render(planes, lab), lights[0])
            add(f"view{yaw:+.0f}_psnr", psnr(q["image"], v.image, v.mask))
            add(f"view{yaw:+.0f}_ssim", ssim_np(q["image"], v.image))
            add(f"view{yaw:+.0f}_albedo_psnr", psnr(q["albedo"], v.albedo * v.mask[..., None], v.mask))
            if yaw in (-30.0, 30.0):
                views.append(q["image"])
        if i < 2:
            front = rel.shade(rel.render(planes, cam.make_label(cam.orbit_camera(0.0, np.radians(20)))), lights[0])
            shading = p["shading"] / max(float(np.percentile(p["shading"], 99)), 1e-6)
            rows.append([inp, p["albedo"] * np.pi, shading, *relit, views[0], front["image"], views[1]])
    return {k: float(np.mean(v)) for k, v in acc.items()}, rows


def evaluate_real(rel: Relighter, frames, n: int) -> tuple[dict, list]:
    """Reconstruction PSNR of ``n`` real frames, and two sheet rows for the first: the model's renders, and what the
    product shows at the filmed viewpoint (the input × the model's shading ratio, as ``NeuralEngine``) under the same
    four lights, its other columns repeating the render row."""
    from training.real_video import frame_tensors

    acc, rows = [], []
    picks = frames[:: max(1, len(frames) // n)][:n]
    rng = np.random.default_rng(1)
    lights = [sample_sh(rng) for _ in range(4)]
    for i, f in enumerate(picks):
        t = frame_tensors(f, rel.model.config.image_res, "cpu")
        crop = pool_to(t["crop"], rel.res)[0].permute(1, 2, 0).numpy()
        mask = pool_to(t["mask"], rel.res)[0, 0].numpy()
        planes = rel.encode(crop, f.sh)
        g = rel.render(planes, f.camera)
        p = rel.shade(g, f.sh)
        acc.append(psnr(p["image"], crop, mask))
        if i < 1:
            c2w, _ = cam.split_label(f.camera)
            eye = c2w[:3, 3]
            yaw0, pitch0 = np.arctan2(eye[0], eye[2]), np.arcsin(np.clip(eye[1] / np.linalg.norm(eye), -1, 1))
            views = [rel.shade(rel.render(planes, cam.make_label(cam.orbit_camera(yaw0 + np.radians(d), pitch0))),
                               lights[0])["image"] for d in (-30, 0, 30)]
            shading = p["shading"] / max(float(np.percentile(p["shading"], 99)), 1e-6)
            lit = [rel.shade(g, L) for L in lights]
            head = [crop, p["albedo"] * np.pi, shading]
            rows.append([*head, *[q["image"] for q in lit], *views])
            rows.append([*head, *[relight_by_shading(crop, p["alpha"][..., 0] * mask, p["shading"], q["shading"])
                                  for q in lit], *views])
    return {"real_recon_psnr": float(np.mean(acc)) if acc else float("nan"), "real_frames": len(acc)}, rows


SHEET_COLUMNS = ["input", "albedo", "shading", "relit L1", "relit L2", "relit L3", "relit L4", "yaw -30", "view 2",
                 "yaw +30"]


def save_sheet(path: Path, rows: list, row_titles: list[str]) -> None:
    """Rows of linear images (``SHEET_COLUMNS``) as an sRGB contact sheet with titles."""
    images = [colour.linear_to_uint8_srgb(np.clip(x, 0, 1)) for row in rows for x in row]
    save_contact_sheet(path, images, columns=len(SHEET_COLUMNS), thumb=128, column_titles=SHEET_COLUMNS,
                       row_titles=row_titles)


def sample_frame(cache_dir: Path):
    """The package's public-domain sample photo as a tracked frame: the one face a committed sheet may show (the
    development clips and the textures made from them must not enter the repository)."""
    from blender_relight.demo import sample_path
    from blender_relight.pipeline import ClipSession
    from training.real_video import RealFrame

    session = ClipSession(sample_path(), cache_dir=cache_dir, engine="analytic")
    try:
        session.analyse()
        track = session.frame_track(0)
        crop = colour.linear_to_uint8_srgb(session.crop_linear(0, track))
        return RealFrame("astronaut", 0, crop, np.asarray(track.camera, np.float32),
                         np.asarray(track.source_sh, np.float32), track.crop_mask().astype(np.float32))
    finally:
        session.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True, help="model.safetensors of a run")
    p.add_argument("--out", required=True, help="folder for metrics.json and contact_sheet.png")
    p.add_argument("--preset", default=None, help="defaults to the preset stored in the weights")
    p.add_argument("--identities", type=int, default=8)
    p.add_argument("--real-frames", type=int, default=12)
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--cache", default="out/teacher")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    _, meta = read_checkpoint(a.weights)
    model = RelightNet(a.preset or meta.get("preset") or "default")
    load_checkpoint(model, a.weights)
    rel = Relighter(model, a.res)
    from training.real_video import load_real_frames
    from training.teacher.synthetic import SyntheticHeads

    teacher = SyntheticHeads(resolution=a.res, supersample=1, held_out=True, cache_dir=a.cache)
    metrics, rows = evaluate_synthetic(rel, teacher, a.identities, a.seed)
    real = load_real_frames(Path(a.cache) / "real_heldout.npz", held_out=True)
    rm, rrows = evaluate_real(rel, real, a.real_frames)
    metrics.update(rm)
    metrics.update({"weights": str(a.weights), "step": meta.get("step"), "stage": meta.get("stage"),
                    "identities": a.identities, "res": a.res})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=1))
    save_sheet(out / "contact_sheet.png", rows + rrows,
               [f"synth {i + 1}" for i in range(len(rows))] + ["real", "real plate"])
    _, sample_rows = evaluate_real(rel, [sample_frame(Path(a.cache) / "sample")], 1)
    save_sheet(out / "sample_sheet.png", sample_rows, ["render", "plate"])
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
