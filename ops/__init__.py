"""Blender operators of Portrait Relight (bpy glue over ``blender_relight``)."""
from __future__ import annotations

import bpy

from . import operators, props, relight, session


def register() -> None:
    props.register()
    for cls in operators.CLASSES:
        bpy.utils.register_class(cls)
    relight.register()


def unregister() -> None:
    relight.unregister()
    for cls in reversed(operators.CLASSES):
        bpy.utils.unregister_class(cls)
    props.unregister()
    session.forget_sessions()
