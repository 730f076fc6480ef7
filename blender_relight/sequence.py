"""Relit frames to files, for the CLI and Blender alike: file naming, formats, job resume, stale frames, video.

Why one writer: the CLI's ``relight``, the demo and Blender's Render to Sequencer / Export all turn (frame, light,
camera) requests into files; doing it in one place means one naming scheme, one resume rule and one set of formats:

- ``png``: sRGB PNG (16-bit by default, 8-bit for the sequencer), RGB;
- ``exr``: linear half-float RGBA OpenEXR (ZIP); the relit frame covers the whole plate, so A is 1 (opaque);
- ``multilayer``: one EXR per frame with the beauty (half RGBA) and the ``albedo``, ``normal``, ``depth`` (float32),
  ``shading`` and ``alpha`` (the relit head's matte) layers, and each light's (below).

With passes, PNG and EXR frames get one EXR per pass and frame in a folder per pass (``albedo/albedo_000000.exr``
…), each Blender light's ``light_<name>_diffuse``, ``_specular`` and ``_shadow`` from the geometry engine included.

A job file beside the frames records what was asked (frames, lights, cameras, engine, format, the clip's cache key).
A rerun of the same request keeps the frames already written (resume); a different request first removes every file
of this naming in the folder (frames of an earlier job, other formats, pass folders) so a folder never holds a mix
that ``export`` would join into one video. Every file is written atomically: a cancel never leaves half a frame.
A video is written under a temporary name, opened again and decoded, and only then renamed to its final name.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blender_relight import exr
from blender_relight.errors import Cancelled, RelightError
from blender_relight.io_utils import ensure_writable_dir, write_bytes_atomic

FORMATS = ("png", "exr", "multilayer")
SUFFIXES = (".png", ".exr")
PASS_NAMES = ("albedo", "normal", "depth", "shading", "alpha")
#: A per-light pass (``engines.pass_name``: each Blender light's diffuse, specular and shadow in the geometry engine).
LIGHT_PASS = r"light_[^/]+_(?:diffuse|specular|shadow)"

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class FrameNaming:
    """File names of one sequence: ``<prefix><number>.<ext>``, number = clip frame index + ``offset``.

    The CLI numbers clip frames from 0 (``frame_000000.png``); Blender numbers them as scene frames
    (``relit_00001.png`` for a clip starting at scene frame 1).
    """

    prefix: str = "frame_"
    digits: int = 6
    offset: int = 0

    def number(self, index: int) -> int:
        return int(index) + self.offset

    def name(self, index: int, suffix: str) -> str:
        return f"{self.prefix}{self.number(index):0{self.digits}d}{suffix}"

    def pass_name(self, pass_name: str, index: int) -> str:
        return f"{pass_name}/{pass_name}_{self.number(index):0{self.digits}d}.exr"

    def job_file(self) -> str:
        """``job.json`` for the CLI's default naming (``export`` reads it); a hidden per-prefix name otherwise, so
        several sequences can share a folder."""
        return "job.json" if self.prefix == "frame_" else f".{self.prefix}job.json"

    def pattern(self) -> re.Pattern:
        """Every file this naming can write in the folder (any format), passes included."""
        passes = "|".join(PASS_NAMES)
        return re.compile(rf"^(?:{re.escape(self.prefix)}-?\d{{{self.digits},}}\.(?:png|exr)"
                          rf"|(?P<p>{passes}|{LIGHT_PASS})/(?P=p)_-?\d{{{self.digits},}}\.exr)$")


class SequenceWriter:
    """Writes relit frames (``pipeline.RelitFrame``) of one format and naming into one folder."""

    def __init__(self, out_dir: str | os.PathLike, image_format: str = "png", naming: FrameNaming = FrameNaming(),
                 passes: bool = False, png_bits: int = 16) -> None:
        if image_format not in FORMATS:
            raise RelightError(f"unknown image format {image_format!r}; use one of {', '.join(FORMATS)}")
        if png_bits not in (8, 16):
            raise RelightError(f"PNG frames are 8 or 16 bits, not {png_bits}")
        self.out_dir = ensure_writable_dir(out_dir)
        self.format = image_format
        self.naming = naming
        self.passes = passes or image_format == "multilayer"
        self.png_bits = png_bits

    @property
    def suffix(self) -> str:
        return ".png" if self.format == "png" else ".exr"

    def path(self, index: int) -> Path:
        """The frame's main file (the beauty, or the multilayer file)."""
        return self.out_dir / self.naming.name(index, self.suffix)

    def files(self, index: int) -> list[Path]:
        """Every file the frame makes: the main file, plus one EXR per pass in a sub-folder for PNG/EXR frames (the
        per-light ones as far as they are written: which lights have passes is the engine's to say)."""
        if self.format == "multilayer" or not self.passes:
            return [self.path(index)]
        extra = [self.out_dir / self.naming.pass_name(name, index) for name in PASS_NAMES]
        extra += [folder / Path(self.naming.pass_name(folder.name, index)).name for folder in self._light_folders()
                  if (folder / Path(self.naming.pass_name(folder.name, index)).name).is_file()]
        return [self.path(index), *extra]

    def _light_folders(self) -> list[Path]:
        """The per-light pass folders in the output folder."""
        light = re.compile(rf"^{LIGHT_PASS}$")
        return sorted(p for p in self.out_dir.iterdir() if p.is_dir() and light.match(p.name))

    def is_written(self, index: int) -> bool:
        """Whether every file of the frame exists (a pass added to the request makes the frame unfinished)."""
        main = self.path(index)
        if not main.is_file():
            return False
        return self.format == "multilayer" or not self.passes or all(
            (self.out_dir / self.naming.pass_name(name, index)).is_file() for name in PASS_NAMES)

    def write(self, index: int, relit: Any) -> Path:
        """Write one relit frame (``image`` (H, W, 3) linear float, ``passes`` by name) and its passes."""
        from blender_relight.video import write_image

        target = self.path(index)
        if self.passes and self.format != "multilayer":
            # the passes first, the main file last: a frame whose main file exists is whole (``is_written``)
            light = re.compile(rf"^{LIGHT_PASS}$")
            for name in [*PASS_NAMES, *sorted(n for n in relit.passes if light.match(n))]:
                if name in relit.passes:
                    exr.write(self.out_dir / self.naming.pass_name(name, index), {name: relit.passes[name]})
        if self.format == "png":
            write_image(target, relit.image, bits=self.png_bits)
        elif self.format == "exr":
            exr.write_rgba(target, relit.image)
        else:
            layers: dict[str, np.ndarray] = {"": _rgba(relit.image)}
            layers.update({name: relit.passes[name] for name in PASS_NAMES if name in relit.passes})
            layers.update({name: p for name, p in relit.passes.items() if name not in PASS_NAMES})  # per light
            exr.write(target, layers)
        return target

    def existing_files(self) -> list[Path]:
        """Files in the folder that this naming could have written (of any format, passes included)."""
        pattern = self.naming.pattern()
        found = [p for p in self.out_dir.iterdir() if p.is_file() and pattern.match(p.name)]
        for sub in self._pass_folders():
            found += [p for p in sub.iterdir() if p.is_file() and pattern.match(f"{sub.name}/{p.name}")]
        return sorted(found)

    def _pass_folders(self) -> list[Path]:
        """The standard and per-light pass folders in the output folder."""
        return [self.out_dir / n for n in PASS_NAMES if (self.out_dir / n).is_dir()] + self._light_folders()

    def remove_stale(self, keep: Iterable[Path] = ()) -> int:
        """Delete this naming's files except ``keep``; returns how many went. Files of other names stay."""
        keep = {Path(p) for p in keep}
        removed = 0
        for path in self.existing_files():
            if path not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        for sub in self._pass_folders():
            if not any(sub.iterdir()):
                sub.rmdir()
        return removed


