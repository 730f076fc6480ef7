"""OpenEXR files (single-part scanline, ZIP) written and read with numpy and zlib only: the relit RGBA frame and the
multilayer frame (beauty plus passes).

Why our own writer: neither OpenCV nor Blender's Python image API writes several named layers from arrays, OpenCV
writes EXR only behind an environment variable and then as float32 without a choice of channels, and compositors
(Blender, Nuke) want albedo, normal, depth, shading and alpha as layers of one file per frame. Layout follows the
OpenEXR file format: magic, version 2 (single-part scanline), header attributes, line offset table, ZIP-compressed
blocks of 16 scanlines. Channels are half float (what the beauty and the passes need: 11 bits of mantissa, values up
to 65504) except those asked as float32 (depth, whose absolute precision matters). Channel names are
``<layer>.<channel>`` as Blender's multilayer EXRs use (``albedo.R``, ``depth.Z``, ``alpha.A``); the beauty goes in
plain ``R``, ``G``, ``B`` (and ``A``).

The reader is for files this writer made (and other ZIP/ZIPS/uncompressed scanline files): the tests read back
exactly what was written, and the sequence writer checks nothing.
"""
from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from blender_relight.io_utils import atomic_path

_UINT, _HALF, _FLOAT = 0, 1, 2
_NONE, _ZIPS, _ZIP = 0, 2, 3
_LINES = {_NONE: 1, _ZIPS: 1, _ZIP: 16}
_DTYPES = {_UINT: np.dtype("<u4"), _HALF: np.dtype("<f2"), _FLOAT: np.dtype("<f4")}
MAGIC = 20000630

#: zlib level: 4 is within a few per cent of 6's size on relit frames at well under half its time.
ZLIB_LEVEL = 4

#: Channel letters per pass, by its number of components.
PASS_CHANNELS = {1: ("Z",), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}
NAMED_CHANNELS = {"normal": ("X", "Y", "Z"), "depth": ("Z",), "alpha": ("A",)}
#: Layers kept as 32-bit float (absolute precision matters: a depth of 2.7 in half float is off by up to 1e-3).
FLOAT_LAYERS = frozenset({"depth"})


def _attr(name: str, kind: str, data: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(data)) + data


