"""Command line: `blender-relight` / `python -m blender_relight`.

Subcommands follow the way a frame travels: ``track`` (landmarks, crops, cameras, source lighting, cached),
``analyse`` (track + encode for the neural engine), ``relight`` (relit image sequence for a light and camera),
``export`` (an image sequence to a video + contact sheet), ``info`` (installation facts), ``demo`` (the embedded
default job, offline). User errors print one line and exit with status 2; cancelling (Ctrl-C) keeps the cache.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

# FFmpeg's native log would print dozens of lines for a clip it cannot decode before our one-line message (read at
# FFmpeg's first use; blender_relight.video sets the same default for library use).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from blender_relight.errors import Cancelled, NoFaceError, RelightError  # noqa: E402


#: Start-up lines that mediapipe's C++ graphs (TensorFlow Lite, absl) print from their own threads, straight to the
#: file descriptor: nothing a user can act on, and they bury the command's own output.
NATIVE_CHATTER = (b"INFO: Created TensorFlow Lite", b"WARNING: All log messages before absl::InitializeLog",
                  b"inference_feedback_manager.cc", b"landmark_projection_calculator.cc")


def filter_native_stderr() -> None:
    """Route fd 2 through a pipe that drops :data:`NATIVE_CHATTER` lines; Python's own stderr bypasses the filter.

    Only the CLI does this (a Blender session keeps its console as it is). Lines are passed on as soon as they end,
    so native errors still show.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return
    sys.stderr.flush()
    original = os.dup(fd)
    sys.stderr = open(original, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace",
                      closefd=False)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [line for line in lines if not any(mark in line for mark in NATIVE_CHATTER)]
            if kept:
                os.write(original, b"\n".join(kept) + b"\n")

    threading.Thread(target=pump, name="native-stderr-filter", daemon=True).start()


class Progress:
    """A one-line progress bar on stderr with frames/s and ETA (no dependency; quiet when not a terminal)."""

    def __init__(self, label: str, stream=None) -> None:
        stream = sys.stderr if stream is None else stream  # looked up now: the CLI may have re-routed it
        self.label, self.stream, self.start, self.last = label, stream, time.monotonic(), 0.0
        self.tty = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not (done == total or now - self.last > (0.2 if self.tty else 5.0)):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6)
        eta = (total - done) / rate if rate > 0 else 0.0
        width = 28
        fill = int(width * done / max(total, 1))
        line = f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} {rate:5.1f} frames/s ETA {eta:4.0f}s"
        self.stream.write(("\r" if self.tty else "") + line + ("" if self.tty and done < total else "\n"))
        self.stream.flush()


def load_light(args: argparse.Namespace):
    """Target lighting from the CLI (parsed and validated by ``lighting.inputs``; its docstring gives each form's
    convention): an SH file, or a direction + colour + strength + ambient."""
    from blender_relight.lighting import inputs

    if args.sh:
        return inputs.load_sh_file(args.sh, args.sh_scale)
    return inputs.directional_lighting(args.light_dir, args.light_colour, args.light_strength, args.ambient)


def _camera(args: argparse.Namespace) -> np.ndarray | None:
    from blender_relight.lighting import inputs

    angles = inputs.camera_angles(args.yaw, args.pitch)
    if angles is None:
        return None
    from blender_relight import camera

    return camera.make_label(camera.orbit_camera(np.radians(angles[0]), np.radians(angles[1])))


FRAMES_HELP = ("frames to process, 0-based: N (frame N), A-B (A to B inclusive), A:B[:STEP] (Python slice, B "
               "excluded, either end may be left out), or a comma-separated list of these; default: all")


