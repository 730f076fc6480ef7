"""Streaming video decode and encode through OpenCV, with clear errors and atomic output.

Why streaming: a 4K clip of a few minutes is tens of GB as raw frames; every stage reads one frame at a time
(`VideoReader`) and writes one frame at a time (`VideoWriter`), so memory stays flat whatever the clip's length.
Why our own rotation handling: phone clips carry a rotation tag in the container; OpenCV's auto-rotation depends on
the backend and build, so it is switched off and the tag is applied here (frames always come out upright, and
``width``/``height`` describe the upright frame).
Still images are read as 1-frame clips so the rest of the pipeline has one code path.
"""
from __future__ import annotations

import contextlib
import os

# The EXR codec is off by default in OpenCV wheels and the switch is read once, at cv2's first EXR use.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
# FFmpeg's own log (read at its first use): an undecodable clip (AV1 here) otherwise prints dozens of native lines
# before our one-line message; the reader explains every failure itself. OPENCV_FFMPEG_LOGLEVEL=24 shows them again.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from pathlib import Path  # noqa: E402
from types import TracebackType  # noqa: E402
from typing import Iterator  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from blender_relight import colour  # noqa: E402
from blender_relight.errors import RelightError  # noqa: E402
from blender_relight.io_utils import atomic_path  # noqa: E402

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".exr", ".hdr"})
VIDEO_FOURCCS = {".mp4": ("mp4v", "avc1"), ".mov": ("mp4v", "avc1"), ".m4v": ("mp4v", "avc1"), ".avi": ("MJPG",),
                 ".mkv": ("mp4v", "MJPG")}

_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}

#: Codecs the FFmpeg bundled with the pip OpenCV decodes (checked: H.264, MPEG-4, MJPEG; the others are FFmpeg's
#: native decoders); AV1 has no software decoder in that build.
SUPPORTED_CODECS = "H.264, HEVC/H.265, VP8, VP9, MPEG-4 Part 2, MJPEG, ProRes"
#: Container codec tags -> a name for people, for the ones this build cannot decode.
UNSUPPORTED_TAGS = {b"av01": "AV1", b"AV01": "AV1", b"V_AV1": "AV1", b"apv1": "APV", b"vvc1": "H.266/VVC",
                    b"vvi1": "H.266/VVC"}


def sniff_codec(path: Path) -> str | None:
    """The name of an undecodable codec whose tag the file's first and last MiB carry (MP4/MOV sample entries,
    AVI handlers, Matroska codec ids), or None: used only to explain why a clip does not open."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
            fh.seek(max(0, path.stat().st_size - (1 << 20)))
            tail = fh.read()
    except OSError:
        return None
    for blob in (head, tail):
        at = blob.find(b"stsd")
        if at >= 0 and blob[at + 16:at + 20] in UNSUPPORTED_TAGS:  # MP4/MOV: the first sample entry's tag
            return UNSUPPORTED_TAGS[blob[at + 16:at + 20]]
        for tag, name in UNSUPPORTED_TAGS.items():
            if (len(tag) > 4 and tag in blob) or (b"vids" + tag) in blob:  # Matroska codec id; AVI stream handler
                return name
    return None


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own WARN lines while opening a clip (its failure is explained by our message instead)."""
    try:
        previous = cv2.setLogLevel(2)  # 2 = errors only
    except (AttributeError, cv2.error):
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            cv2.setLogLevel(int(previous))


