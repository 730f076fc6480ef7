"""The embedded default job: the shipped public-domain portrait made into a short clip, relit under a moving light
at the filmed viewpoint, then (with the neural engine) seen from a camera orbiting the head, written as image
sequences, videos and contact sheets.

Why two sequences: at the filmed viewpoint the product keeps the plate and applies the engine's shading ratio, which
is what an artist keying lights on a filmed face uses; the orbit re-poses the same plate on the tracked head
geometry (``blender_relight.novel_view``: the filmed pixels reprojected to the new camera, what the frame did not see
from the clip's other frames, its mirror image or a smooth fill) and relights it with the same ratio. The orbit is
relative to each frame's filmed pose (±25° yaw, ±6° pitch), inside the novel views' range.

Why a still made into a clip: the project must run offline with nothing downloaded, and the only real portrait it may
ship is the public-domain astronaut photo (NASA, via scikit-image). A slow hand-held drift and zoom give the tracker,
the smoother and the temporal path real work, as a filmed clip would.
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from blender_relight.lighting import sh as shmath
from blender_relight import camera

SAMPLE_NAME = "astronaut.jpg"


def sample_path() -> Path:
    """Path of the shipped sample portrait (public domain: NASA portrait of Eileen Collins, from scikit-image)."""
    return Path(str(resources.files("blender_relight") / "samples" / SAMPLE_NAME))


def make_demo_clip(out_path: str | Path, frames: int = 48, fps: float = 24.0) -> Path:
    """Write a short clip of the sample portrait with a slow hand-held drift, zoom and roll (streamed to disk)."""
    from blender_relight.video import VideoWriter, read_image

    still = read_image(sample_path())
    h, w = still.shape[:2]
    with VideoWriter(out_path, fps, (w, h)) as writer:
        for i in range(frames):
            t = i / max(frames - 1, 1)
            angle = 2.0 * math.sin(2.0 * math.pi * t)          # degrees of roll
            scale = 1.0 + 0.06 * t                              # slow push-in
            dx, dy = 6.0 * math.sin(math.pi * t), 4.0 * math.sin(2.0 * math.pi * t)
            m = cv2.getRotationMatrix2D((w * 0.5, h * 0.42), angle, scale)
            m[:, 2] += (dx, dy)
            writer.write(cv2.warpAffine(still, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return Path(out_path)


def demo_light(t: float) -> np.ndarray:
    """RGB SH at time ``t`` in [0, 1]: a warm key light swinging from the subject's right, across the front, to the
    left and back at 30° elevation, over a cool ambient fill."""
    azimuth = -math.pi / 2.0 - math.radians(80.0) * math.cos(2.0 * math.pi * t)  # -90°: straight in front
    elevation = math.radians(30.0)
    # SH frame: x right, y into the face (away from the viewer), z up; a light in front has negative y.
    direction = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                          math.sin(elevation)])
    key = shmath.directional_light_sh(direction, np.array([1.0, 0.86, 0.7]) * 3.0)
    fill = shmath.ambient_sh(np.array([0.10, 0.12, 0.16]))
    return key + fill


def demo_camera(t: float, max_yaw_deg: float = 25.0, max_pitch_deg: float = 6.0,
                source_label: np.ndarray | None = None) -> np.ndarray:
    """EG3D camera label at time ``t``: an orbit swinging ±25° in yaw and gently in pitch around the head, relative
    to ``source_label`` (the frame's filmed camera: the orbit starts where the frame was filmed) or, without it,
    around EG3D's frontal camera."""
    yaw = max_yaw_deg * math.sin(2.0 * math.pi * t)
    pitch = max_pitch_deg * math.sin(4.0 * math.pi * t)
    if source_label is not None:
        from blender_relight.novel_view.views import offset_label

        return offset_label(source_label, yaw, pitch)
    return camera.make_label(camera.orbit_camera(math.radians(yaw), math.radians(pitch)))


def run_demo(out_dir: Path, frames: int = 48, engine: str = "auto", provider: str = "auto",
             progress_factory=None) -> "JobSummary":
    """Build the sample clip, analyse it, relight it under the moving light, and orbit the camera when the engine
    can show new viewpoints; export.

    Outputs in ``out_dir``: ``input.mp4`` (the clip), ``frames/frame_*.png`` and ``relit.mp4`` (filmed viewpoint,
    moving light), ``relit.contact.png``, ``orbit/frame_*.png`` and ``orbit.mp4`` (orbiting camera, same light; engines
    that show new views) and ``comparison.png`` (input, relit and orbit rows on the same frames).
    """
    from blender_relight.contact_sheet import save_contact_sheet
    from blender_relight.export import export_sequence
    from blender_relight.io_utils import ensure_writable_dir
    from blender_relight.pipeline import ClipSession, JobSummary
    from blender_relight.video import VideoReader, read_image

    out_dir = ensure_writable_dir(out_dir)
    clip = make_demo_clip(out_dir / "input.mp4", frames=frames)
    session = ClipSession(clip, cache_dir=out_dir / "cache", engine=engine, provider=provider)
    bar = progress_factory or (lambda label: None)
    session.analyse(progress=bar("analyse"))
    novel = session.engine.supports_novel_view
    n = session.info.frame_count
    light = lambda i: demo_light(i / max(n - 1, 1))  # noqa: E731
    session.render_sequence(out_dir / "frames", light=light, progress=bar("relight"))
    exported = export_sequence(out_dir / "frames", out_dir / "relit.mp4", fps=session.info.fps, progress=bar("export"))
    sequences = [("relit", out_dir / "frames")]
    if novel:
        def orbit(i: int) -> np.ndarray | None:
            source = session.source_camera(i)  # frames without a face pass through untouched
            return None if source is None else demo_camera(i / max(n - 1, 1), source_label=source)

        session.render_sequence(out_dir / "orbit", light=light, camera=orbit, progress=bar("orbit"))
        export_sequence(out_dir / "orbit", out_dir / "orbit.mp4", fps=session.info.fps, progress=bar("export orbit"))
        sequences.append(("orbit", out_dir / "orbit"))
    picks = [round(k * (n - 1) / 5) for k in range(6)]
    with VideoReader(clip) as reader:
        images = [reader.read(i) for i in picks]
    labels = [f"input {i}" for i in picks]
    for name, folder in sequences:
        images += [read_image(folder / f"frame_{i:06d}.png") for i in picks]
        labels += [f"{name} {i}" for i in picks]
    save_contact_sheet(out_dir / "comparison.png", images, labels, columns=len(picks), thumb=200)
    session.close()
    summary = JobSummary(f"demo done: {n} frames relit with the {session.engine.name} engine"
                         + (" at the filmed viewpoint and from an orbiting camera" if novel
                            else " (filmed viewpoint only: the analytic engine cannot orbit the camera)"))
    summary.lines += [f"input clip: {clip}", f"relit frames: {out_dir / 'frames'}"] + exported.lines[:]
    if novel:
        summary.lines += [f"orbit frames: {out_dir / 'orbit'}", f"orbit video: {out_dir / 'orbit.mp4'}"]
    summary.lines.append(f"input vs relit: {out_dir / 'comparison.png'}")
    return summary