def _rgba(image: np.ndarray) -> np.ndarray:
    rgb = np.asarray(image, dtype=np.float32)[..., :3]
    return np.concatenate([rgb, np.ones(rgb.shape[:2] + (1,), np.float32)], axis=-1)


def request_key(frames: list[int], lights: dict[int, Any], cameras: dict[int, Any], extra: str) -> str:
    """A digest of everything that decides the files: frames, their lights and cameras, and ``extra``."""
    digest = hashlib.sha1()
    for i in frames:
        digest.update(np.float64(i).tobytes() + lights[i].key())
        digest.update(b"-" if cameras[i] is None else np.asarray(cameras[i], np.float64).tobytes())
    digest.update(extra.encode())
    return digest.hexdigest()


def render_sequence(session: Any, out_dir: str | os.PathLike, frames: Iterable[int] | None = None,
                    light: Callable[[int], Any] | None = None,
                    camera: Callable[[int], np.ndarray | None] | None = None, passes: bool = False,
                    image_format: str = "png", progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                    naming: FrameNaming = FrameNaming(), png_bits: int = 16) -> Any:
    """Relight ``frames`` of ``session`` (a ``pipeline.ClipSession``) into ``out_dir``; resume an interrupted job.

    ``light(i)`` gives frame i's SceneLighting (or RGB SH), ``camera(i)`` its EG3D camera label or None (the filmed
    view). Returns a ``pipeline.JobSummary``.
    """
    from blender_relight.lighting.scene import SceneLighting
    from blender_relight.pipeline import JobSummary

    if light is None:
        raise RelightError("render_sequence needs a light (a function frame -> SceneLighting or RGB SH)")
    frames = list(range(session.info.frame_count) if frames is None else frames)
    if not frames:
        raise RelightError("no frame to relight: the frame range is empty")
    bad = [i for i in frames if not 0 <= i < session.info.frame_count]
    if bad:
        raise RelightError(f"frame {bad[0]} is outside {session.info.path.name} (frames 0-"
                           f"{session.info.frame_count - 1})")
    writer = SequenceWriter(out_dir, image_format, naming, passes, png_bits)
    lights = {i: SceneLighting.coerce(light(i)) for i in frames}
    cameras = {i: (None if camera is None else camera(i)) for i in frames}
    key = request_key(frames, lights, cameras, f"{session.engine.name}|{writer.passes}|{image_format}|{png_bits}|"
                                               f"{naming}|{session.cache.key}")
    job_path = writer.out_dir / naming.job_file()
    previous = _read_job(job_path)
    resume = previous.get("request") == key
    wanted = [p for i in frames for p in writer.files(i)]
    removed = writer.remove_stale(keep=wanted if resume else ())
    job = {"source": str(session.info.path), "fps": session.info.fps, "engine": session.engine.name,
           "request": key, "format": image_format, "passes": writer.passes, "frames": frames,
           "files": [writer.path(i).name for i in frames], "complete": False}
    write_bytes_atomic(job_path, json.dumps(job, indent=1).encode())
    summary = JobSummary(f"relit {session.info.path.name} with the {session.engine.name} engine")
    written = skipped = 0
    for n, index in enumerate(frames):
        if cancel is not None and cancel():
            raise Cancelled(f"relighting stopped at frame {index}; {written + skipped} frames are in "
                            f"{writer.out_dir} and a rerun of the same request resumes")
        if resume and writer.is_written(index):
            skipped += 1
        else:
            result = session.relight_frame(index, lights[index], cameras[index], with_passes=writer.passes)
            writer.write(index, result)
            summary.counts[result.status] = summary.counts.get(result.status, 0) + 1
            written += 1
        if progress:
            progress(n + 1, len(frames))
    job["complete"] = True
    write_bytes_atomic(job_path, json.dumps(job, indent=1).encode())
    line = f"{written} frames written, {skipped} already there (resumed) in {writer.out_dir}"
    if removed and not resume:
        line += f"; {removed} files of an earlier, different job removed"
    summary.lines.append(line)
    return summary


