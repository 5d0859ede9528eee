"""Deploy formats beside the packed model: ONNX and OpenVINO IR files in an export folder.

Each format is written from the torch model, reloaded in its own runtime and checked against the
packed model on the study's validation images (equal predictions, logits within a tolerance), then
timed against it; the figures go into the model card. A format that disagrees is refused, so an
export folder never holds a file that answers differently from model.bnnx.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import kernels
from kernels.errors import InputError
from kernels.timing import interleaved_ms
from kernels.to_onnx import DEPLOY_HINT

from .datasets import as_nchw, get_dataset

FORMATS = ("bnnx", "openvino", "onnx")
DEFAULT_FORMATS = ("bnnx",)
ONNX_FILE, OPENVINO_XML, OPENVINO_BIN = "model.onnx", "model.xml", "model.bin"
DEPLOY_FILES = (ONNX_FILE, OPENVINO_XML, OPENVINO_BIN)
RUNTIME_SUFFIXES = {".onnx": "onnx", ".xml": "openvino"}
PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "openvino": ("openvino",)}
EXPORTERS = {"onnx": "kernels.to_onnx", "openvino": "kernels.to_openvino"}
RUNTIME_NAMES = {"bnnx": "bnnx (packed)", "onnx": "ONNX Runtime", "openvino": "OpenVINO"}
CHECK_IMAGES = 256  # validation images each format is checked on: a second or less per format
RTOL = 1e-4  # |logit - packed logit| <= RTOL * max(1, max |packed logit|)
LATENCY_THREADS = 1
LATENCY_REPEATS = 50  # batch-1 calls per runtime, interleaved in rounds of LATENCY_ROUND
LATENCY_ROUND = 5


class DeployError(ValueError):
    """A format that cannot be written, is not installed, or disagrees with the packed model."""


@dataclass(frozen=True)
class FormatCheck:
    """How one exported format compares with the packed model, and how fast its runtime is."""

    format: str
    images: int
    disagreements: int
    max_abs_diff: float
    tolerance: float
    latency_ms: float


def chosen_formats(names: Sequence[str]) -> tuple[str, ...]:
    """Format names -> the formats in FORMATS order, bnnx always among them (the others are
    checked against it). ValueError names the allowed formats; DeployError a missing package."""
    names = [name.strip() for name in names]
    bad = [name for name in names if name not in FORMATS]
    if bad:
        raise ValueError(f"unknown --format {bad[0]!r}; allowed: {', '.join(FORMATS)} "
                         "(comma-separated)")
    formats = tuple(f for f in FORMATS if f in names or f == "bnnx")
    check_installed(formats)
    return formats


def check_installed(formats: Sequence[str]) -> None:
    """Fail before any work when a format's packages (the `deploy` extra) or exporter are
    missing."""
    for fmt in formats:
        missing = [p for p in PACKAGES.get(fmt, ()) if importlib.util.find_spec(p) is None]
        if missing:
            raise DeployError(f"--format {fmt} needs {', '.join(missing)}, {DEPLOY_HINT}")
        if fmt in EXPORTERS and importlib.util.find_spec(EXPORTERS[fmt]) is None:
            raise DeployError(f"--format {fmt}: this bnnx has no {EXPORTERS[fmt]} exporter")


def write_formats(folder: Path, model: nn.Module, packed: kernels.PackedModel,
                  meta: dict[str, Any], formats: Sequence[str]) -> list[FormatCheck]:
    """Write each of `formats` (from chosen_formats) but bnnx into `folder`, check it against
    `packed` on the dataset's validation images, then time every runtime interleaved (batch 1).
    Returns one FormatCheck per format, bnnx first (its own reference); [] for bnnx alone.
    Raises DeployError for a format that disagrees, UnsupportedLayerError for one that cannot
    represent the model."""
    extra = [fmt for fmt in formats if fmt != "bnnx"]
    if not extra:
        return []
    writers = {"onnx": _write_onnx, "openvino": _write_openvino}
    runners = {fmt: RuntimeModel(writers[fmt](folder, model, packed.input_shape))
               for fmt in extra}
    images = validation_images(meta)
    reference = packed(images)
    tolerance = RTOL * max(1.0, float(np.abs(reference).max()))
    agreement = {"bnnx": (0, 0.0)}
    for fmt, runner in runners.items():
        logits = runner(images)
        differ = int((logits.argmax(1) != reference.argmax(1)).sum())
        worst = float(np.abs(logits - reference).max())
        if differ or not worst <= tolerance:
            raise DeployError(
                f"--format {fmt}: {differ} of {len(images)} validation predictions differ from "
                f"the packed model, max |logit difference| {worst:.3g} (tolerance "
                f"{tolerance:.3g}); not exported"
            )
        agreement[fmt] = differ, worst
    one = images[:1]
    previous = torch.get_num_threads()
    torch.set_num_threads(LATENCY_THREADS)  # the packed model's float ops run on torch's threads
    try:
        latency = interleaved_ms({"bnnx": lambda: packed(one),
                                  **{fmt: (lambda r=r: r(one)) for fmt, r in runners.items()}},
                                 LATENCY_REPEATS, LATENCY_ROUND)
    finally:
        torch.set_num_threads(previous)
    return [FormatCheck(fmt, len(images), differ, worst, tolerance, latency[fmt])
            for fmt, (differ, worst) in agreement.items()]


def validation_images(meta: dict[str, Any]) -> np.ndarray:
    """The first CHECK_IMAGES validation images of the model's dataset, float32 NCHW."""
    data = get_dataset(meta["dataset"])
    return as_nchw(data.x_val[:CHECK_IMAGES], meta["in_channels"])


