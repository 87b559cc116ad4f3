"""8-bit models: onnxruntime's static post-training quantization, used for ops, networks and exports.

Integer-only inference as the MobileNet papers ship it (Jacob et al. 2018): weights int8 per
output channel, activations uint8 with ranges calibrated on sample inputs. The QDQ format is
onnxruntime's recommended one for CPUs: the graph keeps float ops between
QuantizeLinear/DequantizeLinear pairs and the session's optimizer fuses each DQ -> op -> Q into
an integer kernel (QLinearConv, QLinearAdd, ...) wherever the CPU provider has one; ops it has
none for stay float between a DQ and a Q, which `graph_report` shows. It has none for h-swish
and the hard-sigmoid gate of SE, so `integer_hard_activations` first spells them with Mul, Add
and Clip, which it runs on integers: MobileNetV3 then runs integer-only from the first Q to the
last DQ (experiments/results/latency_int8.md gives what the float ones cost). uint8 activations with
int8 weights are onnxruntime's recommendation for x86 CPUs; weights keep all 8 bits (no
reduce_range), which is right for CPUs with VNNI such as the one the figures come from.
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


def precision_suffix(precision: str) -> str:
    """What names of a table or result file of this precision end with: nothing for fp32, "_int8"."""
    return "" if precision == "fp32" else f"_{precision}"


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


def integer_hard_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with HardSwish(x) = x * HardSigmoid(x) and HardSigmoid(x) = Clip(alpha * x + beta, 0, 1)
    written as Mul, Add, Clip (and Mul): same function, but every node has an integer kernel
    (the Clip becomes the Add's output range)."""
    import onnx
    from onnx import helper, numpy_helper

    out = onnx.ModelProto.FromString(model.SerializeToString())
    consts: dict[float, str] = {}

    def const(v: float) -> str:
        if v not in consts:
            consts[v] = f"hard_act_const_{len(consts)}"
            out.graph.initializer.append(numpy_helper.from_array(np.array(v, np.float32), consts[v]))
        return consts[v]

    nodes = []
    for node in out.graph.node:
        if node.op_type not in ("HardSwish", "HardSigmoid"):
            nodes.append(node)
            continue
        attrs = {a.name: a.f for a in node.attribute}  # HardSwish has none: alpha 1/6, beta 0.5
        alpha, beta = attrs.get("alpha", 0.2 if node.op_type == "HardSigmoid" else 1 / 6), attrs.get("beta", 0.5)
        x, y = node.input[0], node.output[0]
        gate = y if node.op_type == "HardSigmoid" else f"{y}_gate"
        nodes += [helper.make_node("Mul", [x, const(alpha)], [f"{y}_scaled"]),
                  helper.make_node("Add", [f"{y}_scaled", const(beta)], [f"{y}_shifted"]),
                  helper.make_node("Clip", [f"{y}_shifted", const(0.0), const(1.0)], [gate])]
        if node.op_type == "HardSwish":
            nodes.append(helper.make_node("Mul", [x, gate], [y]))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def quantize(model: onnx.ModelProto, inputs: Iterable[np.ndarray] | None = None,
             integer_hard: bool = True) -> onnx.ModelProto:
    """The model statically quantized (QDQ, per-channel int8 weights, uint8 activations),
    calibrated (min/max) on `inputs`, arrays of the model's input shape (default: random ones).
    `integer_hard=False` leaves h-swish and hard-sigmoid float (to measure what that costs)."""
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
        onnx.save(integer_hard_activations(model) if integer_hard else model, src)
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

