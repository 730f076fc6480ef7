"""Core of Portrait Relight: video, face tracking, lighting and camera maths, pipeline, CLI. No Blender needed."""
import os as _os

# Compositing passes are written as OpenEXR; OpenCV reads/writes EXR only when this is set before cv2 is imported.
_os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

__version__ = "0.1.0"
