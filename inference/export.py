"""ONNX export of RelightNet along its four seams, and the parity check against PyTorch.

    python -m inference.export --preset default [--checkpoint X.safetensors] --out DIR [--fp16] [--no-parity]

writes DIR/encode.onnx, temporal.onnx, render.onnx, shade.onnx (weights inside each file) and DIR/model.json
(format, preset, config, opset, every input/output name and shape, dynamic axes, precision, parity errors and
provenance). Without a checkpoint the weights are a random initialisation and model.json says ``"trained": false``
loudly: such a directory runs but does not relight faces.

Why the legacy TorchScript exporter (``dynamo=False``): it needs no onnxscript, handles the data-dependent gathers of
the importance sampler, and its graphs were checked op by op here (opset 17: GridSample, LayerNormalization, TopK).
fp16: ``--fp16`` converts the graphs with onnxruntime's float16 tool (I/O kept fp32, precision-sensitive ops kept
fp32) and writes them only where the measured error holds (docs/model.md gives the figures).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from blender_relight.errors import RelightError
from blender_relight.io_utils import ensure_writable_dir, write_bytes_atomic
from inference.graphs import FORMAT, FORMAT_VERSION, GRAPH_IO, GRAPH_NAMES, OPSET, tensor_shapes
from inference.model import PRESETS, RelightNet
from inference.model.checkpoint import load_checkpoint
from inference.runtime import file_sha256

#: ops the fp16 conversion leaves in fp32 (sorting/sampling positions and cumulative sums need the mantissa).
FP16_KEEP_FP32 = ["TopK", "CumSum", "GatherElements", "GridSample", "Softplus", "Exp", "ReduceSum", "Range",
                  "LayerNormalization", "Softmax", "Sqrt", "Div", "Less", "LessOrEqual", "Greater", "Min", "Max",
                  "Clip", "Upsample", "Resize"]
FP16_MAX_REL_ERROR = 1e-2


class _Encode(nn.Module):
    def __init__(self, net: RelightNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, crop: torch.Tensor, source_sh: torch.Tensor):
        p = self.net.encode(crop, source_sh)
        return p["albedo_planes"], p["shading_planes"]


class _Temporal(nn.Module):
    def __init__(self, net: RelightNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, albedo_planes, shading_planes, memory, memory_valid):
        return self.net.temporal_net(albedo_planes, shading_planes, memory, memory_valid)


class _Render(nn.Module):
    def __init__(self, net: RelightNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, albedo_planes, shading_planes, camera):
        g = self.net.render({"albedo_planes": albedo_planes, "shading_planes": shading_planes}, camera)
        return tuple(g[k] for k in GRAPH_IO["render"][1])


class _Shade(nn.Module):
    def __init__(self, net: RelightNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, albedo, normal, visibility, features, sh):
        s = self.net.shade({"albedo": albedo, "normal": normal, "visibility": visibility, "features": features}, sh)
        return s["image"], s["shading"]


WRAPPERS = {"encode": _Encode, "temporal": _Temporal, "render": _Render, "shade": _Shade}


def example_inputs(net: RelightNet, graph: str, batch: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fresh random inputs of the right shapes and plausible ranges for ``graph`` (export tracing and parity)."""
    from blender_relight import camera as cam

    cfg = net.config
    g = torch.Generator().manual_seed(seed)
    shapes = tensor_shapes(cfg.to_dict())

    def rnd(name: str, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        shape = [batch if s == "batch" else s for s in shapes[name]]
        return torch.rand(shape, generator=g) * scale + offset

    def unit(name: str) -> torch.Tensor:
        n = rnd(name, 2.0, -1.0)
        return n / torch.linalg.vector_norm(n, dim=1, keepdim=True).clamp(min=1e-3)

    rng = np.random.default_rng(seed)
    if graph == "encode":
        return {"crop": rnd("crop"), "source_sh": rnd("source_sh", 1.0, -0.5)}
    if graph == "temporal":
        valid = torch.ones(batch, cfg.temporal_window)
        valid[:, : cfg.temporal_window // 2] = 0.0
        return {"albedo_planes": rnd("albedo_planes", 2.0, -1.0), "shading_planes": rnd("shading_planes", 2.0, -1.0),
                "memory": rnd("memory", 2.0, -1.0), "memory_valid": valid}
    if graph == "render":
        labels = [cam.make_label(cam.orbit_camera(rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3)))
                  for _ in range(batch)]
        return {"albedo_planes": rnd("albedo_planes", 2.0, -1.0), "shading_planes": rnd("shading_planes", 2.0, -1.0),
                "camera": torch.tensor(np.stack(labels))}
    if graph == "shade":
        return {"albedo": rnd("albedo"), "normal": unit("normal"), "visibility": rnd("visibility"),
                "features": rnd("features", 2.0, -1.0), "sh": rnd("sh", 1.0, -0.5)}
    raise ValueError(f"unknown graph {graph!r}")


def export_graph(net: RelightNet, graph: str) -> onnx.ModelProto:
    """Trace one seam of ``net`` (eval mode) to an ONNX model with a dynamic batch axis."""
    inputs, outputs = GRAPH_IO[graph]
    args = example_inputs(net, graph)
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes about constants
        torch.onnx.export(WRAPPERS[graph](net).eval(), tuple(args[n] for n in inputs), buf, dynamo=False,
                          input_names=list(inputs), output_names=list(outputs), dynamic_axes=dynamic,
                          opset_version=OPSET, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    return model


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and arithmetic with fp32 I/O; the ops in FP16_KEEP_FP32 stay fp32."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True,
                                    op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_FP32)))


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref| (the parity measure used in tests and in model.json)."""
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / max(float(np.max(np.abs(ref))), 1e-12))


def parity(net: RelightNet, graph: str, model: onnx.ModelProto, seed: int = 1, batch: int = 1) -> dict[str, float]:
    """Run ``model`` through ONNX Runtime (CPU) and the PyTorch seam on the same fresh random inputs.

    Returns the relative error per output.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inputs, outputs = GRAPH_IO[graph]
    args = example_inputs(net, graph, batch=batch, seed=seed)
    with torch.no_grad():
        ref = WRAPPERS[graph](net).eval()(*(args[n] for n in inputs))
    got = sess.run(list(outputs), {n: args[n].numpy() for n in inputs})
    return {name: relative_error(g, r.numpy()) for name, g, r in zip(outputs, got, ref)}




