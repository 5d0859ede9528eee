"""PackedModel: a compiled op list that runs, describes, profiles and saves itself."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any

import numpy as np
import torch

from .bitops import active_isa
from .errors import InputError
from .graph import Bits, FloatMap, Op, Value, as_float, output_shapes, value_shape
from .profiling import Profile, summarise, time_ops


@dataclass(frozen=True)
class LayerInfo:
    """Static description of one op; shapes are per sample, (C, H, W) or (F,)."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    output_encoding: str
    binary_macs: int
    float_macs: int
    packed_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PackedModel:
    """Inference-only packed network: float stem/head via torch.nn.functional, packed body.

    `threads` (the kernels' threads per call) is capped at the CPU count: more only contend.
    """

    def __init__(self, ops: Sequence[Op], input_shape: Sequence[int], threads: int = 1) -> None:
        self.ops = list(ops)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.threads = min(_threads(threads), os.cpu_count() or 1)
        # Producers whose output pass can also pack their consumer's input do so.
        for producer, consumer in zip(self.ops[:-1], self.ops[1:], strict=True):
            request = consumer.wants_signs()
            if request is not None:
                producer.emit_signs(request)
            if consumer.reads_nhwc():
                producer.emit_nhwc()
        # Every op's shapes from its params and tensors first, so no map a file declares is
        # allocated before it is proved to fit; then a dry run proves the graph runs as declared.
        declared = output_shapes(self.ops, self.input_shape)
        value: Value = torch.zeros((1, *self.input_shape))
        self._shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        with torch.inference_mode():
            for op, shape in zip(self.ops, declared, strict=True):
                before = value_shape(value)[1:]
                value = op.run(value, 1)
                if value_shape(value)[1:] != shape:
                    raise ValueError(f"{op.name}: gave shape {value_shape(value)[1:]}, its "
                                     f"parameters say {shape}")
                self._shapes.append((before, shape))
        self.output_shape = value_shape(value)[1:]

    # -- running ----------------------------------------------------------------------------

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Logits (N, classes) as float32 for x of shape (N, C, H, W), or (N, H, W) if C = 1."""
        value: Value = self._prepare(x)
        # A caller already in inference mode (a server loop, a benchmark) does not pay ~1 us a
        # call to enter it again.
        if torch.is_inference_mode_enabled():
            return self._logits(value)
        with torch.inference_mode():
            return self._logits(value)

    def _logits(self, value: Value) -> np.ndarray:
        for op in self.ops:
            value = op.run(value, self.threads)
        if isinstance(value, FloatMap) and value.array.ndim == 2:
            return value.array  # the head's own array, no torch round trip
        return np.ascontiguousarray(as_float(value).numpy(), dtype=np.float32)

    def activations(self, x: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """Every op's output, float32 with torch's layout (packed bits unpacked to +-1)."""
        value: Value = self._prepare(x)
        out: dict[str, np.ndarray] = {}
        with torch.inference_mode():
            for op in self.ops:
                value = op.run(value, self.threads)
                out[op.name] = np.ascontiguousarray(as_float(value).numpy(), dtype=np.float32)
        return out

    def _prepare(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """x as float32 NCHW; InputError for any other type, dtype or shape."""
        if (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.dim() == 4
                and x.shape[1:] == self.input_shape and x.is_cpu and x.is_contiguous()):
            return x.detach() if x.requires_grad else x  # as it comes (~1 us of checks less)
        if isinstance(x, np.ndarray):
            if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
                raise InputError(f"input must be an integer or floating-point array, got dtype "
                                 f"{x.dtype}")
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        elif isinstance(x, torch.Tensor):
            if x.is_complex() or x.dtype == torch.bool:
                raise InputError(f"input must be an integer or floating-point tensor, got dtype "
                                 f"{x.dtype}")
            t = x.detach().to("cpu", torch.float32).contiguous()
        else:
            raise InputError(f"input must be a numpy array or torch tensor, got {type(x).__name__}")
        if t.dim() == 3:
            t = t.unsqueeze(1)
        if t.dim() != 4 or tuple(t.shape[1:]) != self.input_shape:
            raise InputError(
                f"input must have shape (N, {', '.join(map(str, self.input_shape))})"
                + (f" or (N, {self.input_shape[1]}, {self.input_shape[2]})"
                   if self.input_shape[0] == 1 else "")
                + f", got {tuple(x.shape)}"
            )
        return t

    # -- describing -------------------------------------------------------------------------

    def layers_info(self) -> list[LayerInfo]:
        infos = []
        for op, (before, after) in zip(self.ops, self._shapes, strict=True):
            binary, flt = op.macs(before, after)
            infos.append(LayerInfo(op.name, op.label, before, after, op.output_encoding,
                                   int(binary), int(flt), op.packed_bytes))
        return infos

    @property
    def packed_size_bytes(self) -> int:
        """Bytes of all stored tensors (packed weights, thresholds, float stem/head weights)."""
        return sum(op.packed_bytes for op in self.ops)

    def summary(self) -> str:
        """A fixed-width table of layers_info() for logs and the CLI."""
        rows = self.layers_info()
        width = max([len(r.name) for r in rows] + [5])
        lines = [f"{'layer':<{width}}  {'kind':<18} {'output':<16} {'bin MACs':>12} "
                 f"{'float MACs':>12} {'bytes':>10}"]
        for r in rows:
            out = "x".join(map(str, r.output_shape)) + ("b" if r.output_encoding == "bits" else "")
            lines.append(f"{r.name:<{width}}  {r.kind:<18} {out:<16} {r.binary_macs:>12,} "
                         f"{r.float_macs:>12,} {r.packed_bytes:>10,}")
        lines.append(f"{'total':<{width}}  {'':<18} {'':<16} "
                     f"{sum(r.binary_macs for r in rows):>12,} "
                     f"{sum(r.float_macs for r in rows):>12,} {self.packed_size_bytes:>10,}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"PackedModel(input_shape={self.input_shape}, ops={len(self.ops)}, "
                f"packed_size_bytes={self.packed_size_bytes})")

    # -- profiling and saving ---------------------------------------------------------------

    def profile(self, threads: int | None = None, repeats: int = 30, warmup: int = 5,
                batch_size: int = 1) -> Profile:
        """Median latency of the whole forward and of each layer on a random batch.

        torch's intra-op thread count is set to `threads` for the run and restored afterwards.
        """
        threads = self.threads if threads is None else _threads(threads)
        if repeats < 1 or warmup < 0 or batch_size < 1:
            raise ValueError("profile needs repeats >= 1, warmup >= 0 and batch_size >= 1")
        generator = torch.Generator().manual_seed(0)
        x = torch.randn((batch_size, *self.input_shape), generator=generator)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            times = time_ops(self.ops, x, threads, repeats, warmup)
        finally:
            torch.set_num_threads(previous)
        return summarise(times, self.ops, active_isa(), threads, batch_size)

    def save(self, path: str | PathLike[str]) -> None:
        """Write one self-contained safetensors file (see kernels.serialize)."""
        from .serialize import save

        save(self, path)


def _threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return threads


__all__ = ["Bits", "LayerInfo", "PackedModel"]
