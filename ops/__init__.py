"""Blender operators of Portrait Relight (bpy glue over ``blender_relight``)."""
from __future__ import annotations

import bpy

from . import operators, props, relight, session


def register() -> None:
    props.register()
    for cls in operators.CLASSES:
        bpy.utils.register_class(cls)
    relight.register()
    if operators.clear_stale_state not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(operators.clear_stale_state)


def unregister() -> None:
    operators.cancel_all()
    while operators.clear_stale_state in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(operators.clear_stale_state)
    relight.unregister()
    for cls in reversed(operators.CLASSES):
        bpy.utils.unregister_class(cls)
    props.unregister()
    session.forget_sessions()
