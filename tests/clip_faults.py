"""Hostile clips for the tests, made here from the dev videos with OpenCV (no ffmpeg binary is needed).

- :func:`write_clip`: frames -> an MP4 (mp4v) or AVI (MJPG) file.
- :func:`faststart`: move an MP4's index (moov) in front of its data, as streaming exports and phones do; a file cut
  short afterwards still opens and its header promises every frame (the "truncated MP4 with its index in front").
- :func:`retag_avi`: an AVI whose stream says another codec (AV1 here): what a clip this build cannot decode looks
  like to the reader.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np


def read_frames(path: Path, start: int, count: int) -> list[np.ndarray]:
    """``count`` BGR frames from ``start`` of a video."""
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    for _ in range(count):
        ok, frame = cap.read()
        assert ok, f"cannot read {path} at {start + len(frames)}"
        frames.append(frame)
    cap.release()
    return frames


def write_clip(path: Path, frames_bgr: list[np.ndarray], fps: float = 25.0) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    h, w = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in frames_bgr:
        writer.write(f)
    writer.release()
    return path


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        yield kind, pos, size, header
        pos += size


def _shift_chunk_offsets(moov: bytearray, shift: int) -> None:
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}

    def walk(start: int, end: int) -> None:
        for kind, pos, size, header in _boxes(bytes(moov), start, end):
            if kind in containers:
                walk(pos + header, pos + size)
            elif kind == b"stco":
                n = struct.unpack(">I", moov[pos + 12:pos + 16])[0]
                for i in range(n):
                    at = pos + 16 + 4 * i
                    moov[at:at + 4] = struct.pack(">I", struct.unpack(">I", moov[at:at + 4])[0] + shift)
            elif kind == b"co64":
                n = struct.unpack(">I", moov[pos + 12:pos + 16])[0]
                for i in range(n):
                    at = pos + 16 + 8 * i
                    moov[at:at + 8] = struct.pack(">Q", struct.unpack(">Q", moov[at:at + 8])[0] + shift)

    walk(0, len(moov))


def faststart(src: Path, dst: Path) -> Path:
    """Rewrite an MP4 with its moov box before the media data (chunk offsets shifted to match)."""
    data = src.read_bytes()
    boxes = {kind: (pos, size) for kind, pos, size, _ in _boxes(data)}
    mpos, msize = boxes[b"moov"]
    moov = bytearray(data[mpos:mpos + msize])
    rest = [(k, p, s) for k, p, s, _ in _boxes(data) if k != b"moov"]
    ftyp = [data[p:p + s] for k, p, s in rest if k == b"ftyp"]
    others = [data[p:p + s] for k, p, s in rest if k != b"ftyp"]
    _shift_chunk_offsets(moov, msize)
    dst.write_bytes(b"".join(ftyp) + bytes(moov) + b"".join(others))
    return dst


def truncate(path: Path, keep_fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep_fraction)])
    return path


def retag_avi(src: Path, dst: Path, tag: bytes = b"av01") -> Path:
    """An MJPG AVI whose stream header and format say ``tag``."""
    dst.write_bytes(src.read_bytes().replace(b"MJPG", tag))
    return dst
