"""What `blender-relight info` reports: versions, ONNX Runtime providers, model files, optional backends.

Why a module of its own: the Blender preferences panel shows the same facts, and both must answer fast (no model
loading, no heavy imports: package metadata and ``importlib.util.find_spec`` only, except ONNX Runtime whose provider
list needs its import).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys
from dataclasses import dataclass, field

from blender_relight import __version__

PACKAGES = ("numpy", "opencv-python", "opencv-contrib-python", "mediapipe", "onnxruntime", "onnxruntime-gpu",
            "torch", "onnx", "safetensors", "bpy", "dlib-bin", "face-alignment", "lpips")


@dataclass
class SystemReport:
    """Facts about this installation, as lines a person can read."""

    sections: dict[str, list[str]] = field(default_factory=dict)

    def add(self, section: str, line: str) -> None:
        self.sections.setdefault(section, []).append(line)

    def text(self) -> str:
        out = []
        for name, lines in self.sections.items():
            out.append(f"{name}:")
            out.extend(f"  {line}" for line in lines)
        return "\n".join(out)


def package_version(name: str) -> str | None:
    """Installed distribution version, or None (reads metadata only: no import)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> SystemReport:
    """Gather the report (fast: well under a second besides the ONNX Runtime import)."""
    from inference import runtime  # onnxruntime only; no torch

    report = SystemReport()
    report.add("blender-relight", f"version {__version__}, Python {platform.python_version()} ({sys.executable})")
    for name in PACKAGES:
        version = package_version(name)
        if version is not None:
            report.add("packages", f"{name} {version}")
    providers = runtime.providers_report()
    report.add("ONNX Runtime", f"onnxruntime {providers['onnxruntime']}, providers found: "
                               f"{', '.join(providers['available'])}")
    report.add("ONNX Runtime", f"will use {providers['chosen']} ({providers['reason']}), "
                               f"{providers['cpus']} CPU cores")
    if providers["weights"] is None:
        report.add("model", "no shipped neural weights found (inference/weights/default/model.json): "
                            "the analytic engine is used")
    else:
        trained = "trained" if providers["trained"] else "UNTRAINED: the analytic engine is used"
        report.add("model", f"{providers['weights']}: preset {providers['preset']}, {trained}")
    from blender_relight.tracking.landmarks import available_backends

    for name, (ok, reason) in available_backends().items():
        report.add("landmark backends", f"{name}: {'available' if ok else 'not available'} ({reason})")
    for name, module, why in (("torch", "torch", "training, ONNX export, DPR peer"),
                              ("dlib", "dlib", "identity metric (evaluation extra)"),
                              ("lpips", "lpips", "perceptual loss (needs its ImageNet weights offline)")):
        found = importlib.util.find_spec(module) is not None
        report.add("optional", f"{name}: {'installed' if found else 'not installed'} — {why}")
    return report
