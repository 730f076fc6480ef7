"""Build and validate the Portrait Relight extension zip, without a Blender binary.

Why a script: the zip must carry the core as a wheel plus per-platform wheels of what Blender does not ship, and CI
must build and validate it with the ``blender_ext.py`` that ships inside the ``bpy`` wheel. Steps:

1. build the core wheel (``pip wheel --no-deps .``) into ``./wheels``;
2. download the platform wheels the manifest names (``pip download --only-binary=:all: --no-deps --platform ...
   --python-version 3.11``); the file names in ``blender_manifest.toml`` are the pins, and a wheel already in
   ``./wheels`` is reused (the download step is a cache: CI can keep the folder between runs);
3. stage the Blender glue (``__init__.py``, ``ops/``, ``ui/``) with a manifest restricted to the chosen platforms
   into ``build/extension``; the mediapipe wheel is staged without the model files of solutions the add-on never
   runs (hands, pose, selfie segmentation, holistic, objectron: ~20 MB; face detection and face mesh stay);
4. run ``blender_ext.py build`` (one zip per platform) and ``blender_ext.py validate`` on each zip, and print what
   both say (warnings included) and the zip's size zipped and installed.

Usage::

    .venv/bin/python tools/build_extension.py                      # this machine's platform
    .venv/bin/python tools/build_extension.py --platform linux-x64 --platform windows-x64
    .venv/bin/python tools/build_extension.py --all-platforms
"""
from __future__ import annotations

import argparse
import importlib.util
import platform as host_platform
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "blender_manifest.toml"
GLUE = ("__init__.py", "ops", "ui")
PYTHON_VERSION = "3.11"
ALL_PLATFORMS = ("linux-x64", "windows-x64", "macos-arm64", "macos-x64", "linux-arm64", "windows-arm64")


#: mediapipe solutions whose model files (``.tflite``) the staged wheel leaves out: the add-on runs face detection,
#: the face mesh and the selfie segmentation (the head matte, ``blender_relight.matting``). Their Python modules stay
#: (``mediapipe.solutions`` imports every solution at import time).
MEDIAPIPE_UNUSED_MODELS = ("hand_landmark", "palm_detection", "pose_landmark", "pose_detection",
                           "holistic_landmark", "objectron")


class BuildError(RuntimeError):
    """A build step failed; the message says which and what to do."""


@dataclass(frozen=True)
class WheelPin:
    """One wheel named in the manifest: ``./wheels/<name>-<version>-<python>-<abi>-<platform>.whl``."""

    path: str  # as written in the manifest
    project: str
    version: str
    python_tag: str
    abi_tag: str
    platform_tag: str

    @property
    def filename(self) -> str:
        return Path(self.path).name

    @property
    def requirement(self) -> str:
        return f"{self.project.replace('_', '-')}=={self.version}"


def parse_wheel(path: str) -> WheelPin:
    """Split a wheel path of the manifest into its name, version and tags."""
    stem = Path(path).name
    if not stem.endswith(".whl"):
        raise BuildError(f"{MANIFEST.name}: {path} is not a .whl file name")
    parts = stem[:-4].split("-")
    if len(parts) != 5:
        raise BuildError(f"{MANIFEST.name}: {path} is not a wheel file name (name-version-python-abi-platform.whl)")
    return WheelPin(path, *parts)


def blender_platforms(platform_tag: str) -> set[str]:
    """Blender platforms a wheel platform tag runs on (``any`` runs everywhere)."""
    found: set[str] = set()
    for tag in platform_tag.split("."):
        if tag == "any":
            return set(ALL_PLATFORMS)
        arch = "x64" if tag.endswith(("x86_64", "amd64")) else "arm64" if tag.endswith(("arm64", "aarch64")) else ""
        if tag.endswith("universal2"):
            found |= {"macos-x64", "macos-arm64"}
        elif tag.startswith(("manylinux", "musllinux", "linux")) and arch:
            found.add(f"linux-{arch}")
        elif tag.startswith("win") and arch:
            found.add(f"windows-{arch}")
        elif tag.startswith("macosx") and arch:
            found.add(f"macos-{arch}")
    return found


def host_blender_platform() -> str:
    """This machine's Blender platform name (``linux-x64``, ``windows-x64``, ``macos-arm64`` ...)."""
    system = {"Linux": "linux", "Windows": "windows", "Darwin": "macos"}.get(host_platform.system(), "linux")
    machine = host_platform.machine().lower()
    return f"{system}-{'arm64' if machine in ('arm64', 'aarch64') else 'x64'}"


