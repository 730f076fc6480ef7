"""Relit frames to disk: the sequencer strip above the original, and exports (PNG, EXR, video, multilayer EXR).

Why through files: the sequencer shows image sequences natively and caches them, exports are the same files, and
a crash mid-way leaves every finished frame (each is written atomically). Colour management is set to the
Standard view transform so that what Blender shows and exports is the relit pixels themselves (AgX would change
them); the scene's previous view transform is reported, not silently lost.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
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


def relight_frames(context: bpy.types.Context, frames: list[int], write: Callable[[int, Any], None],
                   cancel: Callable[[], bool] = lambda: False, with_passes: bool = False) -> None:
    """Relight each scene frame with the lights and camera evaluated at that frame, and hand it to ``write``."""
    scene = context.scene
    settings = scene.portrait_relight
    from . import session as sessions

    session = sessions.get_session(settings, context)
    current = scene.frame_current
    wm = context.window_manager
    wm.progress_begin(0, len(frames))
    try:
        for n, frame in enumerate(frames):
            if cancel():
                raise Cancelled(f"stopped after {n} of {len(frames)} frames; finished frames are kept")
            scene.frame_set(frame)
            req = relight.request(scene, settings, session, context.evaluated_depsgraph_get(), frame)
            write(frame, relight.relight(session, req, with_passes))
            wm.progress_update(n + 1)
    finally:
        wm.progress_end()
        scene.frame_set(current)


def render_to_sequencer(context: bpy.types.Context, frames: Iterable[int] | None = None) -> Any:
    """Relight frames into ``<output>/sequencer/relit_#####.png`` and show them as a strip above the movie strip."""
    scene = context.scene
    settings = scene.portrait_relight
    from . import session as sessions

    session = sessions.get_session(settings, context)
    frames = clip_frames(scene, settings, session, frames)
    folder = output_dir(settings, "sequencer")
    names: list[str] = []

    def write(frame: int, relit: Any) -> None:
        name = f"relit_{frame:05d}.png"
        video.write_image(folder / name, relit.image, bits=8)
        names.append(name)

    relight_frames(context, frames, write)
    return _image_strip(scene, settings, folder, names, frames[0])


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


def export(context: bpy.types.Context, kind: str, frames: Iterable[int] | None = None) -> Path:
    """Export relit frames as ``PNG``, ``EXR``, ``MULTILAYER`` (beauty + passes) or ``VIDEO``; returns the folder
    or the video file."""
    scene = context.scene
    settings = scene.portrait_relight
    from . import session as sessions

    session = sessions.get_session(settings, context)
    frames = clip_frames(scene, settings, session, frames)
    folder = output_dir(settings, "export")
    stem = Path(settings.video_path).stem or "clip"

    if kind == "MULTILAYER":
        def write(frame: int, relit: Any) -> None:
            layers = {"": relit.image}
            layers.update({k: np.asarray(v, dtype=np.float32) for k, v in relit.passes.items()})
            exr_multilayer.write(folder / f"{stem}_passes_{frame:05d}.exr", layers)
    elif kind in ("PNG", "EXR", "VIDEO"):
        suffix = ".exr" if kind == "EXR" else ".png"
        frame_dir = folder if kind != "VIDEO" else output_dir(settings, "export/video_frames")

        def write(frame: int, relit: Any) -> None:
            video.write_image(frame_dir / f"{stem}_relit_{frame:05d}{suffix}", relit.image,
                              bits=8 if suffix == ".png" else None)
    else:
        raise RelightError(f"unknown export format {kind!r}: use PNG, EXR, VIDEO or MULTILAYER")
    relight_frames(context, frames, write, with_passes=kind == "MULTILAYER")
    if kind == "VIDEO":
        return encode_video(scene, frame_dir, [f"{stem}_relit_{f:05d}.png" for f in frames],
                            folder / f"{stem}_relit.mp4")
    return folder


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