def _write_onnx(folder: Path, model: nn.Module, shape: tuple[int, int, int]) -> Path:
    import onnx

    from kernels.to_onnx import to_onnx

    path = folder / ONNX_FILE
    onnx.save_model(to_onnx(model, shape), str(path))
    return path


def _write_openvino(folder: Path, model: nn.Module, shape: tuple[int, int, int]) -> Path:
    import openvino as ov

    from kernels.to_openvino import to_openvino

    path = folder / OPENVINO_XML  # model.bin beside it
    ov.save_model(to_openvino(model, shape), str(path), compress_to_fp16=False)
    return path


class RuntimeModel:
    """An exported model.onnx (ONNX Runtime) or model.xml (OpenVINO) called like a PackedModel:
    raw images (N, C, H, W), or (N, H, W) for one channel, in; float32 logits (N, classes) out."""

    def __init__(self, path: Path, threads: int = LATENCY_THREADS) -> None:
        path = Path(path)
        if path.suffix not in RUNTIME_SUFFIXES:
            raise DeployError(f"{path}: not a model file of "
                              f"{', '.join(RUNTIME_SUFFIXES.values())} ("
                              f"{', '.join(RUNTIME_SUFFIXES)})")
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        self.format = RUNTIME_SUFFIXES[path.suffix]
        check_installed([self.format])
        loader = _onnx_runtime if self.format == "onnx" else _openvino_runtime
        try:
            self._run, self.input_shape = loader(path, threads)
        except Exception as exc:  # each runtime has its own errors for a corrupt file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DeployError(f"{path} cannot be loaded by {RUNTIME_NAMES[self.format]}: "
                              f"{first}") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "iuf":
            raise InputError("input must be an integer or floating-point numpy array")
        c, h, w = self.input_shape
        try:
            x = as_nchw(x, c)
        except ValueError:
            x = None
        if x is None or x.shape[2:] != (h, w):
            alt = f" or (N, {h}, {w})" if c == 1 else ""
            raise InputError(f"input must have shape (N, {c}, {h}, {w}){alt}")
        return np.asarray(self._run(x), dtype=np.float32)


Runner = Callable[[np.ndarray], np.ndarray]


