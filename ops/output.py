"""Relit frames to disk: the sequencer strip above the original, and exports (PNG, EXR, video, multilayer EXR).

Why through files: the sequencer shows image sequences natively and caches them, exports are the same files, and
a crash mid-way leaves every finished frame. This module only plans: it reads each frame's lights and camera on the
main thread into requests, and makes strips and videos; ``blender_relight.sequence`` writes the frames (naming,
formats, resume of an identical request, removal of an earlier job's frames), the same code as the CLI. Colour
management is set to the Standard view transform so that what Blender shows and exports is the relit pixels
themselves (AgX would change them); the scene's previous view transform is reported, not silently lost.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from blender_relight import sequence, video
from blender_relight.errors import RelightError
from blender_relight.io_utils import ensure_writable_dir

from . import compat, relight

RELIT_CHANNEL_OFFSET = 1
#: Where frames go while the .blend file is not saved (a visible folder in the user's home, said in the status).
UNSAVED_ROOT = Path.home() / "Portrait Relight"


def version() -> tuple[int, int, int]:
    return tuple(bpy.app.version)


def output_root(settings: Any) -> tuple[Path, str]:
    """The output folder and a note for the status when it is not the one a user would guess.

    Empty (the default): ``relit/`` beside the saved .blend; ``//`` paths are relative to it. While the .blend is not
    saved, both go to ``~/Portrait Relight/<clip name>/`` (visible, and said in the status line).
    """
    raw = compat.read_prop(settings, "output_dir", "") or ""
    stem = Path(compat.read_prop(settings, "video_path", "") or "clip").stem or "clip"
    if not raw or raw.startswith("//"):
        if not bpy.data.filepath:
            root = UNSAVED_ROOT / stem
            return root, f" (the .blend is not saved: output in {root}; save it to keep output beside it)"
        return Path(bpy.path.abspath(raw or "//relit/")), ""
    return Path(bpy.path.abspath(raw)), ""


def output_dir(settings: Any, sub: str) -> Path:
    """``<output folder>/<sub>``, created (RelightError when it cannot be written)."""
    return ensure_writable_dir(output_root(settings)[0] / sub)


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
    relit and written by :meth:`run` through ``blender_relight.sequence`` (no bpy: safe in a worker thread), then
    :attr:`finish` runs on the main thread (sequencer strip, video encode)."""

    session: Any
    plan: list[tuple[int, relight.FrameRequest]]
    folder: Path
    image_format: str
    naming: sequence.FrameNaming
    finish: Callable[[], Any]
    png_bits: int = 8
    summary: Any = field(default=None, init=False)

    def run(self, progress: Callable[[int, int], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> int:
        by_index = {req.index: req for _, req in self.plan}
        self.summary = sequence.render_sequence(
            self.session, self.folder, frames=list(by_index), light=lambda i: by_index[i].lighting,
            camera=lambda i: by_index[i].camera_label, image_format=self.image_format, naming=self.naming,
            png_bits=self.png_bits, progress=progress, cancel=cancel)
        return len(self.plan)


def plan_requests(context: bpy.types.Context, session: Any, frames: list[int]) -> list[tuple[int, relight.FrameRequest]]:
    """The lighting and camera of every frame, evaluated at that frame (animated lights and cameras included)."""
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


def scene_naming(settings: Any, prefix: str) -> sequence.FrameNaming:
    """Files numbered by scene frame (``relit_00001.png`` for the clip's first frame at scene frame 1)."""
    return sequence.FrameNaming(prefix=prefix, digits=5, offset=int(settings.frame_start))


def prepare_render_to_sequencer(context: bpy.types.Context, frames: Iterable[int] | None = None) -> OutputTask:
    """Plan relit frames into ``<output>/sequencer/relit_#####.png`` (scene frame numbers), shown as a strip above
    the movie strip."""
    scene = context.scene
    settings = scene.portrait_relight
    from . import session as sessions

    session = sessions.get_session(settings, context)
    frames = clip_frames(scene, settings, session, frames)
    folder = output_dir(settings, "sequencer")
    naming = scene_naming(settings, "relit_")
    names = [naming.name(f - settings.frame_start, ".png") for f in frames]
    return OutputTask(session, plan_requests(context, session, frames), folder, "png", naming,
                      lambda: _image_strip(scene, settings, folder, names, frames[0]))


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


#: Linear (quantised to 1/65535) -> 8-bit sRGB: the strip frame a light drag rewrites, in ~3 ms at 512² instead of
#: the power function's ~20 (the same codes as ``colour.linear_to_uint8_srgb`` but at rare code boundaries).
_SRGB8_LUT = None


def srgb8(image_linear: np.ndarray) -> np.ndarray:
    """Linear float RGB -> 8-bit sRGB through a 65536-entry table."""
    global _SRGB8_LUT
    if _SRGB8_LUT is None:
        from blender_relight import colour

        _SRGB8_LUT = colour.linear_to_uint8_srgb(np.linspace(0.0, 1.0, 65536, dtype=np.float32))
    index = np.empty(np.shape(image_linear), np.uint16)
    np.rint(np.clip(np.asarray(image_linear, np.float32), 0.0, 1.0) * 65535.0, out=index, casting="unsafe")
    return _SRGB8_LUT[index]


def write_png_fast(path: Path, image_linear: np.ndarray) -> None:
    """An 8-bit sRGB PNG with OpenCV's default (fast, RLE) compression, atomically (the live preview's strip
    frame)."""
    import cv2

    from blender_relight.io_utils import atomic_path

    bgr = np.ascontiguousarray(srgb8(image_linear)[..., ::-1])
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), bgr):
            raise RelightError(f"{path}: could not write the relit frame; check the folder and the disk space")


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
    folder = Path(bpy.path.abspath(strip.directory))
    write_png_fast(folder / strip.elements[offset].filename, image)
    # The folder no longer holds what its render job recorded: the next Render to Sequencer redoes every frame.
    (folder / scene_naming(settings, "relit_").job_file()).unlink(missing_ok=True)
    compat.invalidate_strip(strip)
    return True


