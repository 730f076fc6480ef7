"""`python -m blender_relight`: the command-line interface (see blender_relight.cli)."""
from blender_relight.cli import main

raise SystemExit(main())
