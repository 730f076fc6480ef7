"""Write a multilayer OpenEXR file (beauty plus passes) with numpy and zlib only.

Why our own writer: neither OpenCV nor Blender's Python image API writes several named layers from arrays, and
compositors (Blender, Nuke) want albedo, normal, depth, shading and alpha as layers of one file per frame. Layout
follows the OpenEXR file format: magic, version 2 (single-part scanline), header attributes, line offset table,
ZIP-compressed blocks of 16 scanlines, 32-bit float channels. Channel names are ``<layer>.<channel>`` as Blender's
multilayer EXRs use (e.g. ``albedo.R``, ``depth.Z``, ``alpha.A``); the beauty goes in plain ``R``, ``G``, ``B``.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from blender_relight.io_utils import atomic_path

_FLOAT = 2
_ZIP = 3
_LINES_PER_BLOCK = 16

#: Channel letters per pass, by its number of components.
PASS_CHANNELS = {1: ("Z",), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}
NAMED_CHANNELS = {"normal": ("X", "Y", "Z"), "depth": ("Z",), "alpha": ("A",)}


def _attr(name: str, kind: str, data: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(data)) + data


def channel_layout(layers: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(channel name, (H, W) float32 plane) for every layer; ``""`` names the beauty layer."""
    planes: list[tuple[str, np.ndarray]] = []
    for layer, arr in layers.items():
        a = np.asarray(arr, dtype=np.float32)
        if a.ndim == 2:
            a = a[..., None]
        letters = NAMED_CHANNELS.get(layer, PASS_CHANNELS.get(a.shape[2]))
        if letters is None or len(letters) != a.shape[2]:
            raise ValueError(f"layer {layer!r}: cannot name {a.shape[2]} channels")
        for i, letter in enumerate(letters):
            planes.append((f"{layer}.{letter}" if layer else letter, a[..., i]))
    return sorted(planes, key=lambda p: p[0])  # EXR stores channels in alphabetical order


def _predict_and_interleave(raw: bytes) -> bytes:
    """OpenEXR's ZIP pre-filter: split even/odd bytes, then delta-encode."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    t = np.concatenate([buf[0::2], buf[1::2]]).astype(np.int16)
    d = np.empty_like(t)
    d[0] = t[0]
    d[1:] = (t[1:] - t[:-1] + 128 + 256) % 256
    return d.astype(np.uint8).tobytes()


def write(path: str | Path, layers: dict[str, np.ndarray]) -> Path:
    """Write ``layers`` (name -> (H, W) or (H, W, C) float arrays of one size) as one multilayer EXR, atomically."""
    planes = channel_layout(layers)
    h, w = planes[0][1].shape
    if any(p.shape != (h, w) for _, p in planes):
        raise ValueError("every layer must have the same height and width")
    chlist = b"".join(name.encode() + b"\0" + struct.pack("<iB3xii", _FLOAT, 0, 1, 1) for name, _ in planes) + b"\0"
    header = b"".join([
        _attr("channels", "chlist", chlist),
        _attr("compression", "compression", bytes([_ZIP])),
        _attr("dataWindow", "box2i", struct.pack("<iiii", 0, 0, w - 1, h - 1)),
        _attr("displayWindow", "box2i", struct.pack("<iiii", 0, 0, w - 1, h - 1)),
        _attr("lineOrder", "lineOrder", bytes([0])),
        _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
        _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
    ]) + b"\0"
    stack = np.stack([p for _, p in planes], axis=1).astype("<f4")  # (H, C, W): per line, channel after channel
    blocks = []
    for y0 in range(0, h, _LINES_PER_BLOCK):
        raw = stack[y0:y0 + _LINES_PER_BLOCK].tobytes()
        packed = zlib.compress(_predict_and_interleave(raw), 6)
        data = packed if len(packed) < len(raw) else raw
        blocks.append(struct.pack("<ii", y0, len(data)) + data)
    start = 4 + 4 + len(header) + 8 * len(blocks)
    offsets, pos = [], start
    for block in blocks:
        offsets.append(pos)
        pos += len(block)
    body = struct.pack("<ii", 20000630, 2) + header + struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(blocks)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)
    return path
