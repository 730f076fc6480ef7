"""Per-clip cache: tracking results and encoded model planes on disk, resumable, self-repairing.

Why: tracking a clip and encoding its frames are the slow steps; every later action (a light change, a scrub, an
export, a rerun after a cancel) must find them on disk instead of redoing them.

Layout of one clip's folder (``<root>/<stem>-<key>/``):
- ``manifest.json``: version, source file (path, size, mtime, content hash), frame count, tracking settings, and a
  one-character-per-frame status string (``.`` not done, ``T`` tracked, ``N`` no face, ``S`` several faces,
  ``L`` low confidence), from which "which frames are done" and the status counts follow.
- ``tracks/chunk_NNNNN.npz``: tracking arrays for frames ``[N*64, N*64+64)``.
- ``planes/<model>/frame_NNNNNN.npz``: per-frame encoded planes, each floating (C, H, W) array stored as 10-bit codes
  of a per-channel range, 2D-difference coded, deflated (:func:`pack_planes`): ~0.9 MB a frame for the shipped
  model's 2 x 72 x 128² planes instead of 4.7 MB in float16 (docs/tracking.md, "Streaming pipeline, resume and bad
  input", measures what it changes in the relit frames).
- ``probe.json``: how many frames of the clip really decode (a truncated file's header promises more).
Every file is written atomically; a file that fails to load, has the wrong shapes, lacks a key or holds non-finite
values is deleted, its frames are marked not done and redone (said once), never a crash. Temporary ``.part`` files a
killed run left are removed when the cache opens. A full disk raises one :class:`CacheWriteError` that says where and
what is kept. Changing the tracking settings invalidates the tracks and planes.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
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
STATUS_CODES = {"tracked": "T", "no_face": "N", "several_faces": "S", "low_confidence": "L", "other_face": "O"}
CODE_STATUS = {v: k for k, v in STATUS_CODES.items()}
NOT_DONE = "."


class CacheWriteError(RelightError):
    """The cache could not be written (full disk, lost permission); what was written before is intact."""


@contextlib.contextmanager
def _writing(root: Path, what: str) -> Iterator[None]:
    """Turn an OSError of a cache write into one clear CacheWriteError (the atomic write left nothing half-done)."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            why = "the disk is full"
            fix = "free some space (or set BLENDER_RELIGHT_CACHE / --cache to another disk) and run again"
        else:
            why = exc.strerror or str(exc)
            fix = "check the folder's permissions, or choose another cache folder with --cache"
        raise CacheWriteError(f"cannot write {what} in the cache {root}: {why}; everything finished before is kept "
                              f"and a rerun resumes; {fix}") from None


#: Plane arrays are stored as PLANE_BITS-bit codes of a per-channel [lo, hi] range (see pack_planes).
PLANE_BITS = 10


