"""The clip texture, built once per clip from the cached tracks and a stream of its frames, and kept in its cache.

Which frames: the texture is worth most where the head turned, so frames are picked for pose diversity (one per 4°
cell of yaw and pitch, first come), at most ``texture.MAX_FRAMES`` of them (evenly over yaw when there are more);
frames are decoded in order, one at a time (memory: the accumulators and one frame). Stored as
``<clip cache>/novel_view/texture-<key>.npz``; the key holds the UV layout, the frames and the tracking settings, so
re-tracking or another geometry rebuilds it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from blender_relight import colour
from blender_relight.novel_view import reproject, stored, texture as tex

log = logging.getLogger(__name__)

POSE_CELL_DEG = 4.0


def pick_frames(tracks: list, max_frames: int = tex.MAX_FRAMES) -> list[int]:
    """Frames of diverse head pose among ``tracks`` (FrameTracks with cameras), in clip order."""
    from blender_relight.novel_view.views import direction_angles
    from blender_relight import camera

    cells: dict[tuple[int, int], tuple[int, float]] = {}
    for t in tracks:
        if t is None or not t.tracked or t.camera is None or t.source_sh is None:
            continue
        yaw, pitch = direction_angles(camera.split_label(t.camera)[0])
        key = (int(np.floor(np.degrees(yaw) / POSE_CELL_DEG)), int(np.floor(np.degrees(pitch) / POSE_CELL_DEG)))
        cells.setdefault(key, (t.index, yaw))
    picked = sorted(cells.values(), key=lambda p: p[1])
    if len(picked) > max_frames:
        keep = np.linspace(0, len(picked) - 1, max_frames).round().astype(int)
        picked = [picked[i] for i in sorted(set(keep.tolist()))]
    return sorted(i for i, _ in picked)


class ClipTextures:
    """Clip textures by cache folder: loaded from disk, else built from the clip's frames (said in the log)."""

    def __init__(self, source_fn: Callable, size: int = tex.TEXTURE_SIZE) -> None:
        self.source_fn = source_fn  # (index, crop_linear, track) -> SourceView
        self.size = size
        self._textures: dict[str, tex.ClipTexture | None] = {}

    def get(self, cache, geometry, progress: Callable[[int, int], None] | None = None) -> "tex.ClipTexture | None":
        """The texture of the clip in ``cache`` (a ClipCache), for a head mesh with ``geometry``'s topology."""
        if cache is None:
            return None
        root = str(cache.root)
        if root in self._textures:
            texture = self._textures[root]
        else:
            texture = self._load_or_build(cache, geometry, progress)
            self._textures[root] = texture
        if texture is not None:
            texture.attach(geometry.uv, geometry.triangles, geometry.vertices)
        return texture

    def _load_or_build(self, cache, geometry, progress) -> "tex.ClipTexture | None":
        tracks = [cache.get_track(i) for i in range(cache.frame_count)]
        frames = pick_frames(tracks)
        if not frames:
            return None
        key = tex.texture_key(geometry.uv, geometry.triangles, self.size, frames,
                              json.dumps(cache.settings, sort_keys=True, default=str))
        path = Path(cache.root) / "novel_view" / f"texture-{key}.npz"
        texture = tex.ClipTexture.load(path)
        if texture is not None:
            return texture
        log.info("building the clip texture of %s from %d frames (once per clip)", Path(cache.root).name,
                 len(frames))
        texture = build_texture(Path(cache.source["path"]), {i: tracks[i] for i in frames}, self.source_fn,
                                self.size, progress)
        if texture is not None:
            stored.keep(path, texture.save, "clip texture")
        return texture


def build_texture(video: Path, tracks: dict, source_fn: Callable, size: int = tex.TEXTURE_SIZE,
                  progress: Callable[[int, int], None] | None = None) -> "tex.ClipTexture | None":
    """Stream ``video``'s frames ``tracks.keys()`` into a clip texture (frames decoded in order, one at a time)."""
    from blender_relight.geometry.raster import project
    from blender_relight.novel_view.render import plate_trust
    from blender_relight.video import VideoReader

    wanted = sorted(tracks)
    acc = None
    done = 0
    with VideoReader(video) as reader:
        for index, frame in reader.frames(wanted[0], wanted[-1] + 1):
            if index not in tracks:
                continue
            track = tracks[index]
            crop = colour.uint8_srgb_to_linear(track.transform.warp(frame))
            src = source_fn(index, crop, track)
            if acc is None:
                acc = tex.TextureAccumulator(src.geometry.uv, src.geometry.triangles, size)
            acc.add(index, crop, src.geometry.vertices, src.label, reproject.min_depth(src.gbuffer.depth),
                    plate_trust(src.matte), src.source_sh, project)
            done += 1
            if progress is not None:
                progress(done, len(wanted))
    return None if acc is None else acc.result()
