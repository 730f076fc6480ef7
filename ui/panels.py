"""Sidebar panels (Sequencer and 3D viewport, tab "Relight") and the File > Import entry.

Why both editors: lights are aimed in the 3D viewport while the result is watched in the sequencer; the same
panel body is drawn in both.
"""
from __future__ import annotations

import bpy

from ..ops import operators, output


def draw_body(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = context.scene.portrait_relight
    col = layout.column(align=True)
    col.operator(operators.PR_OT_import_video.bl_idname, icon="FILE_MOVIE")
    if not settings.video_path:
        col.label(text="Import a portrait video to start")
        return
    col.prop(settings, "video_path", text="")
    layout.prop(settings, "engine")
    if settings.engine_note:
        layout.label(text=settings.engine_note, icon="INFO")

    box = layout.box()
    row = box.row(align=True)
    if settings.busy:
        if hasattr(row, "progress"):
            row.progress(factor=settings.progress, type="BAR", text=f"{settings.status} {settings.progress:.0%}")
        else:
            row.prop(settings, "progress", text=settings.status, slider=True)
        row.operator(operators.PR_OT_cancel_job.bl_idname, text="", icon="CANCEL")
    else:
        row.operator(operators.PR_OT_analyse.bl_idname, icon="VIEWZOOM",
                     text="Analyse Again" if settings.analysed else "Analyse Clip")
        row.prop(settings, "stride", text="Every")

    col = layout.column(align=True)
    col.active = settings.analysed
    col.prop(settings, "anchor")
    col.prop(settings, "camera")
    col.prop(settings, "use_source_camera")
    row = col.row(align=True)
    row.prop(settings, "live", toggle=True, icon="LIGHT")
    row.operator(operators.PR_OT_relight_frame.bl_idname, icon="RENDER_STILL", text="Relight Frame")

    col = layout.column(align=True)
    col.active = settings.analysed
    col.operator(operators.PR_OT_render_sequencer.bl_idname, icon="SEQUENCE")
    col.prop(settings, "output_dir", text="")
    if not settings.output_dir or settings.output_dir.startswith("//"):
        col.label(text="Output: " + str(output.output_root(settings)[0]), icon="FILE_FOLDER")
    row = col.row(align=True)
    row.prop(settings, "export_format", text="")
    op = row.operator(operators.PR_OT_export.bl_idname, text="Export", icon="EXPORT")
    op.kind = settings.export_format

    if settings.status:
        for line in _wrap(settings.status, 48):
            layout.label(text=line)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


class _RelightPanel:
    """What both sidebars' panels share: one body, drawn by :func:`draw_body`."""

    bl_label = "Portrait Relight"
    bl_region_type = "UI"
    bl_category = "Relight"

    def draw(self, context: bpy.types.Context) -> None:
        draw_body(self.layout, context)


class PR_PT_sequencer(_RelightPanel, bpy.types.Panel):
    bl_idname = "PR_PT_sequencer"
    bl_space_type = "SEQUENCE_EDITOR"


class PR_PT_view3d(_RelightPanel, bpy.types.Panel):
    bl_idname = "PR_PT_view3d"
    bl_space_type = "VIEW_3D"


def _menu_import(self: bpy.types.Menu, context: bpy.types.Context) -> None:
    self.layout.operator(operators.PR_OT_import_video.bl_idname, text="Portrait Video (Relight)")


CLASSES = (PR_PT_sequencer, PR_PT_view3d)


def register_menus() -> None:
    bpy.types.TOPBAR_MT_file_import.append(_menu_import)


def unregister_menus() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(_menu_import)