def channel_layout(layers: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(channel name, (H, W) plane) for every layer, sorted as EXR stores them; ``""`` names the beauty layer."""
    planes: list[tuple[str, np.ndarray]] = []
    for layer, arr in layers.items():
        a = np.asarray(arr)
        if a.ndim == 2:
            a = a[..., None]
        letters = NAMED_CHANNELS.get(layer, PASS_CHANNELS.get(a.shape[2]))
        if letters is None or len(letters) != a.shape[2]:
            raise ValueError(f"layer {layer!r}: cannot name {a.shape[2]} channels")
        for i, letter in enumerate(letters):
            planes.append((f"{layer}.{letter}" if layer else letter, a[..., i]))
    return sorted(planes, key=lambda p: p[0])  # EXR stores channels in alphabetical order


def _predict(blocks: np.ndarray) -> np.ndarray:
    """OpenEXR's ZIP pre-filter on each row of ``blocks`` (uint8 (n, bytes)): even/odd bytes apart, then deltas."""
    t = np.concatenate([blocks[:, 0::2], blocks[:, 1::2]], axis=1)
    d = t.copy()
    d[:, 1:] = t[:, 1:] - t[:, :-1] + np.uint8(128)  # uint8 arithmetic wraps modulo 256, as the format wants
    return d


def _unpredict(data: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_predict` for one block (uint8 (bytes,))."""
    t = data.copy()
    t[1:] = data[1:] - np.uint8(128)
    t = np.cumsum(t, dtype=np.uint8)  # running sum modulo 256
    half = (len(t) + 1) // 2
    out = np.empty_like(t)
    out[0::2], out[1::2] = t[:half], t[half:]
    return out


def write(path: str | Path, layers: dict[str, np.ndarray], half: bool = True,
          float_layers: frozenset[str] = FLOAT_LAYERS, level: int = ZLIB_LEVEL) -> Path:
    """Write ``layers`` (name -> (H, W) or (H, W, C) float arrays of one size) as one EXR file, atomically.

    ``half``: channels in 16-bit float except the layers in ``float_layers``; else every channel in 32-bit float.
    Values beyond half float's range are clipped to ±65504 (never written as inf).
    """
    planes = channel_layout(layers)
    h, w = planes[0][1].shape
    if any(p.shape != (h, w) for _, p in planes):
        raise ValueError("every layer must have the same height and width")
    kinds, columns = [], []
    for name, plane in planes:
        layer = name.rpartition(".")[0]
        kind = _HALF if half and layer not in float_layers else _FLOAT
        values = np.asarray(plane, dtype=np.float32)
        if kind == _HALF:
            values = np.clip(np.nan_to_num(values, nan=0.0), -65504.0, 65504.0)
        kinds.append(kind)
        columns.append(np.ascontiguousarray(values.astype(_DTYPES[kind])).view(np.uint8).reshape(h, -1))
    chlist = b"".join(name.encode() + b"\0" + struct.pack("<iB3xii", kind, 0, 1, 1)
                      for (name, _), kind in zip(planes, kinds)) + b"\0"
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
    lines = np.concatenate(columns, axis=1)  # (H, bytes per line): per line, channel after channel
    n = _LINES[_ZIP]
    full = h // n
    groups = []
    if full:
        raw_full = lines[:full * n].reshape(full, -1)
        groups += [(i * n, raw_full[i], row) for i, row in enumerate(_predict(raw_full))]
    if h % n:
        rest = lines[full * n:].reshape(1, -1)
        groups.append((full * n, rest[0], _predict(rest)[0]))
    # zlib releases the GIL: the blocks compress in parallel (the format's blocks are independent).
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        packed_all = list(pool.map(lambda g: zlib.compress(g[2].tobytes(), level), groups))
    blocks = []
    for (y0, raw, _), packed in zip(groups, packed_all):
        data = packed if len(packed) < raw.size else raw.tobytes()
        blocks.append(struct.pack("<ii", y0, len(data)) + data)
    start = 8 + len(header) + 8 * len(blocks)
    offsets = np.cumsum([start] + [len(b) for b in blocks[:-1]]).astype("<u8")
    path = Path(path)
    with atomic_path(path) as tmp:
        with tmp.open("wb") as fh:
            fh.write(struct.pack("<ii", MAGIC, 2) + header + offsets.tobytes())
            for block in blocks:
                fh.write(block)
    return path


def write_rgba(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None, half: bool = True) -> Path:
    """A linear RGB (H, W, 3) frame with its alpha ((H, W), default opaque) as one RGBA EXR."""
    rgb = np.asarray(rgb, dtype=np.float32)
    a = np.ones(rgb.shape[:2], np.float32) if alpha is None else np.asarray(alpha, np.float32).reshape(rgb.shape[:2])
    return write(path, {"": np.concatenate([rgb[..., :3], a[..., None]], axis=-1)}, half=half)


def _header(buf: bytes) -> tuple[dict[str, tuple[str, bytes]], int]:
    magic, version = struct.unpack_from("<ii", buf, 0)
    if magic != MAGIC:
        raise ValueError("not an OpenEXR file")
    if version & 0x1200:  # tiled or multi-part
        raise ValueError("only single-part scanline EXR files can be read here")
    pos, attrs = 8, {}
    while buf[pos] != 0:
        name_end = buf.index(b"\0", pos)
        kind_end = buf.index(b"\0", name_end + 1)
        (size,) = struct.unpack_from("<i", buf, kind_end + 1)
        data_at = kind_end + 5
        attrs[buf[pos:name_end].decode()] = (buf[name_end + 1:kind_end].decode(), buf[data_at:data_at + size])
        pos = data_at + size
    return attrs, pos + 1


def channels(path: str | Path) -> dict[str, str]:
    """Channel name -> ``"half"``, ``"float"`` or ``"uint"`` of an EXR file (header only)."""
    attrs, _ = _header(Path(path).read_bytes()[:65536])
    return {name: {_HALF: "half", _FLOAT: "float", _UINT: "uint"}[kind] for name, kind in _chlist(attrs)}


def _chlist(attrs: dict[str, tuple[str, bytes]]) -> list[tuple[str, int]]:
    data, out, pos = attrs["channels"][1], [], 0
    while data[pos] != 0:
        end = data.index(b"\0", pos)
        (kind,) = struct.unpack_from("<i", data, end + 1)
        out.append((data[pos:end].decode(), kind))
        pos = end + 1 + 16
    return out


def read(path: str | Path) -> dict[str, np.ndarray]:
    """Channel name -> (H, W) float32 plane of a scanline EXR (uncompressed, ZIPS or ZIP; subsampling not read)."""
    buf = Path(path).read_bytes()
    attrs, pos = _header(buf)
    chans = _chlist(attrs)
    compression = attrs["compression"][1][0]
    if compression not in _LINES:
        raise ValueError(f"{path}: compression {compression} cannot be read here (only none, ZIPS, ZIP)")
    x0, y0, x1, y1 = struct.unpack("<iiii", attrs["dataWindow"][1])
    h, w = y1 - y0 + 1, x1 - x0 + 1
    n = _LINES[compression]
    nblocks = (h + n - 1) // n
    offsets = np.frombuffer(buf, "<u8", nblocks, pos)
    line_bytes = sum(_DTYPES[k].itemsize * w for _, k in chans)
    lines = np.empty((h, line_bytes), np.uint8)
    for off in offsets:
        y, size = struct.unpack_from("<ii", buf, int(off))
        data = buf[int(off) + 8:int(off) + 8 + size]
        rows = min(n, y1 + 1 - y)
        expected = rows * line_bytes
        if compression != _NONE and size < expected:
            block = _unpredict(np.frombuffer(zlib.decompress(data), np.uint8))
        else:
            block = np.frombuffer(data, np.uint8)
        lines[y - y0:y - y0 + rows] = block.reshape(rows, line_bytes)
    out, col = {}, 0
    for name, kind in chans:
        width = _DTYPES[kind].itemsize * w
        out[name] = np.ascontiguousarray(lines[:, col:col + width]).view(_DTYPES[kind]).reshape(h, w).astype(
            np.float32)
        col += width
    return out
