"""Novel views that keep the filmed face: re-pose a frame by reprojecting its plate onto the head's 3D geometry.

At a new camera the head's geometry (``blender_relight.geometry``: tracked face mesh + head shell) is rasterised;
each covered pixel's world point is projected into the frame's own camera, tested against the frame's depth (is it
the surface the camera saw, or something in front of it?) and the filmed crop is sampled there (bilinear, nothing
else), so every pixel the source frame saw keeps its filmed detail. What the frame did not see comes, in this order,
from a per-clip texture in the head's UV space accumulated over other frames of the clip (the video as a multi-view
capture), from the mirrored texture where the face is symmetric, and last from a smooth fill. Where the head moved
away, the background is inpainted; the torso stays put. The result is a plate at the source light plus the new
view's G-buffer, so the engine relights it with the same shading as the filmed view (``plate × E_target/E_source``).

Modules: ``views`` (the allowed range around the filmed pose and the clamp), ``reproject`` (source visibility and
sampling), ``texture`` (the per-clip UV texture and its mirror), ``clip`` (which frames build it, streaming, its
cache file), ``fill`` (push-pull fill, background behind the head), ``source`` (a frame as a source: whole-head matte,
refitted shell, G-buffer), ``render`` (``NovelViewRenderer``: one new view at the source light), ``path``
(``NovelViewPath``: what an engine's camera branch calls: re-pose + the geometry engine's shading, with caches).
Method and figures: docs/novel_views.md.
"""
from blender_relight.novel_view.render import NovelView, NovelViewRenderer, SourceView
from blender_relight.novel_view.views import MAX_PITCH_DEG, MAX_YAW_DEG, clamp_view

__all__ = ["NovelView", "NovelViewRenderer", "SourceView", "clamp_view", "MAX_YAW_DEG", "MAX_PITCH_DEG"]
