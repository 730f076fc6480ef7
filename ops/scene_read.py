"""Read Blender's lights, world and camera relative to the head anchor, as plain numbers for the core.

Why relative to the anchor: the SH frame is the anchor's local frame (x right, y into the face, z up;
blender_relight/lighting/sh.py), so a light keyed in world space still lights the face correctly while the tracked
head moves. Values come from the evaluated depsgraph, so animated lights and cameras are read at the current frame.
The light-unit maths lives in ``blender_relight.lighting.blender_lights``; this module only gathers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from blender_relight.errors import RelightError
from blender_relight.lighting import blender_lights, environment

from . import compat, rig_maths


def matrix(m: Any) -> np.ndarray:
    """A mathutils Matrix as a float64 numpy 4x4."""
    return np.array([list(row) for row in m], dtype=np.float64)


def anchor_matrix(settings: Any, depsgraph: bpy.types.Depsgraph | None = None) -> np.ndarray:
    """The head anchor's rigid matrix_world at the current frame (identity when there is no anchor)."""
    anchor = compat.read_prop(settings, "anchor", None)
    if anchor is None:
        return np.eye(4)
    if depsgraph is not None:
        anchor = anchor.evaluated_get(depsgraph)
    return rig_maths.rigid(matrix(anchor.matrix_world))


def light_spec(obj: bpy.types.Object, anchor: np.ndarray) -> blender_lights.LightSpec:
    """One (evaluated) Blender light as a ``blender_lights.LightSpec`` in the anchor's frame: for its shadows' softness
    a point or spot light's Radius (``shadow_soft_size``; LightSpec takes the diameter) and a sun's Angle."""
    light = obj.data
    position, direction, axis_x = blender_lights.relative_to_anchor(matrix(obj.matrix_world), anchor)
    use_temperature = bool(compat.read_prop(light, "use_temperature", False))  # Blender 4.5+ only
    kind = light.type
    return blender_lights.LightSpec(
        type=kind,
        colour=tuple(float(c) for c in light.color),
        power=float(light.energy),
        position=position,
        direction=direction,
        axis_x=axis_x,
        spot_size=float(light.spot_size) if kind == "SPOT" else 0.0,
        spot_blend=float(light.spot_blend) if kind == "SPOT" else 0.0,
        size=_size(light),
        size_y=float(light.size_y) if kind == "AREA" else 0.0,
        shape=light.shape if kind == "AREA" else "SQUARE",
        temperature=float(compat.read_prop(light, "temperature", 6500.0)) if use_temperature else None,
        exposure=float(compat.read_prop(light, "exposure", 0.0) or 0.0),
        angle=float(light.angle) if kind == "SUN" else 0.0,
        name=obj.name,
    )


def _size(light: bpy.types.Light) -> float:
    """``LightSpec.size``: an area light's side (metres); a point or spot light's diameter, twice Blender's Radius
    (``shadow_soft_size``), which softens its shadows as Blender's does; 0 for a sun (its softness is ``angle``)."""
    if light.type == "AREA":
        return float(light.size)
    if light.type in ("POINT", "SPOT"):
        return 2.0 * float(light.shadow_soft_size)
    return 0.0


def scene_lights(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph, anchor: np.ndarray) -> list[Any]:
    """Every light that renders (visible, not disabled in renders) at the current frame."""
    specs = []
    for obj in scene.objects:
        if obj.type != "LIGHT" or obj.hide_render or not obj.visible_get():
            continue
        specs.append(light_spec(obj.evaluated_get(depsgraph), anchor))
    return specs


@dataclass(frozen=True)
class WorldLight:
    """The world as the relighting sees it: a uniform colour × strength, or an HDRI file with its strength and the
    Mapping node's rotation."""

    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hdri: str | None = None
    strength: float = 1.0
    rotation: np.ndarray | None = None