def read_manifest() -> dict:
    with MANIFEST.open("rb") as fh:
        return tomllib.load(fh)


def core_wheel_name() -> str:
    """The core wheel's file name from pyproject.toml's name and version."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    return f"{project['name'].replace('-', '_')}-{project['version']}-py3-none-any.whl"


def wheels_for(platforms: list[str], manifest: dict) -> list[WheelPin]:
    """The manifest's wheels that any of ``platforms`` needs, in manifest order."""
    pins = [parse_wheel(p) for p in manifest.get("wheels", [])]
    return [pin for pin in pins if blender_platforms(pin.platform_tag) & set(platforms)]


def run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    """Run a command; raise BuildError with its output tail if it fails."""
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise BuildError(f"{what} failed ({' '.join(cmd[:4])} ...):\n" + "\n".join(tail))
    return proc


def build_core_wheel(wheels_dir: Path) -> Path:
    """Build the pure-Python core wheel (blender_relight, inference, training, evaluation) into ``wheels_dir``."""
    name = core_wheel_name()
    tmp = wheels_dir / ".core-build"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(ROOT)],
            "building the core wheel")
        built = tmp / name
        if not built.exists():
            raise BuildError(f"pip wheel made {[p.name for p in tmp.iterdir()]}, expected {name}: "
                             "update the core wheel's name in blender_manifest.toml")
        target = wheels_dir / name
        built.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _valid_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def download_wheel(pin: WheelPin, wheels_dir: Path) -> Path:
    """Download one pinned wheel unless a valid copy is already cached in ``wheels_dir``."""
    target = wheels_dir / pin.filename
    if target.exists() and _valid_zip(target):
        return target
    tmp = wheels_dir / ".download"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
           "--python-version", PYTHON_VERSION, "-d", str(tmp), pin.requirement]
    if pin.platform_tag != "any":
        for tag in pin.platform_tag.split("."):
            cmd += ["--platform", tag]
        cmd += ["--implementation", "cp", "--abi", pin.abi_tag]
    else:  # a pure pin: without this pip prefers the host's binary build of the same version (protobuf has both)
        cmd += ["--platform", "any", "--implementation", "py", "--abi", "none"]
    try:
        run(cmd, f"downloading {pin.filename}")
        got = tmp / pin.filename
        if not got.exists():
            raise BuildError(f"pip downloaded {[p.name for p in tmp.iterdir()]} for {pin.requirement}, expected "
                             f"{pin.filename}: update blender_manifest.toml's wheels")
        got.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def staged_manifest_text(platforms: list[str], pins: list[WheelPin]) -> str:
    """The manifest with ``platforms`` and ``wheels`` restricted to what this build carries."""
    text = MANIFEST.read_text(encoding="utf-8")
    plat = "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]"
    text, n_plat = re.subn(r"(?m)^platforms\s*=\s*\[[^\]]*\]", plat, text)
    wheels = "wheels = [\n" + "".join(f'  "{pin.path}",\n' for pin in pins) + "]"
    text, n_wheels = re.subn(r"(?ms)^wheels\s*=\s*\[.*?^\]", wheels, text)
    if n_plat != 1 or n_wheels != 1:
        raise BuildError(f"{MANIFEST}: expected one top-level `platforms = [...]` and one `wheels = [...]` list")
    return text


def find_blender_ext() -> Path:
    """``blender_ext.py`` from the installed ``bpy`` wheel (no Blender binary needed)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("bpy is not installed: `pip install bpy==4.2.22` (the blender-tests extra) to get "
                         "blender_ext.py, or pass --blender-ext PATH")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise BuildError(f"no blender_ext.py under {list(spec.submodule_search_locations)}: pass --blender-ext PATH")


def _unused_model(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) > 3 and parts[0] == "mediapipe" and parts[1] == "modules"
            and parts[2] in MEDIAPIPE_UNUSED_MODELS and name.endswith(".tflite"))


def slim_mediapipe(src: Path, dst: Path) -> Path:
    """Copy the mediapipe wheel without the unused solutions' model files, its RECORD rewritten to match (a wheel
    installer checks RECORD against the files)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if _unused_model(info.filename):
                continue
            data = zin.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(ln for ln in lines if not _unused_model(ln.split(",")[0])).encode()
            zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return dst