def parse_frames(text: str | None, count: int) -> list[int]:
    """The frames that ``--frames`` names (see :data:`FRAMES_HELP`), in order, without repeats.

    Why strict: an empty selection or a frame outside the clip used to exit 0 having done nothing; both are errors
    that say what the clip holds."""
    if text is None:
        return list(range(count))
    last = f"the clip has {count} frame{'s' if count != 1 else ''} (0-{count - 1})"
    if not text.strip():
        raise RelightError(f"--frames is empty; {FRAMES_HELP.split(': ', 1)[1].split('; default')[0]}")
    chosen: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            if ":" in part:
                pieces = part.split(":")
                if len(pieces) > 3:
                    raise ValueError
                bounds = [int(p) if p.strip() else None for p in pieces]
                if len(bounds) == 3 and bounds[2] == 0:
                    raise RelightError(f"--frames {text!r}: a step of 0 selects nothing")
                if any(b is not None and b < 0 for b in bounds):
                    raise ValueError
                for b in bounds[:2]:
                    if b is not None and b > count:
                        raise RelightError(f"--frames {text!r}: {b} is past the end; {last}")
                picked = list(range(count)[slice(*bounds)])
            elif "-" in part[1:]:
                a, b = (int(v) for v in part.split("-", 1))
                if a < 0 or b < a:
                    raise RelightError(f"--frames {text!r}: {part!r} is not a range A-B with 0 <= A <= B")
                picked = list(range(a, b + 1))
            else:
                picked = [int(part)]
        except ValueError:
            raise RelightError(f"--frames must be N, A-B, A:B[:STEP] or a comma-separated list of these "
                               f"(0-based), got {text!r}") from None
        outside = [i for i in picked if not 0 <= i < count]
        if outside:
            raise RelightError(f"--frames {text!r}: frame {outside[0]} is outside the clip; {last}")
        if not picked:
            raise RelightError(f"--frames {text!r} selects no frame; {last}")
        chosen.extend(picked)
    return list(dict.fromkeys(chosen))


def _session(args: argparse.Namespace):
    from blender_relight.pipeline import ClipSession

    session = ClipSession(args.video, cache_dir=args.cache, engine=args.engine, provider=args.provider,
                          weights_dir=args.weights, landmarks=args.landmarks.replace("-", "_"))
    for note in session.notes:
        print(f"note: {note}", file=sys.stderr)
    return session


def cmd_info(args: argparse.Namespace) -> int:
    from blender_relight import system_info

    print(system_info.collect().text())
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    """`track` (landmarks, crops, cameras, source SH) or `analyse` (that, then the engine's per-frame encode)."""
    session = _session(args)
    frames = parse_frames(args.frames, session.info.frame_count)
    job = session.track if args.command == "track" else session.analyse
    print(job(frames=frames, progress=Progress(args.command)).text())
    return 0


