"""Panels and preferences of Portrait Relight."""
from __future__ import annotations

import bpy

from . import panels, preferences

CLASSES = (preferences.PortraitRelightPreferences, *panels.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    panels.register_menus()


def unregister() -> None:
    panels.unregister_menus()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
