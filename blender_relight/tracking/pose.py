"""Head pose -> EG3D camera label, by PnP against a 3D face template the project derives itself.

Why a derived template: mediapipe 0.10.21's wheel ships no canonical face model, and copying one is not ours to do.
``python -m blender_relight.tracking.pose --build-template VIDEO...`` tracks real clips, keeps near-frontal frames,
averages their landmarks in EG3D crop space (mediapipe's z gives depth) and back-projects the average through EG3D's
frontal camera, so the template lives in EG3D world units by construction: a frontal face in an FFHQ-aligned crop
gives back the frontal camera. The result (478 x 3 numbers and provenance) is stored in ``face_template.json``.

Conventions: EG3D world (y up, face toward +z, head at the origin); crop intrinsics = EG3D's normalised focal
4.2647 × 512 px, principal point at the crop centre. Labels stay on EG3D's camera manifold: the camera sits at
radius 2.7 in the direction PnP found, looks at EG3D's pivot (0, 0, 0.2), and keeps the roll PnP found about that
line.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from blender_relight import camera
from blender_relight.errors import RelightError
from blender_relight.tracking import align
from blender_relight.tracking import landmarks as lmk

log = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).with_name("face_template.json")
#: Depth (EG3D world z) given to the midpoint of the outer eye corners: EG3D's pivot, a point on the face.
EYE_PLANE_Z = float(camera.LOOK_AT[2])

# Points that move little with expressions (nose, eye corners, forehead, upper cheeks, temples): PnP uses these.
RIGID_POINTS = np.array([1, 2, 4, 5, 6, 98, 168, 195, 197, 327,  # nose
                         33, 133, 362, 263,  # eye corners
                         9, 10, 67, 103, 108, 109, 151, 297, 332, 337, 338,  # forehead
                         50, 116, 117, 123, 280, 345, 346, 352,  # cheeks
                         21, 54, 127, 162, 234, 251, 284, 356, 389, 454])  # temples, upper face oval


def crop_intrinsics(size: int = align.CROP_SIZE) -> np.ndarray:
    """Pixel intrinsics of the crop (OpenCV pixel centres at integers)."""
    f = camera.FOCAL * size
    c = size / 2.0 - 0.5
    return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


def backproject_frontal(points_crop: np.ndarray, size: int = align.CROP_SIZE) -> np.ndarray:
    """Crop-space points (N, 3: px, px, mediapipe depth in crop px) -> EG3D world through the frontal camera.

    Depth: mediapipe's z (away from the camera) in crop pixels converts to world units at the eye plane's distance;
    the outer-eye-corner midpoint is put at z = EYE_PLANE_Z.
    """
    p = np.asarray(points_crop, dtype=np.float64)
    K = crop_intrinsics(size)
    f, c = K[0, 0], K[0, 2]
    d_ref = camera.RADIUS - EYE_PLANE_Z
    z_ref = (p[lmk.MP_EYE_RIGHT_OUTER, 2] + p[lmk.MP_EYE_LEFT_OUTER, 2]) / 2
    depth = d_ref + (p[:, 2] - z_ref) * d_ref / f
    X = (p[:, 0] - c) * depth / f
    Y = -(p[:, 1] - c) * depth / f
    Z = camera.RADIUS - depth
    return np.stack([X, Y, Z], axis=1)


@dataclass
class Template:
    """3D face template in EG3D world units: ``points`` (478, 3) and where they came from."""

    points: np.ndarray
    provenance: dict


@lru_cache(maxsize=1)
def load_template(path: str | None = None) -> Template:
    """The stored template (built once by ``--build-template``)."""
    p = Path(path) if path else TEMPLATE_PATH
    if not p.is_file():
        raise RelightError(f"{p}: face template missing; build it with "
                           "`python -m blender_relight.tracking.pose --build-template VIDEO...`")
    try:
        data = json.loads(p.read_text())
        pts = np.asarray(data["points"], dtype=np.float64)
    except (ValueError, KeyError) as exc:
        raise RelightError(f"{p}: face template unreadable ({exc}); rebuild it with --build-template") from exc
    if pts.shape != (lmk.MP_NUM_POINTS, 3):
        raise RelightError(f"{p}: face template has shape {pts.shape}, expected (478, 3); rebuild it")
    return Template(pts, {k: v for k, v in data.items() if k != "points"})


@dataclass
class HeadPose:
    """PnP result: world->camera rotation vector and translation (OpenCV), EG3D label, reprojection error."""

    rvec: np.ndarray
    tvec: np.ndarray
    cam2world: np.ndarray  # 4x4 on EG3D's camera manifold
    label: np.ndarray  # (25,) float32
    reproj_px: float  # RMS reprojection error of the rigid points in crop px (a confidence measure)


def solve_pnp(points_crop: np.ndarray, template: Template | None = None,
              guess: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """World->camera (rvec, tvec) of the crop camera from crop-space landmarks, and the RMS reprojection error."""
    template = template or load_template()
    idx = RIGID_POINTS
    obj = template.points[idx].astype(np.float64)
    img = np.asarray(points_crop, dtype=np.float64)[idx, :2]
    K = crop_intrinsics()
    if guess is None:
        # Start from the frontal camera: world->camera of cam2world rows [1,0,0,0],[0,-1,0,0],[0,0,-1,2.7].
        rvec0 = cv2.Rodrigues(np.diag([1.0, -1.0, -1.0]))[0]
        tvec0 = np.array([[0.0], [0.0], [camera.RADIUS]])
    else:
        rvec0, tvec0 = (np.asarray(g, dtype=np.float64).reshape(3, 1) for g in guess)
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, rvec0.copy(), tvec0.copy(), useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        rvec, tvec = rvec0, tvec0
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
    err = float(np.sqrt(np.mean(np.sum((proj[:, 0] - img) ** 2, axis=1))))
    return rvec.reshape(3), tvec.reshape(3), err


def view_params(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in radians of the camera seen from the head, EG3D's orbit convention.

    yaw/pitch place the camera on EG3D's sphere (``camera.orbit_camera``); roll is the turn about the viewing line
    between PnP's camera and the un-rolled look-at camera. These three are what the tracker smooths.
    """
    R = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))[0]
    centre = -R.T @ np.asarray(tvec, dtype=np.float64).reshape(3)  # camera centre in world
    d = centre / np.linalg.norm(centre)
    yaw = float(np.arctan2(d[0], d[2]))
    pitch = float(np.arcsin(np.clip(d[1], -1.0, 1.0)))
    base = camera.orbit_camera(yaw, pitch)
    x_pnp = R.T[:, 0]  # PnP camera's x axis in world
    x_base, y_base, z_base = base[:3, 0], base[:3, 1], base[:3, 2]
    x_proj = x_pnp - z_base * (x_pnp @ z_base)
    roll = float(np.arctan2(x_proj @ y_base, x_proj @ x_base))
    return np.array([yaw, pitch, roll])


