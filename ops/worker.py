"""Long jobs in a worker thread: analysis, and relighting frames for the sequencer or an export, never block the UI.

Why a class with ``run()``: the job runs in its own thread and the main thread polls ``snapshot()`` (the modal
operator from a timer; a script's blocking call from a wait loop that prints progress to the console), so bpy is
touched only on the main thread and the job's function must not use bpy. The job owns the clip's ClipSession while
it runs (``session.get_session`` refuses the main thread meanwhile): one owner, progress and cancel through the job
and its ``future`` (a ``concurrent.futures.Future`` resolved with the final JobState). Cancelling sets an event the
job polls between frames; what was finished stays (in the clip's cache, or as written frames).
"""
from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from blender_relight.errors import Cancelled, RelightError


#: Jobs running in the background, by scene name (module state, not saved: a crash never leaves a clip "busy").
RUNNING: dict[str, "BackgroundJob"] = {}


@dataclass(frozen=True)
class JobState:
    """What the main thread shows: progress, a one-line status, and how the job ended."""

    done: int
    total: int
    finished: bool
    cancelled: bool
    error: str | None
    summary: Any
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class BackgroundJob:
    """One run of ``fn(progress=..., cancel=...)`` (no bpy inside) with thread-safe progress, cancel and result."""

    def __init__(self, fn: Callable[..., Any], name: str = "job", session: Any = None) -> None:
        self._fn = fn
        self.name = name
        self.session = session  # the ClipSession this job owns while it runs (None: it uses none)
        self.future: Future = Future()
        self.on_done: Callable[..., Any] | None = None  # main-thread end (set by the operator that started it)
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._done = 0
        self._total = 0
        self._finished = False
        self._cancelled = False
        self._error: str | None = None
        self._summary: Any = None
        self._start = time.monotonic()
        self._thread: threading.Thread | None = None

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = int(done), int(total)

    def run(self) -> JobState:
        """Run the job (blocking); never raises: the outcome is in the returned state."""
        try:
            summary = self._fn(progress=self._progress, cancel=self._cancel.is_set)
            with self._lock:
                self._summary = summary
        except Cancelled:
            with self._lock:
                self._cancelled = True
        except RelightError as exc:
            with self._lock:
                self._error = str(exc)
        except Exception as exc:  # a bug: keep the traceback in the console, a clear line in the UI
            traceback.print_exc()
            with self._lock:
                self._error = f"{self.name} failed ({type(exc).__name__}: {exc}); see the system console"
        finally:
            with self._lock:
                self._finished = True
            if not self.future.done():
                self.future.set_result(self.snapshot())
        return self.snapshot()

    def start(self) -> None:
        """Run in a daemon thread (a daemon never keeps Blender from quitting)."""
        self._thread = threading.Thread(target=self.run, name=f"portrait-relight-{self.name}", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job ends (``timeout``: TimeoutError); returns its final state."""
        return self.future.result(timeout)

    def snapshot(self) -> JobState:
        with self._lock:
            return JobState(self._done, self._total, self._finished, self._cancelled, self._error, self._summary,
                            time.monotonic() - self._start)


class AnalysisJob(BackgroundJob):
    """Tracking and encoding of ``frames`` (default all) of a ClipSession, resuming from its cache."""

    def __init__(self, session: Any, frames: list[int] | None = None) -> None:
        super().__init__(lambda progress, cancel: session.analyse(frames=frames, progress=progress, cancel=cancel),
                         "analysis", session)
        self.frames = frames
