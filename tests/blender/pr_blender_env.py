"""Names shared by the headless-bpy tests (a uniquely named module: ``conftest`` may exist at several levels)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
REPO = "prtest"  # the local extension repository the tests enable the source tree from
PACKAGE = f"bl_ext.{REPO}.portrait_relight"


def is_v5(bpy) -> bool:
    """Blender 5.0 or later (worlds always use nodes; the compositor tree moved)."""
    return tuple(bpy.app.version) >= (5, 0, 0)


def set_world_colour(bpy, world, rgb) -> None:
    """Make ``world`` a uniform colour the way the running Blender renders it: its Background node in 5.0 (where
    ``use_nodes`` can no longer be switched off), ``world.color`` with nodes off before."""
    if is_v5(bpy):
        background = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
        for link in list(background.inputs["Color"].links):
            world.node_tree.links.remove(link)
        background.inputs["Color"].default_value = (*rgb, 1.0)
        background.inputs["Strength"].default_value = 1.0
    else:
        world.use_nodes = False
    world.color = rgb


def use_world_nodes(bpy, world) -> None:
    """Switch the world's node tree on (always on in 5.0)."""
    if not is_v5(bpy):
        world.use_nodes = True


def compositor_tree(bpy, scene):
    """The scene's compositor node tree, created if needed (``scene.compositing_node_group`` in 5.0)."""
    if is_v5(bpy):
        if scene.compositing_node_group is None:
            scene.compositing_node_group = bpy.data.node_groups.new("Compositor", "CompositorNodeTree")
        return scene.compositing_node_group
    scene.use_nodes = True
    return scene.node_tree


def cut_clip(src: Path, out: Path, first: int = 0, count: int = 3) -> Path:
    """Frames ``first .. first + count - 1`` of a real clip re-encoded as a new file (short tests; new content gets
    a cache of its own)."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    writer = None
    for n in range(first + count):
        ok, frame = cap.read()
        assert ok, f"cannot read frame {n} of {src}"
        if n < first:
            continue
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    cap.release()
    return out
