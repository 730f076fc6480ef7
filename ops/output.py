"""Relit frames to disk: the sequencer strip above the original, and exports (PNG, EXR, video, multilayer EXR).

Why through files: the sequencer shows image sequences natively and caches them, exports are the same files, and
a crash mid-way leaves every finished frame (each is written atomically). Colour management is set to the
Standard view transform so that what Blender shows and exports is the relit pixels themselves (AgX would change
them); the scene's previous view transform is reported, not silently lost.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from blender_relight import video
from blender_relight.errors import Cancelled, RelightError
from blender_relight.io_utils import ensure_writable_dir

from . import compat, exr_multilayer, relight

RELIT_CHANNEL_OFFSET = 1


def version() -> tuple[int, int, int]:
    return tuple(bpy.app.version)


def output_dir(settings: Any, sub: str) -> Path:
    """``<output folder>/<sub>``; a relative (``//``) folder needs the .blend saved or falls back to the cache."""
    raw = settings.output_dir or "//relit/"
    if raw.startswith("//") and not bpy.data.filepath:
        from . import session as sessions

        root = Path(sessions.preferences().cache_dir).parent / "output"
    else:
        root = Path(bpy.path.abspath(raw))
    return ensure_writable_dir(root / sub)


def use_standard_view(scene: bpy.types.Scene) -> str | None:
    """Set the Standard view transform (no look, exposure 0, gamma 1); return the old transform if it changed."""
    vs = scene.view_settings
    old = vs.view_transform
    scene.display_settings.display_device = "sRGB"
    vs.view_transform = "Standard"
    vs.look = "None"
    vs.exposure, vs.gamma = 0.0, 1.0
    scene.sequencer_colorspace_settings.name = "sRGB"
    return old if old != "Standard" else None


def clip_frames(scene: bpy.types.Scene, settings: Any, session: Any, frames: Iterable[int] | None) -> list[int]:
    """Scene frames to relight: the given ones, else the scene range clipped to the clip."""
    first, last = settings.frame_start, settings.frame_start + session.info.frame_count - 1
    if frames is None:
        frames = range(max(scene.frame_start, first), min(scene.frame_end, last) + 1)
    frames = [f for f in frames if first <= f <= last]
    if not frames:
        raise RelightError(f"no clip frame in the chosen range: the clip covers scene frames {first}-{last}")
    return frames


@dataclass
class OutputTask:
    """Relit frames to write: lights and cameras are read per frame on the main thread (``plan``), the frames are
    relit and written by :meth:`run` (no bpy: safe in a worker thread), then :attr:`finish` runs on the main thread
    (sequencer strip, video encode)."""

    session: Any
    plan: list[tuple[int, relight.FrameRequest]]
    write: Callable[[int, Any], None]
    finish: Callable[[], Any]
    with_passes: bool = False

    def run(self, progress: Callable[[int, int], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> int:
        total = len(self.plan)
        for n, (frame, req) in enumerate(self.plan):
            if cancel is not None and cancel():
                raise Cancelled(f"stopped after {n} of {total} frames; the finished frames are kept")
            self.write(frame, relight.relight(self.session, req, self.with_passes))
            if progress is not None:
                progress(n + 1, total)
        return total


def plan_requests(context: bpy.types.Context, session: Any, frames: list[int]) -> list[tuple[int, relight.FrameRequest]]:
    """The lights (SH) and camera of every frame, evaluated at that frame (animated lights and cameras included)."""
    scene = context.scene
    settings = scene.portrait_relight
    current = scene.frame_current
    plan = []
    try:
        for frame in frames:
            scene.frame_set(frame)
            plan.append((frame, relight.request(scene, settings, session, context.evaluated_depsgraph_get(), frame)))
    finally:
        scene.frame_set(current)
    return plan


def prepare_render_to_sequencer(context: bpy.types.Context, frames: Iterable[int] | None = None) -> OutputTask:
    """Plan relit frames into ``<output>/sequencer/relit_#####.png``, shown as a strip above the movie strip."""
    scene = context.scene
    settings = scene.portrait_relight
    from . import session as sessions

    session = sessions.get_session(settings, context)
    frames = clip_frames(scene, settings, session, frames)
    folder = output_dir(settings, "sequencer")
    names = [f"relit_{frame:05d}.png" for frame in frames]

    def write(frame: int, relit: Any) -> None:
        video.write_image(folder / f"relit_{frame:05d}.png", relit.image, bits=8)

    return OutputTask(session, plan_requests(context, session, frames), write,
                      lambda: _image_strip(scene, settings, folder, names, frames[0]))


def render_to_sequencer(context: bpy.types.Context, frames: Iterable[int] | None = None) -> Any:
    """Blocking render to the sequencer (scripts, background mode); returns the strip."""
    task = prepare_render_to_sequencer(context, frames)
    task.run()
    return task.finish()


def _image_strip(scene: bpy.types.Scene, settings: Any, folder: Path, names: list[str], frame_start: int) -> Any:
    """Create (or refresh) the relit image-sequence strip one channel above the movie strip."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = compat.strips(editor, version())
    movie = strips.get(settings.movie_strip) if settings.movie_strip else None
    channel = (movie.channel if movie is not None else 1) + RELIT_CHANNEL_OFFSET
    old = strips.get(settings.relit_strip) if settings.relit_strip else None
    if old is not None:
        strips.remove(old)
    strip = strips.new_image(name="Relit", filepath=str(folder / names[0]), channel=channel, frame_start=frame_start)
    for name in names[1:]:
        strip.elements.append(name)
    strip.colorspace_settings.name = "sRGB"
    compat.invalidate_strip(strip)
    settings.relit_strip = strip.name
    return strip


def refresh_relit_frame(scene: bpy.types.Scene, settings: Any, frame: int, image: np.ndarray) -> bool:
    """If the relit strip shows scene ``frame``, rewrite that file and invalidate the strip: the sequencer follows
    the live preview without a full re-render. Returns True when a file was rewritten."""
    editor = scene.sequence_editor
    strip = compat.strips(editor, version()).get(settings.relit_strip) if editor and settings.relit_strip else None
    if strip is None:
        return False
    offset = frame - int(strip.frame_start)
    if not 0 <= offset < len(strip.elements):
        return False
    video.write_image(Path(bpy.path.abspath(strip.directory)) / strip.elements[offset].filename, image, bits=8)
    compat.invalidate_strip(strip)
    return True


def prepare_export(context: bpy.types.Context, kind: str, frames: Iterable[int] | None = None) -> OutputTask:
    """Plan an export as ``PNG``, ``EXR``, ``MULTILAYER`` (beauty + passes) or ``VIDEO``; its ``finish`` returns the
    folder or the video file."""
    scene = context.scene
    settings = scene.portrait_relight
    from . import session as sessions

    if kind not in ("PNG", "EXR", "VIDEO", "MULTILAYER"):
        raise RelightError(f"unknown export format {kind!r}: use PNG, EXR, VIDEO or MULTILAYER")
    session = sessions.get_session(settings, context)
    frames = clip_frames(scene, settings, session, frames)
    folder = output_dir(settings, "export")
    stem = Path(settings.video_path).stem or "clip"

    if kind == "MULTILAYER":
        def write(frame: int, relit: Any) -> None:
            layers = {"": relit.image}
            layers.update({k: np.asarray(v, dtype=np.float32) for k, v in relit.passes.items()})
            exr_multilayer.write(folder / f"{stem}_passes_{frame:05d}.exr", layers)
    else:
        suffix = ".exr" if kind == "EXR" else ".png"
        frame_dir = folder if kind != "VIDEO" else output_dir(settings, "export/video_frames")

        def write(frame: int, relit: Any) -> None:
            video.write_image(frame_dir / f"{stem}_relit_{frame:05d}{suffix}", relit.image,
                              bits=8 if suffix == ".png" else None)

    def finish() -> Path:
        if kind == "VIDEO":
            return encode_video(scene, frame_dir, [f"{stem}_relit_{f:05d}.png" for f in frames],
                                folder / f"{stem}_relit.mp4")
        return folder

    return OutputTask(session, plan_requests(context, session, frames), write, finish, kind == "MULTILAYER")


def export(context: bpy.types.Context, kind: str, frames: Iterable[int] | None = None) -> Path:
    """Blocking export (scripts, background mode); returns the folder or the video file."""
    task = prepare_export(context, kind, frames)
    task.run()
    return task.finish()


def encode_video(scene: bpy.types.Scene, frame_dir: Path, names: list[str], target: Path) -> Path:
    """Encode PNG frames with Blender's own FFmpeg output (H.264 MP4) from a temporary sequencer-only scene."""
    tmp = bpy.data.scenes.new("Portrait Relight export")
    try:
        tmp.render.fps, tmp.render.fps_base = scene.render.fps, scene.render.fps_base
        first = video.read_image(frame_dir / names[0])
        tmp.render.resolution_x, tmp.render.resolution_y = first.shape[1], first.shape[0]
        tmp.render.resolution_percentage = 100
        editor = tmp.sequence_editor_create()
        strip = compat.strips(editor, version()).new_image(name="frames", filepath=str(frame_dir / names[0]),
                                                           channel=1, frame_start=1)
        for name in names[1:]:
            strip.elements.append(name)
        strip.colorspace_settings.name = "sRGB"
        tmp.frame_start, tmp.frame_end = 1, len(names)
        use_standard_view(tmp)
        compat.set_video_output(tmp.render.image_settings, version())
        ff = tmp.render.ffmpeg
        ff.format, ff.codec = "MPEG4", "H264"
        ff.constant_rate_factor = "HIGH"
        tmp.render.use_file_extension = False
        part = target.with_name(f".{target.stem}.part{target.suffix}")
        tmp.render.filepath = str(part)
        bpy.ops.render.render(animation=True, scene=tmp.name)
        if not part.exists():
            raise RelightError(f"Blender's FFmpeg output wrote no video to {part}; export a PNG sequence instead")
        os.replace(part, target)
    finally:
        bpy.data.scenes.remove(tmp)
    return target