def _onnx_runtime(path: Path, threads: int) -> tuple[Runner, tuple[int, int, int]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    shape = tuple(int(d) for d in session.get_inputs()[0].shape[1:])
    return (lambda x: session.run(None, {name: x})[0]), shape  # type: ignore[return-value]


def _openvino_runtime(path: Path, threads: int) -> tuple[Runner, tuple[int, int, int]]:
    """OpenVINO's CPU plugin runs BinaryConvolution on static shapes: the IR is saved for batch
    1, and each other batch size gets the model reshaped and compiled once."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    shape = tuple(d.get_length() for d in list(model.input(0).get_partial_shape())[1:])
    config = {"INFERENCE_NUM_THREADS": threads,
              "INFERENCE_PRECISION_HINT": "f32"}  # not bf16, which would change the logits
    requests: dict[int, Any] = {}

    def run(x: np.ndarray) -> np.ndarray:
        if len(x) not in requests:
            model.reshape([len(x), *shape])
            requests[len(x)] = core.compile_model(model, "CPU", config).create_infer_request()
        request = requests[len(x)]
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    run(np.zeros((1, *shape), np.float32))  # a corrupt or unrunnable file fails here, once
    return run, shape  # type: ignore[return-value]


def card_sections(checks: Sequence[FormatCheck]) -> str:
    """The model card's "Run it" snippets (bnnx always, then each exported format) and the
    table of agreement and latency figures."""
    formats = [c.format for c in checks] or ["bnnx"]
    parts = ["## Run it\nEvery format takes raw images as float32 (N, C, H, W), N >= 1, and "
             "normalises them itself; each returns the logits (N, classes). The snippets below "
             "start from `images`, e.g. a NumPy file of raw images:\n```python\n"
             "import numpy as np\nimages = np.load(\"images.npy\").astype(\"float32\")  "
             "# (N, C, H, W), or (N, H, W) for one channel\n```\n"]
    parts += [RUN_IT[fmt] for fmt in formats]
    if checks:
        rows = "\n".join(
            f"| {RUNTIME_NAMES[c.format]} | `{FORMAT_FILE[c.format]}` | "
            f"{'reference' if c.format == 'bnnx' else f'{c.disagreements} of {c.images}'} | "
            f"{'-' if c.format == 'bnnx' else f'{c.max_abs_diff:.3g}'} | {c.latency_ms:.3f} |"
            for c in checks)
        parts.append(
            f"## Formats checked against the packed model\nOn the first {checks[0].images} "
            "validation images of the dataset, at export time: predictions that differ, and the "
            f"largest logit difference (tolerance {checks[0].tolerance:.3g} = {RTOL:g} x "
            "max(1, largest packed |logit|); a format beyond it, or with any prediction "
            "differing, is not exported). Latency: "
            f"batch 1, median of {LATENCY_REPEATS} calls, {LATENCY_THREADS} thread, the runtimes "
            "timed interleaved on this machine.\n\n"
            "| runtime | file | predictions differing | max abs logit difference | latency ms |\n"
            "|---|---|---|---|---|\n" + rows + "\n")
    return "\n".join(parts)


FORMAT_LINES = {
    "onnx": "`model.onnx`: ONNX, a float simulation of the binary layers (any ONNX runtime).",
    "openvino": "`model.xml` + `model.bin`: OpenVINO IR, binary convolutions on OpenVINO's CPU "
                "plugin.",
}
FORMAT_FILE = {"bnnx": "model.bnnx", "onnx": ONNX_FILE, "openvino": OPENVINO_XML}
RUN_IT = {
    "bnnx": """### bnnx (packed bits: XNOR + popcount on the CPU)
```
bnnx predict --model THIS_FOLDER --input images.npy
```
```python
import kernels
model = kernels.load("model.bnnx", threads=1)
logits = model(images)  # (N, H, W) or (N, C, H, W) raw images

from search import torch_model
net = torch_model("THIS_FOLDER")  # the torch model, e.g. to fine-tune it
```
""",
    "openvino": """### OpenVINO (`model.xml` + `model.bin`, binary convolutions)
```
bnnx predict --model THIS_FOLDER/model.xml --input images.npy
```
```python
import openvino as ov
core = ov.Core()
model = core.read_model("model.xml")  # saved for batch 1 (static shapes for the binary convs)
model.reshape([len(images), *model.input(0).get_partial_shape().to_shape()[1:]])
compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # not bf16
logits = compiled(images.astype("float32"))[0]  # images (N, C, H, W)
```
""",
    "onnx": """### ONNX Runtime (`model.onnx`)
A float simulation: each binary layer is a sign (x >= 0 -> +1, else -1) and a Conv or Gemm on
+-1 weights (times the weight scale), so any ONNX runtime runs it.
```
bnnx predict --model THIS_FOLDER/model.onnx --input images.npy
```
```python
import onnxruntime as ort
session = ort.InferenceSession("model.onnx")
logits = session.run(None, {"input": images.astype("float32")})[0]
```
""",
}
