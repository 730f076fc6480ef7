"""``python -m training.ship --run runs/X --out inference/weights/default``: export a trained run for the runtime.

Why a command: the shipped folder must say where its weights came from (run, stages, steps, time, data, metrics) so
that ``model.json`` is a faithful provenance record; the export itself is ``inference.export.export_onnx`` (fp16
where its parity holds, fp32 elsewhere), refused when the result would exceed the size budget.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from blender_relight.errors import RelightError
from inference.export import export_onnx
from inference.model import RelightNet
from inference.model.checkpoint import load_checkpoint, read_checkpoint
from training.checkpoints import MODEL_FILE, read_state

MAX_MB = 30.0


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(run: Path, earlier: list[Path], eval_dir: Path | None) -> dict:
    """What model.json records: every stage's run folder, step, time and loss substitutes, and the metrics."""
    stages = []
    for folder in [*earlier, run]:
        st = read_state(folder)
        if st is None:
            raise RelightError(f"{folder}: no state.json; pass a finished run folder")
        stages.append({"run": str(folder), "stage": st["stage"], "steps": st["step"],
                       "elapsed_min": round(st["elapsed_s"] / 60, 1), "device": st.get("device"),
                       "lr": st.get("args", {}).get("lr"), "init": st.get("args", {}).get("init"),
                       "perceptual": st.get("perceptual"), "identity": st.get("identity"),
                       "planes": st.get("planes")})
    out = {"checkpoint": str(run / MODEL_FILE), "stages": stages, "code_commit": _git_commit(),
           "data": "synthetic heads from tracked frames of ../shared/data (lp_d13, lp_d18 held out) + real clips "
                   "(stage 2); see docs/training.md",
           "model_card": "docs/training.md"}
    if eval_dir and (eval_dir / "metrics.json").exists():
        out["metrics"] = json.loads((eval_dir / "metrics.json").read_text())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="the final run folder (its model.safetensors is exported)")
    p.add_argument("--earlier", nargs="*", default=[], help="earlier run folders it was initialised from, in order")
    p.add_argument("--eval", help="folder with metrics.json from training.evaluate")
    p.add_argument("--out", default="inference/weights/default")
    p.add_argument("--no-fp16", action="store_true")
    p.add_argument("--unusable", help="mark the export not fit for use (trained: false, this reason as the warning), "
                                      "so the pipeline and evaluation refuse it unless asked")
    a = p.parse_args(argv)
    run = Path(a.run)
    _, meta = read_checkpoint(run / MODEL_FILE)
    preset = meta.get("preset") or "default"
    model = RelightNet(preset)
    load_checkpoint(model, run / MODEL_FILE)
    prov = provenance(run, [Path(e) for e in a.earlier], Path(a.eval) if a.eval else None)
    if a.unusable:
        prov["unusable"] = a.unusable
    info = export_onnx(model, a.out, preset, prov, fp16=not a.no_fp16, trained=not a.unusable)
    if a.unusable:  # export_onnx's default warning says "random init"; these weights are trained but unfit
        mj = Path(a.out) / "model.json"
        meta_json = json.loads(mj.read_text())
        meta_json["warning"] = f"NOT USABLE: {a.unusable}"
        mj.write_text(json.dumps(meta_json, indent=2) + "\n")
    size = sum(f.stat().st_size for f in Path(a.out).iterdir() if f.is_file()) / 2 ** 20
    if size > MAX_MB:
        raise SystemExit(f"error: {a.out} is {size:.1f} MB, over the {MAX_MB:.0f} MB budget; export fp16")
    print(json.dumps({"out": a.out, "size_mb": round(size, 2),
                      "precision": {k: v["precision"] for k, v in info["graphs"].items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
