"""ClipSession objects per clip, and where their caches and model files live.

Why here: bpy data cannot hold Python objects, so the open ``blender_relight.pipeline.ClipSession`` of each clip is
kept in a module-level registry keyed by (video, cache folder, engine, provider, model folder), and dropped on
unregister. The cache root comes from the preferences; the core keeps one sub-folder per clip in it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from blender_relight.errors import RelightError

from . import compat

ROOT_PACKAGE = compat.addon_package(__package__)

_SESSIONS: dict[tuple, Any] = {}


@dataclass(frozen=True)
class Preferences:
    """The add-on preferences as plain values (defaults where the add-on is not enabled as such)."""

    provider: str = "auto"
    model_dir: str = ""
    cache_dir: str = ""


def preferences(context: bpy.types.Context | None = None) -> Preferences:
    """Read the add-on preferences; fall back to defaults (and the user cache folder) when none are registered."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ROOT_PACKAGE)
    prefs = getattr(addon, "preferences", None)
    cache_dir = compat.read_prop(prefs, "cache_dir", "") if prefs is not None else ""
    if not cache_dir:
        cache_dir = compat.extension_user_dir(bpy.utils, ROOT_PACKAGE, "cache")
    if prefs is None:
        return Preferences(cache_dir=cache_dir)
    return Preferences(provider=compat.read_prop(prefs, "provider", "auto"),
                       model_dir=bpy.path.abspath(compat.read_prop(prefs, "model_dir", "")),
                       cache_dir=bpy.path.abspath(cache_dir))


def video_path(settings: Any) -> Path:
    """Absolute path of the clip's video; RelightError if it was moved or deleted."""
    raw = compat.read_prop(settings, "video_path", "")
    if not raw:
        raise RelightError("no portrait video imported: use Import Portrait Video first")
    path = Path(bpy.path.abspath(raw))
    if not path.is_file():
        raise RelightError(f"source video {path} is missing (moved or deleted): set its new place in the "
                           "Portrait Relight panel's Video field; the analysis cache is kept")
    return path


def get_session(settings: Any, context: bpy.types.Context | None = None) -> Any:
    """The ClipSession of the scene's clip (opened once, then reused)."""
    from blender_relight.pipeline import ClipSession  # imported late: the core is heavy and loads mediapipe

    prefs = preferences(context)
    path = video_path(settings)
    cache = Path(prefs.cache_dir)
    engine = compat.read_prop(settings, "engine", "auto")
    key = (str(path), str(cache), engine, prefs.provider, prefs.model_dir)
    session = _SESSIONS.get(key)
    if session is None:
        cache.mkdir(parents=True, exist_ok=True)
        session = ClipSession(str(path), str(cache), engine=engine, provider=prefs.provider,
                              weights_dir=prefs.model_dir or None)
        _SESSIONS[key] = session
    return session


def forget_sessions() -> None:
    """Close and drop every open session (unregister, or a changed video)."""
    for session in _SESSIONS.values():
        close = getattr(session, "close", None)
        if close is not None:
            close()
    _SESSIONS.clear()
