"""Atomic file output: write to a temporary name beside the target, then rename.

Why: a crash, a cancel or a full disk must never leave a half-written frame, video or cache entry that a later run
would take for a finished one.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import RelightError

_UMASK = os.umask(0)
os.umask(_UMASK)


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it can be written; raise a RelightError that says what to do if not."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RelightError(f"cannot create output folder {p}: {exc.strerror}; choose another folder") from exc
    if not os.access(p, os.W_OK | os.X_OK):
        raise RelightError(f"output folder {p} is not writable; choose another folder or fix its permissions")
    return p


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (same suffix); rename it onto ``target`` only if the block succeeds."""
    target = Path(target)
    ensure_writable_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the result the usual permissions
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
