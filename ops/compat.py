"""One code path for Blender 4.2 to 5.0: every API difference the extension meets, as pure functions.

Why pure: each takes the Blender version tuple and the object it acts on, never imports bpy, so the unit tests in
tests/test_blender_compat.py check both sides of every rename without a Blender of each version.

Differences handled (4.2 LTS ... 4.5 LTS | 5.0):
- sequencer collections: ``sequences`` / ``sequences_all`` | ``strips`` / ``strips_all``;
- strip classes: ``MovieSequence`` / ``ImageSequence`` | ``MovieStrip`` / ``ImageStrip``;
- context members: ``active_sequence_strip`` / ``selected_sequences`` | ``active_strip`` / ``selected_strips``;
- EEVEE's engine id: ``BLENDER_EEVEE_NEXT`` | ``BLENDER_EEVEE``;
- ``owner["prop"]`` no longer reads a bpy.props property in 5.0: read through attributes, then ID properties;
- video output: ``image_settings.media_type = 'VIDEO'`` must be set before ``file_format = 'FFMPEG'`` in 5.0;
- ``bpy.utils.extension_path_user`` exists from 4.2 on; a legacy add-on install falls back to the user config;
- worlds always render their node tree in 5.0 (``World.use_nodes`` is deprecated there, stays True when set False,
  and goes in 6.0): the world is read from its nodes, and ``world.color`` only where nodes are off (4.x).
"""
from __future__ import annotations

import os
from typing import Any

Version = tuple[int, ...]

V5 = (5, 0, 0)


def is_v5(version: Version) -> bool:
    """True for Blender 5.0 and later (the sequencer and EEVEE renames)."""
    return tuple(version[:3]) >= V5


def strips_attr(version: Version) -> str:
    """Name of the sequence editor's top-level strip collection."""
    return "strips" if is_v5(version) else "sequences"


def all_strips_attr(version: Version) -> str:
    """Name of the sequence editor's collection of every strip, meta strips' contents included."""
    return "strips_all" if is_v5(version) else "sequences_all"


def strips(sequence_editor: Any, version: Version) -> Any:
    """The top-level strip collection (has ``new_movie``, ``new_image``, ``remove``)."""
    return getattr(sequence_editor, strips_attr(version))


def all_strips(sequence_editor: Any, version: Version) -> Any:
    """Every strip of the editor."""
    return getattr(sequence_editor, all_strips_attr(version))


def strip_class_name(kind: str, version: Version) -> str:
    """bpy.types class name of a strip kind (``"MOVIE"``, ``"IMAGE"``, ``"META"`` ... or ``""`` for the base)."""
    base = "Strip" if is_v5(version) else "Sequence"
    return base if not kind else kind.capitalize() + base


def context_member(name: str, version: Version) -> str:
    """Sequencer context member for this version: pass the 4.2 name (``active_sequence_strip``, ``selected_sequences``,
    ``selected_editable_sequences``, ``sequences``)."""
    if not is_v5(version):
        return name
    renames = {
        "active_sequence_strip": "active_strip",
        "selected_sequences": "selected_strips",
        "selected_editable_sequences": "selected_editable_strips",
        "sequences": "strips",
    }
    return renames.get(name, name)


def eevee_engine_id(version: Version) -> str:
    """``scene.render.engine`` value of EEVEE."""
    return "BLENDER_EEVEE" if is_v5(version) or tuple(version[:2]) < (4, 2) else "BLENDER_EEVEE_NEXT"


_MISSING = object()


def world_uses_nodes(world: Any, version: Version) -> bool:
    """Whether the world renders its node tree (always in 5.0+, where reading ``use_nodes`` is deprecated)."""
    if is_v5(version):
        return world.node_tree is not None
    return bool(world.use_nodes) and world.node_tree is not None


def read_prop(owner: Any, name: str, default: Any = None) -> Any:
    """Read a property whether it was declared with bpy.props (attribute) or set as an ID property (``owner[name]``).

    In 5.0 ``owner["prop"]`` raises for bpy.props properties, so attributes come first.
    """
    value = getattr(owner, name, _MISSING)
    if value is not _MISSING:
        return value
    try:
        return owner[name]
    except (KeyError, TypeError, AttributeError):
        return default


def set_video_output(image_settings: Any, version: Version, codec_container: str = "MPEG4") -> None:
    """Switch render output to FFmpeg video (5.0 needs ``media_type = 'VIDEO'`` first)."""
    if is_v5(version) and hasattr(image_settings, "media_type"):
        image_settings.media_type = "VIDEO"
    image_settings.file_format = "FFMPEG"


def extension_user_dir(bpy_utils: Any, package: str, subdir: str, fallback_root: str | None = None) -> str:
    """A writable per-user folder for this extension (``cache``, ``exports`` ...), never inside the add-on folder.

    ``bpy.utils.extension_path_user`` only works for packages installed as extensions (``bl_ext.*``); a legacy
    add-on install (or a test importing the source folder) uses ``<user config>/portrait_relight/<subdir>``.
    """
    fn = getattr(bpy_utils, "extension_path_user", None)
    if fn is not None and package.startswith("bl_ext."):
        return fn(package, path=subdir, create=True)
    root = fallback_root or bpy_utils.user_resource("CONFIG")
    path = os.path.join(root, "portrait_relight", subdir)
    os.makedirs(path, exist_ok=True)
    return path


def invalidate_strip(strip: Any) -> None:
    """Drop a strip's cached images after its files changed on disk (5.0 keeps them otherwise)."""
    fn = getattr(strip, "invalidate_cache", None)
    if fn is not None:
        fn("RAW")


def addon_package(module_package: str) -> str:
    """The add-on's root package from a sub-package's ``__package__`` (``bl_ext.repo.portrait_relight.ops`` -> root)."""
    return module_package.rpartition(".")[0] if module_package.endswith((".ops", ".ui")) else module_package
