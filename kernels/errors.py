"""Exceptions of the packed engine."""

from __future__ import annotations


class PackedModelError(ValueError):
    """A packed model file that cannot be loaded: missing, corrupt, or of another format/version."""


class UnsupportedLayerError(ValueError):
    """A torch module the packed engine cannot compile; the message names its path and type."""


class InputError(ValueError, TypeError):
    """An input a packed model cannot take: not a real integer or floating-point array or tensor,
    or of the wrong shape. A ValueError, so the CLI reports it in one line; a TypeError too, for
    callers that catch a wrong type as one."""
