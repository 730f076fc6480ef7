"""Benchmark of the relighting network through ONNX Runtime: per stage and end to end, both presets.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_model.py [--presets default paper] [--threads 2]
                                                                [--repeat 5] [--weights DIR] [--sweep]

Per preset (each in its own process, so peak memory is its own): export the graphs (random init unless --weights
names an exported folder; speed does not depend on the weights), create RelightRuntime on the CPU provider with
``--threads`` intra-op threads, and time encode, temporal, render (+SR), shade at 512² (median of
``--repeat``, and the minimum: the figure least disturbed by other processes on shared cores).
Prints frames/s per stage, for a light change (shade), a camera change (render + shade) and end to end (all four),
peak RSS after each stage, and each stage's FLOPs and bytes against a roofline floor measured on this machine
(numpy matmul GFLOP/s and copy bandwidth at the same thread count): floor = max(FLOPs / peak, bytes / bandwidth).

FLOPs: torch's FlopCounterMode (matmuls and convolutions) plus grid_sample (4 taps x 2 per output value); bytes:
weights + graph inputs + graph outputs (what no implementation can avoid moving) and, separately, the traffic of every
op's inputs and outputs (what an unfused implementation moves). ``--sweep`` times candidate default configs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.memory import peak_rss_mib  # noqa: E402


def machine_peaks(threads: int) -> dict[str, float]:
    """Measured fp32 matmul GFLOP/s and copy bandwidth GB/s at the BLAS thread count set in the environment."""
    a = np.random.rand(1024, 1024).astype(np.float32)
    b = np.random.rand(1024, 1024).astype(np.float32)
    a @ b
    t = time.perf_counter()
    n = 10
    for _ in range(n):
        a @ b
    gflops = 2 * 1024 ** 3 * n / (time.perf_counter() - t) / 1e9
    src = np.ones(64 * 1024 * 1024 // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t = time.perf_counter()
    for _ in range(5):
        np.copyto(dst, src)
    gbs = 2 * src.nbytes * 5 / (time.perf_counter() - t) / 1e9   # read + write
    return {"gflops": gflops, "gbs": gbs, "threads": threads}


class Traffic(TorchDispatchMode):
    """Bytes read and written by every non-view aten op (what an unfused implementation moves)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not getattr(func, "is_view", False):
            ts = [t for t in tree_flatten((args, kwargs or {}, out))[0] if isinstance(t, torch.Tensor)]
            self.bytes += sum(t.numel() * t.element_size() for t in ts)
        return out


