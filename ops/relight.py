"""Relight one frame from the scene's current lights and camera, and show it in the preview image.

Why a request key: the depsgraph handler fires for every change (selection, our own image update ...); relighting
is skipped when frame, lights and camera are unchanged, and the core re-runs only its shading step when just the
lights changed (the camera-dependent render is cached per frame and camera in the ClipSession).

The lights go to the core as they are (``scene_read.scene_lighting``: each Blender light a ``LightSpec``, shaded by
the geometry engine with its falloff, cone, cast shadow and highlight; the world as SH), not projected to SH: a
second-order SH of a key light has no nose shadow and no terminator.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from blender_relight.errors import RelightError

from . import rig_maths, scene_read, session as sessions, worker

PREVIEW_IMAGE = "Portrait Relight Preview"


@dataclass
class FrameRequest:
    """Everything that decides a relit frame."""

    index: int
    lighting: Any  # blender_relight.lighting.scene.SceneLighting
    camera_label: np.ndarray | None

    def key(self) -> tuple:
        cam = None if self.camera_label is None else tuple(np.round(self.camera_label, 5))
        return self.index, self.lighting.key(), cam


def clip_index(scene: bpy.types.Scene, settings: Any, frame: int | None = None) -> int:
    """Clip frame index shown at a scene frame."""
    return (scene.frame_current if frame is None else frame) - settings.frame_start


def request(scene: bpy.types.Scene, settings: Any, session: Any, depsgraph: bpy.types.Depsgraph,
            frame: int | None = None) -> FrameRequest:
    """The relight request at the current frame: the scene's lighting and camera (None: the filmed viewpoint)."""
    index = clip_index(scene, settings, frame)
    info = session.info
    if not 0 <= index < info.frame_count:
        shown = scene.frame_current if frame is None else frame
        raise RelightError(f"frame {shown} is outside the clip (scene frames {settings.frame_start}"
                           f"-{settings.frame_start + info.frame_count - 1})")
    lighting = scene_read.scene_lighting(scene, settings, depsgraph)
    label = None
    if not settings.use_source_camera:
        label = scene_read.scene_camera_label(scene, settings, depsgraph)
        source = session.source_camera(index)
        if label is not None and source is not None and rig_maths.same_view(label, source):
            label = None
    return FrameRequest(index, lighting, label)


def relight(session: Any, req: FrameRequest, with_passes: bool = False) -> Any:
    """Run the core on one request; returns its RelitFrame (with albedo/normal/depth/shading/alpha if asked)."""
    return session.relight_frame(req.index, req.lighting, req.camera_label, with_passes=with_passes)


def show(image_rgb: np.ndarray, name: str = PREVIEW_IMAGE) -> bpy.types.Image:
    """Copy a linear float RGB frame into a float image datablock (bottom-up rows, as Blender stores them)."""
    h, w = image_rgb.shape[:2]
    img = bpy.data.images.get(name)
    if img is None:
        img = bpy.data.images.new(name, width=w, height=h, alpha=True, float_buffer=True)
        img.colorspace_settings.name = "Linear Rec.709" if "Linear Rec.709" in _colourspaces(img) else "Linear"
    elif tuple(img.size) != (w, h):
        img.scale(w, h)
    rgba = np.ones((h, w, 4), dtype=np.float32)
    rgba[..., :3] = image_rgb[::-1]
    img.pixels.foreach_set(rgba.ravel())
    img.update()
    return img


#: Tracking statuses in words (the core's codes are for files and logs).
STATUS_WORDS = {
    "tracked": "face tracked",
    "no_face": "no face found: shown unchanged",
    "several_faces": "several faces: the largest one relit",
    "low_confidence": "face tracked with low confidence",
    "not analysed": "not analysed yet: shown unchanged (run Analyse)",
}

#: Below this fraction of the filmed light on the face (or above its inverse) the status says why it looks dark.
DARK, BRIGHT = 0.6, 2.5


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status.replace("_", " "))


