"""Operators: import, analyse (modal, threaded, cancellable), relight now / live, render to sequencer, export.

Why thin: each one reads the scene, calls ``blender_relight`` through the helpers of this package, and turns a
``RelightError`` into one clear report; nothing here computes lighting or cameras itself.
"""
from __future__ import annotations

import functools
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from blender_relight.errors import RelightError

from . import output, relight, rig, session as sessions, worker
from .props import EXPORT_FORMATS

RUNNING = worker.RUNNING

VIDEO_FILTER = "*.mp4;*.mov;*.mkv;*.avi;*.webm;*.m4v;*.png;*.jpg;*.jpeg"


def _report_error(op: bpy.types.Operator, settings, exc: Exception) -> set[str]:
    settings.status = str(exc)
    op.report({"ERROR"}, str(exc))
    return {"CANCELLED"}


def running(scene: bpy.types.Scene) -> bool:
    """Whether a background job of this scene is running (its clip's session is the job's until it ends)."""
    job = RUNNING.get(scene.name)
    return job is not None and not job.snapshot().finished


def import_clip(context: bpy.types.Context, filepath: str, frame_start: int | None = None) -> None:
    """Add the movie strip, anchor, camera and proxy for ``filepath`` and point the scene settings at them."""
    scene = context.scene
    settings = scene.portrait_relight
    path = Path(bpy.path.abspath(filepath))
    if not path.is_file():
        raise RelightError(f"{path}: file not found; choose a portrait video")
    from blender_relight.video import VideoReader

    with VideoReader(path) as reader:  # the clip's facts without loading an engine (model errors come at Analyse)
        info = SimpleNamespace(frame_count=reader.frame_count, fps=reader.fps, width=reader.width,
                               height=reader.height)
    sessions.forget_sessions()
    settings.movie_strip = ""  # before the path: its update relinks an existing strip, and this is a new clip
    settings.video_path = str(path)
    settings.analysed = False
    settings.progress = 0.0
    settings.engine_note = ""
    settings.frame_start = scene.frame_start if frame_start is None else frame_start
    strip = rig.add_movie_strip(scene, path, settings.frame_start)
    settings.movie_strip = strip.name
    settings.relit_strip = ""
    settings.anchor = rig.add_anchor(scene, path.stem)
    settings.proxy = rig.add_proxy(scene, settings.anchor, path.stem)
    settings.camera = rig.add_camera(scene, path.stem)
    scene.camera = settings.camera
    scene.render.resolution_x, scene.render.resolution_y = int(info.width), int(info.height)
    scene.render.resolution_percentage = 100
    fps = float(info.fps) or 25.0
    scene.render.fps, scene.render.fps_base = max(1, round(fps)), max(1, round(fps)) / fps
    scene.frame_end = settings.frame_start + int(info.frame_count) - 1
    settings.status = (f"imported {path.name}: {info.frame_count} frames (scene frames {settings.frame_start}-"
                       f"{scene.frame_end}), {info.width}x{info.height}; analyse next")


def analysed_frames(settings, session) -> list[int]:
    """Clip frames to analyse: all, or every ``stride``-th (a quick preview of a long clip; the rest is tracked on
    demand when relit)."""
    return list(range(0, int(session.info.frame_count), max(1, int(settings.stride))))


def new_job(context: bpy.types.Context) -> worker.AnalysisJob:
    """An analysis job for the scene's clip (RelightError when the video or the model files are missing)."""
    settings = context.scene.portrait_relight
    session = sessions.get_session(settings, context)
    frames = analysed_frames(settings, session)
    job = worker.AnalysisJob(session, frames)
    job.tracked_before = len(frames) - len(session.cache.missing(frames))  # the status says what was resumed
    return job


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def finish_analysis(context: bpy.types.Context, state: worker.JobState, job: Any = None) -> str:
    """Main-thread end of an analysis: place the rig from the tracking, update status; returns the status line."""
    scene = context.scene
    settings = scene.portrait_relight
    settings.busy = False
    settings.progress = state.fraction
    if state.cancelled:
        settings.status = (f"analysis cancelled at {state.done} of {state.total} steps; finished frames are cached: "
                           "run Analyse again to resume")
    elif state.error:
        settings.status = state.error
    else:
        session = sessions.get_session(settings, context)
        frames = analysed_frames(settings, session)
        keyed = rig.key_anchor(scene, settings, session, frames)
        settings.analysed = keyed > 0
        before = getattr(job, "tracked_before", 0)
        resumed = (" (all from the cache)" if before == len(frames) else
                   f" ({before} already in the cache)" if before else "")
        settings.status = (f"analysed {_plural(len(frames), 'frame')}{resumed} in {state.elapsed_s:.1f} s, head "
                           f"tracked in {_plural(keyed, 'frame')}; {settings.engine_note}"
                           if keyed else "no face was found in any frame: choose a clip with a visible face")
        settings.progress = 1.0
    return settings.status


