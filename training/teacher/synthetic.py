"""The project's synthetic relightable heads (implements :class:`training.teacher.base.Teacher`).

Why: exact albedo, shading, normals, depth and masks under any RGB SH light and any camera near the EG3D frontal
pose, for every supervised term of the paper's losses. Identities mix a face shape (real tracked landmarks, blended
and scaled), an albedo texture (a real frame with its lighting divided out, then varied in hue, brightness and tone)
and random shells (skull, ears, neck, hair). Shading is the analytic SH irradiance at the surface normal, so
``image == albedo * shading`` holds exactly (no cast shadows: second-order SH light has none).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from blender_relight import camera as cam
from blender_relight.lighting import sh as shm
from training.teacher import head as hd
from training.teacher.base import Teacher, TeacherSample, View
from training.teacher.landmarks import FaceSource, load_sources, shared_data_dir
from training.teacher.lights import dpr_lights, sample_sh
from training.teacher.raster import rasterize, vertex_normals

#: The model's shading step is image = albedo × irradiance (inference/model/shading.py), while the project's
#: photometric convention (blender_relight/lighting/estimate.py, Blender) is radiance = ρ · E / π. With albedo
#: ground truth ρ / π and lights in irradiance units, SH labels match what ``estimate_frame_sh`` and Blender lights give.
ALBEDO_SCALE = 1.0 / np.pi

HAIR_COLOURS = np.array([[0.02, 0.018, 0.016], [0.06, 0.035, 0.02], [0.15, 0.08, 0.04], [0.45, 0.32, 0.15],
                         [0.3, 0.08, 0.03], [0.35, 0.35, 0.35]])


@dataclass
class Texture:
    """An albedo texture from a real frame: the image with its lighting divided out, UVs = its landmarks."""

    albedo: np.ndarray  # (S, S, 3) float32
    uv: np.ndarray  # (468, 2) pixels
    skin: np.ndarray  # (3,) median albedo of the inner face
    shape_cm: np.ndarray  # (468, 3) the source's face shape in the template frame


def delight(source: FaceSource) -> Texture:
    """Divide a frame's lighting out: fit RGB SH to the face pixels against the landmark mesh's normals.

    The fit assumes a constant albedo over the face (what the low-frequency SH can explain is taken as light);
    the albedo is the image over the normalised fitted shading, scaled to a median skin albedo of 0.4.
    """
    _, tris = hd.canonical_face()
    img = source.image.astype(np.float32)
    S = img.shape[0]
    lm = source.landmarks.astype(np.float64)
    p = lm * np.array([1.0, -1.0, -1.0])
    n_v = vertex_normals(p, tris)
    screen = np.stack([lm[:, 0], lm[:, 1], lm[:, 2] - lm[:, 2].min() + 100.0], 1)
    frag = rasterize(screen, tris, S, S)
    m = frag.mask
    n = frag.interpolate(tris, n_v)[m]
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
    B = shm.irradiance_basis(shm.rotate_eg3d_to_sh(n))
    I = img[m].astype(np.float64)
    coef = np.linalg.solve(B.T @ B + 1e-3 * np.eye(9), B.T @ I)
    shade = B @ coef
    shade /= np.maximum(np.median(shade, axis=0, keepdims=True), 1e-6)
    alb = img.copy()
    alb[m] = (I / np.clip(shade, 0.25, None)).astype(np.float32)
    inner = hd._ring_weight(tris, 3)
    w = frag.interpolate(tris, inner[:, None])[..., 0][m] > 0.99
    lum = alb[m][w] @ np.array([0.2126, 0.7152, 0.0722])
    alb *= 0.4 / max(float(np.median(lum)), 1e-4)
    alb = np.clip(alb, 0.005, 1.0)
    skin = np.median(alb[m][w], axis=0)
    return Texture(alb, lm[:, :2].astype(np.float32), skin.astype(np.float32), hd.align_to_template(lm))


@dataclass
class Identity:
    """A synthetic person: shape(s), texture, variation and shells."""

    shape_cm: np.ndarray
    shape_next_cm: np.ndarray  # a second expression, for small motion within a sequence
    texture: Texture
    gain: np.ndarray
    saturation: float
    params: hd.HeadParams
    hair_colour: np.ndarray
    noise_k: np.ndarray  # (4, 3) noise frequencies
    noise_phase: np.ndarray


def _background(rng: np.random.Generator, res: int, textures: list[Texture]) -> np.ndarray:
    yy, xx = np.mgrid[0:res, 0:res] / res
    if rng.uniform() < 0.35 and textures:
        t = textures[rng.integers(len(textures))].albedo
        bg = cv2.resize(cv2.GaussianBlur(t, (0, 0), 6), (res, res))[::-1] * rng.uniform(0.2, 1.0)
        return bg.astype(np.float32)
    a, b = rng.uniform(0, 0.8, 3), rng.uniform(0, 0.8, 3)
    ang = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)), 0, 1)[..., None]
    return (a * (1 - t) + b * t).astype(np.float32)


def project(label: np.ndarray, points: np.ndarray, res: int) -> np.ndarray:
    """World points (N, 3) -> (N, 3): pixel x, pixel y (image of side ``res``) and camera-space depth."""
    c2w, K = cam.split_label(label)
    pc = (points - c2w[:3, 3]) @ c2w[:3, :3]
    z = pc[:, 2]
    u = (K[0, 0] * pc[:, 0] / z + K[0, 2]) * res
    v = (K[1, 1] * pc[:, 1] / z + K[1, 2]) * res
    return np.stack([u, v, z], 1)


def _down(x: np.ndarray, ss: int) -> np.ndarray:
    if ss == 1:
        return x
    H, W = x.shape[:2]
    return x.reshape(H // ss, ss, W // ss, ss, *x.shape[2:]).mean((1, 3))


class SyntheticHeads(Teacher):
    """Synthetic heads from the real frames of ``../shared/data`` (training clips, or the held-out ones)."""

    def __init__(self, resolution: int = 128, supersample: int = 2, held_out: bool = False,
                 cache_dir: str | Path = "out/teacher", max_yaw_deg: float = 30.0, max_pitch_deg: float = 30.0,
                 per_clip: int = 24):
        self.resolution, self.ss = int(resolution), int(supersample)
        self.held_out = held_out
        name = "sources_heldout.npz" if held_out else "sources_train.npz"
        self.sources = load_sources(Path(cache_dir) / name, held_out=held_out, per_clip=per_clip)
        self.textures = [delight(s) for s in self.sources]
        self.by_clip: dict[str, list[int]] = {}
        for i, s in enumerate(self.sources):
            self.by_clip.setdefault(s.clip, []).append(i)
        self.dpr = dpr_lights(shared_data_dir())
        self.max_yaw, self.max_pitch = np.radians(max_yaw_deg), np.radians(max_pitch_deg)

    # --- identities -------------------------------------------------------------------------------------------
    def identity(self, rng: np.random.Generator) -> Identity:
        tex = self.textures[rng.integers(len(self.textures))]
        i, j = rng.integers(len(self.textures), size=2)
        w = rng.uniform(0.0, 0.5)
        shape = (1 - w) * self.textures[i].shape_cm + w * self.textures[j].shape_cm
        shape = (shape - shape.mean(0)) * rng.uniform([0.92, 0.93, 0.9], [1.08, 1.07, 1.1]) + shape.mean(0)
        shape = hd.align_to_template(shape * np.array([1.0, -1.0, -1.0]))  # re-centre on the template
        clip = self.sources[i].clip
        k = self.by_clip[clip][rng.integers(len(self.by_clip[clip]))]
        nxt = (1 - w) * self.textures[k].shape_cm + w * self.textures[j].shape_cm
        nxt = hd.align_to_template(nxt * np.array([1.0, -1.0, -1.0]))
        return Identity(shape, nxt, tex, rng.uniform(0.88, 1.12, 3) * rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.15),
                        hd.sample_head_params(rng, shape), HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
                        * rng.uniform(0.7, 1.4), rng.normal(0, 1, (4, 3)) * [[3.0, 0.4, 3.0]], rng.uniform(0, 6.3, 4))

    def random_camera(self, rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
        yaw = np.clip(rng.normal(0, 0.45), -1, 1) * self.max_yaw * spread
        pitch = np.clip(rng.normal(0, 0.4), -1, 1) * self.max_pitch * spread
        return cam.make_label(cam.orbit_camera(yaw, pitch))

    # --- rendering --------------------------------------------------------------------------------------------
    def gbuffer(self, ident: Identity, shape_cm: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray]:
        """Rasterise one head at one camera at the supersampled resolution; albedo, normals, positions."""
        mesh = hd.build_head(shape_cm, ident.params, ident.texture.uv)
        R = self.resolution * self.ss
        screen = project(label, mesh.verts, R)
        frag = rasterize(screen, mesh.tris, R, R)
        m = frag.mask
        attrs = np.concatenate([mesh.normals, mesh.uv, mesh.tex_weight[:, None],
                                np.eye(3)[mesh.material], mesh.verts], 1)
        a = frag.interpolate(mesh.tris, attrs)
        normals = a[..., :3]
        normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-6)
        normals[~m] = 0
        uv, tw, mat, world = a[..., 3:5], a[..., 5:6], a[..., 6:9], a[..., 9:12]
        pos = world / hd.placement()[0]  # cm, for procedural noise at a physical scale
        tex = ident.texture
        face = cv2.remap(tex.albedo, uv[..., 0].astype(np.float32), uv[..., 1].astype(np.float32),
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        noise = sum(np.sin(pos @ k + ph) for k, ph in zip(ident.noise_k, ident.noise_phase))[..., None] / 4.0
        skin = tex.skin * (1.0 + 0.06 * noise)
        hair = ident.hair_colour * (1.0 + 0.35 * np.sin(pos @ (ident.noise_k[0] * [0.8, 0.05, 0.8]))[..., None])
        fm = mat[..., :1]
        albedo = fm * (tw * face + (1 - tw) * skin) + mat[..., 1:2] * skin + mat[..., 2:3] * hair
        lum = albedo @ np.array([0.2126, 0.7152, 0.0722], np.float32)
        albedo = lum[..., None] + ident.saturation * (albedo - lum[..., None])
        albedo = (np.clip(albedo * ident.gain, 0.005, 0.95) * ALBEDO_SCALE).astype(np.float32)
        albedo[~m] = 0
        eye = cam.split_label(label)[0][:3, 3]
        dist = np.linalg.norm(world - eye, axis=-1)
        depth = np.where(m, dist, 0).astype(np.float32)  # distance along the ray, as the model's renderer
        face_px = project(label, mesh.verts[:468], self.resolution)[:, :2]
        box = np.concatenate([face_px.min(0), face_px.max(0)]).astype(np.float32)
        return {"albedo": albedo, "normals": normals.astype(np.float32), "mask": m.astype(np.float32),
                "depth": depth, "tri": frag.tri, "bary": frag.bary, "mesh": mesh, "face": box}

    def shade(self, g: dict, sh_rgb: np.ndarray) -> np.ndarray:
        """Irradiance (clamped at zero) at the supersampled normals, downsampled: the shading ground truth."""
        n = g["normals"]
        s = shm.irradiance(shm.rotate_eg3d_to_sh(n.reshape(-1, 3)), sh_rgb).reshape(n.shape)
        s = np.maximum(s, 0) * g["mask"][..., None]
        return _down(s, self.ss).astype(np.float32)

    def view(self, g: dict, label: np.ndarray, sh_rgb: np.ndarray) -> View:
        """Downsample the G-buffer and shade it: one :class:`View`."""
        mask = _down(g["mask"], self.ss)
        cov = np.maximum(mask, 1e-6)[..., None]
        albedo = _down(g["albedo"], self.ss) / cov * (mask[..., None] > 0)
        shading = self.shade(g, sh_rgb) / cov * (mask[..., None] > 0)
        normals = _down(g["normals"], self.ss)
        normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-6)
        normals[mask == 0] = 0
        depth = _down(g["depth"], self.ss) / cov[..., 0]
        return View(label.astype(np.float32), (albedo * shading).astype(np.float32), albedo.astype(np.float32),
                    shading.astype(np.float32), normals.astype(np.float32), depth.astype(np.float32),
                    mask.astype(np.float32), g["face"])

    def composite(self, v: View, g: dict, sh_rgb: np.ndarray, bg: np.ndarray) -> np.ndarray:
        """The input frame: the head lit by ``sh_rgb`` over a background (coverage-weighted edges)."""
        shade = self.shade(g, sh_rgb) / np.maximum(v.mask, 1e-6)[..., None]
        img = v.albedo * shade * v.mask[..., None]
        return (img + bg * (1 - v.mask[..., None])).astype(np.float32)

    def flow_to(self, g_cur: dict, g_prev: dict, label_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact flow of each current pixel's surface point to the previous frame, and its visibility there."""
        R = self.resolution * self.ss
        tri, bary, m = g_cur["tri"], g_cur["bary"], g_cur["mask"] > 0
        prev_verts = g_prev["mesh"].verts
        pts = np.einsum("nk,nkc->nc", bary[m], prev_verts[g_cur["mesh"].tris[tri[m]]])
        uvz = project(label_prev, pts, R)
        flow = np.zeros((R, R, 2), np.float32)
        ys, xs = np.nonzero(m)
        flow[m] = uvz[:, :2] - np.stack([xs + 0.5, ys + 0.5], 1)
        qx = np.clip(np.floor(uvz[:, 0]).astype(int), 0, R - 1)
        qy = np.clip(np.floor(uvz[:, 1]).astype(int), 0, R - 1)
        dprev = g_prev["depth"][qy, qx]
        vis = np.zeros((R, R), np.float32)
        eye = cam.split_label(label_prev)[0][:3, 3]
        vis[m] = ((g_prev["mask"][qy, qx] > 0) & (np.abs(dprev - np.linalg.norm(pts - eye, axis=1)) < 0.02))
        return _down(flow, self.ss) / self.ss, (_down(vis, self.ss) > 0.99).astype(np.float32)

    def sample(self, rng: np.random.Generator) -> TeacherSample:
        ident = self.identity(rng)
        sh_src, sh_tgt = sample_sh(rng, self.dpr), sample_sh(rng, self.dpr)
        if rng.uniform() < 0.2:
            sh_tgt = sh_src.copy()
        cam_a, cam_b = self.random_camera(rng), self.random_camera(rng, 1.2)
        yaw_prev, pitch_prev = rng.normal(0, np.radians(2.0), 2)
        c2w_a, _ = cam.split_label(cam_a)
        eye = c2w_a[:3, 3]
        yaw = np.arctan2(eye[0], eye[2]) + yaw_prev
        pitch = np.arcsin(np.clip(eye[1] / np.linalg.norm(eye), -1, 1)) + pitch_prev
        cam_p = cam.make_label(cam.orbit_camera(yaw, pitch))
        t = rng.uniform(0.05, 0.2)
        shape_prev = (1 - t) * ident.shape_cm + t * ident.shape_next_cm
        g_a = self.gbuffer(ident, ident.shape_cm, cam_a)
        g_b = self.gbuffer(ident, ident.shape_cm, cam_b)
        g_p = self.gbuffer(ident, shape_prev, cam_p)
        g_pb = self.gbuffer(ident, shape_prev, cam_b)
        va, vb = self.view(g_a, cam_a, sh_tgt), self.view(g_b, cam_b, sh_tgt)
        vp, vpb = self.view(g_p, cam_p, sh_tgt), self.view(g_pb, cam_b, sh_tgt)
        bg = _background(rng, self.resolution, self.textures)
        inp = self.composite(va, g_a, sh_src, bg)
        inp_p = self.composite(vp, g_p, sh_src, bg)
        fa, visa = self.flow_to(g_a, g_p, cam_p)
        fb, visb = self.flow_to(g_b, g_pb, cam_b)
        return TeacherSample(inp, sh_src.astype(np.float32), sh_tgt.astype(np.float32), [va, vb], inp_p, [vp, vpb],
                             [fa, fb], [visa, visb], None, {"hair": ident.params.hair})
