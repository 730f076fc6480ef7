"""Names shared by the headless-bpy tests (a uniquely named module: ``conftest`` may exist at several levels)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
REPO = "prtest"  # the local extension repository the tests enable the source tree from
PACKAGE = f"bl_ext.{REPO}.portrait_relight"
