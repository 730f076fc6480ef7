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

from blender_relight.errors import ModelFileError, RelightError

from . import compat, worker

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


def model_folder_error(folder: str, reason: str) -> RelightError:
    """A broken Model folder, in the words of the preferences (not the core's argument names)."""
    return RelightError(f"the Model folder set in Preferences > Add-ons > Portrait Relight ({folder}) holds no "
                        f"usable model: {reason}. Point it at a folder with model.json and the ONNX files, clear it "
                        "to use the shipped model, or set Engine to Analytic")


def _reason(exc: Exception, folder: str) -> str:
    """The core's message without its developer hints (``weights_dir``, ``inference.export``)."""
    text = str(exc).split(";")[0]
    return text.replace(str(folder).rstrip("/") + "/", "").strip() or type(exc).__name__


def open_engine(engine: str, prefs: Preferences) -> Any:
    """The relight engine the settings ask for; a broken Model folder is an error, never a silent fallback."""
    from blender_relight.engines import make_engine

    folder = prefs.model_dir
    if folder and engine != "analytic":
        if not Path(folder).is_dir():
            raise model_folder_error(folder, "the folder does not exist")
        if not (Path(folder) / "model.json").is_file():
            raise model_folder_error(folder, "model.json is missing")
        from inference.runtime import read_model_meta

        try:
            read_model_meta(Path(folder))  # strict: Auto must not read a damaged description as "no model"
        except ModelFileError as exc:
            raise model_folder_error(folder, _reason(exc, folder)) from exc
    try:
        made = make_engine(engine, prefs.provider, folder or None)
    except ModelFileError as exc:
        if folder:
            raise model_folder_error(folder, _reason(exc, folder)) from exc
        raise RelightError(f"the shipped model cannot be loaded ({_reason(exc, '')}): reinstall the extension, "
                           "set a Model folder in the preferences, or set Engine to Analytic") from exc
    if folder and made.name != "neural":  # Auto fell back although a model was asked for by its folder
        raise model_folder_error(folder, "its model.json says the weights are not trained")
    return made


def describe_engine(session: Any) -> str:
    """One line for the panel: which engine runs, where, and what it can do."""
    engine = session.engine
    if engine.name == "neural":
        runtime = getattr(engine, "runtime", None)
        provider = getattr(runtime, "provider", "") if runtime is not None else ""
        where = f" on {str(provider).replace('ExecutionProvider', '')}" if provider else ""
        return f"Neural engine{where}: new views follow the camera"
    if engine.name == "geometry":
        return "Geometry engine: lights cast shadows; new views reproject the filmed plate (±30° yaw, ±20° pitch)"
    return "Analytic engine: filmed view only; camera moves are ignored"


def owning_job(session: Any) -> Any:
    """The running background job that uses ``session``, or None."""
    for job in worker.RUNNING.values():
        if getattr(job, "session", None) is session and not job.snapshot().finished:
            return job
    return None


def get_session(settings: Any, context: bpy.types.Context | None = None) -> Any:
    """The ClipSession of the scene's clip (opened once, then reused).

    One owner at a time: while a background job uses the session, the main thread gets a RelightError instead of
    a second user of the same decoder and engine caches.
    """
    from blender_relight.pipeline import ClipSession  # imported late: the core is heavy and loads mediapipe

    prefs = preferences(context)
    path = video_path(settings)
    cache = Path(prefs.cache_dir)
    engine = compat.read_prop(settings, "engine", "auto")
    key = (str(path), str(cache), engine, prefs.provider, prefs.model_dir)
    session = _SESSIONS.get(key)
    if session is None:
        cache.mkdir(parents=True, exist_ok=True)
        session = ClipSession(str(path), str(cache), engine=open_engine(engine, prefs))
        _SESSIONS[key] = session
    job = owning_job(session)
    if job is not None:
        raise RelightError(f"the clip is busy ({job.name} running): wait for it to finish or cancel it")
    note = describe_engine(session)
    if compat.read_prop(settings, "engine_note", note) != note:
        settings.engine_note = note
    return session


def forget_sessions() -> None:
    """Close and drop every open session (unregister, or a changed video), and the live preview's kept frames."""
    from . import relight  # late: relight imports this module

    relight.LIVE.kept.clear()
    for session in _SESSIONS.values():
        close = getattr(session, "close", None)
        if close is not None:
            close()
    _SESSIONS.clear()
