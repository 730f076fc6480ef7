"""A frame's head as a triangle mesh (``head``) and the project's one rasteriser (``raster``): what shading, novel
views and the geometry engine draw on."""
from blender_relight.geometry.head import HeadGeometry, head_geometry
from blender_relight.geometry.raster import GBuffer, project, rasterize

__all__ = ["HeadGeometry", "head_geometry", "GBuffer", "rasterize", "project"]
