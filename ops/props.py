"""Per-scene settings and state of the relit clip (``scene.portrait_relight``).

Why on the scene: the .blend file remembers which video, cache, anchor and camera belong together, so a reopened
file resumes from the cache without asking again. Python objects (the ClipSession) live in ``session.py``.
"""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty)

ENGINES = [
    ("auto", "Auto", "The geometry engine: the tracked head mesh, each light shaded with cast shadows and "
                     "highlights, new camera angles by reprojecting the filmed plate"),
    ("geometry", "Geometry", "Same as Auto"),
    ("analytic", "Analytic", "Tracked face geometry and an SH shading ratio (no model files needed)"),
    ("neural", "Neural", "The 3D-aware relighting network (needs the ONNX model files)"),
]

EXPORT_FORMATS = [
    ("PNG", "PNG sequence", "8-bit sRGB RGB PNG frames (Standard view transform)"),
    ("EXR", "EXR sequence", "Linear half-float RGBA OpenEXR frames, ZIP-compressed; alpha is 1 (the relit frame "
                            "covers the whole plate; the head's matte is the multilayer export's alpha layer)"),
    ("VIDEO", "Video", "H.264 MP4 through Blender's FFmpeg output, decoded again before it gets its name"),
    ("MULTILAYER", "Multilayer EXR passes", "One ZIP-compressed EXR per frame: half-float beauty (RGBA), albedo, "
                                            "normal, shading and alpha layers, and depth in 32-bit float"),
]


def _path_options() -> set[str]:
    """Blender 5.0 warns about ``//`` in a path property unless it says it supports blend-relative paths (which
    the output folder does: ``ops.output.output_root``); 4.2 does not know that option."""
    return {"PATH_SUPPORTS_BLEND_RELATIVE"} if tuple(bpy.app.version) >= (5, 0, 0) else set()


def _relink_video(settings: "PortraitRelightSettings", context: bpy.types.Context) -> None:
    """The Video field changed (a moved clip relinked): point the movie strip at the new file too."""
    from . import compat

    path = bpy.path.abspath(settings.video_path) if settings.video_path else ""
    scene = settings.id_data
    editor = getattr(scene, "sequence_editor", None)
    if not path or not settings.movie_strip or editor is None:
        return
    strip = compat.strips(editor, tuple(bpy.app.version)).get(settings.movie_strip)
    if strip is not None and bpy.path.abspath(strip.filepath) != path:
        import os

        if os.path.isfile(path):
            strip.filepath = path


def _is_empty(_self, obj: bpy.types.Object) -> bool:
    return obj.type == "EMPTY"


def _is_camera(_self, obj: bpy.types.Object) -> bool:
    return obj.type == "CAMERA"


class PortraitRelightSettings(bpy.types.PropertyGroup):
    """Settings of the clip being relit in this scene."""

    video_path: StringProperty(name="Video", subtype="FILE_PATH", update=_relink_video,
                               description="Source portrait video (set its new place here after moving it: the "
                                           "movie strip and the analysis cache follow)")
    engine_note: StringProperty(name="Engine in use", description="Which engine the clip's session runs")
    engine: EnumProperty(name="Engine", items=ENGINES, default="auto")
    anchor: PointerProperty(name="Head anchor", type=bpy.types.Object, poll=_is_empty,
                            description="Empty that follows the tracked head; lights and camera are read relative to it")
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_is_camera,
                            description="Camera whose view relative to the head anchor is rendered")
    proxy: PointerProperty(name="Head proxy", type=bpy.types.Object)
    movie_strip: StringProperty(name="Movie strip", description="Name of the source video's sequencer strip")
    relit_strip: StringProperty(name="Relit strip", description="Name of the relit image-sequence strip")
    frame_start: IntProperty(name="Start frame", default=1, description="Scene frame of the clip's first frame")
    stride: IntProperty(name="Stride", default=1, min=1, description="Analyse every n-th frame (preview quality)")
    analysed: BoolProperty(name="Analysed", default=False)
    busy: BoolProperty(name="Busy", default=False, description="An analysis, render or export is running")
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(name="Status", default="")
    live: BoolProperty(name="Live preview", default=False,
                       description="Relight the current frame whenever a light, the camera or the frame changes")
    use_source_camera: BoolProperty(name="Keep source view", default=False,
                                    description="Ignore the scene camera and keep the filmed viewpoint")
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="", options=_path_options(),
                               description="Folder for rendered and exported frames (empty: relit/ beside the "
                                           "saved .blend; while the .blend is unsaved, ~/Portrait Relight/<clip>)")
    export_format: EnumProperty(name="Format", items=EXPORT_FORMATS, default="PNG")


CLASSES = (PortraitRelightSettings,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.portrait_relight = PointerProperty(type=PortraitRelightSettings)


def unregister() -> None:
    del bpy.types.Scene.portrait_relight
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