def _read_job(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}  # a damaged job file: treat as a different job (its frames are rewritten)


def sequence_frames(frames_dir: str | os.PathLike, naming: FrameNaming = FrameNaming()) -> list[Path]:
    """The frames of a folder written by :func:`render_sequence`, in order: those its job file lists (an unfinished
    job is refused), else (a folder made by hand) every ``<prefix>N.png`` (or ``.exr``)."""
    frames_dir = Path(frames_dir)
    job = _read_job(frames_dir / naming.job_file())
    if job.get("files"):
        paths = [frames_dir / name for name in job["files"]]
        missing = [p for p in paths if not p.is_file()]
        if missing or not job.get("complete", True):
            raise RelightError(f"{frames_dir}: the relight job there is unfinished ({len(paths) - len(missing)} of "
                               f"{len(paths)} frames); rerun the same relight command to finish it first")
        return paths
    pattern = re.compile(rf"^{re.escape(naming.prefix)}\d{{{naming.digits},}}\.png$")
    found = sorted(p for p in frames_dir.glob("*.png") if pattern.match(p.name))
    if not found:
        pattern = re.compile(rf"^{re.escape(naming.prefix)}\d{{{naming.digits},}}\.exr$")
        found = sorted(p for p in frames_dir.glob("*.exr") if pattern.match(p.name))
    if not found:
        raise RelightError(f"{frames_dir}: no {naming.prefix}*.png or .exr files; run `blender-relight relight` "
                           "first")
    return found