def pack_planes(planes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Floating (C, H, W) arrays -> compact, exactly invertible codes; other arrays as they are.

    Each channel is quantised to :data:`PLANE_BITS` bits of its own [min, max] (error at most half a step: 0.05 % of
    the channel's range), predicted from its left, upper and upper-left neighbours (the 2D difference, inverted by
    two cumulative sums), zigzag-coded and split into high and low bytes (the high bytes are nearly all zero):
    deflate at level 1 takes the shipped model's 2 x 72 x 128² planes from 4.72 MB (float16) to about 0.91 MB on a
    real 720p frame (12 bits: 1.26 MB, 9 bits: 0.78 MB). docs/tracking.md measures what it changes in the relit
    frames."""
    levels = (1 << PLANE_BITS) - 1
    out: dict[str, np.ndarray] = {}
    for k, v in planes.items():
        a = np.asarray(v)
        if np.issubdtype(a.dtype, np.floating) and a.ndim == 3:
            a = a.astype(np.float32)
            lo, hi = a.min(axis=(1, 2)), a.max(axis=(1, 2))
            step = np.maximum(hi - lo, 1e-12) / levels
            q = np.rint((a - lo[:, None, None]) / step[:, None, None]).astype(np.int32)
            d = np.diff(np.diff(q, axis=1, prepend=0), axis=2, prepend=0)
            z = ((d << 1) ^ (d >> 31)).astype(np.uint16)  # zigzag: small magnitudes of either sign -> small codes
            out[f"{k}.q{PLANE_BITS}"] = np.stack([(z >> 8).astype(np.uint8), (z & 0xFF).astype(np.uint8)])
            out[f"{k}.range"] = np.stack([lo, hi], axis=1).astype(np.float32)
        elif np.issubdtype(a.dtype, np.floating):
            out[k] = a.astype(np.float16)
        else:
            out[k] = a
    return out


def unpack_planes(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_planes` (floating arrays back as float32; float16 files of older caches read too);
    raises ValueError on a malformed entry."""
    suffix = f".q{PLANE_BITS}"
    levels = (1 << PLANE_BITS) - 1
    out: dict[str, np.ndarray] = {}
    for k, v in arrays.items():
        if k.endswith(suffix):
            name = k[: -len(suffix)]
            rng = arrays.get(f"{name}.range")
            if rng is None or v.ndim != 4 or v.shape[0] != 2 or v.dtype != np.uint8 or rng.shape != (v.shape[1], 2):
                raise ValueError(f"{name}: codes {v.shape} without a matching range")
            z = (v[0].astype(np.int32) << 8) | v[1].astype(np.int32)
            d = (z >> 1) ^ -(z & 1)
            q = np.cumsum(np.cumsum(d, axis=2), axis=1).astype(np.float32)
            lo, hi = rng[:, 0], rng[:, 1]
            step = np.maximum(hi - lo, 1e-12) / levels
            out[name] = lo[:, None, None] + q * step[:, None, None]
        elif k.endswith(".range") or ".q" in k:
            if ".q" in k and not k.endswith(".range"):
                raise ValueError(f"{k}: codes of another format")
            continue
        else:
            out[k] = v.astype(np.float32) if v.dtype == np.float16 else v
    return out


def _savez_fast(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at deflate level 1: the coded planes deflate nearly as well as at level 6 in a tenth
    of the time (level 6 took 380 ms a frame, a third of the analysis). ``np.load`` reads it."""
    with open(path, "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


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


def _read_probe(root: Path) -> dict | None:
    """What an earlier open found about how many frames of the clip decode (``probe.json``), or None."""
    try:
        data = json.loads((root / "probe.json").read_text())
        return data if isinstance(data, dict) and isinstance(data.get("decodable"), int) else None
    except (OSError, ValueError):
        return None


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
        self._warned: set[str] = set()
        self.repairs: dict[str, int] = {}
        self._remove_leftovers()
        self._load_manifest(frame_count)
        if settings is not None:
            self.set_settings(settings)

    @classmethod
    def for_video(cls, video_path: str | os.PathLike, cache_root: str | os.PathLike,
                  frame_count: int | None = None, settings: dict | None = None,
                  count_decodable=None) -> "ClipCache":
        """The cache of ``video_path`` under ``cache_root`` (created if needed).

        ``count_decodable()`` (``VideoReader.count_decodable``), when given, finds how many of the header's
        ``frame_count`` frames really decode; it runs once per file (the answer is kept in ``probe.json``) and the
        cache then holds that many frames."""
        source = video_key(video_path)
        if frame_count is None:
            from blender_relight.video import VideoReader  # noqa: PLC0415

            with VideoReader(video_path) as reader:
                frame_count = reader.frame_count
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(video_path).stem)[:40]
        root = Path(cache_root) / f"{stem}-{source['hash']}"
        if count_decodable is not None:
            probe = _read_probe(root)
            if probe is None or probe.get("header") != frame_count or probe.get("size") != source["size"]:
                decodable = int(count_decodable())
                ensure_writable_dir(root)
                with _writing(root, "the probe file"):
                    write_bytes_atomic(root / "probe.json", json.dumps(
                        {"header": int(frame_count), "decodable": decodable, "size": source["size"]}).encode())
            else:
                decodable = int(probe["decodable"])
            frame_count = max(1, min(int(frame_count), decodable))
        return cls(root, source, frame_count, settings)

    def _repaired(self, kind: str, message: str, *args: object) -> None:
        """Count a repair and say it once per kind (later ones go to the debug log)."""
        self.repairs[kind] = self.repairs.get(kind, 0) + 1
        (log.debug if kind in self._warned else log.warning)(message, *args)
        self._warned.add(kind)

    def _remove_leftovers(self) -> None:
        """Delete the temporary ``.part`` files of a run that was killed while writing (never a finished file)."""
        leftovers = [p for p in self.root.rglob(".*.part*") if p.is_file()]
        for path in leftovers:
            path.unlink(missing_ok=True)
        if leftovers:
            self._repaired("leftover", "cache %s: removed %d half-written file(s) a killed run left (%s)",
                           self.root.name, len(leftovers), leftovers[0].name)

    def repair_text(self) -> str:
        """One line on what the cache repaired in this session ('' when nothing)."""
        names = {"chunk": "track chunk(s)", "planes": "plane file(s)", "leftover": "half-written file(s) removed",
                 "manifest": "manifest"}
        parts = [f"{n} {names.get(k, k)}" for k, n in self.repairs.items()]
        return ("cache repaired: " + ", ".join(parts) + " (found damaged, recomputed)") if parts else ""

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
                self._repaired("manifest", "cache manifest %s unreadable (%s); starting the clip's cache afresh",
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
        with _writing(self.root, "the manifest"):
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
            inside = (arrays["index"] >= chunk * CHUNK) & (arrays["index"] < (chunk + 1) * CHUNK)
            if not inside.all():
                raise ValueError("holds frames of another chunk")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            self._drop_chunk(chunk, f"unreadable ({exc})")
            return None
        self._chunks[chunk] = arrays
        while len(self._chunks) > 8:
            self._chunks.popitem(last=False)
        return arrays

    def _drop_chunk(self, chunk: int, why: str) -> None:
        self._repaired("chunk", "cache chunk %s %s; its frames are tracked again", self._chunk_path(chunk).name, why)
        self._chunk_path(chunk).unlink(missing_ok=True)
        self._chunks.pop(chunk, None)
        for i in range(chunk * CHUNK, min((chunk + 1) * CHUNK, self.frame_count)):
            self._frames[i] = NOT_DONE
        self._save_manifest()

    def verify_tracks(self, frames: list[int]) -> None:
        """Load every chunk that holds done frames of ``frames``: a damaged one is dropped now (its frames become
        missing and are tracked in this run), not found later as frames without a face."""
        chunks = sorted({i // CHUNK for i in frames if self.is_done(i)})
        for chunk in chunks:
            arrays = self._load_chunk(chunk)
            if arrays is None:
                if any(self.is_done(i) for i in range(chunk * CHUNK, min((chunk + 1) * CHUNK, self.frame_count))):
                    self._drop_chunk(chunk, "missing")
                continue
            present = set(int(i) for i in arrays["index"])
            lacking = [i for i in range(chunk * CHUNK, min((chunk + 1) * CHUNK, self.frame_count))
                       if self.is_done(i) and i not in present and i not in self._pending.get(chunk, {})]
            if lacking:
                self._repaired("chunk", "cache chunk %s lacks %d frame(s) the manifest lists (from %d); they are "
                               "tracked again", self._chunk_path(chunk).name, len(lacking), lacking[0])
                for i in lacking:
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
            with _writing(self.root, "tracks"), atomic_path(self._chunk_path(chunk)) as tmp:
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

    def put_planes(self, index: int, planes: dict[str, np.ndarray], model_id: str = "") -> dict[str, np.ndarray]:
        """Store a frame's encoded planes (:func:`pack_planes`: 10-bit per channel, deflated), atomically; returns
        them as a later ``get_planes`` will (what the caller must use now, so a frame encoded in this run relights
        exactly as it will from the cache).

        ``model_id`` names the weights that encoded them (``blender_relight.engines.NeuralEngine.model_id``)."""
        arrays = pack_planes(planes)
        with _writing(self.root, f"the planes of frame {index}"), \
                atomic_path(self._planes_path(index, model_id)) as tmp:
            _savez_fast(tmp, arrays)
        return unpack_planes(arrays)

    def has_planes(self, index: int, model_id: str = "") -> bool:
        """Whether a plane file exists for the frame (not whether it is sound: ``get_planes`` checks that)."""
        return self._planes_path(index, model_id).is_file()

    def get_planes(self, index: int, model_id: str = "",
                   expected: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray] | None:
        """A frame's planes for ``model_id`` (floating arrays as float32), or None if absent or damaged.

        Damaged means unreadable, a key of ``expected`` missing, a shape other than ``expected``'s, or a non-finite
        value: the file is deleted (said once) and the caller encodes the frame again."""
        path = self._planes_path(index, model_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                out = unpack_planes({k: z[k] for k in z.files})
            for name, shape in (expected or {}).items():
                if name not in out:
                    raise ValueError(f"no {name!r}")
                if tuple(out[name].shape) != tuple(shape):
                    raise ValueError(f"{name} has shape {out[name].shape}, expected {tuple(shape)}")
            bad = [k for k, v in out.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
            if bad:
                raise ValueError(f"non-finite values in {', '.join(bad)}")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            self._repaired("planes", "cached planes %s damaged (%s); the frame is encoded again", path.name, exc)
            path.unlink(missing_ok=True)
            return None
        return out

    def clear_planes(self) -> None:
        """Drop every cached plane (after a model change)."""
        shutil.rmtree(self.root / "planes", ignore_errors=True)
        ensure_writable_dir(self.root / "planes")
