"""A per-layer account of a model's precision, memory and MACs, like `larq.models.summary`.

`summarize` counts (one place), `format_summary` prints. A layer's input precision is its
`precision` attribute (binary layers say 1 when they binarise their input; everything else
defaults to 32); a weight is stored at its weight quantizer's `precision`; every other parameter
is 32-bit. A MAC is binary only when both operands are 1-bit (XNOR + popcount); anything else is
a float MAC. Only convolutions and linear layers have MACs (as in Larq): BatchNorm, input
normalisation, activations, pooling and shortcut adds count none, however an engine runs them.
Memory is the bits the parameters need when binary ones are packed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

FLOAT_BITS = 32


@dataclass
class LayerSummary:
    name: str
    kind: str
    input_precision: int
    output_shape: list[int]
    params: dict[int, int]  # bit width -> parameter count
    binary_macs: int
    float_macs: int

    @property
    def memory_bits(self) -> int:
        return sum(bits * n for bits, n in self.params.items())


@dataclass
class ModelSummary:
    layers: list[LayerSummary] = field(default_factory=list)

    @property
    def params(self) -> dict[int, int]:
        total: Counter[int] = Counter()
        for layer in self.layers:
            total.update(layer.params)
        return dict(sorted(total.items()))

    @property
    def memory_bits(self) -> int:
        return sum(layer.memory_bits for layer in self.layers)

    @property
    def fp32_bits(self) -> int:
        return FLOAT_BITS * sum(self.params.values())

    @property
    def binary_macs(self) -> int:
        return sum(layer.binary_macs for layer in self.layers)

    @property
    def float_macs(self) -> int:
        return sum(layer.float_macs for layer in self.layers)

    @property
    def binary_mac_ratio(self) -> float:
        total = self.binary_macs + self.float_macs
        return self.binary_macs / total if total else 0.0

    def to_dict(self) -> dict:
        """JSON-able (bit widths as string keys), e.g. for an Optuna user attribute."""
        return {
            "layers": [{**asdict(r), "params": {str(b): n for b, n in r.params.items()},
                        "memory_bits": r.memory_bits} for r in self.layers],
            "params": {str(b): n for b, n in self.params.items()},
            "memory_bits": self.memory_bits,
            "fp32_bits": self.fp32_bits,
            "binary_macs": self.binary_macs,
            "float_macs": self.float_macs,
            "binary_mac_ratio": self.binary_mac_ratio,
        }


def _weight_bits(module: nn.Module) -> int:
    quantizer = getattr(module, "weight_quantizer", None)
    return int(getattr(quantizer, "precision", FLOAT_BITS)) if quantizer is not None else FLOAT_BITS


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    per_sample = output[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_sample * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_sample * module.in_features
    return 0


def _rows(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters or MACs, outermost first; their sub-modules fold into them."""
    rows: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{r}.") for r, _ in rows if r):
            continue
        owns = any(True for _ in module.parameters(recurse=False))
        if owns or isinstance(module, (nn.Conv2d, nn.Linear)):
            rows.append((name, module))
    return rows


@torch.no_grad()
def summarize(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelSummary:
    """Count a model's layers for one (C, H, W) input (a batch-1 forward pass finds the shapes)."""
    rows = _rows(model)
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out))
             for n, m in rows]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    summary = ModelSummary()
    for name, module in rows:
        if name not in outputs:  # defined but unused in forward
            continue
        out = outputs[name]
        in_bits = int(getattr(module, "precision", FLOAT_BITS))
        w_bits = _weight_bits(module)
        params: Counter[int] = Counter()
        for pname, p in module.named_parameters():
            params[w_bits if pname == "weight" else FLOAT_BITS] += p.numel()
        macs = _macs(module, out)
        binary = in_bits == 1 and w_bits == 1
        summary.layers.append(LayerSummary(
            name, type(module).__name__, in_bits, list(out.shape[1:]), dict(sorted(params.items())),
            macs if binary else 0, 0 if binary else macs,
        ))
    return summary


def format_summary(summary: ModelSummary) -> str:
    """A fixed-width table, one row per layer, then totals and size/MAC ratios."""
    bits = sorted({b for r in summary.layers for b in r.params} | {1, FLOAT_BITS})
    head = ["Layer", "Type", "In bits", "Output", *(f"{b}-bit params" for b in bits),
            "Memory KiB", "Binary MACs", "Float MACs"]
    table = [[r.name, r.kind, str(r.input_precision), "x".join(map(str, r.output_shape)),
              *(f"{r.params.get(b, 0):,}" for b in bits), f"{r.memory_bits / 8192:.2f}",
              f"{r.binary_macs:,}", f"{r.float_macs:,}"] for r in summary.layers]
    totals = summary.params
    table.append(["Total", "", "", "", *(f"{totals.get(b, 0):,}" for b in bits),
                  f"{summary.memory_bits / 8192:.2f}", f"{summary.binary_macs:,}",
                  f"{summary.float_macs:,}"])
    widths = [max(len(row[i]) for row in [head, *table]) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 4 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    rule = "-" * len(line(head))
    lines = [line(head), rule, *(line(r) for r in table[:-1]), rule, line(table[-1]), ""]
    ratio = summary.fp32_bits / summary.memory_bits if summary.memory_bits else 0.0
    lines += [
        f"Model size: {summary.memory_bits:,} bits ({summary.memory_bits / 8192:.2f} KiB)",
        f"Float-32 equivalent: {summary.fp32_bits:,} bits ({summary.fp32_bits / 8192:.2f} KiB), "
        f"compression {ratio:.2f}x",
        f"MACs binarized: {100 * summary.binary_mac_ratio:.2f}% "
        f"({summary.binary_macs:,} of {summary.binary_macs + summary.float_macs:,})",
    ]
    return "\n".join(lines)
