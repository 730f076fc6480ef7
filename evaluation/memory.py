"""Peak resident memory of a block of work, sampled from /proc (Linux) or ru_maxrss elsewhere.

Why sampling: ``ru_maxrss`` is a process-wide high-water mark that never goes down, so it cannot tell which of
several systems run one after another in the same process used the memory; a background thread reading the current
RSS every few milliseconds can.
"""
from __future__ import annotations

import os
import resource
import threading
import time


def peak_rss_mib() -> float:
    """The process's high-water mark of resident memory (``ru_maxrss``: KiB on Linux/BSD, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 1024


def current_rss_mib() -> float:
    """Resident memory now (``/proc/self/statm``); the high-water mark where there is no /proc."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mib()


class PeakRSS:
    """Context manager: ``with PeakRSS() as m: ...`` then ``m.peak_mib`` (and ``m.start_mib``)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.start_mib = self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, current_rss_mib())
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self.start_mib = self.peak_mib = current_rss_mib()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mib = max(self.peak_mib, current_rss_mib())
