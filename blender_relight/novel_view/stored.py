"""The per-clip products of the novel-view path (the clip texture, the clean plate) on disk: one format, one reader.

Why one: both are float images kept with the clip's cache, stored as float16 in a deflated ``.npz`` with a format
version, rebuilt (said in the log) when absent, of another version or unreadable, and a session that cannot write
them keeps working with the one it built.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


def save_arrays(path: Path, version: int, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (floating images as float16, scalars as they are) and ``version`` to ``path`` atomically."""
    from blender_relight.io_utils import atomic_path

    def packed(v: np.ndarray) -> np.ndarray:
        a = np.asarray(v)
        return a.astype(np.float16) if np.issubdtype(a.dtype, np.floating) and a.ndim >= 2 else a

    out = {k: packed(v) for k, v in arrays.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, version=np.int64(version), **out)


def load_arrays(path: Path, version: int, names: tuple[str, ...], what: str) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` stored at ``path`` (floating ones as float32), or None when the file is absent, of
    another version or unreadable (``what`` names it in the log: it is then rebuilt)."""
    if not Path(path).is_file():
        return None
    try:
        with np.load(path) as data:
            if int(data["version"]) != version:
                return None
            out = {}
            for name in names:
                a = data[name]
                out[name] = a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a
    except (OSError, KeyError, ValueError) as exc:
        log.warning("%s: %s unreadable (%s); rebuilding it", path, what, exc)
        return None
    return out


def keep(path: Path, save: Callable[[Path], None], what: str) -> None:
    """Store a product with the clip (``save(path)``); a folder that cannot be written is said, not fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path)
    except OSError as exc:
        log.warning("could not store the %s in %s (%s); it is rebuilt next session", what, path, exc)
