"""Export a folder of relit frames: an MP4 (streamed, frame by frame) and a contact sheet beside it."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from blender_relight.errors import RelightError
from blender_relight.pipeline import JobSummary


def sequence_frames(frames_dir: Path) -> list[Path]:
    """The relit frames of a folder written by ``relight``/``demo``, in frame order."""
    frames = sorted(frames_dir.glob("frame_*.png")) or sorted(frames_dir.glob("frame_*.exr"))
    if not frames:
        raise RelightError(f"{frames_dir}: no frame_*.png or frame_*.exr files; run `blender-relight relight` first")
    return frames


def export_sequence(frames_dir: Path, out_path: Path, fps: float | None = None,
                    progress: Callable[[int, int], None] | None = None, sheet_frames: int = 8) -> JobSummary:
    """Encode ``frames_dir``'s frames into ``out_path`` (.mp4) and write ``<out>.contact.png`` with a few of them."""
    from blender_relight.contact_sheet import save_contact_sheet
    from blender_relight.video import VideoWriter, read_image

    frames_dir, out_path = Path(frames_dir), Path(out_path)
    if not frames_dir.is_dir():
        raise RelightError(f"{frames_dir}: not a folder of relit frames")
    frames = sequence_frames(frames_dir)
    if fps is None:
        job = frames_dir / "job.json"
        fps = float(json.loads(job.read_text()).get("fps", 24.0)) if job.is_file() else 24.0
    first = read_image(frames[0])
    picks = {round(i * (len(frames) - 1) / max(sheet_frames - 1, 1)) for i in range(min(sheet_frames, len(frames)))}
    thumbs, labels = [], []
    with VideoWriter(out_path, fps, (first.shape[1], first.shape[0])) as writer:
        for n, path in enumerate(frames):
            image = first if n == 0 else read_image(path)
            if image.shape != first.shape:
                raise RelightError(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the first frame's")
            writer.write(image)
            if n in picks:
                thumbs.append(image)
                labels.append(path.stem)
            if progress:
                progress(n + 1, len(frames))
    sheet = out_path.with_suffix(".contact.png")
    save_contact_sheet(sheet, thumbs, labels)
    summary = JobSummary(f"exported {len(frames)} frames at {fps:g} fps")
    summary.lines += [f"video: {out_path}", f"contact sheet: {sheet}"]
    return summary
