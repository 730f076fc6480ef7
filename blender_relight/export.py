"""Export a folder of relit frames: an MP4 (streamed, frame by frame, checked before it gets its name) and a contact
sheet beside it. The frames are those the folder's relight job lists (``blender_relight.sequence``), so frames of an
earlier job are never mixed in."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from blender_relight.errors import RelightError
from blender_relight.pipeline import JobSummary
from blender_relight.sequence import encode_video, job_fps, sequence_frames


def export_sequence(frames_dir: Path, out_path: Path, fps: float | None = None,
                    progress: Callable[[int, int], None] | None = None, sheet_frames: int = 8) -> JobSummary:
    """Encode ``frames_dir``'s frames into ``out_path`` (.mp4) and write ``<out>.contact.png`` with a few of them."""
    from blender_relight.contact_sheet import save_contact_sheet

    frames_dir, out_path = Path(frames_dir), Path(out_path)
    if not frames_dir.is_dir():
        raise RelightError(f"{frames_dir}: not a folder of relit frames")
    frames = sequence_frames(frames_dir)
    fps = job_fps(frames_dir) if fps is None else fps
    picks = {round(i * (len(frames) - 1) / max(sheet_frames - 1, 1)) for i in range(min(sheet_frames, len(frames)))}
    thumbs, labels = [], []

    def keep(n: int, image) -> None:
        if n in picks:
            thumbs.append(image)
            labels.append(frames[n].stem)

    encode_video(frames, out_path, fps, progress=progress, on_frame=keep)
    sheet = out_path.with_suffix(".contact.png")
    save_contact_sheet(sheet, thumbs, labels)
    summary = JobSummary(f"exported {len(frames)} frames at {fps:g} fps")
    summary.lines += [f"video: {out_path}", f"contact sheet: {sheet}"]
    return summary