def count_stage_costs(net, preset_cfg) -> dict[str, dict[str, float]]:
    """FLOPs and bytes per stage for one frame (see module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    from inference.export import GRAPH_IO, WRAPPERS, example_inputs

    cfg = preset_cfg
    costs = {}
    for graph in ("encode", "temporal", "render", "shade"):
        wrapper = WRAPPERS[graph](net).eval()
        args = example_inputs(net, graph)
        inputs = [args[n] for n in GRAPH_IO[graph][0]]
        traffic = Traffic()
        with torch.no_grad(), FlopCounterMode(display=False) as fc, traffic:
            outs = wrapper(*inputs)
        flops = float(fc.get_total_flops())
        if graph == "render":   # grid_sample: 2 tri-planes x 3 planes x C channels x 4 taps x 2 flops per sample
            samples = cfg.render_res ** 2 * (cfg.n_coarse + cfg.n_importance)
            flops += samples * 2 * 3 * cfg.plane_channels * 4 * 2
        weights = sum(p.numel() * 4 for p in wrapper.parameters())
        io_bytes = sum(t.numel() * 4 for t in inputs) + sum(t.numel() * 4 for t in outs)
        costs[graph] = {"flops": flops, "bytes_floor": float(weights + io_bytes),
                        "layer_traffic": float(traffic.bytes)}
    return costs


def bench_one(preset: str, threads: int, repeat: int, weights: str | None, config_json: str | None) -> dict:
    torch.set_num_threads(1)
    from inference.export import export_onnx
    from inference.model import PRESETS, ModelConfig, RelightNet
    from inference.runtime import RelightRuntime
    from blender_relight import camera as cam

    cfg = ModelConfig.from_dict(json.loads(config_json)) if config_json else PRESETS[preset]
    net = RelightNet(cfg).eval()
    costs = count_stage_costs(net, cfg)
    params = sum(p.numel() for p in net.parameters())
    tmp = tempfile.TemporaryDirectory()
    folder = weights or tmp.name
    if not weights:
        export_onnx(net, folder, preset, {"note": "benchmark"}, check_parity=False)
    del net
    rss = {"start": peak_rss_mib()}
    rt = RelightRuntime(folder, provider="cpu", threads=threads)
    rss["sessions"] = peak_rss_mib()
    rng = np.random.default_rng(0)
    crop = rng.random((cfg.image_res, cfg.image_res, 3), dtype=np.float32)
    sh_in = rng.normal(size=(9, 3)) * 0.3
    label = cam.make_label(cam.orbit_camera(0.2, 0.1))

    best: dict[str, float] = {}

    def timed(stage, fn, n):
        fn()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            r = fn()
            ts.append(time.perf_counter() - t)
        best[stage] = float(np.min(ts))
        return float(np.median(ts)), r

    t_enc, planes = timed("encode", lambda: rt.encode(crop, sh_in), repeat)
    rss["encode"] = peak_rss_mib()
    t_tmp, (planes, mem) = timed("temporal", lambda: rt.temporal(planes, None), repeat)
    rss["temporal"] = peak_rss_mib()
    t_ren, g = timed("render", lambda: rt.render(planes, label), repeat)
    rss["render"] = peak_rss_mib()
    t_sh, _ = timed("shade", lambda: rt.shade(g, rng.normal(size=(9, 3))), max(repeat, 10))
    rss["shade"] = peak_rss_mib()
    t_e2e, _ = timed("end_to_end", lambda: rt.relight(crop, sh_in, label, sh_in, mem), repeat)
    rss["end_to_end"] = peak_rss_mib()
    return {"preset": preset, "config": cfg.to_dict(), "params": params, "threads": threads,
            "seconds": {"encode": t_enc, "temporal": t_tmp, "render": t_ren, "shade": t_sh, "end_to_end": t_e2e},
            "best": best,
            "rss_mb": rss, "costs": costs, "provider": rt.provider}


def report(r: dict, peaks: dict) -> str:
    s = r["seconds"]
    lines = [f"## preset {r['preset']}  ({r['params'] / 1e6:.2f} M parameters, {r['provider']}, "
             f"{r['threads']} threads, output {r['config']['render_res'] * r['config']['sr_factor']}²)",
             f"{'stage':<10} {'ms':>8} {'min ms':>8} {'fps':>8} {'GFLOP':>8} {'MB floor':>9} {'MB per-op':>10} {'floor ms':>9} "
             f"{'x floor':>8} {'peak RSS MB':>12}"]
    for stage in ("encode", "temporal", "render", "shade"):
        c = r["costs"][stage]
        floor = max(c["flops"] / (peaks["gflops"] * 1e9), c["bytes_floor"] / (peaks["gbs"] * 1e9))
        lines.append(f"{stage:<10} {s[stage] * 1e3:8.1f} {r['best'][stage] * 1e3:8.1f} {1 / s[stage]:8.1f} {c['flops'] / 1e9:8.3f} "
                     f"{c['bytes_floor'] / 1e6:9.1f} {c['layer_traffic'] / 1e6:10.1f} {floor * 1e3:9.2f} "
                     f"{s[stage] / floor:8.1f} {r['rss_mb'][stage]:12.0f}")
    cam_change = s["render"] + s["shade"]
    lines.append(f"light change (shade): {1 / s['shade']:.1f} fps; camera change (render + shade): "
                 f"{1 / cam_change:.1f} fps; end to end (encode + temporal + render + shade): "
                 f"{1 / s['end_to_end']:.1f} fps ({s['end_to_end'] * 1e3:.0f} ms); peak RSS "
                 f"{r['rss_mb']['end_to_end']:.0f} MB (sessions alone {r['rss_mb']['sessions']:.0f} MB)")
    b = r["best"]
    lines.append(f"best of the repeats (least disturbed by other processes): light change {1 / b['shade']:.1f} fps, "
                 f"camera change {1 / (b['render'] + b['shade']):.1f} fps, end to end {1 / b['end_to_end']:.1f} fps")
    return "\n".join(lines)


SWEEP = {
    "p64c16-r32s16": dict(plane_res=64, plane_channels=16, encoder_widths=(32, 64, 96), encoder_stem_stride=8),
    "p128c24-r32s16 (chosen)": {},
    "p128c24-r32s24": dict(plane_res=128, plane_channels=24, encoder_widths=(32, 64, 96, 128), encoder_stem_stride=4,
                           n_coarse=24, n_importance=24),
    "p128c24-r48s16": dict(plane_res=128, plane_channels=24, encoder_widths=(32, 64, 96, 128), encoder_stem_stride=4,
                           render_res=64, sr_factor=8, sr_widths=(32, 16, 12, 8)),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["default", "paper"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--weights", help="exported model folder to time instead of a random-init export")
    ap.add_argument("--sweep", action="store_true", help="time candidate default configs instead of the presets")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--config-json", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(bench_one(a.one, a.threads, a.repeat, a.weights, a.config_json)))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
               MKL_NUM_THREADS=str(a.threads))
    peaks = json.loads(subprocess.run(
        [sys.executable, "-c", f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); "
         f"from benchmarks.bench_model import machine_peaks; print(json.dumps(machine_peaks({a.threads})))"],
        env=env, capture_output=True, text=True, check=True).stdout)
    print(f"# machine: {os.cpu_count()} CPUs visible, {a.threads} threads; measured peak {peaks['gflops']:.1f} "
          f"GFLOP/s (fp32 matmul), {peaks['gbs']:.1f} GB/s (copy); load average {os.getloadavg()[0]:.1f} at start "
          "(the cores are shared); no GPU in this run")
    runs: list[tuple[str, str | None]] = []
    if a.sweep:
        from inference.model import PRESETS
        import dataclasses
        for name, change in SWEEP.items():
            runs.append((name, json.dumps(dataclasses.replace(PRESETS["default"], **change).to_dict())))
    else:
        runs = [(p, None) for p in a.presets]
    for name, cfg_json in runs:
        cmd = [sys.executable, __file__, "--one", name if not a.sweep else "default", "--threads", str(a.threads),
               "--repeat", str(a.repeat)]
        if a.weights:
            cmd += ["--weights", a.weights]
        if cfg_json:
            cmd += ["--config-json", cfg_json]
        proc = subprocess.run(cmd, env=dict(env, OMP_NUM_THREADS="1"), capture_output=True, text=True)
        if proc.returncode:
            print(f"## {name}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["preset"] = name
        print(report(r, peaks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