#: Export kind -> (format, file prefix after the clip's name, sub-folder of the export folder).
EXPORTS = {"PNG": ("png", "relit", ""), "EXR": ("exr", "linear", ""), "MULTILAYER": ("multilayer", "passes", ""),
           "VIDEO": ("png", "relit", "video_frames")}


def prepare_export(context: bpy.types.Context, kind: str, frames: Iterable[int] | None = None) -> OutputTask:
    """Plan an export as ``PNG`` (8-bit sRGB), ``EXR`` (half RGBA linear), ``MULTILAYER`` (beauty + passes) or
    ``VIDEO``; its ``finish`` returns the folder or the video file."""
    scene = context.scene
    settings = scene.portrait_relight
    from . import session as sessions

    if kind not in EXPORTS:
        raise RelightError(f"unknown export format {kind!r}: use PNG, EXR, VIDEO or MULTILAYER")
    image_format, what, sub = EXPORTS[kind]
    session = sessions.get_session(settings, context)
    frames = clip_frames(scene, settings, session, frames)
    folder = output_dir(settings, "export")
    frame_dir = output_dir(settings, f"export/{sub}") if sub else folder
    stem = Path(settings.video_path).stem or "clip"
    naming = scene_naming(settings, f"{stem}_{what}_")

    def finish() -> Path:
        if kind == "VIDEO":
            return encode_video(scene, frame_dir, [naming.name(f - settings.frame_start, ".png") for f in frames],
                                folder / f"{stem}_relit.mp4")
        return folder

    return OutputTask(session, plan_requests(context, session, frames), frame_dir, image_format, naming, finish)


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
        part = sequence.part_path(target)
        tmp.render.filepath = str(part)
        bpy.ops.render.render(animation=True, scene=tmp.name)
        sequence.publish_video(part, target, len(names))  # decoded again before it gets its name
    finally:
        bpy.data.scenes.remove(tmp)
    return target
