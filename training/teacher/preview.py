"""``python -m training.teacher.preview --out sheet.png``: a contact sheet of teacher samples to judge realism.

One row per sample: input frame (source light), target at the input camera (target light), albedo, shading,
normals, depth, mask, the re-posed view, the previous frame of the sequence. Linear images are shown in sRGB.
"""
from __future__ import annotations

import argparse

import numpy as np

from blender_relight import colour
from blender_relight.contact_sheet import save_contact_sheet

COLUMNS = ("input (source light)", "target", "albedo", "shading", "normals", "depth", "mask", "re-posed view",
           "previous frame")


def _u8(linear: np.ndarray) -> np.ndarray:
    return colour.linear_to_uint8_srgb(np.clip(linear, 0, 1))


def sample_row(s) -> list[np.ndarray]:
    """The thumbnails of one :class:`TeacherSample` (uint8 RGB)."""
    v = s.views[0]
    m = v.mask > 0
    d = np.zeros_like(v.depth)
    if m.any():
        lo, hi = v.depth[m].min(), v.depth[m].max()
        d[m] = 1.0 - (v.depth[m] - lo) / max(hi - lo, 1e-6)
    sh = v.shading / max(float(np.percentile(v.shading[m], 99)) if m.any() else 1.0, 1e-6)
    return [_u8(s.input_image), _u8(v.image), _u8(v.albedo * np.pi), _u8(sh),
            ((v.normals * 0.5 + 0.5) * m[..., None] * 255).astype(np.uint8), (np.repeat(d[..., None], 3, 2) * 255).astype(np.uint8),
            (np.repeat(v.mask[..., None], 3, 2) * 255).astype(np.uint8), _u8(s.views[1].image), _u8(s.prev_input_image)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.teacher.preview", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--n", type=int, default=6, help="samples (rows)")
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--supersample", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out", action="store_true", help="identities from the held-out clips")
    p.add_argument("--cache", default="out/teacher")
    p.add_argument("--thumb", type=int, default=160)
    a = p.parse_args(argv)
    from training.teacher.synthetic import SyntheticHeads

    teacher = SyntheticHeads(resolution=a.res, supersample=a.supersample, held_out=a.held_out, cache_dir=a.cache)
    rng = np.random.default_rng(a.seed)
    images, labels = [], []
    for i in range(a.n):
        images += sample_row(teacher.sample(rng))
        labels += list(COLUMNS) if i == 0 else [""] * len(COLUMNS)
    save_contact_sheet(a.out, images, labels, columns=len(COLUMNS), thumb=a.thumb)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
