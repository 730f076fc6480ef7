"""Analysis in a worker thread: tracking and encoding never block Blender's UI.

Why a class with ``run()``: the modal operator starts ``run`` in a thread and polls ``snapshot()`` from a timer on
the main thread (bpy is touched only there); the tests call ``run()`` directly, so both go through the same code.
Cancelling sets an event that ``ClipSession.analyse`` polls; what was finished stays in the clip's cache.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from blender_relight.errors import Cancelled, RelightError


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


class AnalysisJob:
    """One run of ``session.analyse`` with thread-safe progress, cancel and result."""

    def __init__(self, session: Any, frames: list[int] | None = None) -> None:
        self.session = session
        self.frames = frames
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
        """Analyse the clip (blocking); never raises: the outcome is in the returned state."""
        try:
            summary = self.session.analyse(frames=self.frames, progress=self._progress, cancel=self._cancel.is_set)
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
                self._error = f"analysis failed ({type(exc).__name__}: {exc}); see the system console"
        finally:
            with self._lock:
                self._finished = True
        return self.snapshot()

    def start(self) -> None:
        """Run in a daemon thread (a daemon never keeps Blender from quitting)."""
        self._thread = threading.Thread(target=self.run, name="portrait-relight-analysis", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> JobState:
        with self._lock:
            return JobState(self._done, self._total, self._finished, self._cancelled, self._error, self._summary,
                            time.monotonic() - self._start)
