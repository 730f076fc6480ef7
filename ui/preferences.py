"""Add-on preferences: execution provider, model folder, cache folder.

Why these three: the provider picks CUDA or CPU for ONNX Runtime, the model folder lets users point at model files
outside the extension (updated weights, a shared drive), and the cache can grow to gigabytes so users must be able
to move it; by default it lives under ``bpy.utils.extension_path_user`` (never inside the add-on folder, which
Blender replaces on update).
"""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from ..ops import compat

PROVIDERS = [
    ("auto", "Automatic", "CUDA when available, else CPU"),
    ("cuda", "CUDA", "NVIDIA GPU through ONNX Runtime's CUDA provider"),
    ("cpu", "CPU", "ONNX Runtime on the CPU"),
]


class PortraitRelightPreferences(bpy.types.AddonPreferences):
    bl_idname = compat.addon_package(__package__)

    provider: EnumProperty(name="Execution provider", items=PROVIDERS, default="auto")
    model_dir: StringProperty(name="Model folder", subtype="DIR_PATH",
                              description="Folder with the ONNX model files and model.json (empty: the shipped ones)")
    cache_dir: StringProperty(name="Cache folder", subtype="DIR_PATH",
                              description="Where per-clip analysis is cached (empty: the extension's user folder)")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "provider")
        layout.prop(self, "model_dir")
        layout.prop(self, "cache_dir")
        if not self.cache_dir:
            layout.label(text="Cache: " + compat.extension_user_dir(bpy.utils, self.bl_idname, "cache"), icon="INFO")
