"""The relighting network in PyTorch (training and export only; the runtime uses the ONNX graphs)."""
from .config import PRESETS, ModelConfig, get_preset
from .relight_net import RelightNet, randomize_weights

__all__ = ["PRESETS", "ModelConfig", "RelightNet", "get_preset", "randomize_weights"]