def read_world(scene: bpy.types.Scene) -> WorldLight:
    """The world's Background node (colour × strength, or an Environment Texture feeding it), else its plain colour."""
    world = scene.world
    if world is None:
        return WorldLight()
    if compat.world_uses_nodes(world, tuple(bpy.app.version)):
        for node in world.node_tree.nodes:
            if node.type != "BACKGROUND":
                continue
            colour_in = node.inputs["Color"]
            strength = float(node.inputs["Strength"].default_value)
            for link in colour_in.links:
                env = link.from_node
                if env.type == "TEX_ENVIRONMENT" and env.image is not None:
                    return WorldLight(hdri=bpy.path.abspath(env.image.filepath), strength=strength,
                                      rotation=_mapping_rotation(env))
            c = colour_in.default_value
            return WorldLight(colour=(float(c[0]) * strength, float(c[1]) * strength, float(c[2]) * strength))
    c = world.color
    return WorldLight(colour=(float(c[0]), float(c[1]), float(c[2])))


def _mapping_rotation(env_node: Any) -> np.ndarray | None:
    """3x3 rotation of a Mapping node feeding the Environment Texture's Vector input, if any."""
    for link in env_node.inputs["Vector"].links:
        mapping = link.from_node
        if mapping.type == "MAPPING" and "Rotation" in mapping.inputs:
            from mathutils import Euler

            return np.array(Euler(mapping.inputs["Rotation"].default_value).to_matrix(), dtype=np.float64)
    return None


def world_sh(scene: bpy.types.Scene, anchor: np.ndarray) -> np.ndarray | None:
    """RGB SH (9, 3) of the world in the anchor's frame; None for a black world."""
    world = read_world(scene)
    if world.hdri:
        return environment.hdri_to_sh(world.hdri, rotation=anchor[:3, :3], strength=world.strength,
                                      world_rotation=world.rotation)
    if max(world.colour) <= 0.0:
        return None
    return blender_lights.world_colour_sh(np.asarray(world.colour))


def scene_lighting(scene: bpy.types.Scene, settings: Any, depsgraph: bpy.types.Depsgraph) -> Any:
    """The scene's lights (each a LightSpec, shaded with its shadow by the geometry engine) and its world (RGB SH),
    in the head anchor's frame, at the current frame, as a ``SceneLighting``.

    A scene with no light and a black world would relight the face to black: that is reported instead, as is a
    light the maths cannot use (one at the head's centre).
    """
    from blender_relight.lighting.scene import SceneLighting

    anchor = anchor_matrix(settings, depsgraph)
    specs = scene_lights(scene, depsgraph, anchor)
    world = world_sh(scene, anchor)
    if not specs and world is None:
        raise RelightError("the scene has no light and a black world: add a light (Add > Light) or give the "
                           "world a colour, then relight again")
    lighting = SceneLighting(sh=np.zeros((9, 3)) if world is None else world, lights=tuple(specs))
    try:
        lighting.total_sh()  # every light must have a direction from the head
    except ValueError as exc:  # e.g. a light sitting at the head's centre
        raise RelightError(f"cannot use the scene's lights: {exc}") from exc
    return lighting


def scene_sh(scene: bpy.types.Scene, settings: Any, depsgraph: bpy.types.Depsgraph) -> np.ndarray:
    """RGB SH (9, 3) of the scene's lights and world (:func:`scene_lighting` projected to second order)."""
    return np.asarray(scene_lighting(scene, settings, depsgraph).total_sh(), dtype=np.float64)


def scene_camera_label(scene: bpy.types.Scene, settings: Any, depsgraph: bpy.types.Depsgraph) -> np.ndarray | None:
    """EG3D label of the clip's camera (or the scene camera) seen from the anchor; None when there is no camera."""
    cam = compat.read_prop(settings, "camera", None) or scene.camera
    if cam is None:
        return None
    cam = cam.evaluated_get(depsgraph)
    data = cam.data
    return rig_maths.scene_camera_label(matrix(cam.matrix_world), anchor_matrix(settings, depsgraph),
                                        float(data.lens), float(data.sensor_width), float(data.shift_x),
                                        float(data.shift_y))