def _to_rgb_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    """Any OpenCV-decoded image (BGR/BGRA/gray, 8/16-bit or float) -> RGB uint8, sRGB-encoded (alpha dropped: the
    reader says so, see ``VideoReader.alpha_dropped``)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] != 3:
        raise RelightError(f"{path}: unsupported image with {image.shape[2]} channels; save it as RGB")
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
    elif np.issubdtype(image.dtype, np.floating):  # EXR/HDR: linear light
        image = colour.linear_to_uint8_srgb(image)
    return np.ascontiguousarray(cv2.cvtColor(image.astype(np.uint8, copy=False), cv2.COLOR_BGR2RGB))


#: A jump forward by at most this many frames reads through them instead of seeking: a seek decodes from the keyframe
#: before the target, which may be far back (random reads on lp_d3, lp_s18, lp_d13 took 130-650 ms CPU each, the next
#: frame 1.3-5.4 ms), so reading one second of 30-fps video is never worse than a seek by much and usually far better
#: (a Blender scrub forward, a stride, frames rendered in order).
FORWARD_READ = 30


class VideoReader:
    """Frames of a video (or a still image) one at a time as upright RGB uint8 arrays.

    Use as a context manager; iterate for ``(index, frame)`` pairs, or ``read(index)`` for random access (seeks).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise RelightError(f"{self.path}: file not found; check the path")
        if not self.path.is_file():
            raise RelightError(f"{self.path}: not a file; choose a video or image file")
        self._cap: cv2.VideoCapture | None = None
        self._still: np.ndarray | None = None
        self._pos = 0  # index of the frame the next sequential read returns
        self._first: np.ndarray | None = None
        self.rotation = 0
        #: True when the source had an alpha channel that the frames do not carry (a PNG with transparency):
        #: the relit output is opaque RGB, and ClipSession says so.
        self.alpha_dropped = False
        if self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._open_still()
        else:
            self._open_video()

    # -- opening ---------------------------------------------------------------------------------------------------
    def _open_still(self) -> None:
        data = np.fromfile(self.path, dtype=np.uint8)  # imdecode also handles non-ASCII paths
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if image is None:
            raise RelightError(f"{self.path}: cannot decode this image (corrupt or unsupported format); "
                               "re-save it as PNG or JPEG")
        if image.ndim == 3 and image.shape[2] == 4:
            alpha = image[..., 3]
            opaque = alpha.min() >= (np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0)
            self.alpha_dropped = not bool(opaque)
        if image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8:
            # IMREAD_UNCHANGED ignores EXIF orientation; re-decode with it applied for 8-bit photos.
            oriented = cv2.imdecode(data, cv2.IMREAD_COLOR)
            if oriented is not None:
                image = oriented
        self._still = _to_rgb_uint8(image, self.path)
        self.fps = 0.0
        self.height, self.width = self._still.shape[:2]
        self.frame_count = 1

    def _unsupported(self) -> RelightError | None:
        codec = sniff_codec(self.path)
        if codec is None:
            return None
        return RelightError(f"{self.path}: the video is {codec}, which this installation cannot decode "
                            f"(supported: {SUPPORTED_CODECS}); re-encode it, e.g. "
                            "`ffmpeg -i IN -c:v libx264 -crf 16 OUT.mp4`")

    def _open_video(self) -> None:
        with _quiet_opencv():
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            opened = cap.isOpened()
            if opened:
                cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
                ok, frame = cap.read()
        if not opened:
            cap.release()
            raise self._unsupported() or RelightError(
                f"{self.path}: cannot open as a video (corrupt, truncated or unsupported codec; supported: "
                f"{SUPPORTED_CODECS}); re-encode it to H.264 MP4")
        auto = bool(cap.get(cv2.CAP_PROP_ORIENTATION_AUTO))
        meta = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        self.rotation = meta if meta in _ROTATE else 0
        self._rotate_here = not auto  # if this backend insists on rotating itself, do not rotate twice
        self._cap = cap
        if not ok or frame is None:
            cap.release()
            self._cap = None
            raise self._unsupported() or RelightError(f"{self.path}: the video has no decodable frame (empty or "
                                                      "corrupt); re-export the clip")
        self._first = self._upright(frame)
        self._pos = 1
        self.height, self.width = self._first.shape[:2]
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if np.isfinite(fps) and fps > 0 else 25.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:  # some containers (streamed mkv/webm) carry no count: count by demuxing, then rewind
            count = 1
            while cap.grab():
                count += 1
            cap.set(cv2.CAP_PROP_POS_FRAMES, 1)
        self.frame_count = count

    def _upright(self, frame_bgr: np.ndarray) -> np.ndarray:
        if self.rotation and self._rotate_here:
            frame_bgr = cv2.rotate(frame_bgr, _ROTATE[self.rotation])
        return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)

    def count_decodable(self) -> int:
        """How many of the header's ``frame_count`` frames really decode (a truncated file's header promises more).

        One seek to the last frame when the clip is whole (about 0.2-0.7 s on the dev clips); otherwise a binary
        search by seeking. ClipSession runs it once per file and keeps the answer in the clip's cache."""
        if self._still is not None or self.frame_count <= 1:
            return self.frame_count

        def decodes(index: int) -> bool:
            with _quiet_opencv():
                self._first_pending = False
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = self._cap.read()
            self._pos = index + 1 if ok and frame is not None else -1
            return bool(ok and frame is not None)

        try:
            if decodes(self.frame_count - 1):
                return self.frame_count
            lo, hi = 0, self.frame_count - 1  # frame lo decodes (frame 0 did at opening), frame hi does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if decodes(mid) else (lo, mid)
            return lo + 1
        finally:
            self._pos = -1  # the next read seeks

    def limit(self, frame_count: int) -> None:
        """Treat frames from ``frame_count`` on as absent (a truncated clip)."""
        self.frame_count = max(1, min(self.frame_count, int(frame_count)))

    # -- context manager -------------------------------------------------------------------------------------------
    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the decoder (safe to call twice, or on a half-constructed reader)."""
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None

    def __del__(self) -> None:
        self.close()

    @property
    def is_still(self) -> bool:
        """True when the source is a single image."""
        return self._still is not None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright frames."""
        return self.width, self.height

    # -- reading ---------------------------------------------------------------------------------------------------
    def _next(self) -> np.ndarray | None:
        if self._still is not None:
            if self._pos > 0:
                return None
            self._pos = 1
            return self._still.copy()
        if self._cap is None:
            raise RelightError(f"{self.path}: the reader is closed; open the clip again")
        if self._first is not None and self._pos == 1 and self._first_pending:
            self._first_pending = False
            return self._first
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        self._pos += 1
        return self._upright(frame)

    _first_pending = False

    def _seek(self, index: int) -> None:
        if self._still is not None:
            self._pos = index
            return
        if self._cap is None:
            raise RelightError(f"{self.path}: the reader is closed; open the clip again")
        if index == 0 and self._first is not None:
            # The first frame is kept from opening: serve it without a seek, then continue from frame 1.
            if self._pos != 1:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 1)
            self._pos = 1
            self._first_pending = True
            return
        self._first_pending = False
        if index != self._pos:
            if self._pos >= 0 and 0 < index - self._pos <= FORWARD_READ:
                while self._pos < index and self._cap.grab():  # decoded, not converted
                    self._pos += 1
                if self._pos == index:
                    return
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._pos = index

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame_rgb_uint8)`` from ``start`` up to ``stop`` (exclusive) or the end of the clip.

        Frame counts in containers are estimates; iteration ends where decoding ends, whatever the header said.
        """
        self._seek(start)
        index = start
        while stop is None or index < stop:
            frame = self._next()
            if frame is None:
                break
            yield index, frame
            index += 1

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.frames()

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as upright RGB uint8; seeks if it is not the next frame."""
        if index < 0 or index >= self.frame_count:
            raise IndexError(f"frame {index} is outside {self.path.name} (0..{self.frame_count - 1})")
        self._seek(index)
        frame = self._next()
        if frame is None:
            raise RelightError(f"{self.path}: frame {index} cannot be decoded (truncated clip?); re-export it")
        return frame


