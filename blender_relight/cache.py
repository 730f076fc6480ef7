"""Per-clip cache: tracking results and encoded model planes on disk, resumable, self-repairing.

Why: tracking a clip and encoding its frames are the slow steps; every later action (a light change, a scrub, an
export, a rerun after a cancel) must find them on disk instead of redoing them.

Layout of one clip's folder (``<root>/<stem>-<key>/``):
- ``manifest.json``: version, source file (path, size, mtime, content hash), frame count, tracking settings, and a
  one-character-per-frame status string (``.`` not done, ``T`` tracked, ``N`` no face, ``S`` several faces,
  ``L`` low confidence), from which "which frames are done" and the status counts follow.
- ``tracks/chunk_NNNNN.npz``: tracking arrays for frames ``[N*64, N*64+64)``.
- ``planes/frame_NNNNNN.npz``: per-frame encoded planes (float16).
Every file is written atomically; a file that fails to load or has the wrong shapes is deleted, its frames are
marked not done and redone, never a crash. Changing the tracking settings invalidates the tracks and planes.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from blender_relight.errors import RelightError
from blender_relight.io_utils import atomic_path, ensure_writable_dir, write_bytes_atomic

if TYPE_CHECKING:
    from blender_relight.tracking.tracker import FrameTrack

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CHUNK = 64
HASH_BYTES = 1 << 20
STATUS_CODES = {"tracked": "T", "no_face": "N", "several_faces": "S", "low_confidence": "L"}
CODE_STATUS = {v: k for k, v in STATUS_CODES.items()}
NOT_DONE = "."


def video_key(path: str | os.PathLike) -> dict:
    """Identity of a video file: content hash of its first MiB plus its size (survives a move or a rename)."""
    p = Path(path)
    try:
        st = p.stat()
        with open(p, "rb") as fh:
            head = fh.read(HASH_BYTES)
    except OSError as exc:
        raise RelightError(f"{p}: cannot read the video to key its cache ({exc.strerror})") from exc
    digest = hashlib.sha1(head + str(st.st_size).encode()).hexdigest()[:16]
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": st.st_mtime, "hash": digest}


class ClipCache:
    """The cache folder of one clip. Not safe for two processes writing the same clip at once."""

    def __init__(self, root: Path, source: dict, frame_count: int, settings: dict | None = None) -> None:
        self.root = Path(root)
        self.source = source
        self.key = source["hash"]
        self._chunks: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._pending: dict[int, dict[int, "FrameTrack"]] = {}
        ensure_writable_dir(self.root)
        ensure_writable_dir(self.root / "tracks")
        ensure_writable_dir(self.root / "planes")
        self._load_manifest(frame_count)
        if settings is not None:
            self.set_settings(settings)

    @classmethod
    def for_video(cls, video_path: str | os.PathLike, cache_root: str | os.PathLike,
                  frame_count: int | None = None, settings: dict | None = None) -> "ClipCache":
        """The cache of ``video_path`` under ``cache_root`` (created if needed)."""
        source = video_key(video_path)
        if frame_count is None:
            from blender_relight.video import VideoReader  # noqa: PLC0415

            with VideoReader(video_path) as reader:
                frame_count = reader.frame_count
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(video_path).stem)[:40]
        return cls(Path(cache_root) / f"{stem}-{source['hash']}", source, frame_count, settings)

    # -- manifest --------------------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def _load_manifest(self, frame_count: int) -> None:
        data = None
        if self.manifest_path.is_file():
            try:
                data = json.loads(self.manifest_path.read_text())
                if data.get("version") != CACHE_VERSION or len(data["frames"]) != data["frame_count"]:
                    raise ValueError("version or frame count mismatch")
            except (ValueError, KeyError, TypeError, OSError) as exc:
                log.warning("cache manifest %s unreadable (%s); starting the clip's cache afresh",
                            self.manifest_path, exc)
                self._wipe()
                data = None
        if data is None or data["frame_count"] != frame_count:
            if data is not None:
                self._wipe()
            data = {"version": CACHE_VERSION, "frame_count": int(frame_count), "settings": {},
                    "frames": NOT_DONE * int(frame_count)}
        data["source"] = self.source
        self._manifest = data
        self._frames = list(data["frames"])

    def _wipe(self) -> None:
        for sub in ("tracks", "planes"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
            ensure_writable_dir(self.root / sub)
        self._chunks.clear()
        self._pending.clear()

    def _save_manifest(self) -> None:
        m = self._manifest
        m["frames"] = "".join(self._frames)
        m["status_counts"] = self.status_counts()
        m["done"] = sum(ch != NOT_DONE for ch in self._frames)
        m["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_bytes_atomic(self.manifest_path, json.dumps(m, indent=1).encode())

    @property
    def frame_count(self) -> int:
        return int(self._manifest["frame_count"])

    @property
    def settings(self) -> dict:
        return dict(self._manifest.get("settings", {}))

    def set_settings(self, settings: dict) -> None:
        """Record the tracking settings; different settings from the cached ones invalidate tracks and planes."""
        settings = json.loads(json.dumps(settings))  # normalise (tuples -> lists, numpy scalars fail loudly)
        if self._manifest.get("settings") and self._manifest["settings"] != settings:
            log.info("tracking settings changed; the cached tracks of %s are redone", self.root.name)
            self._wipe()
            self._frames = [NOT_DONE] * self.frame_count
        self._manifest["settings"] = settings
        self._save_manifest()

    def status_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in STATUS_CODES}
        for ch in self._frames:
            if ch in CODE_STATUS:
                counts[CODE_STATUS[ch]] += 1
        return counts

    def is_done(self, index: int) -> bool:
        return 0 <= index < len(self._frames) and self._frames[index] != NOT_DONE

    def done_frames(self) -> list[int]:
        return [i for i, ch in enumerate(self._frames) if ch != NOT_DONE]

    def missing(self, frames: list[int] | None = None) -> list[int]:
        """Frames (of ``frames`` or all) that still need tracking."""
        frames = range(self.frame_count) if frames is None else frames
        return [i for i in frames if not self.is_done(i)]

    def status(self, index: int) -> str | None:
        ch = self._frames[index] if 0 <= index < len(self._frames) else NOT_DONE
        return CODE_STATUS.get(ch)

    # -- tracks ----------------------------------------------------------------------------------------------------
    def _chunk_path(self, chunk: int) -> Path:
        return self.root / "tracks" / f"chunk_{chunk:05d}.npz"

    def _load_chunk(self, chunk: int) -> dict[str, np.ndarray] | None:
        if chunk in self._chunks:
            self._chunks.move_to_end(chunk)
            return self._chunks[chunk]
        path = self._chunk_path(chunk)
        if not path.is_file():
            return None
        from blender_relight.tracking.tracker import FrameTrack  # noqa: PLC0415

        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            FrameTrack.check_arrays(arrays)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            self._drop_chunk(chunk, f"unreadable ({exc})")
            return None
        self._chunks[chunk] = arrays
        while len(self._chunks) > 8:
            self._chunks.popitem(last=False)
        return arrays

    def _drop_chunk(self, chunk: int, why: str) -> None:
        log.warning("cache chunk %s %s; its frames will be tracked again", self._chunk_path(chunk).name, why)
        self._chunk_path(chunk).unlink(missing_ok=True)
        self._chunks.pop(chunk, None)
        for i in range(chunk * CHUNK, min((chunk + 1) * CHUNK, self.frame_count)):
            self._frames[i] = NOT_DONE
        self._save_manifest()

    def get_track(self, index: int) -> "FrameTrack | None":
        """The cached track of frame ``index``, or None if it is not done (or its entry was corrupt)."""
        if not self.is_done(index):
            return None
        chunk = index // CHUNK
        pending = self._pending.get(chunk, {}).get(index)
        if pending is not None:
            return pending
        arrays = self._load_chunk(chunk)
        if arrays is None:
            if self.is_done(index):  # manifest says done but the chunk is gone
                self._drop_chunk(chunk, "missing")
            return None
        from blender_relight.tracking.tracker import FrameTrack  # noqa: PLC0415

        rows = np.nonzero(arrays["index"] == index)[0]
        if len(rows) == 0:
            self._drop_chunk(chunk, f"lacks frame {index}")
            return None
        return FrameTrack.from_arrays(arrays, int(rows[0]))

    def put_track(self, track: "FrameTrack") -> None:
        """Queue a frame's track; it reaches the disk at the next ``flush`` (the tracker flushes every chunk)."""
        self._pending.setdefault(track.index // CHUNK, {})[track.index] = track
        self._frames[track.index] = STATUS_CODES[track.status]

    def flush(self) -> None:
        """Write every queued track (merged into its chunk file) and the manifest, atomically."""
        from blender_relight.tracking.tracker import FrameTrack  # noqa: PLC0415

        if not self._pending:
            return
        for chunk, new in sorted(self._pending.items()):
            tracks: dict[int, FrameTrack] = {}
            old = self._load_chunk(chunk)
            if old is not None:
                for row, idx in enumerate(old["index"]):
                    if int(idx) not in new:
                        tracks[int(idx)] = FrameTrack.from_arrays(old, row)
            tracks.update(new)
            arrays = FrameTrack.stack_arrays([tracks[i] for i in sorted(tracks)])
            with atomic_path(self._chunk_path(chunk)) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **arrays)
            self._chunks[chunk] = arrays
        self._pending.clear()
        self._save_manifest()

    # -- planes ----------------------------------------------------------------------------------------------------
    def _planes_path(self, index: int, model_id: str = "") -> Path:
        """Planes live under the model that made them: other weights never read them as theirs."""
        folder = self.root / "planes" / model_id if model_id else self.root / "planes"
        return folder / f"frame_{index:06d}.npz"

    def put_planes(self, index: int, planes: dict[str, np.ndarray], model_id: str = "") -> None:
        """Store a frame's encoded planes (floating arrays as float16, others as they are), atomically.

        ``model_id`` names the weights that encoded them (``blender_relight.engines.NeuralEngine.model_id``)."""
        arrays = {k: (np.asarray(v).astype(np.float16) if np.issubdtype(np.asarray(v).dtype, np.floating)
                      else np.asarray(v)) for k, v in planes.items()}
        with atomic_path(self._planes_path(index, model_id)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    def get_planes(self, index: int, model_id: str = "") -> dict[str, np.ndarray] | None:
        """A frame's planes for ``model_id`` (floating arrays back as float32), or None if absent or corrupt
        (then deleted)."""
        path = self._planes_path(index, model_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {k: (z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k]) for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("cached planes %s unreadable (%s); they will be encoded again", path.name, exc)
            path.unlink(missing_ok=True)
            return None
        return out

    def clear_planes(self) -> None:
        """Drop every cached plane (after a model change)."""
        shutil.rmtree(self.root / "planes", ignore_errors=True)
        ensure_writable_dir(self.root / "planes")