def export_onnx(model: RelightNet, out_dir: str | Path, preset: str, provenance: dict[str, Any] | None = None,
                fp16: bool = False, check_parity: bool = True, trained: bool | None = None) -> dict[str, Any]:
    """Write the four graphs and model.json into ``out_dir``; returns the model.json dict.

    ``provenance`` (checkpoint, data, training run, ...) is stored as given; ``trained`` defaults to whether
    provenance names a checkpoint. With ``fp16`` each graph is converted and kept in fp16 only where its parity
    error stays under FP16_MAX_REL_ERROR (the rest stay fp32); every error is recorded.
    """
    out = ensure_writable_dir(out_dir)
    model = model.eval()
    provenance = dict(provenance or {})
    trained = bool(provenance.get("checkpoint")) if trained is None else trained
    cfg = model.config.to_dict()
    shapes = tensor_shapes(cfg)
    graphs: dict[str, Any] = {}
    parity_fp32: dict[str, dict[str, float]] = {}
    parity_fp16: dict[str, Any] = {}
    for name in GRAPH_NAMES:
        proto = export_graph(model, name)
        precision = "fp32"
        if check_parity:
            parity_fp32[name] = parity(model, name, proto)
        if fp16:
            try:
                half = to_fp16(proto)
                errs = parity(model, name, half)
                parity_fp16[name] = errs
                if max(errs.values()) < FP16_MAX_REL_ERROR:
                    proto, precision = half, "fp16"
            except Exception as exc:  # an op without an fp16 kernel on this machine: keep fp32, say why
                parity_fp16[name] = f"not converted: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        path = out / f"{name}.onnx"
        write_bytes_atomic(path, proto.SerializeToString())
        path.chmod(0o644)  # mkstemp makes 0600; shipped models must be readable by every user
        inputs, outputs = GRAPH_IO[name]
        graphs[name] = {
            "file": path.name, "sha256": file_sha256(path), "precision": precision,
            "inputs": [{"name": n, "shape": shapes[n], "dtype": "float32"} for n in inputs],
            "outputs": [{"name": n, "shape": shapes[n], "dtype": "float32"} for n in outputs],
            "dynamic_axes": {n: {"0": "batch"} for n in inputs + outputs},
        }
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "preset": preset, "config": cfg, "opset": OPSET,
        "trained": trained,
        "warning": None if trained else "UNTRAINED: random initial weights; this model does not relight faces",
        "graphs": graphs,
        "parity_fp32": parity_fp32, "parity_fp16": parity_fp16 or None,
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__, "onnx_version": onnx.__version__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "provenance": provenance,
    }
    write_bytes_atomic(out / "model.json", (json.dumps(meta, indent=2) + "\n").encode())
    (out / "model.json").chmod(0o644)
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inference.export", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--checkpoint", help="safetensors checkpoint (omit for an UNTRAINED random initialisation)")
    ap.add_argument("--out", required=True, help="output folder (e.g. inference/weights/default)")
    ap.add_argument("--fp16", action="store_true", help="keep graphs in fp16 where the error holds")
    ap.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    ap.add_argument("--provenance", default="{}", help="JSON object stored in model.json (data, run, commit)")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    try:
        provenance = json.loads(a.provenance)
        if not isinstance(provenance, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        print(f"error: --provenance must be a JSON object ({exc})", file=sys.stderr)
        return 2
    net = RelightNet(a.preset)
    try:
        if a.checkpoint:
            meta = load_checkpoint(net, a.checkpoint)
            provenance.setdefault("checkpoint", str(a.checkpoint))
            provenance.setdefault("checkpoint_sha256", file_sha256(Path(a.checkpoint)))
            provenance.setdefault("checkpoint_metadata", meta)
        else:
            provenance.setdefault("init_seed", a.seed)
        info = export_onnx(net, a.out, a.preset, provenance, fp16=a.fp16, check_parity=not a.no_parity)
    except RelightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    worst = {g: max(e.values()) for g, e in info["parity_fp32"].items()}
    print(f"exported preset {a.preset} to {a.out} ({'trained' if info['trained'] else 'UNTRAINED random init'}); "
          f"parity fp32 max rel error per graph: {worst}")
    if info["parity_fp16"]:
        print(f"fp16: {info['parity_fp16']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
