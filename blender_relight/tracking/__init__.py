"""Face tracking front end: landmarks, smoothing, the EG3D crop, head pose, per-frame tracks.

Modules: ``landmarks`` (backends), ``smoothing`` (One-Euro), ``align`` (EG3D 512² crop and inverse), ``pose``
(face template, PnP -> EG3D camera), ``tracker`` (streams a clip into per-frame ``FrameTrack`` records).
"""
import os

# OpenCV reads this switch once, at its first EXR use; set it before anything imports cv2.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