class VideoWriter:
    """Encode RGB frames one at a time to a video file; the file appears under its name only when closed cleanly.

    Use as a context manager: an exception inside the block removes the partial file.
    ``size`` is (width, height). ``codec`` is a FourCC; by default the first one OpenCV's build can encode for the
    container is used (``mp4v`` for .mp4: the pip OpenCV build has no H.264 encoder).
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], codec: str | None = None) -> None:
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        if fps <= 0 or self.size[0] <= 0 or self.size[1] <= 0:
            raise ValueError(f"bad video parameters fps={fps} size={size}")
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_FOURCCS:
            raise RelightError(f"{self.path}: unsupported video container {suffix!r}; use one of "
                               f"{', '.join(sorted(VIDEO_FOURCCS))} or export an image sequence")
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        candidates = (codec,) if codec else VIDEO_FOURCCS[suffix]
        self._writer = None
        for fourcc in candidates:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), self.size)
            if writer.isOpened():
                self._writer, self.codec = writer, fourcc
                break
            writer.release()
        if self._writer is None:
            self._stack.close()
            raise RelightError(f"{self.path}: OpenCV cannot encode {'/'.join(candidates)} here; "
                               "choose another codec or container (.mp4 with mp4v, .avi with MJPG)")
        self.frames_written = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one frame: RGB uint8 (sRGB), or float32 linear light (converted to sRGB uint8 here)."""
        if self._writer is None:
            raise RelightError(f"{self.path}: the writer is closed")
        frame = np.asarray(frame_rgb)
        if frame.dtype != np.uint8:
            frame = colour.linear_to_uint8_srgb(frame)
        if frame.shape != (self.size[1], self.size[0], 3):
            raise ValueError(f"frame shape {frame.shape} does not match the video size {self.size} (w, h)")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it under its final name (a video without frames is not published)."""
        if self._writer is not None:
            if self.frames_written == 0:
                err = RelightError(f"{self.path}: no frame was written, so no video was made")
                self.abort(err)
                raise err
            self._writer.release()
            self._writer = None
            self._stack.close()

    def abort(self, exc: BaseException | None = None) -> None:
        """Stop writing and delete the partial file."""
        if getattr(self, "_writer", None) is not None:
            self._writer.release()
            self._writer = None
            err = exc if exc is not None else RuntimeError("aborted")
            # Exiting the atomic_path block with an exception removes the temporary file and skips the rename.
            with contextlib.suppress(BaseException):
                self._stack.__exit__(type(err), err, err.__traceback__)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)

    def __del__(self) -> None:
        self.abort()


def write_image(path: str | os.PathLike, image: np.ndarray, bits: int | None = None) -> Path:
    """Write an RGB image atomically; returns the path.

    - ``.png``: uint8 -> 8-bit, uint16 -> 16-bit; float32 is taken as *linear* light and written as sRGB
      (16-bit unless ``bits=8``).
    - ``.jpg``: 8-bit sRGB (float is taken as linear, as above).
    - ``.exr``: float32 linear light as is (uint input is decoded from sRGB first).
    Grayscale (H, W) and RGBA (H, W, 4) are accepted too (alpha is never gamma-encoded).
    """
    path = Path(path)
    img = np.asarray(image)
    suffix = path.suffix.lower()
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    alpha = img[..., 3:] if img.ndim == 3 and img.shape[2] == 4 else None
    rgb = img[..., :3] if alpha is not None else img
    if suffix == ".exr":
        if img.dtype in (np.uint8, np.uint16):
            rgb = colour.srgb_to_linear(colour.to_float(rgb))
            alpha = colour.to_float(alpha) if alpha is not None else None
        out = np.concatenate([rgb, alpha], axis=-1) if alpha is not None else rgb
        out = out.astype(np.float32)
        params: list[int] = []
    elif suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if np.issubdtype(img.dtype, np.floating):
            depth = bits or (8 if suffix in (".jpg", ".jpeg") else 16)
            enc = colour.linear_to_srgb(np.clip(rgb, 0.0, 1.0))
            scale = colour.to_uint8 if depth == 8 else colour.to_uint16
            rgb = scale(enc)
            alpha = scale(np.clip(alpha, 0.0, 1.0)) if alpha is not None else None
        elif img.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"unsupported image dtype {img.dtype}")
        out = np.concatenate([rgb, alpha], axis=-1) if alpha is not None else rgb
        if suffix in (".jpg", ".jpeg") and out.dtype != np.uint8:
            out = (out.astype(np.uint32) * 255 + 32767) // 65535
            out = out.astype(np.uint8)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    else:
        raise RelightError(f"{path}: unsupported image format {suffix!r}; use .png, .jpg, .tif or .exr")
    if out.ndim == 3 and out.shape[2] == 3:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    elif out.ndim == 3 and out.shape[2] == 4:
        out = cv2.cvtColor(out, cv2.COLOR_RGBA2BGRA)
    with atomic_path(path) as tmp:
        try:
            ok = cv2.imwrite(str(tmp), np.ascontiguousarray(out), params)
        except cv2.error as exc:
            raise RelightError(f"{path}: OpenCV cannot write {suffix} here ({str(exc).splitlines()[-1][:120]}); "
                               "set OPENCV_IO_ENABLE_OPENEXR=1 before starting, or export PNG") from exc
        if not ok:
            raise RelightError(f"{path}: OpenCV could not write the image; check the folder and the disk space")
    return path


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A still image as upright RGB uint8 (same decoding as a 1-frame clip)."""
    with VideoReader(path) as reader:
        return reader.read(0)
