"""Shading of any G-buffer under Blender's lights and an SH remainder: per-light diffuse with cast shadows (shadow
maps of the head mesh) and a skin specular lobe (``shade``), shadow maps (``shadow``), and the one conversion between
the head's EG3D geometry and the lights' anchor frame (``frames``)."""
from blender_relight.shading.shade import LightPasses, ShadingInputs, ShadingResult, ShadowCache, prepare, shade

__all__ = ["LightPasses", "ShadingInputs", "ShadingResult", "ShadowCache", "prepare", "shade"]
