"""RelightRuntime (ONNX Runtime, no torch): matches PyTorch end to end, provider selection, clear file errors."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from blender_relight import camera as cam
from blender_relight.errors import ModelFileError, RelightError
from blender_relight.lighting import sh as sh_np
from inference.export import export_onnx, relative_error
from inference.model import RelightNet, randomize_weights
from inference.runtime import RelightRuntime, choose_provider, find_weights, providers_report

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[RelightNet, Path]:
    net = randomize_weights(RelightNet("tiny"), seed=3).eval()
    folder = tmp_path_factory.mktemp("tiny_model")
    export_onnx(net, folder, "tiny", {"note": "test"}, check_parity=False)
    return net, folder


@pytest.fixture(scope="module")
def rt(exported) -> RelightRuntime:
    return RelightRuntime(exported[1], provider="auto", threads=1)


def test_provider_is_logged_and_described(exported, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="inference.runtime"):
        r = RelightRuntime(exported[1], threads=1)
    assert r.provider == "CPUExecutionProvider"        # this machine's onnxruntime has no CUDA
    assert "CPUExecutionProvider" in caplog.text and "UNTRAINED" in caplog.text
    assert r.describe().count("\n") == 0 and "auto" in r.describe()
    assert not r.io_binding


def test_provider_choice_order() -> None:
    assert choose_provider("auto", ["CPUExecutionProvider", "CUDAExecutionProvider"])[0] == "CUDAExecutionProvider"
    assert choose_provider("auto", ["CUDAExecutionProvider", "TensorrtExecutionProvider",
                                    "CPUExecutionProvider"])[0] == "TensorrtExecutionProvider"
    p, why = choose_provider("auto", ["CPUExecutionProvider"])
    assert p == "CPUExecutionProvider" and "CUDA" in why
    with pytest.raises(RelightError, match="onnxruntime-gpu"):
        choose_provider("cuda", ["CPUExecutionProvider"])


def test_runtime_matches_pytorch_end_to_end(exported, rt: RelightRuntime) -> None:
    net, _ = exported
    cfg = net.config
    rng = np.random.default_rng(8)
    crop = rng.random((cfg.image_res, cfg.image_res, 3), dtype=np.float32)
    sh_src, sh_tgt = rng.normal(size=(9, 3)) * 0.4, rng.normal(size=(9, 3)) * 0.4
    labels = [cam.make_label(cam.orbit_camera(0.3, -0.1)), cam.make_label(cam.orbit_camera(-0.2, 0.15))]
    memory = None
    t_mem = t_valid = None
    for label in labels:           # two frames: the second one attends to the first through the memory
        rgb, passes, memory = rt.relight(crop, sh_src, label, sh_tgt, memory)
        with torch.no_grad():
            out = net(torch.tensor(crop).permute(2, 0, 1)[None], torch.tensor(sh_src, dtype=torch.float32)[None],
                      torch.tensor(sh_tgt, dtype=torch.float32)[None], torch.tensor(label)[None], t_mem, t_valid)
        t_mem, t_valid = out["memory"], out["memory_valid"]
        ref = out["image"][0].permute(1, 2, 0).numpy()
        assert rgb.shape == (cfg.out_res, cfg.out_res, 3) and rgb.dtype == np.float32
        assert relative_error(rgb, ref) < 1e-3
        assert relative_error(passes["normal"], out["normal"][0].permute(1, 2, 0).numpy()) < 1e-3
        assert relative_error(passes["depth"], out["depth"][0, 0].numpy()) < 1e-3
        assert passes["alpha"].shape == (cfg.out_res, cfg.out_res)
        assert relative_error(memory["tokens"], t_mem[0].numpy()) < 1e-3
    assert memory["valid"].tolist()[-2:] == [1.0, 1.0]


def test_light_change_reuses_gbuffer_and_accepts_gray(rt: RelightRuntime) -> None:
    crop = np.full((rt.image_res, rt.image_res, 3), 0.5, np.float32)
    planes, _ = rt.temporal(rt.encode(crop, np.ones(9) * 0.2))
    g = rt.render(planes, cam.frontal_label())
    gray = np.array([0.8, 0.1, 0.3, -0.2, 0.0, 0.1, 0.05, 0.0, 0.1])
    rgb_gray, _ = rt.shade(g, gray)
    rgb_same, _ = rt.shade(g, sh_np.as_rgb(gray))
    rgb_other, _ = rt.shade(g, sh_np.as_rgb(gray) * [1.0, 0.5, 0.2])
    np.testing.assert_array_equal(rgb_gray, rgb_same)
    assert not np.allclose(rgb_gray, rgb_other)
    with pytest.raises(ValueError, match="crop_linear"):
        rt.encode(np.zeros((32, 32, 3), np.float32), gray)


def test_missing_and_corrupt_files(exported, tmp_path: Path) -> None:
    _, folder = exported
    with pytest.raises(ModelFileError, match="model.json"):
        RelightRuntime(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "render.onnx").write_bytes((bad / "render.onnx").read_bytes()[:1000])
    with pytest.raises(ModelFileError, match=r"render\.onnx.*checksum"):
        RelightRuntime(bad)
    with pytest.raises(ModelFileError, match=r"render\.onnx cannot be loaded"):
        RelightRuntime(bad, verify_files=False)
    (bad / "render.onnx").unlink()
    with pytest.raises(ModelFileError, match="render"):
        RelightRuntime(bad)
    (bad / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        RelightRuntime(bad)


def test_model_json_that_does_not_match_the_files(exported, tmp_path: Path) -> None:
    _, folder = exported
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    meta = json.loads((other / "model.json").read_text())
    meta["config"]["plane_channels"] = 8
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"encode\.onnx: tensor albedo_planes has shape"):
        RelightRuntime(other)
    meta["format"] = "something-else"
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="re-export"):
        RelightRuntime(other)


def test_runtime_imports_no_torch(exported) -> None:
    code = ("import sys, numpy as np; from inference.runtime import RelightRuntime; "
            f"rt = RelightRuntime({str(exported[1])!r}, threads=1); "
            "p, m = rt.temporal(rt.encode(np.zeros((64, 64, 3), np.float32), np.zeros(9)), None); "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_report_and_find_weights() -> None:
    rep = providers_report()
    assert rep["chosen"] in rep["available"] and rep["summary"].startswith("onnxruntime ")
    w = find_weights()
    assert w is not None and (w / "model.json").is_file(), "the package ships its trained default weights"
    assert rep["trained"] is True and rep["preset"] == "default" and "trained" in rep["summary"]