def cmd_relight(args: argparse.Namespace) -> int:
    session = _session(args)
    frames = parse_frames(args.frames, session.info.frame_count)
    light, camera = load_light(args), _camera(args)  # one light and camera for the whole sequence
    from blender_relight.io_utils import ensure_writable_dir

    ensure_writable_dir(args.out)  # before any work: an unwritable folder is refused at once
    # Frames not tracked yet are tracked first in one streaming pass (the same tracks `analyse` gives); frames
    # without a face pass through, but a selection with no face at all is an error.
    session.ensure_tracked(frames, progress=Progress("track") if session.info.frame_count > 1 else None)
    if not any(session.frame_status(i) not in ("no_face", "other_face") for i in frames):
        what = "the image" if session.info.frame_count == 1 else f"any of the {len(frames)} frames asked for"
        raise NoFaceError(f"{session.info.path}: no face found in {what}; use a portrait where the face is "
                          "visible, or choose other frames")
    result = session.render_sequence(Path(args.out), frames=frames, light=lambda i: light,
                                     camera=lambda i: camera, passes=args.passes,
                                     image_format=args.format, progress=Progress("relight"))
    print(result.text())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from blender_relight.export import export_sequence

    result = export_sequence(Path(args.frames_dir), Path(args.out), fps=args.fps, progress=Progress("export"))
    print(result.text())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from blender_relight.demo import run_demo

    result = run_demo(Path(args.out), frames=args.num_frames, engine=args.engine, provider=args.provider,
                      progress_factory=Progress)
    print(result.text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blender-relight", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, ONNX Runtime providers, model files, optional backends")
    p.set_defaults(func=cmd_info)

    def clip_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("video", help="portrait video (or a still image)")
        p.add_argument("--cache", default=None, help="cache folder (default: ~/.cache/blender-relight)")
        p.add_argument("--frames", default=None, help=FRAMES_HELP)
        p.add_argument("--engine", default="auto", choices=("auto", "geometry", "neural", "analytic"),
                       help="auto = geometry: tracked head mesh, per-light shading with cast shadows, new views by "
                            "reprojecting the plate; neural: the trained 3D model; analytic: face mesh + SH ratio")
        p.add_argument("--provider", default="auto", help="ONNX Runtime provider: auto, cuda, cpu, tensorrt")
        p.add_argument("--weights", default=None,
                       help="model folder (default: the shipped weights); one that is not a model is an error")
        p.add_argument("--landmarks", default="mediapipe", choices=("mediapipe", "face-alignment"),
                       help="landmark backend: mediapipe (bundled, default) or face-alignment (optional extra; its "
                            "FAN weights must be downloaded once, `info` says where)")

    p = sub.add_parser("track", help="track faces: landmarks, crops, cameras, source lighting (cached)")
    clip_args(p)
    p.set_defaults(func=cmd_analyse)
    p = sub.add_parser("analyse", help="track and encode every frame for relighting (cached, resumable)")
    clip_args(p)
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("relight", help="relight a clip: image sequence (+ passes) under a light and camera")
    clip_args(p)
    p.add_argument("--out", required=True, help="output folder for the relit frames")
    p.add_argument("--sh", default=None, help="light as SH: DPR .txt (gray), .json or .npy (9x3 RGB)")
    p.add_argument("--sh-scale", type=float, default=1.0, help="scale for --sh (DPR's demo uses 0.7)")
    p.add_argument("--light-dir", default="-1,-1,0.6",
                   help="direction to the light, head frame: x right, y into the face, z up (default: upper left front)")
    p.add_argument("--light-colour", default="1,1,1", help="linear RGB colour of the light")
    p.add_argument("--light-strength", type=float, default=2.0, help="irradiance on a surface facing the light")
    p.add_argument("--ambient", default="0.05", help="ambient radiance (one number or R,G,B)")
    p.add_argument("--yaw", type=float, default=None, help="camera yaw in degrees (neural engine: novel view)")
    p.add_argument("--pitch", type=float, default=None, help="camera pitch in degrees (neural engine: novel view)")
    p.add_argument("--format", default="png", choices=("png", "exr", "multilayer"),
                   help="frame format: 16-bit sRGB PNG, half-float RGBA EXR, or multilayer EXR with the passes")
    p.add_argument("--passes", action="store_true", help="also write albedo, normal, depth, shading, alpha passes")
    p.set_defaults(func=cmd_relight)

    p = sub.add_parser("export", help="turn a folder of relit frames into an MP4 and a contact sheet")
    p.add_argument("frames_dir", help="folder of frames written by `relight`")
    p.add_argument("--out", required=True, help="output .mp4 path")
    p.add_argument("--fps", type=float, default=None, help="frame rate (default: from the folder's job.json)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the embedded default: shipped portrait, moving light, orbiting camera")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--num-frames", type=int, default=48, help="clip length in frames")
    p.add_argument("--engine", default="auto", choices=("auto", "geometry", "neural", "analytic"))
    p.add_argument("--provider", default="auto")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if argv is None:  # a real command line (not a call from Python code or tests)
        filter_native_stderr()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a closed terminal, a job scheduler, `kill`) stops like Ctrl-C: what is finished is flushed.
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except Cancelled as exc:
        print(f"\ncancelled: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ncancelled by the user; finished frames are kept in the cache and a rerun resumes", file=sys.stderr)
        return 130
    except RelightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
