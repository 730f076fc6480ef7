"""The imported rig in bpy: movie strip, head anchor empty, source camera and head proxy.

Why a proxy: users aim lights at a face they cannot see in the 3D viewport; an ellipsoid with a nose, parented to
the anchor, shows where the head is and which way it faces. It never renders. Units are EG3D's (the head is about
0.4 units tall, so one unit is about half a metre; the source camera is about 2.7 units away). Light falloff uses
Blender units as metres (blender_relight.lighting.blender_lights), so place lights with that scale in mind.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bmesh
import bpy
import numpy as np
from mathutils import Matrix

from blender_relight import camera as eg3d

from . import compat, rig_maths

COLLECTION = "Portrait Relight"


def version() -> tuple[int, int, int]:
    return tuple(bpy.app.version)


def _collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    coll = bpy.data.collections.get(COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(COLLECTION)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    return coll


def add_movie_strip(scene: bpy.types.Scene, video: Path, frame_start: int) -> Any:
    """The source video as a movie strip on channel 1 (sound is not added: the relit output has none either)."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = compat.strips(editor, version())
    strip = strips.new_movie(name=video.stem, filepath=str(video), channel=1, frame_start=frame_start)
    return strip


def add_anchor(scene: bpy.types.Scene, name: str) -> bpy.types.Object:
    anchor = bpy.data.objects.new(f"{name} head anchor", None)
    anchor.empty_display_type = "ARROWS"
    anchor.empty_display_size = 0.3
    anchor.rotation_mode = "QUATERNION"
    _collection(scene).objects.link(anchor)
    return anchor


def add_proxy(scene: bpy.types.Scene, anchor: bpy.types.Object, name: str) -> bpy.types.Object:
    """An ellipsoid head with a nose toward -Y (the face direction of the SH frame), parented to the anchor."""
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=24, v_segments=16, radius=1.0)
    bmesh.ops.scale(bm, vec=(0.15, 0.19, 0.22), verts=bm.verts)
    nose = bmesh.ops.create_cone(bm, cap_ends=True, segments=8, radius1=0.03, radius2=0.0, depth=0.07)
    bmesh.ops.rotate(bm, verts=nose["verts"], cent=(0, 0, 0), matrix=Matrix.Rotation(np.pi / 2, 3, "X"))
    bmesh.ops.translate(bm, verts=nose["verts"], vec=(0.0, -0.2, 0.0))
    mesh = bpy.data.meshes.new(f"{name} head proxy")
    bm.to_mesh(mesh)
    bm.free()
    proxy = bpy.data.objects.new(mesh.name, mesh)
    proxy.parent = anchor
    proxy.hide_render = True
    proxy.display_type = "WIRE"
    _collection(scene).objects.link(proxy)
    return proxy


def add_camera(scene: bpy.types.Scene, name: str) -> bpy.types.Object:
    """A camera at EG3D's frontal pose until analysis places it at the filmed viewpoint."""
    data = bpy.data.cameras.new(f"{name} camera")
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = eg3d.SENSOR_WIDTH_MM
    data.clip_start = 0.05
    cam = bpy.data.objects.new(data.name, data)
    _collection(scene).objects.link(cam)
    place_camera(cam, eg3d.frontal_label())
    return cam


def place_camera(cam: bpy.types.Object, label: np.ndarray) -> None:
    """Put the camera where ``label`` says, anchor at the origin, with the label's lens and shift."""
    _, K = eg3d.split_label(label)
    lens, shift_x, shift_y = eg3d.blender_lens(K, cam.data.sensor_width)
    cam.data.lens, cam.data.shift_x, cam.data.shift_y = lens, shift_x, shift_y
    cam.matrix_world = Matrix(rig_maths.camera_world(label).tolist())


def key_anchor(scene: bpy.types.Scene, settings: Any, session: Any, frames: Iterable[int]) -> int:
    """Place the camera at the first tracked frame's viewpoint and key the anchor on every tracked frame of ``frames``.

    Returns how many frames were keyed. Untracked frames get no key (the anchor interpolates between keys).
    """
    anchor, cam = settings.anchor, settings.camera
    labels = {}
    for index in frames:
        label = session.source_camera(index)
        if label is not None:
            labels[index] = np.asarray(label, dtype=np.float64)
    if not labels:
        return 0
    first = labels[min(labels)]
    if cam is not None:
        place_camera(cam, first)
        cam_matrix = rig_maths.rigid(np.array([list(r) for r in cam.matrix_world]))
    else:
        cam_matrix = rig_maths.camera_world(first)
    if anchor.animation_data is not None:
        anchor.animation_data_clear()
    anchor.rotation_mode = "QUATERNION"
    for index, label in labels.items():
        anchor.matrix_world = Matrix(rig_maths.anchor_world(cam_matrix, label).tolist())
        frame = settings.frame_start + index
        anchor.keyframe_insert("location", frame=frame)
        anchor.keyframe_insert("rotation_quaternion", frame=frame)
    scene.frame_set(scene.frame_current)
    return len(labels)