def zip_sizes(zip_path: Path) -> tuple[float, float]:
    """(zip MB, installed MB): the zip on disk, and the glue plus every wheel's files unpacked."""
    installed = 0
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".whl"):
                import io

                with zipfile.ZipFile(io.BytesIO(zf.read(info.filename))) as wheel:
                    installed += sum(i.file_size for i in wheel.infolist())
            else:
                installed += info.file_size
    return zip_path.stat().st_size / 1e6, installed / 1e6


def _said(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]


def stage(platforms: list[str], pins: list[WheelPin], wheels_dir: Path, stage_dir: Path) -> Path:
    """Copy the glue, the chosen wheels and the restricted manifest into ``stage_dir``."""
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for name in GLUE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, stage_dir / name, ignore=ignore)
        else:
            shutil.copy2(src, stage_dir / name)
    (stage_dir / "wheels").mkdir()
    for pin in pins:
        if pin.project == "mediapipe":
            slim_mediapipe(wheels_dir / pin.filename, stage_dir / "wheels" / pin.filename)
        else:
            shutil.copy2(wheels_dir / pin.filename, stage_dir / "wheels" / pin.filename)
    (stage_dir / MANIFEST.name).write_text(staged_manifest_text(platforms, pins), encoding="utf-8")
    return stage_dir


def build(platforms: list[str], wheels_dir: Path = ROOT / "wheels", output_dir: Path = ROOT / "dist",
          blender_ext: Path | None = None, log=print) -> list[Path]:
    """Build and validate one zip per platform; return their paths."""
    manifest = read_manifest()
    unknown = set(platforms) - set(manifest.get("platforms", []))
    if unknown:
        raise BuildError(f"{sorted(unknown)} not in the manifest's platforms {manifest.get('platforms')}")
    wheels_dir.mkdir(parents=True, exist_ok=True)
    pins = wheels_for(platforms, manifest)
    core = core_wheel_name()
    if core not in [pin.filename for pin in pins]:
        raise BuildError(f"blender_manifest.toml must list ./wheels/{core} (the core wheel built from pyproject.toml)")
    if any(pin.project.lower() == "numpy" for pin in pins):
        raise BuildError("blender_manifest.toml lists a numpy wheel: Blender ships numpy, remove it")
    log(f"core wheel: {build_core_wheel(wheels_dir).name}")
    for pin in pins:
        if pin.filename != core:
            log(f"wheel: {download_wheel(pin, wheels_dir).name}")
    blender_ext = blender_ext or find_blender_ext()
    stage_dir = stage(platforms, pins, wheels_dir, ROOT / "build" / "extension")
    output_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(blender_ext), "build", "--source-dir", str(stage_dir), "--output-dir", str(output_dir)]
    if len(platforms) > 1:
        cmd.append("--split-platforms")
    proc = run(cmd, "blender_ext.py build")
    for line in _said(proc):
        log(f"blender_ext.py build: {line}")
    zips = [Path(m) for m in re.findall(r'created: "([^"]+)"', proc.stdout)]
    if not zips:
        raise BuildError(f"blender_ext.py build reported no zip:\n{proc.stdout}")
    for zip_path in zips:
        checked = run([sys.executable, str(blender_ext), "validate", str(zip_path)], f"validating {zip_path.name}")
        for line in _said(checked):  # Blender's own words, warnings included
            log(f"blender_ext.py validate: {line}")
        zipped, installed = zip_sizes(zip_path)
        log(f"built and validated: {zip_path} ({zipped:.1f} MB, {installed:.0f} MB installed)")
    return zips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=ALL_PLATFORMS,
                        help="Blender platform to build for (repeatable; default: this machine's)")
    parser.add_argument("--all-platforms", action="store_true", help="every platform the manifest lists")
    parser.add_argument("--wheels-dir", type=Path, default=ROOT / "wheels", help="wheel cache (default ./wheels)")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist", help="where the zips go (default ./dist)")
    parser.add_argument("--blender-ext", type=Path, help="blender_ext.py to use (default: the one inside bpy)")
    args = parser.parse_args(argv)
    platforms = list(read_manifest()["platforms"]) if args.all_platforms else (args.platform or [host_blender_platform()])
    try:
        build(platforms, args.wheels_dir.resolve(), args.output_dir.resolve(), args.blender_ext)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