def cam2world_from_view(params: np.ndarray) -> np.ndarray:
    """EG3D cam2world (radius 2.7, looking at the pivot) from (yaw, pitch, roll)."""
    yaw, pitch, roll = (float(v) for v in params)
    m = camera.orbit_camera(yaw, pitch)
    c, s = np.cos(roll), np.sin(roll)
    roll_m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # turn about the camera's own z (forward)
    m[:3, :3] = m[:3, :3] @ roll_m
    return m


def head_pose(points_crop: np.ndarray, template: Template | None = None,
              guess: tuple[np.ndarray, np.ndarray] | None = None) -> HeadPose:
    """Crop-space landmarks (478, 2+) -> HeadPose with the EG3D label."""
    rvec, tvec, err = solve_pnp(points_crop, template, guess)
    c2w = cam2world_from_view(view_params(rvec, tvec))
    return HeadPose(rvec, tvec, c2w, camera.make_label(c2w), err)


# -- template building --------------------------------------------------------------------------------------------
def frontal_score(points_crop: np.ndarray) -> float:
    """How far from frontal a crop-space face looks (0 = frontal): nose offset and eye-corner depth difference."""
    p = np.asarray(points_crop, dtype=np.float64)
    eye_l, eye_r = p[lmk.MP_EYE_RIGHT_OUTER], p[lmk.MP_EYE_LEFT_OUTER]
    eye_dist = np.linalg.norm(eye_r[:2] - eye_l[:2])
    nose_off = (p[lmk.MP_NOSE_TIP, 0] - (eye_l[0] + eye_r[0]) / 2) / eye_dist
    depth_diff = (eye_r[2] - eye_l[2]) / eye_dist
    return float(np.hypot(nose_off, depth_diff))


