"""8-bit models: onnxruntime's static post-training quantization, used for ops, networks and exports.

Integer-only inference as the MobileNet papers ship it (Jacob et al. 2018): weights int8 per
output channel, activations uint8 with ranges calibrated on sample inputs. The QDQ format is
onnxruntime's recommended one for CPUs: the graph keeps float ops between
QuantizeLinear/DequantizeLinear pairs and the session's optimizer fuses each DQ -> op -> Q into
an integer kernel (QLinearConv, QLinearAdd, ...) wherever the CPU provider has one; ops it has
none for stay float between a DQ and a Q, which `graph_report` shows. uint8 activations with
int8 weights are onnxruntime's choice for x86 (with or without VNNI; without it, 7-bit weights
would avoid saturation, which changes accuracy but not the graph or its speed much).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from search_spaces.errors import UserError

if TYPE_CHECKING:  # onnx loads only where a model is quantized: the CLI imports this module for PRECISIONS
    import onnx

PRECISIONS = ("fp32", "int8")
CALIBRATION_SAMPLES = 4    # random inputs for an op or a network timed for a table: ranges barely change speed
#: optimized-graph node types that only move data between the integer and float parts
CONVERSIONS = ("QuantizeLinear", "DequantizeLinear")
LAYOUT = ("Transpose", "Flatten", "Reshape", "ReorderInput", "ReorderOutput")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)


def random_inputs(model: onnx.ModelProto, n: int = CALIBRATION_SAMPLES, seed: int = 0) -> list[np.ndarray]:
    """Standard-normal inputs of the model's (fixed) input shape: for timing, any range will do."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(_input_shape(model)).astype(np.float32) for _ in range(n)]


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs advice (pre-processing) through the root logger for every model."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(model: onnx.ModelProto, inputs: Iterable[np.ndarray] | None = None) -> onnx.ModelProto:
    """The model statically quantized (QDQ, per-channel int8 weights, uint8 activations),
    calibrated (min/max) on `inputs`, arrays of the model's input shape (default: random ones)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = model.graph.input[0].name
    feeds = iter([{name: np.asarray(x, dtype=np.float32)} for x in (inputs if inputs is not None
                                                                     else random_inputs(model))])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    # quantize_static rewrites a ModelProto it is given in place (weights to external data): hand it a file
    with tempfile.TemporaryDirectory(prefix="nas-int8-") as tmp, _quiet():
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        quantized = onnx.load(dst)
    quantized.graph.name = model.graph.name
    return quantized


def for_precision(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """What a runner times for a table of `precision`: the float model, or it quantized on random inputs."""
    return quantize(model) if precision == "int8" else model


def optimized_node_types(model: onnx.ModelProto) -> collections.Counter:
    """Node types of the graph onnxruntime's CPU provider actually runs (after its fusions)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="nas-int8-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3  # its warning that an optimized graph is machine-specific
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def graph_report(model: onnx.ModelProto) -> dict[str, collections.Counter]:
    """A quantized model's optimized graph split into what runs on integers (QLinear*/QGemm
    kernels), what stays float (between a DequantizeLinear and a QuantizeLinear), the
    conversions between them, and layout-only nodes."""
    report = {"int8": collections.Counter(), "float": collections.Counter(),
              "conversion": collections.Counter(), "layout": collections.Counter()}
    for op_type, n in optimized_node_types(model).items():
        part = ("conversion" if op_type in CONVERSIONS else "layout" if op_type in LAYOUT
                else "int8" if op_type.startswith(("QLinear", "QGemm", "QAttention")) else "float")
        report[part][op_type] = n
    return report

