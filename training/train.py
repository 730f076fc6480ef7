"""Training loop: ``python -m training.train --stage 1|2 --preset default --steps N --out runs/X [--resume]``.

Stage 1 (the paper: encoders with the generator frozen; here there is no pretrained generator, so the encoders and
the tri-plane decoder learn together): albedo/shading encoders + tri-plane field on teacher data, losses on the
low-resolution render (albedo, analytic shading, RGB, face crop, normals, coverage). Super-resolution, shader and
temporal network are frozen.
Stage 2: everything jointly, at full resolution: super-resolution, the shading residual and the temporal network
(frame i-1 then frame i with its memory, short-term temporal loss with exact teacher flow), the adversarial and
identity terms, and the self-supervised real-video terms (training/real_video.py) every ``--real-every`` steps.

Adam, lr 1e-4 and 5e-5 for the attention (temporal) parts, as the paper. Resumable (``--resume``), chunked
(``--max-minutes``), one code path on CPU and GPU; with ``torchrun`` (WORLD_SIZE set) each process draws its own
samples and gradients are averaged with ``torch.distributed.all_reduce`` before each step (data parallel).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from blender_relight.errors import RelightError
from inference.model import PRESETS, RelightNet
from inference.model.checkpoint import load_checkpoint
from inference.model.shading import sh_irradiance
from training import checkpoints as ck
from training import losses as L
from training.batch import collate, pool_to, unit

TERMS = ("albedo_l1", "albedo_l1_r", "albedo_perc", "albedo_perc_r", "planes_albedo", "shading_l1", "shading_l1_r",
         "planes_shading", "rgb_l1", "rgb_l1_r", "rgb_perc", "rgb_perc_r", "rgb_face", "identity", "adv_g",
         "normal", "alpha", "occupancy", "temporal", "real_recon", "real_cross", "real_cycle", "real_albedo", "total", "adv_d")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    p.add_argument("--stage", type=int, choices=(1, 2), required=True)
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, required=True, help="total steps of this stage (a resumed run continues)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--auto-resume", action="store_true",
                   help="resume when --out holds a checkpoint, start otherwise (one command line for every chunk)")
    p.add_argument("--workers", type=int, default=0,
                   help="teacher render processes (DataLoader workers); 0 renders in the training process")
    p.add_argument("--init", help="start from these model weights (e.g. stage 1's model.safetensors)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (with a checkpoint) after this long; 0 = no limit")
    p.add_argument("--ckpt-minutes", type=float, default=3.0, help="checkpoint every this many minutes")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--teacher-res", type=int, default=256, help="teacher render size (losses run at this size)")
    p.add_argument("--supersample", type=int, default=1, help="teacher supersampling factor")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-attention", type=float, default=5e-5)
    p.add_argument("--lr-template", type=float, default=3e-3,
                   help="learning rate of the encoders' template tri-planes (free per-texel parameters, which take a "
                        "grid-sized learning rate as in Instant-NGP-style grids, not a network's)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up steps (default: 0 in stage 1, 50 in stage 2). Stage 2 first trains only "
                        "super-resolution and shader with a linear ramp, then ramps the encoders, field and temporal "
                        "network over as many steps: the untrained upsampler's first, huge losses otherwise push "
                        "the stage-1 planes until the density dies (seen in this project's first stage-2 run)")
    p.add_argument("--prefit-steps", type=int, default=300,
                   help="stage 1 from scratch: first fit the template tri-planes and the field to the teacher's "
                        "occupancy alone for this many steps (0 = off); see Trainer.prefit_template")
    p.add_argument("--real-every", type=int, default=4, help="stage 2: real-video terms every N steps (0 = never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--cache", default="out/teacher", help="teacher landmark cache folder")
    p.add_argument("--embedder", help="TorchScript face-embedding network for the identity term (optional)")
    return p.parse_args(argv)


class Trainer:
    """Holds the model, discriminator, optimisers, losses and data sources of one run."""

    def __init__(self, args: argparse.Namespace, teacher=None, real=None) -> None:
        self.args = args
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed + self.rank)
        self.model = RelightNet(args.preset).to(self.device)
        self.cfg = self.model.config
        if args.init:
            load_checkpoint(self.model, args.init)
            if args.stage == 2 and not args.resume:
                self._zero_superres_output()
        self.disc = L.PatchDiscriminator().to(self.device)
        self.perc = L.make_perceptual().to(self.device)
        self.ident = L.IdentityLoss(args.embedder).to(self.device)
        self.w = L.LossWeights()
        self._set_trainable()
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        template = [p for n, p in named if n.endswith("encoder.template")]
        base = [p for n, p in named if n.startswith(("albedo_encoder.", "shading_encoder.", "field."))
                and not n.endswith("encoder.template")]
        new = [p for n, p in named if n.startswith(("superres.", "shader."))]
        att = [p for n, p in named if n.startswith("temporal_net.")]
        groups = [{"params": base, "lr": args.lr, "base_lr": args.lr, "part": "encoders+field"}]
        if template:
            groups.append({"params": template, "lr": args.lr_template, "base_lr": args.lr_template,
                           "part": "template planes"})
        if new:
            groups.append({"params": new, "lr": args.lr, "base_lr": args.lr, "part": "superres+shader"})
        if att:
            groups.append({"params": att, "lr": args.lr_attention, "base_lr": args.lr_attention, "part": "attention"})
        self.opt_g = torch.optim.Adam(groups, betas=(0.9, 0.999))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=args.lr, betas=(0.5, 0.999))
        self.teacher = teacher
        self.real = real
        self.out = Path(args.out)
        self.state = {"preset": args.preset, "stage": args.stage, "step": 0, "elapsed_s": 0.0,
                      "perceptual": self.perc.name, "identity": self.ident.name,
                      "planes": "teacher provides no tri-planes: tri-plane terms off",
                      "config": self.cfg.to_dict(), "args": vars(args), "device": str(self.device),
                      "world_size": self.world}
        if args.resume:
            self.state = ck.restore(self.out, self.model, self.disc, self.opt_g, self.opt_d,
                                    {"preset": args.preset, "stage": args.stage})

    def prefit_template(self, steps: int, lr_template: float = 3e-2, lr_field: float = 1e-3) -> list[float]:
        """Fit the encoders' template tri-planes and the field to the teacher's occupancy, without the encoders.

        Why: every head sits in the same place of EG3D's aligned frame, so a mean head's density can be learnt
        before any identity is: free parameters and a small MLP learn it in a few hundred cheap steps (measured:
        the occupancy loss falls from 3.6 to about 0.2 in 300 steps), whereas through the encoders the first CPU
        run took over a thousand steps to move the coverage at all. The batches come from their own RNG stream
        (steps 10**6 + i), so the main run's data is unchanged. Returns the loss per step.
        """
        m = self.model
        templates = [m.albedo_encoder.template, m.shading_encoder.template]
        opt = torch.optim.Adam([{"params": templates, "lr": lr_template},
                                {"params": list(m.field.parameters()), "lr": lr_field}])
        r = self.cfg.plane_res
        history = []
        for i in range(steps):
            b = make_batch(self.teacher, self.args.seed, 10 ** 6 + i, self.rank, self.args.batch, self.cfg.image_res,
                           self.device)
            n = b["camera"].shape[0] * b["camera"].shape[1]
            planes = {k: F.interpolate(t, size=(r, r), mode="bilinear", align_corners=False).expand(n, -1, -1, -1)
                      for k, t in zip(("albedo_planes", "shading_planes"), templates)}
            loss = self._occupancy(b, planes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self._allreduce(templates + list(m.field.parameters()))
            opt.step()
            history.append(float(loss.detach()))
            if self.rank == 0 and (i % 50 == 0 or i == steps - 1):
                print(f"prefit {i + 1}/{steps} occupancy {history[-1]:.4f}", flush=True)
        return history

    def _zero_superres_output(self) -> None:
        """Start stage 2 with the super-resolution's output layer at zero: its 512² G-buffer is then exactly the
        upsampled stage-1 render. Its small random init is not enough once stage-1 features are large (albedo
        values of ~45 at the first step; the next steps drove the clamped albedo to a dead zero)."""
        out = self.model.superres.out
        with torch.no_grad():
            out.weight.zero_()
            out.bias.zero_()

    def _set_trainable(self) -> None:
        stage1 = ("albedo_encoder.", "shading_encoder.", "field.")
        for n, p in self.model.named_parameters():
            p.requires_grad_(self.args.stage == 2 or n.startswith(stage1))

    # --- data -------------------------------------------------------------------------------------------------
    def batch(self, step: int) -> dict:
        """The batch of ``step`` (a pure function of seed, step and rank, so a resumed run sees the same data)."""
        return make_batch(self.teacher, self.args.seed, step, self.rank, self.args.batch, self.cfg.image_res,
                          self.device)

    def batches(self, start: int):
        """Batches from ``start`` on: rendered here, or by ``--workers`` processes in step order."""
        if not self.args.workers:
            step = start
            while True:
                yield self.batch(step)
                step += 1
        stream = TeacherStream(self.teacher, self.args.seed, start, self.rank, self.args.batch, self.cfg.image_res)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=self.args.workers,
                                             prefetch_factor=2, persistent_workers=False)
        for b in loader:
            yield {k: (v.to(self.device) if torch.is_tensor(v) else {kk: vv.to(self.device) for kk, vv in v.items()})
                   for k, v in b.items()}

    # --- losses -----------------------------------------------------------------------------------------------
    def _targets(self, b: dict, res: int, key: str | None = None) -> dict[str, torch.Tensor]:
        src = b if key is None else b[key]
        B, V = src["image"].shape[:2]
        flat = {k: src[k].flatten(0, 1) for k in ("image", "albedo", "shading", "normals", "mask")}
        mask = pool_to(flat["mask"], res)
        sh = pool_to(flat["shading"] * flat["mask"], res) / mask.clamp(min=1e-6)
        face = src["face"].flatten(0, 1) * (res / src["image"].shape[-1])
        return {"image": pool_to(flat["image"], res), "albedo": pool_to(flat["albedo"], res), "shading": sh,
                "normal": unit(pool_to(flat["normals"], res)), "mask": mask, "inside": (mask > 0.5).float(),
                "face": face, "B": B, "V": V}

    def _view_terms(self, pred: dict, t: dict, full: bool) -> dict[str, torch.Tensor]:
        """The paper's albedo / shading / RGB terms at views 0 (source) and 1 (re-posed), plus ours on geometry."""
        B, V = t["B"], t["V"]
        terms: dict[str, torch.Tensor] = {}

        def sel(x, v):
            return x.view(B, V, *x.shape[1:])[:, v]

        for v, suf in ((0, ""), (1, "_r")):
            pa, ta = sel(pred["albedo"], v), sel(t["albedo"], v)
            pi, ti = sel(pred["image"], v), sel(t["image"], v)
            ins = sel(t["inside"], v)
            # albedo L1 on the un-premultiplied albedo inside the head: the premultiplied form over the whole image
            # also pulls every off-head sample's albedo toward 0 (wherever alpha has not yet learnt to be 0), which
            # drove the field's albedo sigmoid into saturation in the first CPU run; coverage has its own term.
            pa_u = pa / sel(pred["alpha"], v).detach().clamp(min=0.05)
            ta_u = ta / sel(t["mask"], v).clamp(min=1e-3)
            terms["albedo_l1" + suf] = L.l1(pa_u * math.pi, ta_u * math.pi, ins)   # in units of ρ
            terms["albedo_perc" + suf] = self.perc(pa * math.pi, ta * math.pi)
            terms["shading_l1" + suf] = L.l1(sel(pred["shading"], v) / math.pi, sel(t["shading"], v) / math.pi, ins)
            terms["rgb_l1" + suf] = L.l1(pi, ti)
            terms["rgb_perc" + suf] = self.perc(pi, ti)
        face = sel(t["face"], 0)
        size = 64 if full else 16
        pf, tf = L.face_crop(sel(pred["image"], 0), face, size), L.face_crop(sel(t["image"], 0), face, size)
        terms["rgb_face"] = L.l1(pf, tf)
        if full:
            terms["identity"] = self.ident(pf, tf, self.disc)
        terms["normal"] = L.l1(pred["normal"], t["normal"], t["inside"])
        terms["alpha"] = L.l1(pred["alpha"], t["mask"])
        return terms

    def _weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        w = self.w
        lam = {"albedo_l1": w.albedo, "albedo_l1_r": w.albedo, "albedo_perc": w.albedo * w.perceptual,
               "albedo_perc_r": w.albedo * w.perceptual, "planes_albedo": w.albedo * w.planes_albedo,
               "shading_l1": w.shading, "shading_l1_r": w.shading, "planes_shading": w.shading * w.planes_shading,
               "rgb_l1": w.rgb, "rgb_l1_r": w.rgb, "rgb_perc": w.rgb * w.perceptual,
               "rgb_perc_r": w.rgb * w.perceptual, "rgb_face": w.rgb * w.face, "identity": w.rgb * w.identity,
               "adv_g": w.adv, "normal": w.geometry, "alpha": w.geometry, "occupancy": w.geometry, "temporal": w.temporal,
               "real_recon": 1.0, "real_cross": 0.5, "real_cycle": 0.5, "real_albedo": 0.5}
        return sum(lam[k] * v for k, v in terms.items())

    def stage1_terms(self, b: dict) -> dict[str, torch.Tensor]:
        res = self.cfg.render_res
        B, V = b["camera"].shape[:2]
        planes = self.model.encode(b["input"], b["sh_src"])
        rep = {k: v.repeat_interleave(V, 0) for k, v in planes.items()}
        low = self.model.render_lowres(rep, b["camera"].reshape(B * V, 25), stochastic=True)
        shading = sh_irradiance(low["normal"], b["sh_tgt"].repeat_interleave(V, 0)) * low["visibility"]
        pred = {"albedo": low["albedo"], "shading": shading, "image": (low["albedo"] * shading).clamp(min=0),
                "normal": low["normal"], "alpha": low["alpha"]}
        terms = self._view_terms(pred, self._targets(b, res), full=False)
        terms.update(self._plane_terms(b, planes))
        terms["occupancy"] = self._occupancy(b, rep)
        return terms

    def _occupancy(self, b: dict, rep_planes: dict) -> torch.Tensor:
        """Density supervision from the teacher's depth on a 64² grid of rays per view (see losses.occupancy_loss)."""
        B, V = b["camera"].shape[:2]
        stride = max(1, b["depth"].shape[-1] // 64)
        depth = b["depth"].flatten(0, 1)[:, 0, ::stride, ::stride]
        hit = b["mask"].flatten(0, 1)[:, 0, ::stride, ::stride]
        joint = self.model.field.join(rep_planes["albedo_planes"], rep_planes["shading_planes"])
        return L.occupancy_loss(self.model.field, joint, b["camera"].reshape(B * V, 25), depth, hit,
                                self.cfg.density_bias)

    def _plane_terms(self, b: dict, planes: dict) -> dict[str, torch.Tensor]:
        if "planes" not in b:
            return {}
        return {"planes_albedo": L.l1(planes["albedo_planes"], b["planes"]["albedo_planes"]),
                "planes_shading": L.l1(planes["shading_planes"], b["planes"]["shading_planes"])}

    def _pred_at(self, out: dict, res: int) -> dict[str, torch.Tensor]:
        f = {k: out[k].flatten(0, 1) for k in ("albedo", "shading", "image", "normal", "alpha")}
        return {"albedo": pool_to(f["albedo"], res), "shading": pool_to(f["shading"], res),
                "image": pool_to(f["image"], res), "normal": unit(pool_to(f["normal"], res)),
                "alpha": pool_to(f["alpha"], res)}

    def stage2_terms(self, b: dict, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        res = b["image"].shape[-1]
        prev = b["prev"]
        out_p = self.model(prev["input"], b["sh_src"], b["sh_tgt"], prev["camera"])
        out = self.model(b["input"], b["sh_src"], b["sh_tgt"], b["camera"], memory=out_p["memory"],
                         memory_valid=out_p["memory_valid"])
        pred, pred_p = self._pred_at(out, res), self._pred_at(out_p, res)
        t = self._targets(b, res)
        terms = self._view_terms(pred, t, full=True)
        planes = {"albedo_planes": out["raw_albedo_planes"], "shading_planes": out["raw_shading_planes"]}
        terms.update(self._plane_terms(b, planes))
        V = b["camera"].shape[1]
        terms["occupancy"] = self._occupancy(b, {k: out[k].repeat_interleave(V, 0)
                                                 for k in ("albedo_planes", "shading_planes")})
        fake = pred["image"]
        terms["adv_g"] = L.adversarial_g(self.disc(fake))
        # short-term temporal loss over {I, I_r, A, A_r, S}, exact teacher flow and visibility
        B, V = t["B"], t["V"]
        flow, vis = b["flow_prev"].flatten(0, 1), b["visible_prev"].flatten(0, 1)
        tl = []
        for key, views in (("image", (0, 1)), ("albedo", (0, 1)), ("shading", (0,))):
            cur = pred[key].view(B, V, *pred[key].shape[1:])
            old = pred_p[key].view(B, V, *pred_p[key].shape[1:])
            fl, vi = flow.view(B, V, *flow.shape[1:]), vis.view(B, V, *vis.shape[1:])
            for v in views:
                scale = 1.0 / math.pi if key == "shading" else (math.pi if key == "albedo" else 1.0)
                tl.append(L.temporal_loss(cur[:, v] * scale, old[:, v] * scale, fl[:, v], vi[:, v], self.perc))
        terms["temporal"] = sum(tl) / len(tl)
        if self.real is not None and self.args.real_every and step % self.args.real_every == 0:
            terms.update(self.real.terms(self.model, self.perc, np.random.default_rng([self.args.seed, step, 7])))
        return terms, t["image"], fake

    # --- loop -------------------------------------------------------------------------------------------------
    def _allreduce(self, params) -> None:
        if self.world == 1:
            return
        for p in params:
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world

    def _set_lr(self, step: int) -> None:
        w = self.args.warmup if self.args.warmup is not None else (50 if self.args.stage == 2 else 0)
        for g in self.opt_g.param_groups:
            if not w:
                m = 1.0
            elif self.args.stage == 2 and g["part"] != "superres+shader":
                m = min(max((step - w + 1) / w, 0.0), 1.0)
            else:
                m = min((step + 1) / w, 1.0)
            g["lr"] = g["base_lr"] * m

    def step(self, step: int, b: dict | None = None) -> dict[str, float]:
        b = self.batch(step) if b is None else b
        self._set_lr(step)
        self.model.train()
        logs: dict[str, float] = {}
        if self.args.stage == 1:
            terms = self.stage1_terms(b)
        else:
            terms, real_img, fake = self.stage2_terms(b, step)
        total = self._weighted(terms)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        params = [p for g in self.opt_g.param_groups for p in g["params"]]
        self._allreduce(params)
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        self.opt_g.step()
        if self.args.stage == 2:
            self.opt_d.zero_grad(set_to_none=True)
            d_loss = L.adversarial_d(self.disc(real_img), self.disc(fake.detach()))
            d_loss.backward()
            self._allreduce(self.disc.parameters())
            self.opt_d.step()
            logs["adv_d"] = float(d_loss.detach())
        logs.update({k: float(v.detach()) for k, v in terms.items()})
        logs["total"] = float(total.detach())
        return logs

    def save(self) -> None:
        if self.rank == 0:
            ck.save(self.out, self.model, self.disc, self.opt_g, self.opt_d, self.state)

    def run(self) -> dict:
        a = self.args
        self.out.mkdir(parents=True, exist_ok=True)
        csv_path = self.out / "metrics.csv"
        new = not csv_path.exists()
        fh = open(csv_path, "a", newline="") if self.rank == 0 else None
        writer = csv.DictWriter(fh, fieldnames=["step", "stage", "elapsed_s", "step_s", *TERMS]) if fh else None
        if writer and new:
            writer.writeheader()
        if self.rank == 0:
            print(json.dumps({"run": str(self.out), "stage": a.stage, "preset": a.preset, "device": str(self.device),
                              "perceptual": self.perc.name, "identity": self.ident.name,
                              "planes": self.state["planes"], "start_step": self.state["step"]}), flush=True)
        stop = {"flag": False}

        def on_term(*_):
            stop["flag"] = True

        old = signal.signal(signal.SIGTERM, on_term) if self.rank == 0 else None
        if a.stage == 1 and a.prefit_steps and not a.resume and not a.init and self.state["step"] == 0:
            history = self.prefit_template(a.prefit_steps)
            self.state["prefit"] = {"steps": a.prefit_steps, "occupancy_first": history[0],
                                    "occupancy_last10": float(np.mean(history[-10:]))}
        t0, last_ck = time.time(), time.time()
        base_elapsed = self.state["elapsed_s"]
        data = self.batches(self.state["step"]) if a.workers else None
        try:
            while self.state["step"] < a.steps and not stop["flag"]:
                ts = time.time()
                logs = self.step(self.state["step"], next(data) if data is not None else None)
                self.state["step"] += 1
                self.state["elapsed_s"] = base_elapsed + time.time() - t0
                if writer:
                    row = {"step": self.state["step"], "stage": a.stage, "elapsed_s": round(self.state["elapsed_s"], 1),
                           "step_s": round(time.time() - ts, 3)}
                    row.update({k: f"{v:.5f}" for k, v in logs.items()})
                    writer.writerow(row)
                    fh.flush()
                    if self.state["step"] % 10 == 0 or self.state["step"] == 1:
                        print(f"step {self.state['step']} total {logs['total']:.4f} "
                              f"({time.time() - ts:.2f} s/step)", flush=True)
                if not all(math.isfinite(v) for v in logs.values()):
                    raise RelightError(f"{self.out}: non-finite loss at step {self.state['step']} ({logs}); "
                                       "resume from the last checkpoint with a lower --lr")
                if time.time() - last_ck > a.ckpt_minutes * 60:
                    self.save()
                    last_ck = time.time()
                if a.max_minutes and time.time() - t0 > a.max_minutes * 60:
                    break
        finally:
            self.save()
            if fh:
                fh.close()
            if old is not None:
                signal.signal(signal.SIGTERM, old)
        return self.state


def make_batch(teacher, seed: int, step: int, rank: int, batch: int, image_res: int, device="cpu") -> dict:
    """Render and collate the batch of one step with its own RNG stream."""
    rng = np.random.default_rng([seed, step, rank])
    return collate([teacher.sample(rng) for _ in range(batch)], image_res, device)


class TeacherStream(torch.utils.data.IterableDataset):
    """Batches for steps start, start+1, ...; worker w of W renders steps start+w, start+w+W, ... (DataLoader
    interleaves workers in order, so the sequence equals the in-process one)."""

    def __init__(self, teacher, seed: int, start: int, rank: int, batch: int, image_res: int) -> None:
        self.teacher, self.seed, self.start, self.rank = teacher, seed, start, rank
        self.batch, self.image_res = batch, image_res

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        torch.set_num_threads(1)
        step = self.start + w
        while True:
            yield make_batch(self.teacher, self.seed, step, self.rank, self.batch, self.image_res)
            step += n


def build_teacher(args: argparse.Namespace):
    from training.teacher.synthetic import SyntheticHeads

    return SyntheticHeads(resolution=args.teacher_res, supersample=args.supersample, cache_dir=args.cache)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.auto_resume:
        args.resume = ck.read_state(Path(args.out)) is not None
    if args.resume and ck.read_state(Path(args.out)) is None:
        raise SystemExit(f"{args.out}: nothing to resume (no {ck.STATE_FILE}); drop --resume")
    if not args.resume and ck.read_state(Path(args.out)) is not None:
        raise SystemExit(f"{args.out} already holds a run; pass --resume to continue it or pick another --out")
    real = None
    if args.stage == 2 and args.real_every:
        from training.real_video import RealVideoTerms

        real = RealVideoTerms(image_res=PRESETS[args.preset].image_res, loss_res=args.teacher_res,
                              cache_dir=args.cache)
    try:
        trainer = Trainer(args, build_teacher(args), real)
        state = trainer.run()
    except RelightError as exc:
        raise SystemExit(f"error: {exc}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"done_step": state["step"], "elapsed_s": round(state["elapsed_s"], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