def job_fps(frames_dir: str | os.PathLike, naming: FrameNaming = FrameNaming(), default: float = 24.0) -> float:
    """The clip's frame rate as the job file recorded it (``default`` without one)."""
    return float(_read_job(Path(frames_dir) / naming.job_file()).get("fps", default) or default)


def part_path(target: Path) -> Path:
    """Where a video is written before it is checked: a hidden name beside the target, same container."""
    return target.with_name(f".{target.stem}.part{target.suffix}")


def publish_video(part: Path, target: Path, frame_count: int) -> Path:
    """Open the written video ``part`` again, check it holds ``frame_count`` decodable frames, then rename it to
    ``target``. An unplayable file (a full disk, a failing encoder: neither OpenCV's nor Blender's writer says so)
    is deleted and reported; ``target`` is never replaced by it."""
    from blender_relight.video import VideoReader

    problem = None
    if not part.is_file() or part.stat().st_size == 0:
        problem = "no data was written"
    else:
        try:
            with VideoReader(part) as reader:
                if reader.frame_count != frame_count:
                    problem = f"it holds {reader.frame_count} frames instead of {frame_count}"
                else:
                    reader.read(0)
                    reader.read(frame_count - 1)
        except (RelightError, IndexError, OSError, ValueError) as exc:
            problem = f"it cannot be decoded ({exc})"
    if problem:
        part.unlink(missing_ok=True)
        raise RelightError(f"{target}: the encoded video is unplayable ({problem}); nothing was published. Check "
                           "the disk space and export again, or export an image sequence")
    os.replace(part, target)
    return target


def encode_video(frames: list[Path], target: str | os.PathLike, fps: float,
                 progress: ProgressFn | None = None, on_frame: Callable[[int, np.ndarray], None] | None = None
                 ) -> Path:
    """Encode image ``frames`` (all one size) into ``target`` with OpenCV, verified before it gets its name."""
    from blender_relight.video import VideoWriter, read_image

    target = Path(target)
    if not frames:
        raise RelightError(f"{target}: no frames to encode")
    part = part_path(target)
    first = read_image(frames[0])
    with VideoWriter(part, fps, (first.shape[1], first.shape[0])) as writer:
        for n, path in enumerate(frames):
            image = first if n == 0 else read_image(path)
            if image.shape != first.shape:
                raise RelightError(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the first frame's")
            writer.write(image)
            if on_frame is not None:
                on_frame(n, image)
            if progress:
                progress(n + 1, len(frames))
    return publish_video(part, target, len(frames))
