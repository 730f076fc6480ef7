"""A trained run exports to the runtime's ONNX folder with its provenance in model.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not (DATA / "videos").is_dir():
    pytest.skip(f"shared data not found at {DATA}", allow_module_level=True)


def test_ship_tiny_run(tmp_path):
    from training.ship import main as ship
    from training.teacher.synthetic import SyntheticHeads
    from training.train import Trainer, parse_args

    teacher = SyntheticHeads(resolution=64, supersample=1, cache_dir=tmp_path / "t", per_clip=1)
    run = tmp_path / "run"
    Trainer(parse_args(["--stage", "1", "--preset", "tiny", "--steps", "1", "--out", str(run), "--teacher-res", "64"]),
            teacher, None).run()
    out = tmp_path / "weights"
    assert ship(["--run", str(run), "--out", str(out)]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["trained"] is True and meta["preset"] == "tiny"
    assert meta["provenance"]["stages"][0]["steps"] == 1
    assert {p.name for p in out.glob("*.onnx")} == {"encode.onnx", "temporal.onnx", "render.onnx", "shade.onnx"}