def build_template(videos: list[Path], max_frames: int = 300, threshold: float = 0.05,
                   progress: bool = True) -> Template:
    """Average near-frontal crop-space landmarks over ``videos`` (each clip weighs the same) and back-project."""
    from blender_relight.video import VideoReader  # noqa: PLC0415 - only the builder decodes video

    per_clip, used = [], {}
    for path in videos:
        backend = lmk.MediapipeBackend(max_num_faces=1)
        acc, n = np.zeros((lmk.MP_NUM_POINTS, 3)), 0
        with VideoReader(path) as reader:
            for index, frame in reader.frames(0, max_frames):
                faces = backend.detect(frame)
                if len(faces) != 1 or len(faces[0].points) != lmk.MP_NUM_POINTS:
                    continue
                t = align.CropTransform.from_landmarks(faces[0].points)
                pc = t.to_crop(faces[0].points).astype(np.float64)
                if frontal_score(pc) < threshold:
                    acc += pc
                    n += 1
        backend.close()
        used[Path(path).name] = n
        if progress:
            print(f"{Path(path).name}: {n} near-frontal frames")
        if n:
            per_clip.append(acc / n)
    if not per_clip:
        raise RelightError("no near-frontal frame found in the given videos; pass clips with a frontal face")
    mean_crop = np.mean(per_clip, axis=0)
    points = backproject_frontal(mean_crop)
    provenance = {
        "what": "mean mediapipe face-mesh landmarks of near-frontal frames in FFHQ-aligned 512 crop space, "
                "back-projected through EG3D's frontal camera (focal 4.2647, radius 2.7); eye plane at z=0.2",
        "clips": used, "frontal_threshold": threshold, "max_frames_per_clip": max_frames,
        "built": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
    }
    return Template(points, provenance)


# -- bias: symmetry and an upright reference ---------------------------------------------------------------------
def mirror_permutation(points: np.ndarray) -> np.ndarray:
    """Index map i -> j of the mirror twin of each template point (x -> -x, nearest neighbour; 28 points on the
    midline map to themselves). Mediapipe's own canonical model gives the same map (checked in tests)."""
    from scipy.spatial import cKDTree  # noqa: PLC0415 - only bias tools need it

    p = np.asarray(points, dtype=np.float64)
    return cKDTree(p).query(p * np.array([-1.0, 1.0, 1.0]))[1]


def symmetrised(points: np.ndarray) -> np.ndarray:
    """The template averaged with its mirror image: no left/right bias in yaw or roll by construction."""
    p = np.asarray(points, dtype=np.float64)
    twin = mirror_permutation(p)
    mirrored = p[twin] * np.array([-1.0, 1.0, 1.0])
    return (p + mirrored) / 2.0


def _project_frontal(points: np.ndarray) -> np.ndarray:
    """World points seen by EG3D's frontal camera (crop px, zero depth column), as PnP receives landmarks."""
    w2c = np.linalg.inv(camera.orbit_camera(0.0, 0.0))
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    K = crop_intrinsics()
    uv = cam[:, :2] / cam[:, 2:] @ K[:2, :2].T + K[:2, 2]
    return np.concatenate([uv, np.zeros((len(uv), 1))], axis=1)


