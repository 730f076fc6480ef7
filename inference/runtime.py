"""ONNX Runtime inference of the four exported graphs, without torch.

    rt = RelightRuntime()                      # inference/weights/default, best provider, threads for this machine
    planes = rt.encode(crop_linear, source_sh) # once per frame (cache it; fp16 storage is fine)
    planes, memory = rt.temporal(planes, memory)   # memory=None on a clip's first frame
    gbuffer = rt.render(planes, camera_label)  # per camera
    rgb, passes = rt.shade(gbuffer, sh_rgb)    # per light: cheap

Why this shape: a light change re-runs only ``shade`` and a camera change ``render`` + ``shade``; sessions are created
once. Providers: TensorRT -> CUDA -> CPU, whichever this onnxruntime build offers (``describe()`` says which and why).
On CUDA/TensorRT the graphs run with IO binding and the G-buffer stays on the GPU between ``render`` and ``shade``.
On CPU the sessions use the cores this process may run on (capped at 8), one inter-op thread, and no spin-waiting,
so an idle runtime inside Blender does not burn the UI's cores.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from blender_relight.errors import ModelFileError, RelightError
from blender_relight.lighting.sh import as_rgb
from inference.graphs import FORMAT, FORMAT_VERSION, GRAPH_IO, GRAPH_NAMES, tensor_shapes

log = logging.getLogger(__name__)

WEIGHTS_ROOT = Path(__file__).resolve().parent / "weights"
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_ALIASES = {"auto": None, "tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "cpu": "CPUExecutionProvider"}
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def find_weights() -> Path | None:
    """The shipped default model folder (inference/weights/default) if it holds model.json, else None."""
    d = WEIGHTS_ROOT / "default"
    return d if (d / "model.json").is_file() else None


def available_cpus() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def choose_provider(requested: str = "auto", available: list[str] | None = None) -> tuple[str, str]:
    """(provider, reason) for ``requested`` in auto/tensorrt/cuda/cpu or a full provider name."""
    import onnxruntime as ort

    available = list(ort.get_available_providers()) if available is None else available
    want = PROVIDER_ALIASES.get(requested.lower(), requested) if requested else None
    if want is not None:
        if want not in available:
            raise RelightError(f"execution provider {requested!r} is not in this onnxruntime build "
                                 f"(available: {', '.join(available)}); use provider='auto' or install "
                                 "onnxruntime-gpu for CUDA")
        return want, f"requested {requested}"
    for p in PROVIDER_ORDER:
        if p in available:
            skipped = [q.replace("ExecutionProvider", "") for q in PROVIDER_ORDER[:PROVIDER_ORDER.index(p)]]
            reason = "auto: best available" + (f"; {'/'.join(skipped)} not in this onnxruntime build"
                                               if skipped else "")
            return p, reason
    raise RelightError(f"no usable onnxruntime execution provider (available: {available})")


def providers_report() -> dict[str, Any]:
    """What the CLI's ``info`` prints: onnxruntime version, providers, the auto choice, the shipped weights.

    Fast: creates no session (reads model.json only).
    """
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    chosen, reason = choose_provider("auto", available)
    weights = find_weights()
    meta = read_model_meta(weights, strict=False) if weights is not None else {}
    trained = meta.get("trained") if meta else None
    line = (f"onnxruntime {ort.__version__}; providers {', '.join(available)}; would use {chosen} ({reason}); "
            f"{available_cpus()} CPU cores; weights: "
            + (f"{weights} (preset {meta.get('preset')}, {'trained' if trained else 'UNTRAINED'})" if weights
               else "none shipped (run python -m inference.export)"))
    return {"onnxruntime": ort.__version__, "available": available, "chosen": chosen, "reason": reason,
            "cpus": available_cpus(), "weights": str(weights) if weights else None, "preset": meta.get("preset"),
            "trained": trained, "summary": line}


def read_model_meta(folder: Path, strict: bool = True) -> dict[str, Any]:
    """The folder's model.json, the one reader of it (runtime, ``info``, the engine chooser).

    ``strict`` checks that it is a complete model description (format, version, every graph file, config) and
    raises ModelFileError naming what is wrong; otherwise a missing file gives ``{}`` and an unreadable one
    ``{"error": ...}``, for reports that must not fail.
    """
    folder = Path(folder)
    path = folder / "model.json"
    if not strict:
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {"error": "model.json unreadable"}
    if not path.is_file():
        raise ModelFileError(f"{path} not found; point weights_dir at a folder written by inference.export")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc}); re-export the model folder") from exc
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} model description "
                             f"(format {meta.get('format')!r} v{meta.get('format_version')!r}); re-export it")
    for name in GRAPH_NAMES:
        entry = meta.get("graphs", {}).get(name)
        if not entry or not (folder / entry.get("file", "")).is_file():
            raise ModelFileError(f"{folder}: graph {name!r} is missing (model.json lists "
                                 f"{entry.get('file') if entry else 'nothing'}); re-export the model folder")
    if "config" not in meta:
        raise ModelFileError(f"{path} has no model config; re-export the model folder")
    return meta


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks (model.json records it for every graph)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _static_dims(shape: list) -> list:
    return [d if isinstance(d, int) else None for d in shape]


class RelightRuntime:
    """The four ONNX Runtime sessions of one exported model folder (see module docstring)."""

    def __init__(self, weights_dir: str | os.PathLike | None = None, provider: str = "auto",
                 threads: int | None = None, verify_files: bool = True) -> None:
        import onnxruntime as ort

        folder = Path(weights_dir) if weights_dir is not None else find_weights()
        if folder is None:
            raise ModelFileError(f"no model in {WEIGHTS_ROOT / 'default'}; export one with "
                                 "`python -m inference.export --preset default --out inference/weights/default`")
        self.folder = folder
        self.meta = read_model_meta(folder)
        self.config: dict[str, Any] = self.meta["config"]
        self.preset: str = self.meta.get("preset", "?")
        self.trained: bool = bool(self.meta.get("trained"))
        self.shapes = tensor_shapes(self.config)
        self.image_res = int(self.config["image_res"])
        self.out_res = int(self.config["render_res"]) * int(self.config["sr_factor"])
        wanted, self._reason = choose_provider(provider)
        self.threads = int(threads) if threads else min(available_cpus(), 8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        # the chosen provider, then the slower ones as fallbacks (TensorRT hands unsupported nodes to CUDA, then CPU)
        have = ort.get_available_providers()
        slower = PROVIDER_ORDER[PROVIDER_ORDER.index(wanted):] if wanted in PROVIDER_ORDER else (wanted,)
        providers = [p for p in slower if p in have]
        if wanted not in PROVIDER_ORDER:
            providers.append("CPUExecutionProvider")
        self._sessions: dict[str, Any] = {}
        for name in GRAPH_NAMES:
            path = folder / self.meta["graphs"][name]["file"]
            if verify_files and self.meta["graphs"][name].get("sha256") and \
                    file_sha256(path) != self.meta["graphs"][name]["sha256"]:
                raise ModelFileError(f"{path} does not match the checksum in {folder / 'model.json'} (corrupt or "
                                     "replaced); re-export the model folder")
            try:
                sess = ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as exc:  # onnxruntime raises its own exception types for bad files
                raise ModelFileError(f"{path} cannot be loaded by onnxruntime ({str(exc).splitlines()[0][:200]}); "
                                     "re-export the model folder") from exc
            self._check_session(name, path, sess)
            self._sessions[name] = sess
        self.provider: str = self._sessions["render"].get_providers()[0]
        self.io_binding = self.provider in GPU_PROVIDERS
        if self.provider != wanted:
            self._reason += f"; {wanted} failed to initialise, fell back"
        log.info(self.describe())

    # --- loading checks -------------------------------------------------------------------------------------------
    def _check_session(self, name: str, path: Path, sess: Any) -> None:
        """The file's inputs/outputs must be the ones model.json and this runtime expect."""
        inputs, outputs = GRAPH_IO[name]
        got_in = [i.name for i in sess.get_inputs()]
        got_out = [o.name for o in sess.get_outputs()]
        if got_in != list(inputs) or got_out != list(outputs):
            raise ModelFileError(f"{path} has inputs {got_in} / outputs {got_out}, expected {list(inputs)} / "
                                 f"{list(outputs)}; the file is from another model version, re-export it")
        for arg in list(sess.get_inputs()) + list(sess.get_outputs()):
            want = _static_dims(self.shapes[arg.name])
            have = [d if isinstance(d, int) else None for d in arg.shape]
            if len(want) != len(have) or any(w is not None and h is not None and w != h for w, h in zip(want, have)):
                raise ModelFileError(f"{path}: tensor {arg.name} has shape {arg.shape}, model.json's config implies "
                                     f"{self.shapes[arg.name]}; the file and model.json do not match, re-export")

    def describe(self) -> str:
        """One line: provider and why, threads, preset, trained or not."""
        return (f"RelightRuntime: {self.provider} ({self._reason}); {self.threads} intra-op threads; "
                f"preset {self.preset} from {self.folder}; "
                f"{'trained' if self.trained else 'UNTRAINED random weights'}"
                f"{'; IO binding' if self.io_binding else ''}")

    # --- running --------------------------------------------------------------------------------------------------
    def _run(self, name: str, feeds: dict[str, Any], keep_on_device: bool = False) -> dict[str, Any]:
        sess = self._sessions[name]
        outputs = GRAPH_IO[name][1]
        if not self.io_binding:
            return dict(zip(outputs, sess.run(list(outputs), feeds)))
        binding = sess.io_binding()
        for k, v in feeds.items():
            if isinstance(v, np.ndarray):
                binding.bind_cpu_input(k, v)
            else:
                binding.bind_ortvalue_input(k, v)
        for o in outputs:
            binding.bind_output(o, "cuda" if keep_on_device else "cpu")
        sess.run_with_iobinding(binding)
        values = binding.get_outputs()
        if keep_on_device:
            return dict(zip(outputs, values))
        return dict(zip(outputs, (v.numpy() for v in values)))

    @staticmethod
    def _f32(x: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
        a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if a.shape != shape:
            raise ValueError(f"{what} must have shape {shape}, got {a.shape}")
        return a

    def _planes_in(self, planes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shape = tuple(self.shapes["albedo_planes"][1:])
        return {k: self._f32(planes[k], shape, k)[None] for k in ("albedo_planes", "shading_planes")}

    def encode(self, crop_linear: np.ndarray, source_sh: np.ndarray) -> dict[str, np.ndarray]:
        """Crop (image_res, image_res, 3) linear RGB + source SH (9, 3) or gray (9,) -> planes (3C, R, R) each."""
        crop = self._f32(crop_linear, (self.image_res, self.image_res, 3), "crop_linear")
        sh = as_rgb(source_sh).astype(np.float32)[None]
        out = self._run("encode", {"crop": np.ascontiguousarray(crop.transpose(2, 0, 1)[None]), "source_sh": sh})
        return {k: v[0] for k, v in out.items()}

    def empty_memory(self) -> dict[str, np.ndarray]:
        """The temporal memory of a clip's first frame: zero tokens, all slots invalid."""
        k, n, d = self.shapes["memory"][1:]
        return {"tokens": np.zeros((k, n, d), np.float32), "valid": np.zeros((k,), np.float32)}

    def temporal(self, planes: dict[str, np.ndarray], memory: dict[str, np.ndarray] | None = None
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Correct a frame's planes with the memory of earlier frames; returns (planes, new memory).

        ``memory`` is None on a clip's first frame (or after a cut) and otherwise the dict this method returned for
        the previous frame: {"tokens": (k, N, D), "valid": (k,)}.
        """
        memory = self.empty_memory() if memory is None else memory
        k, n, d = self.shapes["memory"][1:]
        feeds = self._planes_in(planes)
        feeds["memory"] = self._f32(memory["tokens"], (k, n, d), "memory tokens")[None]
        feeds["memory_valid"] = self._f32(memory["valid"], (k,), "memory valid")[None]
        out = self._run("temporal", feeds)
        return ({"albedo_planes": out["albedo_planes_out"][0], "shading_planes": out["shading_planes_out"][0]},
                {"tokens": out["memory_out"][0], "valid": out["memory_valid_out"][0]})

    def render(self, planes: dict[str, np.ndarray], camera_label: np.ndarray) -> dict[str, Any]:
        """Render the G-buffer at out_res for an EG3D camera label (25,).

        Returns the render graph's outputs by name (albedo, normal, visibility, depth, alpha, features), each
        (1, C, H, W) float32 as the graphs use them; on a GPU provider they stay on the device (OrtValues). Pass the
        dict to :meth:`shade`; the passes come back from there in (H, W, C).
        """
        feeds = self._planes_in(planes)
        feeds["camera"] = self._f32(camera_label, (25,), "camera_label")[None]
        return self._run("render", feeds, keep_on_device=self.io_binding)

    def shade(self, gbuffer: dict[str, Any], sh_rgb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Relight a G-buffer with RGB SH (9, 3) (gray (9,) accepted).

        Returns rgb (H, W, 3) float32 linear and the passes albedo, shading, normal (H, W, 3; normal in EG3D world
        axes), depth, alpha (H, W).
        """
        sh = as_rgb(sh_rgb).astype(np.float32)[None]
        feeds = {k: gbuffer[k] for k in ("albedo", "normal", "visibility", "features")}
        feeds["sh"] = sh
        out = self._run("shade", feeds)
        passes = {"albedo": self._hwc(gbuffer, "albedo"), "shading": out["shading"][0].transpose(1, 2, 0),
                  "normal": self._hwc(gbuffer, "normal"), "depth": self._hwc(gbuffer, "depth")[..., 0],
                  "alpha": self._hwc(gbuffer, "alpha")[..., 0]}
        return out["image"][0].transpose(1, 2, 0), passes

    @staticmethod
    def _hwc(gbuffer: dict[str, Any], key: str) -> np.ndarray:
        v = gbuffer[key]
        a = v if isinstance(v, np.ndarray) else v.numpy()
        return a[0].transpose(1, 2, 0)

    def relight(self, crop_linear: np.ndarray, source_sh: np.ndarray, camera_label: np.ndarray,
                sh_rgb: np.ndarray, memory: dict[str, np.ndarray] | None = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """All four steps for one frame: (rgb, passes, new memory). Convenience for scripts and benchmarks."""
        planes, memory = self.temporal(self.encode(crop_linear, source_sh), memory)
        rgb, passes = self.shade(self.render(planes, camera_label), sh_rgb)
        return rgb, passes, memory