def light_hint(session: Any, req: FrameRequest) -> str:
    """Why the face looks dark (or blown out): the scene's irradiance on the face (the normal facing the camera)
    against the filmed light's."""
    from blender_relight.lighting import sh as shmath

    track = session.cache.get_track(req.index)
    if track is None or getattr(track, "source_sh", None) is None:
        return ""
    facing = np.array([0.0, -1.0, 0.0])  # head frame: y points into the face
    source = float(np.mean(shmath.irradiance(facing, shmath.as_rgb(np.asarray(track.source_sh, np.float64)))))
    target = float(np.mean(shmath.irradiance(facing, shmath.as_rgb(req.lighting.total_sh()))))
    if source <= 1e-6:
        return ""
    ratio = target / source
    if ratio < DARK:
        return (f"; the scene's lights give {ratio:.0%} of the filmed light on the face, so it looks darker than "
                "filmed: raise their power or bring them closer to the head anchor (a far light, like the default "
                "scene's 1000 W point light 7 m away, lights it little)")
    if ratio > BRIGHT:
        return f"; the scene's lights give {ratio:.0f}x the filmed light on the face: lower their power"
    return ""


def frame_status(scene: bpy.types.Scene, session: Any, req: FrameRequest, frame: Any) -> str:
    """The status line of a relit frame: Blender's frame number, the tracking in words, and hints."""
    line = f"frame {req.index + scene.portrait_relight.frame_start}: {status_words(frame.status)}"
    if req.camera_label is not None and not session.engine.supports_novel_view:
        line += "; camera move ignored: the analytic engine shows the filmed view only"
    return line + light_hint(session, req)


def _colourspaces(img: bpy.types.Image) -> set[str]:
    prop = img.colorspace_settings.bl_rna.properties["name"]
    return {item.identifier for item in prop.enum_items}


#: Relit frames the live preview keeps by request (a scrub back over frames already seen redraws at once): a frame's
#: pixels are a function of (clip, frame, lights, camera), so a kept one is what relighting again would give.
KEEP_RELIT = 12


class LivePreview:
    """State of the live preview: last request key and last error, so handlers stay cheap and quiet, and the last
    few relit frames by request."""

    def __init__(self) -> None:
        self.last_key: tuple | None = None
        self.last_error: str | None = None
        self.busy = False
        self.kept: OrderedDict[tuple, Any] = OrderedDict()

    def relit(self, session: Any, req: FrameRequest) -> Any:
        """The relit frame of ``req`` (kept, or relit now and kept)."""
        key = (id(session), req.key())
        frame = self.kept.get(key)
        if frame is None:
            frame = relight(session, req)
            self.kept[key] = frame
            while len(self.kept) > KEEP_RELIT:
                self.kept.popitem(last=False)
        else:
            self.kept.move_to_end(key)
        return frame

    def update(self, scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph) -> bool:
        """Relight the current frame if anything that matters changed; True when the preview was redrawn."""
        settings = scene.portrait_relight
        if self.busy or not settings.live or not settings.analysed or scene.name in worker.RUNNING:
            return False  # a background job owns the clip's session until it ends
        self.busy = True
        try:
            session = sessions.get_session(settings)
            req = request(scene, settings, session, depsgraph)
            key = req.key()
            if key == self.last_key:
                return False
            frame = self.relit(session, req)
            show(frame.image)
            from . import output  # late: output imports this module

            output.refresh_relit_frame(scene, settings, scene.frame_current, frame.image)
            self.last_key, self.last_error = key, None
            status = frame_status(scene, session, req, frame)
            if settings.status != status:
                settings.status = status
            return True
        except RelightError as exc:
            if str(exc) != self.last_error:
                self.last_error = str(exc)
                settings.status = str(exc)
            return False
        finally:
            self.busy = False


LIVE = LivePreview()

_RELEVANT = ("Object", "Light", "World", "Camera", "Scene", "NodeTree")


@bpy.app.handlers.persistent
def _on_depsgraph(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph) -> None:
    if not any(type(u.id).__name__ in _RELEVANT for u in depsgraph.updates):
        return
    LIVE.update(scene, depsgraph)


@bpy.app.handlers.persistent
def _on_frame(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph | None = None) -> None:
    LIVE.update(scene, depsgraph or bpy.context.evaluated_depsgraph_get())


def register() -> None:
    if _on_depsgraph not in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.append(_on_depsgraph)
    if _on_frame not in bpy.app.handlers.frame_change_post:
        bpy.app.handlers.frame_change_post.append(_on_frame)


def unregister() -> None:
    for handlers, fn in ((bpy.app.handlers.depsgraph_update_post, _on_depsgraph),
                         (bpy.app.handlers.frame_change_post, _on_frame)):
        while fn in handlers:
            handlers.remove(fn)
    LIVE.last_key = None
    LIVE.kept.clear()
