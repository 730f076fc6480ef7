"""User-facing errors: one clear line naming the file and what to do.

Why one type: the CLI prints ``RelightError`` messages without a traceback and exits non-zero; the Blender operators
report them in the UI. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class RelightError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class NoFaceError(RelightError):
    """No face was found where one was required (a still image, or a clip with no tracked frame)."""


class ModelFileError(RelightError):
    """A model file is missing, unreadable or does not match the expected shapes."""


class Cancelled(RelightError):
    """The user cancelled a long job; what was finished is kept in the cache."""
