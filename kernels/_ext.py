"""The compiled kernel module, with an actionable message when it has not been built."""

from __future__ import annotations

try:
    from . import _bnnx_kernels as ext
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "kernels._bnnx_kernels is not built or not importable; run `make setup`"
    ) from exc

__all__ = ["ext"]
