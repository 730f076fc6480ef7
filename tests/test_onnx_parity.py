"""ONNX export: every graph through ONNX Runtime matches PyTorch on fresh random inputs; checkpoints load strictly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from blender_relight.errors import ModelFileError
from inference import export as ex
from inference.graphs import GRAPH_IO, GRAPH_NAMES
from inference.model import PRESETS, RelightNet, randomize_weights
from inference.model.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
MAX_REL = 1e-3


@pytest.fixture(scope="module")
def tiny() -> RelightNet:
    return randomize_weights(RelightNet("tiny"), seed=11).eval()


@pytest.mark.parametrize("graph", GRAPH_NAMES)
def test_graph_parity_fp32(tiny: RelightNet, graph: str) -> None:
    proto = ex.export_graph(tiny, graph)
    # fresh inputs (not the tracing ones) and batch 2 (the dynamic axis)
    errors = ex.parity(tiny, graph, proto, seed=123, batch=2)
    assert set(errors) == set(GRAPH_IO[graph][1])
    assert max(errors.values()) < MAX_REL, errors
    # the comparison can fail: the torch outputs really vary with the inputs
    args_a = ex.example_inputs(tiny, graph, seed=1)
    args_b = ex.example_inputs(tiny, graph, seed=2)
    with torch.no_grad():
        wrap = ex.WRAPPERS[graph](tiny)
        out_a = wrap(*(args_a[n] for n in GRAPH_IO[graph][0]))
        out_b = wrap(*(args_b[n] for n in GRAPH_IO[graph][0]))
    assert not torch.allclose(out_a[0], out_b[0])


def test_export_writes_folder_and_fp16_report(tiny: RelightNet, tmp_path: Path) -> None:
    meta = ex.export_onnx(tiny, tmp_path, "tiny", {"note": "test"}, fp16=True)
    saved = json.loads((tmp_path / "model.json").read_text())
    assert saved["trained"] is False and "UNTRAINED" in saved["warning"]
    assert saved["opset"] == 17 and saved["preset"] == "tiny"
    for name in GRAPH_NAMES:
        assert (tmp_path / f"{name}.onnx").is_file()
        assert not list(tmp_path.glob("*.data"))           # weights inside the .onnx files
        assert max(saved["parity_fp32"][name].values()) < MAX_REL
        assert saved["graphs"][name]["precision"] in ("fp32", "fp16")
        fp16 = saved["parity_fp16"][name]
        assert isinstance(fp16, (dict, str))
    assert meta["graphs"]["render"]["inputs"][2] == {"name": "camera", "shape": ["batch", 25], "dtype": "float32"}
    # a mixed-precision folder runs through the runtime like an fp32 one
    from blender_relight.camera import frontal_label
    from inference.runtime import RelightRuntime
    rt = RelightRuntime(tmp_path, threads=1)
    planes, _ = rt.temporal(rt.encode(np.full((64, 64, 3), 0.4, np.float32), np.ones(9) * 0.3))
    rgb, _ = rt.shade(rt.render(planes, frontal_label()), np.ones(9) * 0.5)
    assert rgb.shape == (64, 64, 3) and np.isfinite(rgb).all()


def test_default_preset_exports_with_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = randomize_weights(RelightNet("default"), seed=5).eval()
    meta = ex.export_onnx(net, tmp_path, "default")
    for name, errs in meta["parity_fp32"].items():
        assert max(errs.values()) < MAX_REL, (name, errs)
    assert meta["graphs"]["shade"]["outputs"][0]["shape"] == ["batch", 3, 512, 512]


def test_checkpoint_roundtrip(tiny: RelightNet, tmp_path: Path) -> None:
    path = save_checkpoint(tiny, tmp_path / "ck.safetensors", preset="tiny")
    other = RelightNet("tiny").eval()
    meta = load_checkpoint(other, path)
    assert meta["preset"] == "tiny"
    for (k, a), (_, b) in zip(tiny.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_mismatched_checkpoint_is_refused(tiny: RelightNet, tmp_path: Path) -> None:
    path = save_checkpoint(tiny, tmp_path / "tiny.safetensors", preset="tiny")
    bigger = RelightNet(PRESETS["tiny"].__class__(**{**PRESETS["tiny"].__dict__, "plane_channels": 8}))
    with pytest.raises(ModelFileError, match=r"tiny\.safetensors.*plane_channels"):
        load_checkpoint(bigger, path)
    # without config metadata the tensor shapes are compared: file, tensor and both shapes in one line
    from safetensors.torch import save_file
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(bare))
    with pytest.raises(ModelFileError) as info:
        load_checkpoint(bigger, bare)
    msg = str(info.value)
    assert "bare.safetensors" in msg and "albedo_encoder.template" in msg
    assert "(1, 12, 4, 4)" in msg and "(1, 24, 4, 4)" in msg
    with pytest.raises(ModelFileError, match="not found"):
        load_checkpoint(bigger, tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="junk.safetensors"):
        load_checkpoint(bigger, tmp_path / "junk.safetensors")


def test_cli_refuses_mismatched_checkpoint(tiny: RelightNet, tmp_path: Path, capsys) -> None:
    path = save_checkpoint(tiny, tmp_path / "tiny.safetensors", preset="tiny")
    rc = ex.main(["--preset", "default", "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--no-parity"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "tiny.safetensors" in err and "preset" in err
    assert not (tmp_path / "out" / "model.json").exists()


def test_cli_exports_checkpoint_as_trained(tiny: RelightNet, tmp_path: Path) -> None:
    path = save_checkpoint(tiny, tmp_path / "tiny.safetensors", preset="tiny")
    assert ex.main(["--preset", "tiny", "--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 0
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["trained"] is True and meta["warning"] is None
    assert meta["provenance"]["checkpoint_sha256"] and meta["provenance"]["checkpoint_metadata"]["preset"] == "tiny"
    assert np.isfinite(max(max(e.values()) for e in meta["parity_fp32"].values()))
