"""DPR (Zhou et al., "Deep Single-Image Portrait Relighting", ICCV 2019), the project's own implementation.

Why here: DPR is both the peer system the evaluation compares against and one of the two independent lighting
estimators of the lighting-error metric. Its published 512² weights (``trained_model_03.t7``, research use only) are
never shipped or downloaded: the user points at the file.

The network is a four-level hourglass on the Lab L channel. Each level keeps a full-resolution *skip* branch
(residual block with instance norm) and a *down* path (max-pool, residual block with batch norm, the next level,
residual block with instance norm, nearest upsampling); the two are summed. At the bottleneck (32², 155 channels)
the first 27 channels are the lighting feature: their spatial mean goes through two 1×1 layers to the estimated gray
SH of the input, and the target SH goes through two other 1×1 layers and replaces those 27 channels everywhere.

Estimating the input's SH needs only the down path, so :meth:`DPR.estimate_sh` skips the skip branches and the
decoder (about a third of the cost).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blender_relight.errors import ModelFileError

SIZE = 512  #: DPR's 512² model works on 512×512 L images.
BASE = 16  #: channels after the first convolution
LIGHT_CHANNELS = 27  #: bottleneck channels that carry the lighting
LIGHT_HIDDEN = 128


class _Residual(nn.Module):
    """Two 3×3 convolutions with normalisation, plus a 1×1 projection shortcut when the width changes."""

    def __init__(self, c_in: int, c_out: int, instance_norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        norm = nn.InstanceNorm2d if instance_norm else nn.BatchNorm2d
        self.norm1 = norm(c_out)
        self.norm2 = norm(c_out)
        self.project = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.project is None else self.project(x)))


class _Level(nn.Module):
    """One hourglass level: skip branch at this resolution, and the way down to (and back from) the next level."""

    def __init__(self, c_outer: int, c_inner: int) -> None:
        super().__init__()
        self.skip = _Residual(c_outer, c_outer, instance_norm=True)
        self.down = _Residual(c_outer, c_inner, instance_norm=False)
        self.up = _Residual(c_inner, c_outer, instance_norm=True)


class _Lighting(nn.Module):
    """Bottleneck lighting head: feature mean → estimated SH; target SH → feature that replaces the lighting channels."""

    def __init__(self) -> None:
        super().__init__()
        self.estimate1 = nn.Conv2d(LIGHT_CHANNELS, LIGHT_HIDDEN, 1, bias=False)
        self.estimate_act = nn.PReLU()
        self.estimate2 = nn.Conv2d(LIGHT_HIDDEN, 9, 1, bias=False)
        self.inject1 = nn.Conv2d(9, LIGHT_HIDDEN, 1, bias=False)
        self.inject_act = nn.PReLU()
        self.inject2 = nn.Conv2d(LIGHT_HIDDEN, LIGHT_CHANNELS, 1, bias=False)

    def estimate(self, bottleneck: torch.Tensor) -> torch.Tensor:
        pooled = bottleneck[:, :LIGHT_CHANNELS].mean(dim=(2, 3), keepdim=True)
        return self.estimate2(self.estimate_act(self.estimate1(pooled)))

    def inject(self, bottleneck: torch.Tensor, target_sh: torch.Tensor) -> torch.Tensor:
        feat = F.relu(self.inject2(self.inject_act(self.inject1(target_sh))))
        feat = feat.expand(-1, -1, bottleneck.shape[2], bottleneck.shape[3])
        return torch.cat([feat, bottleneck[:, LIGHT_CHANNELS:]], dim=1)


class DPRNet(nn.Module):
    """DPR's 512² gray hourglass: ``forward(L (B,1,512,512) in [0,1], sh (B,9)) -> (relit L, estimated SH (B,9))``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, BASE, 5, padding=2)
        self.stem_norm = nn.BatchNorm2d(BASE)
        widths = [BASE, BASE, 2 * BASE, 4 * BASE, 8 * BASE + LIGHT_CHANNELS]  # 16, 16, 32, 64, 155
        self.levels = nn.ModuleList(_Level(widths[i], widths[i + 1]) for i in range(4))
        self.lighting = _Lighting()
        self.head1 = nn.Conv2d(BASE, BASE, 3, padding=1)
        self.head1_norm = nn.BatchNorm2d(BASE)
        self.head2 = nn.Conv2d(BASE, BASE, 1)
        self.head2_norm = nn.BatchNorm2d(BASE)
        self.head3 = nn.Conv2d(BASE, BASE, 1)
        self.head3_norm = nn.BatchNorm2d(BASE)
        self.out = nn.Conv2d(BASE, 1, 1)

    def _encode(self, lum: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Down path: the input of every level (for the skip branches) and the bottleneck feature."""
        x = F.relu(self.stem_norm(self.stem(lum)))
        inputs = []
        for level in self.levels:
            inputs.append(x)
            x = level.down(F.max_pool2d(x, 2))
        return inputs, x

    def estimate_sh(self, lum: torch.Tensor) -> torch.Tensor:
        """Gray SH (B, 9) of the input lighting, from the down path alone."""
        return self.lighting.estimate(self._encode(lum)[1]).flatten(1)

    def forward(self, lum: torch.Tensor, target_sh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, x = self._encode(lum)
        estimated = self.lighting.estimate(x).flatten(1)
        x = self.lighting.inject(x, target_sh.reshape(-1, 9, 1, 1).to(x.dtype))
        for level, skip_in in zip(reversed(self.levels), reversed(inputs)):
            x = F.interpolate(level.up(x), scale_factor=2, mode="nearest") + level.skip(skip_in)
        x = F.relu(self.head1_norm(self.head1(x)))
        x = F.relu(self.head2_norm(self.head2(x)))
        x = F.relu(self.head3_norm(self.head3(x)))
        return torch.sigmoid(self.out(x)), estimated


# Names in the published state_dict → names here. The published file nests each level inside the one above it and
# so stores levels 1-3 a second time under ``HGk.middle.…``; those copies are checked equal and dropped.
_TOP = {"pre_conv": "stem", "pre_bn": "stem_norm", "conv_1": "head1", "bn_1": "head1_norm", "conv_2": "head2",
        "bn_2": "head2_norm", "conv_3": "head3", "bn_3": "head3_norm", "output": "out"}
_LEVEL = {"HG3": "0", "HG2": "1", "HG1": "2", "HG0": "3"}
_BLOCK = {"upper": "skip", "low1": "down", "low2": "up"}
_PART = {"bn1": "norm1", "bn2": "norm2", "shortcuts": "project", "conv1": "conv1", "conv2": "conv2"}
_LIGHT = {"predict_FC1": "estimate1", "predict_relu1": "estimate_act", "predict_FC2": "estimate2",
          "post_FC1": "inject1", "post_relu1": "inject_act", "post_FC2": "inject2"}


def convert_state_dict(published: dict[str, torch.Tensor], path: str = "weights") -> dict[str, torch.Tensor]:
    """Map DPR's published parameter names onto :class:`DPRNet`'s; raise ModelFileError on anything unexpected."""
    out: dict[str, torch.Tensor] = {}
    for key, value in published.items():
        parts = key.split(".")
        if parts[0] in _TOP:
            out[".".join([_TOP[parts[0]]] + parts[1:])] = value
        elif parts[0] == "light":
            out[".".join(["lighting", _LIGHT[parts[1]]] + parts[2:])] = value
        elif parts[0] in _LEVEL:
            if parts[1] == "middle":
                continue  # nested duplicate of the next level (or of ``light``), checked below
            block, part = _BLOCK[parts[1]], _PART[parts[2]]
            out[".".join(["levels", _LEVEL[parts[0]], block, part] + parts[3:])] = value
        else:
            raise ModelFileError(f"{path}: unexpected parameter {key!r}; is this DPR's trained_model_03.t7?")
    # The nested copies must equal the top-level ones (they are the same modules in DPR's code).
    for key, value in published.items():
        parts = key.split(".")
        if parts[0] in _LEVEL and parts[1] == "middle":
            level = int(parts[0][2:]) - 1
            rest = parts[2:]
            while rest and rest[0] == "middle":
                level -= 1
                rest = rest[1:]
            twin = ".".join(["light"] + rest) if level < 0 else ".".join([f"HG{level}"] + rest)
            if twin not in published or not torch.equal(published[twin], value):
                raise ModelFileError(f"{path}: nested parameter {key} differs from {twin}; the file is damaged")
    return out


class DPR:
    """DPR loaded from its published weights, on CPU (or ``device``), in inference mode.

    Two uses: :meth:`relight_l` relights an L image with a gray SH, :meth:`estimate_sh` estimates an image's gray SH.
    Images follow DPR's demo: 8-bit BGR through OpenCV's Lab, L/255 fed to the net at 512².
    """

    def __init__(self, weights_path: str | os.PathLike, device: str = "cpu") -> None:
        path = Path(weights_path)
        if not path.is_file():
            raise ModelFileError(
                f"DPR weights not found at {path}: get trained_model_03.t7 from zhhoper/DPR (research use only) "
                "and pass its path")
        try:
            published = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for damaged or foreign files
            raise ModelFileError(f"{path}: cannot read DPR weights ({exc.__class__.__name__}); "
                                 "expected DPR's trained_model_03.t7") from exc
        if not isinstance(published, dict):
            raise ModelFileError(f"{path}: not a state_dict; expected DPR's trained_model_03.t7")
        self.net = DPRNet()
        state = convert_state_dict(published, str(path))
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        # DPR stores a 1×1 shortcut for every residual block; it is unused where widths match (identity shortcut).
        unexpected = [k for k in unexpected if not k.endswith("project.weight")]
        if missing or unexpected:
            raise ModelFileError(f"{path}: parameters do not match DPR's 512² network "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.device = torch.device(device)
        self.net.to(self.device).eval()
        self.path = path

    @torch.inference_mode()
    def relight_l(self, lum: np.ndarray, target_sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relight L ``(512, 512)`` float in [0, 1] with gray SH ``(9,)``; return (relit L float, input SH (9,))."""
        x = torch.from_numpy(np.ascontiguousarray(lum, dtype=np.float32))[None, None].to(self.device)
        sh = torch.from_numpy(np.asarray(target_sh, dtype=np.float32).reshape(1, 9)).to(self.device)
        out, est = self.net(x, sh)
        return out[0, 0].cpu().numpy(), est[0].double().cpu().numpy()

    @torch.inference_mode()
    def estimate_sh(self, lum: np.ndarray) -> np.ndarray:
        """Gray SH ``(9,)`` (DPR convention) of an L image ``(512, 512)`` in [0, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(lum, dtype=np.float32))[None, None].to(self.device)
        return self.net.estimate_sh(x)[0].double().cpu().numpy()

    # ----- 8-bit BGR images, exactly as DPR's demo handles them -----
    @staticmethod
    def l_of_bgr(image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resize to 512² (bilinear), OpenCV Lab; return (Lab uint8 at 512², L as float in [0, 1])."""
        lab = cv2.cvtColor(cv2.resize(image_bgr, (SIZE, SIZE)), cv2.COLOR_BGR2LAB)
        return lab, lab[:, :, 0].astype(np.float32) / 255.0

    def relight_bgr(self, image_bgr: np.ndarray, target_sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """DPR's demo on an 8-bit BGR image: replace L by the net's output (truncated to 8 bits), back to BGR at the
        input's size. Returns (relit BGR uint8, estimated input SH)."""
        h, w = image_bgr.shape[:2]
        lab, lum = self.l_of_bgr(image_bgr)
        relit, est = self.relight_l(lum, target_sh)
        lab[:, :, 0] = (relit * 255.0).astype(np.uint8)
        return cv2.resize(cv2.cvtColor(lab, cv2.COLOR_LAB2BGR), (w, h)), est

    def estimate_sh_bgr(self, image_bgr: np.ndarray) -> np.ndarray:
        """Gray SH ``(9,)`` of an 8-bit BGR image, preprocessed as DPR's demo does."""
        return self.estimate_sh(self.l_of_bgr(image_bgr)[1])


def example_lights(folder: str | os.PathLike, scale: float = 0.7) -> list[np.ndarray]:
    """DPR's seven example lights (``rotate_light_0[0-6].txt``), scaled as its demo does (0.7)."""
    from blender_relight.lighting import sh as shmod

    folder = Path(folder)
    files = [folder / f"rotate_light_{i:02d}.txt" for i in range(7)]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise ModelFileError(f"{folder}: DPR example lights missing ({', '.join(absent)}); "
                             "point at DPR's data/example_light folder")
    return [shmod.load_dpr_light(str(f), scale) for f in files]
