"""Checkpoints: save/resume restores the exact state (and the run continues identically); mismatches are refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from blender_relight.errors import ModelFileError, RelightError

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not (DATA / "videos").is_dir():
    pytest.skip(f"shared data not found at {DATA}", allow_module_level=True)

from inference.model import RelightNet  # noqa: E402
from inference.model.checkpoint import load_checkpoint  # noqa: E402
from training import checkpoints as ck  # noqa: E402
from training.teacher.synthetic import SyntheticHeads  # noqa: E402
from training.train import Trainer, parse_args  # noqa: E402


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return SyntheticHeads(resolution=64, supersample=1, cache_dir=tmp_path_factory.mktemp("t"), per_clip=1)


def _args(out: Path, stage: int = 2, steps: int = 2, resume: bool = False, preset: str = "tiny"):
    a = ["--stage", str(stage), "--preset", preset, "--steps", str(steps), "--out", str(out), "--teacher-res", "64",
         "--real-every", "0", "--prefit-steps", "0"]
    return parse_args(a + (["--resume"] if resume else []))


def _state(tr: Trainer) -> dict[str, torch.Tensor]:
    s = {f"m.{k}": v.clone() for k, v in tr.model.state_dict().items()}
    s.update({f"d.{k}": v.clone() for k, v in tr.disc.state_dict().items()})
    for name, opt in (("og", tr.opt_g), ("od", tr.opt_d)):
        for i, st in opt.state_dict()["state"].items():
            s.update({f"{name}.{i}.{k}": torch.as_tensor(v).clone() for k, v in st.items()})
    return s


def test_save_resume_identical_and_continues_identically(teacher, tmp_path):
    out = tmp_path / "run"
    tr = Trainer(_args(out, steps=2), teacher, None)
    tr.run()
    before = _state(tr)
    assert (out / ck.MODEL_FILE).exists() and (out / ck.STATE_FILE).exists() and (out / "metrics.csv").exists()
    re = Trainer(_args(out, steps=3, resume=True), teacher, None)
    after = _state(re)
    assert re.state["step"] == 2
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    # one more step from the original objects and from the resumed ones gives the same weights
    rng = torch.get_rng_state()  # restored by the resume; both continuations start from it (one global RNG)
    tr.args.steps = 3
    tr.run()
    torch.set_rng_state(rng)
    re.run()
    a, b = _state(tr), _state(re)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,stage") and len(rows) >= 4


def test_resume_refuses_other_stage_or_preset(teacher, tmp_path):
    out = tmp_path / "run"
    Trainer(_args(out, stage=2, steps=1), teacher, None).run()
    with pytest.raises(RelightError, match="stage"):
        Trainer(_args(out, stage=1, steps=2, resume=True), teacher, None)
    with pytest.raises(RelightError, match="preset"):
        Trainer(_args(out, stage=2, steps=2, resume=True, preset="default"), teacher, None)


def test_mismatched_model_weights_refused(teacher, tmp_path):
    out = tmp_path / "run"
    Trainer(_args(out, stage=1, steps=1), teacher, None).run()
    with pytest.raises(ModelFileError, match="config"):
        load_checkpoint(RelightNet("default"), out / ck.MODEL_FILE)


def test_resume_without_checkpoint_is_a_clear_error(teacher, tmp_path):
    with pytest.raises(RelightError, match="no checkpoint"):
        Trainer(_args(tmp_path / "empty", resume=True), teacher, None)


def test_cli_refuses_overwriting_a_run(tmp_path, teacher):
    from training.train import main

    out = tmp_path / "run"
    Trainer(_args(out, stage=1, steps=1), teacher, None).run()
    with pytest.raises(SystemExit, match="already holds a run"):
        main(["--stage", "1", "--preset", "tiny", "--steps", "1", "--out", str(out)])
    assert np.isfinite(float((out / "metrics.csv").read_text().splitlines()[1].split(",")[-2] or 0))


def test_worker_stream_matches_in_process_batches(teacher, tmp_path):
    """Teacher batches rendered by DataLoader workers equal the in-process ones, step for step."""
    a = _args(tmp_path / "w", stage=1, steps=1)
    a.workers = 2
    tr = Trainer(a, teacher, None)
    it = tr.batches(5)
    for step in (5, 6, 7):
        got, ref = next(it), tr.batch(step)
        torch.testing.assert_close(got["input"], ref["input"])
        torch.testing.assert_close(got["albedo"], ref["albedo"])


def test_stage2_warmup_trains_new_parts_first(teacher, tmp_path):
    """Stage 2 ramps super-resolution and shader first, keeping the encoders, field and temporal network still."""
    tr = Trainer(_args(tmp_path / "w2", stage=2, steps=1), teacher, None)
    tr._set_lr(0)
    lr = {g["part"]: g["lr"] for g in tr.opt_g.param_groups}
    assert lr["encoders+field"] == 0.0 and lr["attention"] == 0.0 and 0 < lr["superres+shader"] < tr.args.lr
    tr._set_lr(99)
    lr = {g["part"]: g["lr"] for g in tr.opt_g.param_groups}
    assert lr["encoders+field"] == tr.args.lr and lr["attention"] == tr.args.lr_attention


def test_stage2_from_stage1_starts_with_upsampled_render(teacher, tmp_path):
    """Stage 2 initialised from stage 1 zeroes the super-resolution output: its G-buffer is the upsampled render."""
    s1 = tmp_path / "s1"
    Trainer(_args(s1, stage=1, steps=1), teacher, None).run()
    a = _args(tmp_path / "s2", stage=2, steps=1)
    a.init = str(s1 / ck.MODEL_FILE)
    tr = Trainer(a, teacher, None)
    assert float(tr.model.superres.out.weight.detach().abs().sum()) == 0.0
    b = tr.batch(0)
    with torch.no_grad():
        planes = tr.model.encode(b["input"], b["sh_src"])
        low = tr.model.render_lowres(planes, b["camera"][:, 0])
        g = tr.model.superres(low)
    up = torch.nn.functional.interpolate(low["albedo"], size=g["albedo"].shape[-2:], mode="bilinear",
                                         align_corners=False)
    torch.testing.assert_close(g["albedo"], up.clamp(min=0))


def test_template_prefit_learns_the_mean_head_occupancy(teacher, tmp_path):
    """Stage 1 from scratch first fits the template tri-planes and the field to the teacher's occupancy."""
    tr = Trainer(_args(tmp_path / "p", stage=1), teacher, None)
    encoder_before = tr.model.albedo_encoder.head.weight.clone()
    history = tr.prefit_template(40)
    assert np.mean(history[-5:]) < 0.75 * np.mean(history[:5])
    assert float(tr.model.albedo_encoder.template.abs().max()) > 0            # the template moved
    assert torch.equal(tr.model.albedo_encoder.head.weight, encoder_before)   # the U-Net did not


@pytest.mark.slow
def test_torchrun_data_parallel_on_cpu(tmp_path):
    """Two ranks under torchrun (gloo on CPU): each draws its own samples, gradients are averaged, rank 0 writes."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "training.train",
           "--stage", "1", "--preset", "tiny", "--steps", "2", "--teacher-res", "64", "--prefit-steps", "1",
           "--cache", str(tmp_path / "teacher"), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1],
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    state = ck.read_state(out)
    assert state["world_size"] == 2 and state["step"] == 2
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 3   # one writer: header + 2 steps
