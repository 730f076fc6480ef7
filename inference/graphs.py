"""The four ONNX graphs' names, inputs and outputs: one table shared by the exporter and the runtime (no torch).

Why a table: the runtime checks every loaded file against model.json and model.json against this, so a stale or
foreign file fails with a clear message at load time instead of a shape error mid-render.
Axis names: ``batch`` is dynamic in every graph; the other sizes come from the model config (see docs/model.md).
"""
from __future__ import annotations

FORMAT = "portrait-relight-onnx"
FORMAT_VERSION = 1
OPSET = 17
GRAPH_NAMES = ("encode", "temporal", "render", "shade")

#: graph -> (input names, output names)
GRAPH_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "encode": (("crop", "source_sh"), ("albedo_planes", "shading_planes")),
    "temporal": (("albedo_planes", "shading_planes", "memory", "memory_valid"),
                 ("albedo_planes_out", "shading_planes_out", "memory_out", "memory_valid_out")),
    "render": (("albedo_planes", "shading_planes", "camera"),
               ("albedo", "normal", "visibility", "depth", "alpha", "features")),
    "shade": (("albedo", "normal", "visibility", "features", "sh"), ("image", "shading")),
}


def tensor_shapes(cfg: dict) -> dict[str, list]:
    """Every named tensor's shape for a config dict (``"batch"`` marks the dynamic axis)."""
    pc3, pr = 3 * cfg["plane_channels"], cfg["plane_res"]
    ir, orr = cfg["image_res"], cfg["render_res"] * cfg["sr_factor"]
    k, n, d = cfg["temporal_window"], 3 * cfg["temporal_tokens"] ** 2, cfg["temporal_dim"]
    planes = ["batch", pc3, pr, pr]
    shapes: dict[str, list] = {
        "crop": ["batch", 3, ir, ir], "source_sh": ["batch", 9, 3], "sh": ["batch", 9, 3], "camera": ["batch", 25],
        "albedo_planes": planes, "shading_planes": planes, "albedo_planes_out": planes, "shading_planes_out": planes,
        "memory": ["batch", k, n, d], "memory_out": ["batch", k, n, d],
        "memory_valid": ["batch", k], "memory_valid_out": ["batch", k],
        "albedo": ["batch", 3, orr, orr], "normal": ["batch", 3, orr, orr], "visibility": ["batch", 1, orr, orr],
        "depth": ["batch", 1, orr, orr], "alpha": ["batch", 1, orr, orr],
        "features": ["batch", cfg["residual_dim"], orr, orr],
        "image": ["batch", 3, orr, orr], "shading": ["batch", 3, orr, orr],
    }
    return shapes
