"""Resumable training checkpoints: model weights (safetensors, via inference.model.checkpoint), optimiser and
discriminator state (safetensors) and a JSON state (step, stage, preset, elapsed time, RNG, log of which loss
substitutes ran).

Why three files: the model file alone is what export and inference read; the other two let a chunked run (10-minute
commands on a GPU machine, or a CPU run stopped at any time) resume exactly where it stopped. A checkpoint of another
preset, stage or model version is refused with a message naming the file and the mismatch.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from blender_relight.errors import RelightError
from blender_relight.io_utils import atomic_path
from inference.model.checkpoint import load_checkpoint, save_checkpoint

MODEL_FILE, TRAIN_FILE, STATE_FILE = "model.safetensors", "train_state.safetensors", "state.json"


def _flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{prefix}.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def _unflatten_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict],
                         prefix: str) -> None:
    state: dict[int, dict] = {}
    for name, t in tensors.items():
        if name.startswith(prefix + "."):
            _, idx, k = name.split(".", 2)
            state.setdefault(int(idx), {})[k] = t
    opt.load_state_dict({"state": state, "param_groups": groups})


def save(out: Path, model: torch.nn.Module, disc: torch.nn.Module, opt_g: torch.optim.Optimizer,
         opt_d: torch.optim.Optimizer, state: dict) -> None:
    """Write the three files atomically (model first, JSON state last: a state file always has its tensors)."""
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out / MODEL_FILE, preset=state["preset"],
                    metadata={"stage": str(state["stage"]), "step": str(state["step"])})
    tensors = {f"disc.{k}": v.detach().cpu().contiguous() for k, v in disc.state_dict().items()}
    tg, groups_g = _flatten_optimizer(opt_g, "opt_g")
    td, groups_d = _flatten_optimizer(opt_d, "opt_d")
    tensors.update(tg)
    tensors.update(td)
    tensors["torch_rng"] = torch.get_rng_state()
    with atomic_path(out / TRAIN_FILE) as tmp:
        save_file(tensors, str(tmp))
    full = dict(state, opt_g_groups=groups_g, opt_d_groups=groups_d)
    with atomic_path(out / STATE_FILE) as tmp:
        tmp.write_text(json.dumps(full, indent=1))


def read_state(out: Path) -> dict | None:
    """The JSON state of a run folder, or None when it has no checkpoint yet."""
    p = Path(out) / STATE_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise RelightError(f"{p}: unreadable training state ({exc}); delete the run folder or pick another --out") from exc


def restore(out: Path, model: torch.nn.Module, disc: torch.nn.Module, opt_g: torch.optim.Optimizer,
            opt_d: torch.optim.Optimizer, expect: dict) -> dict:
    """Load a run folder into the given objects; refuse another preset/stage/config (RelightError naming both)."""
    state = read_state(out)
    if state is None:
        raise RelightError(f"{out}: no checkpoint to resume ({STATE_FILE} missing); drop --resume to start a run")
    for key in ("preset", "stage"):
        if state.get(key) != expect.get(key):
            raise RelightError(f"{out / STATE_FILE}: checkpoint has {key}={state.get(key)!r} but this run asks for "
                               f"{expect.get(key)!r}; resume with the same --{key} or pick another --out")
    load_checkpoint(model, out / MODEL_FILE)
    tensors = load_file(str(out / TRAIN_FILE))
    dsd = {k[5:]: v for k, v in tensors.items() if k.startswith("disc.")}
    try:
        disc.load_state_dict(dsd, strict=True)
        _unflatten_optimizer(opt_g, tensors, state["opt_g_groups"], "opt_g")
        _unflatten_optimizer(opt_d, tensors, state["opt_d_groups"], "opt_d")
    except (RuntimeError, ValueError, KeyError) as exc:
        raise RelightError(f"{out / TRAIN_FILE}: optimiser/discriminator state does not match this run ({exc}); "
                           "pick another --out") from exc
    torch.set_rng_state(tensors["torch_rng"])
    return state