class PR_OT_import_video(bpy.types.Operator, ImportHelper):
    """Import a portrait video: sequencer strip, head anchor, camera and head proxy"""

    bl_idname = "portrait_relight.import_video"
    bl_label = "Import Portrait Video"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default=VIDEO_FILTER, options={"HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not running(context.scene)

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            import_clip(context, self.filepath)
        except RelightError as exc:
            return _report_error(self, context.scene.portrait_relight, exc)
        self.report({"INFO"}, context.scene.portrait_relight.status)
        return {"FINISHED"}


#: Seconds between console progress lines of a blocking (script) run.
CONSOLE_EVERY_S = 2.0


def _console(verb: str, state: worker.JobState) -> None:
    rate = state.done / state.elapsed_s if state.elapsed_s > 0 else 0.0
    print(f"Portrait Relight: {verb} {state.done}/{state.total} ({state.fraction:.0%}, {rate:.1f}/s, "
          f"{state.elapsed_s:.0f} s)", flush=True)


def start_job(context: bpy.types.Context, job: worker.BackgroundJob, verb: str, done) -> worker.BackgroundJob:
    """Start ``job`` in its thread as the scene's running job; ``done(context, state, job) -> (ok, level, status)`` is
    its main-thread end, run by :func:`finish_job` (or the modal operator's timer)."""
    settings = context.scene.portrait_relight
    job.on_done, job.verb = done, verb
    settings.busy, settings.progress, settings.status = True, 0.0, f"{verb}..."
    RUNNING[context.scene.name] = job
    job.start()
    return job


def finish_job(context: bpy.types.Context, timeout: float | None = None, console: bool = True) -> worker.JobState:
    """Wait for the scene's running job (printing progress to the console), then end it on the main thread.

    Ctrl-C while waiting cancels the job, waits for it to stop between frames, ends it (the panel is not left
    "busy") and raises KeyboardInterrupt again. Scripts use this after ``analyse(wait=False)``;
    ``bpy.ops.portrait_relight.cancel_job()`` (or ``job.cancel()``) stops the job early.
    """
    scene = context.scene
    job = RUNNING.get(scene.name)
    if job is None:
        raise RelightError("no Portrait Relight job is running in this scene")
    deadline = None if timeout is None else time.monotonic() + timeout
    last = time.monotonic()
    interrupted = False
    try:
        while not job.future.done():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{job.name} still running after {timeout} s")
            try:  # the future, not Thread.join: a join interrupted by Ctrl-C may later return too early
                job.future.result(timeout=0.1)
            except FutureTimeout:
                pass
            if console and time.monotonic() - last >= CONSOLE_EVERY_S:
                _console(job.verb, job.snapshot())
                last = time.monotonic()
    except KeyboardInterrupt:
        interrupted = True
        job.cancel()
        job.future.result()  # the job stops between frames
    state = job.snapshot()
    if console:
        _console(job.verb, state)
    RUNNING.pop(scene.name, None)
    settings = scene.portrait_relight
    settings.busy = False
    job.outcome = job.on_done(context, state, job) if job.on_done else (not state.error, "INFO", settings.status)
    status = job.outcome[2]
    if console and status:
        print(f"Portrait Relight: {status}", flush=True)
    if interrupted:
        if state.cancelled:
            settings.status = f"{job.name} stopped by Ctrl-C; {settings.status}"
        raise KeyboardInterrupt
    return state


def poll_job(job: worker.BackgroundJob, scene_name: str) -> float | None:
    """One tick of the UI timer that ends a ``wait=False`` job: seconds until the next tick, or None when there is
    nothing more to do (the job was ended here, by ``finish_job``, or replaced). Ends it on the main thread (the
    panel leaves "busy", the anchor is keyed) once it is done."""
    if RUNNING.get(scene_name) is not job:
        return None  # ended by finish_job, or replaced
    if not job.future.done() or bpy.context.scene is None or bpy.context.scene.name != scene_name:
        return 0.25
    finish_job(bpy.context, console=False)
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            area.tag_redraw()
    return None


def _finish_when_done(job: worker.BackgroundJob, scene_name: str):
    """Register the UI timer (:func:`poll_job`) that ends ``job`` once it is done (unless a script did already);
    returns the registered function."""
    check = functools.partial(poll_job, job, scene_name)
    bpy.app.timers.register(check, first_interval=0.25)
    return check


class _BackgroundModal:
    """Mixin: run a BackgroundJob in a thread while a modal timer shows its progress (panel and status bar).

    Esc or the panel's cancel button stops it between frames. ``execute`` (scripts, background mode) runs the same
    thread and waits for it with console progress (``wait=False``: returns at once; :func:`finish_job` ends it).
    """

    verb = "working"
    _job: worker.BackgroundJob | None = None
    _timer = None
    _scene_name = ""

    def _end(self, context: bpy.types.Context, ok: bool, level: str, status: str) -> set[str]:
        if status:
            self.report({level}, status)
        return {"FINISHED"} if ok else {"CANCELLED"}

    wait: BoolProperty(name="Wait", default=True, options={"SKIP_SAVE"},
                       description="Scripts: wait for the job, printing progress to the console (off: return at "
                                   "once; follow it with operators.finish_job, stop it with cancel_job)")

    def run_blocking(self, context: bpy.types.Context, job: worker.BackgroundJob, done) -> set[str]:
        start_job(context, job, self.verb, done)
        if not getattr(self, "wait", True):
            if not bpy.app.background:  # with a UI, a timer ends it when done (headless, timers never fire)
                _finish_when_done(job, context.scene.name)
            return {"FINISHED"}  # the script holds the job now: progress, cancel, and finish_job to end it
        finish_job(context)
        return self._end(context, *job.outcome)

    def start_modal(self, context: bpy.types.Context, job: worker.BackgroundJob, done) -> set[str]:
        if bpy.app.background or context.window is None:  # no event loop: wait here (or hand it to the script)
            return self.run_blocking(context, job, done)
        start_job(context, job, self.verb, done)
        self._job, self._scene_name = job, context.scene.name
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        settings = context.scene.portrait_relight
        if event.type == "ESC" or not settings.busy:  # the panel's cancel button clears `busy`
            self._job.cancel()
        if event.type not in ("TIMER", "ESC"):
            return {"PASS_THROUGH"}
        state = self._job.snapshot()
        settings.progress = state.fraction
        if not state.finished:
            context.workspace.status_text_set(
                f"Portrait Relight: {self.verb} {state.done}/{state.total} (Esc to cancel)")
            _redraw(context)
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        finish_job(context, console=False)
        _redraw(context)
        return self._end(context, *self._job.outcome)


def _analysis_done(context: bpy.types.Context, state: worker.JobState, job: Any) -> tuple[bool, str, str]:
    status = finish_analysis(context, state, job)
    analysed = context.scene.portrait_relight.analysed
    return analysed, "INFO" if analysed else "WARNING", status


def _output_done(what: str, task: output.OutputTask, view_note: str, where_note: str):
    """``done`` callback of a render/export job: finish on the main thread (strip, video) and say where it went."""

    def done(context: bpy.types.Context, state: worker.JobState, job: Any) -> tuple[bool, str, str]:
        settings = context.scene.portrait_relight
        settings.progress = state.fraction
        if state.cancelled:
            settings.status = (f"{what} cancelled after {state.done} of {state.total} frames; finished frames are "
                               f"kept in {task.folder} and the same request resumes")
            return False, "WARNING", settings.status
        if state.error:
            settings.status = state.error
            return False, "ERROR", state.error
        try:
            result = task.finish()
        except RelightError as exc:
            settings.status = str(exc)
            return False, "ERROR", settings.status
        where = f"strip {result.name!r} from {task.folder}" if hasattr(result, "frame_final_duration") \
            else str(result)
        settings.status = f"{what} {_plural(state.total, 'frame')} to {where}{view_note}{where_note}"
        return True, "INFO", settings.status

    return done


class PR_OT_analyse(_BackgroundModal, bpy.types.Operator):
    """Track and encode every frame in the background (Esc cancels; finished frames stay cached)"""

    bl_idname = "portrait_relight.analyse"
    bl_label = "Analyse Clip"
    verb = "analysing"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(context.scene.portrait_relight.video_path) and not running(context.scene)

    def _job_or_error(self, context: bpy.types.Context) -> worker.AnalysisJob | None:
        try:
            return new_job(context)
        except RelightError as exc:
            _report_error(self, context.scene.portrait_relight, exc)
            return None

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Scripts and background mode: the same worker thread, waited for here with console progress."""
        job = self._job_or_error(context)
        return {"CANCELLED"} if job is None else self.run_blocking(context, job, _analysis_done)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        job = self._job_or_error(context)
        return {"CANCELLED"} if job is None else self.start_modal(context, job, _analysis_done)


def _redraw(context: bpy.types.Context) -> None:
    for area in context.screen.areas if context.screen else ():
        area.tag_redraw()


class PR_OT_cancel_job(bpy.types.Operator):
    """Stop the running analysis, render or export (what is finished is kept)"""

    bl_idname = "portrait_relight.cancel_job"
    bl_label = "Cancel"

    def execute(self, context: bpy.types.Context) -> set[str]:
        job = RUNNING.get(context.scene.name)
        if job is not None:
            job.cancel()
        context.scene.portrait_relight.busy = False
        return {"FINISHED"}


class PR_OT_relight_frame(bpy.types.Operator):
    """Relight the current frame with the scene's lights and camera into the preview image"""

    bl_idname = "portrait_relight.relight_frame"
    bl_label = "Relight Frame"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(context.scene.portrait_relight.video_path) and not running(context.scene)

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        settings = scene.portrait_relight
        try:
            session = sessions.get_session(settings, context)
            req = relight.request(scene, settings, session, context.evaluated_depsgraph_get())
            frame = relight.relight(session, req)
        except RelightError as exc:
            return _report_error(self, settings, exc)
        relight.show(frame.image)
        settings.status = relight.frame_status(scene, session, req, frame)
        return {"FINISHED"}


class _OutputOperator(_BackgroundModal):
    """Render/export operators: plan on the main thread, relight and write in the worker, finish on the main thread."""

    what = "output"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene.portrait_relight.analysed and not running(context.scene)

    def plan(self, context: bpy.types.Context) -> output.OutputTask:
        raise NotImplementedError

    def _prepare(self, context: bpy.types.Context) -> tuple[worker.BackgroundJob | None, Any]:
        settings = context.scene.portrait_relight
        try:
            old_view = output.use_standard_view(context.scene)
            task = self.plan(context)
        except RelightError as exc:
            _report_error(self, settings, exc)
            return None, None
        view_note = f" (view transform {old_view} -> Standard)" if old_view else ""
        done = _output_done(self.what, task, view_note, output.output_root(settings)[1])
        return worker.BackgroundJob(task.run, self.what, task.session), done

    def execute(self, context: bpy.types.Context) -> set[str]:
        job, done = self._prepare(context)
        return {"CANCELLED"} if job is None else self.run_blocking(context, job, done)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        job, done = self._prepare(context)
        return {"CANCELLED"} if job is None else self.start_modal(context, job, done)


class PR_OT_render_sequencer(_OutputOperator, bpy.types.Operator):
    """Relight the scene's frame range into an image-sequence strip above the original"""

    bl_idname = "portrait_relight.render_sequencer"
    bl_label = "Render to Sequencer"
    verb = "rendering"
    what = "rendered"

    def plan(self, context: bpy.types.Context) -> output.OutputTask:
        return output.prepare_render_to_sequencer(context)


class PR_OT_export(_OutputOperator, bpy.types.Operator):
    """Export relit frames: PNG or EXR sequence, video, or multilayer EXR passes"""

    bl_idname = "portrait_relight.export"
    bl_label = "Export Relit Frames"
    verb = "exporting"
    what = "exported"

    kind: EnumProperty(name="Format", items=EXPORT_FORMATS)

    def plan(self, context: bpy.types.Context) -> output.OutputTask:
        return output.prepare_export(context, self.kind)


@bpy.app.handlers.persistent
def clear_stale_state(_filepath: str = "") -> None:
    """After a file loads, no job of it is running, whatever was saved (e.g. saved mid-analysis)."""
    for scene in bpy.data.scenes:
        settings = getattr(scene, "portrait_relight", None)
        if settings is not None and settings.busy and not running(scene):
            settings.busy = False


def cancel_all() -> None:
    """Stop every background job (unregister): finished frames stay cached or written."""
    for job in list(RUNNING.values()):
        job.cancel()
        job.join(timeout=5.0)
    RUNNING.clear()


CLASSES = (PR_OT_import_video, PR_OT_analyse, PR_OT_cancel_job, PR_OT_relight_frame, PR_OT_render_sequencer,
           PR_OT_export)
