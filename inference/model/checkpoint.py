"""Checkpoints: safetensors files of RelightNet's state_dict, with the preset and config in the metadata.

Why strict: a checkpoint of another size or version must be refused with a message naming the file, the tensor and
both shapes, never half-loaded (a silently mismatched network renders garbage that looks like a training problem).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from blender_relight.errors import ModelFileError
from blender_relight.io_utils import atomic_path

from .config import ModelConfig


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, preset: str | None = None,
                    metadata: dict[str, str] | None = None) -> Path:
    """Write ``model.state_dict()`` as safetensors (atomic) with ``config`` (JSON) and ``preset`` in the metadata."""
    cfg: ModelConfig = model.config  # type: ignore[assignment]
    meta = {"config": json.dumps(cfg.to_dict()), "preset": preset or "", **(metadata or {})}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors checkpoint; ModelFileError when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"checkpoint {path} not found; pass the .safetensors file written by training")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"checkpoint {path} is not a readable safetensors file ({exc}); re-export it") from exc
    return tensors, meta


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, str]:
    """Load ``path`` into ``model`` strictly; returns the checkpoint metadata.

    Raises ModelFileError naming the file and the first offending tensor: a shape mismatch (both shapes), a tensor
    the model lacks, or one the checkpoint lacks; also when the stored config differs from the model's.
    """
    tensors, meta = read_checkpoint(path)
    cfg: ModelConfig = model.config  # type: ignore[assignment]
    if "config" in meta:
        try:
            stored = ModelConfig.from_dict(json.loads(meta["config"]))
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"checkpoint {path}: unreadable config metadata ({exc})") from exc
        if stored != cfg:
            diff = [k for k, v in cfg.to_dict().items() if stored.to_dict().get(k) != v]
            raise ModelFileError(f"checkpoint {path} was trained with another model config (differs in "
                                 f"{', '.join(diff)}; preset {meta.get('preset') or '?'}); pick the matching preset")
    expected = model.state_dict()
    for name, t in expected.items():
        if name not in tensors:
            raise ModelFileError(f"checkpoint {path} lacks tensor {name} {tuple(t.shape)}; "
                                 "it is from another model version")
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise ModelFileError(f"checkpoint {path}: tensor {name} has shape {tuple(tensors[name].shape)}, the "
                                 f"model expects {tuple(t.shape)}; pick the matching preset")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ModelFileError(f"checkpoint {path} has tensor {extra[0]} that the model lacks ({len(extra)} in all); "
                             "it is from another model version")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    return meta