def reference_pose_deg(template_points: np.ndarray, reference_points: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees that PnP with ``template_points`` reports for an upright ``reference`` face
    (468 mediapipe-ordered points, any unit, y up, facing +z) placed at the template's rigid points and seen by the
    frontal camera: the pose bias of the tracker against that reference (0 = unbiased)."""
    t = np.asarray(template_points, dtype=np.float64)
    ref = np.asarray(reference_points, dtype=np.float64)[:lmk.MP_NUM_POINTS]
    idx = RIGID_POINTS[RIGID_POINTS < len(ref)]
    a, b = ref[idx], t[idx]
    scale = np.sqrt(((b - b.mean(0)) ** 2).sum() / ((a - a.mean(0)) ** 2).sum())
    placed = (ref - a.mean(0)) * scale + b.mean(0)
    if len(placed) < len(t):  # the reference has no iris points: borrow the template's (PnP does not use them)
        placed = np.vstack([placed, t[len(placed):]])
    hp = head_pose(_project_frontal(placed), Template(t, {}))
    return np.degrees(view_params(hp.rvec, hp.tvec))


def _rotate_about_pivot(points: np.ndarray, pitch_rad: float) -> np.ndarray:
    c, s = np.cos(pitch_rad), np.sin(pitch_rad)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    pivot = camera.LOOK_AT
    return (np.asarray(points, dtype=np.float64) - pivot) @ rx.T + pivot


def upright_template(template: Template, reference_points: np.ndarray) -> tuple[Template, dict]:
    """Symmetrise the template and turn it about the pivot's x axis until an upright ``reference`` face seen
    frontally gives pitch 0 (Newton steps on the measured pitch). Returns the new template and the figures."""
    before = reference_pose_deg(template.points, reference_points)
    pts = symmetrised(template.points)
    turned = 0.0
    for _ in range(6):
        pitch = reference_pose_deg(pts, reference_points)[1]
        if abs(pitch) < 1e-3:
            break
        step = 0.5
        probe = reference_pose_deg(_rotate_about_pivot(pts, np.radians(step)), reference_points)[1]
        slope = (probe - pitch) / step
        delta = -pitch / slope if abs(slope) > 1e-6 else -pitch
        pts = _rotate_about_pivot(pts, np.radians(delta))
        turned += delta
    after = reference_pose_deg(pts, reference_points)
    figures = {"reference_pose_before_deg": [round(float(v), 3) for v in before],
               "reference_pose_after_deg": [round(float(v), 3) for v in after], "turned_pitch_deg": round(turned, 3)}
    provenance = dict(template.provenance)
    provenance["upright"] = dict(figures, how="symmetrised (mean with its mirror image), then turned about the "
                                 "pivot's x axis so that mediapipe's canonical face model, upright and seen by the "
                                 "frontal camera, gives pitch 0")
    provenance["built"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    return Template(pts, provenance), figures


def read_obj_vertices(path: Path) -> np.ndarray:
    """Vertices of a Wavefront OBJ file (mediapipe's canonical_face_model.obj)."""
    rows = [line.split()[1:4] for line in Path(path).read_text().splitlines() if line.startswith("v ")]
    if not rows:
        raise RelightError(f"{path}: no vertices; pass mediapipe's canonical_face_model.obj")
    return np.asarray(rows, dtype=np.float64)


def save_template(template: Template, path: Path = TEMPLATE_PATH) -> None:
    from blender_relight.io_utils import write_bytes_atomic  # noqa: PLC0415

    data = dict(template.provenance)
    data["points"] = [[round(float(v), 6) for v in row] for row in template.points]
    write_bytes_atomic(path, json.dumps(data, indent=0).encode())
    load_template.cache_clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-template", nargs="+", metavar="VIDEO",
                        help="portrait clips to derive the face template from")
    parser.add_argument("--upright", type=Path, metavar="OBJ",
                        help="symmetrise the template and level its pitch against this upright face model "
                             "(mediapipe's canonical_face_model.obj); applied after --build-template if both")
    parser.add_argument("--max-frames", type=int, default=300)
    parser.add_argument("--out", type=Path, default=TEMPLATE_PATH)
    args = parser.parse_args(argv)
    if not args.build_template and not args.upright:
        parser.error("give --build-template VIDEO... and/or --upright OBJ")
    template = (build_template([Path(v) for v in args.build_template], args.max_frames) if args.build_template
                else load_template())
    if args.upright:
        template, figures = upright_template(template, read_obj_vertices(args.upright))
        print(f"upright: {figures}")
    save_template(template, args.out)
    print(f"wrote {args.out} ({len(template.points)} points)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
