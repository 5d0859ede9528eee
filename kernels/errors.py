"""Exceptions of the packed engine."""

from __future__ import annotations


class PackedModelError(ValueError):
    """A packed model file that cannot be loaded: missing, corrupt, or of another format/version."""


class UnsupportedLayerError(ValueError):
    """A torch module the packed engine cannot compile; the message names its path and type."""
