"""Portrait Relight: relight and re-view a filmed face with Blender's own lights and cameras.

Blender imports this folder as ``bl_ext.<repo>.portrait_relight``; its sub-packages ``ops`` (operators, bpy glue)
and ``ui`` (panels, preferences) are imported relatively, and the core (``blender_relight``, ``inference``) comes
absolutely from the wheel listed in blender_manifest.toml.
"""
from __future__ import annotations

from . import ops, ui


def register() -> None:
    ops.register()
    ui.register()


def unregister() -> None:
    ui.unregister()
    ops.unregister()
