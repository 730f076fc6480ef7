"""Portrait Relight: relight and re-view a filmed face with Blender's own lights and cameras.

Blender imports this folder as ``bl_ext.<repo>.portrait_relight``; its sub-packages ``ops`` (operators, bpy glue)
and ``ui`` (panels, preferences) are imported relatively, and the core (``blender_relight``, ``inference``) comes
absolutely from the wheel listed in blender_manifest.toml.

Imported as a plain module (no parent package: pytest sets up the repository root as a package and, in a clone whose
folder name is not a Python identifier, such as ``my-clone``, imports this file as ``__init__``), there is nothing to
register and nothing is imported.
"""
from __future__ import annotations

if __package__:
    from . import ops, ui
else:  # pragma: no cover - see the docstring
    ops = ui = None


def register() -> None:
    if ops is None:
        raise RuntimeError("Portrait Relight must be imported as a package (Blender does: bl_ext.<repo>.<id>)")
    ops.register()
    ui.register()


def unregister() -> None:
    if ops is None:
        return
    ui.unregister()
    ops.unregister()
