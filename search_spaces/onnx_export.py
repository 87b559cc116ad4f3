"""Modules built by `builder` -> ONNX graphs composed directly with `onnx.helper`.

Composing the graph ourselves takes milliseconds per op (torch.onnx.export takes
0.5-12 s), which is what makes measuring thousands of ops for a latency table
possible; the same code exports whole networks, so a table's ops and an exported
network are the same graph. BatchNorm is folded into the preceding conv (eval mode).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from search_spaces.atomic import atomic_write
from search_spaces.builder import ConvBNAct, GlobalPool, Layer, Linear, Net, SqueezeExcite, build_model
from search_spaces.ir import Arch

_ACT_OPS = {nn.ReLU: "Relu", nn.Hardswish: "HardSwish", nn.Sigmoid: "Sigmoid"}
OPSET = 17
IR_VERSION = 8  # onnxruntime 1.31 rejects the newest IR version onnx writes by default


class _Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, array: np.ndarray, prefix: str) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def act(self, x: str, module: nn.Module) -> str:
        if isinstance(module, nn.ReLU6):
            return self.op("Clip", [x, self.const(np.array(0.0), "min"), self.const(np.array(6.0), "max")])
        if isinstance(module, nn.Hardsigmoid):
            return self.op("HardSigmoid", [x], alpha=1.0 / 6, beta=0.5)
        return self.op(_ACT_OPS[type(module)], [x])

    def conv(self, x: str, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> str:
        w = conv.weight.detach().double().numpy()
        b = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(w.shape[0])
        if bn is not None:
            scale = bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.double().numpy() + bn.eps)
            w = w * scale[:, None, None, None]
            b = (b - bn.running_mean.double().numpy()) * scale + bn.bias.detach().double().numpy()
        k, s, p = conv.kernel_size, conv.stride, conv.padding
        return self.op("Conv", [x, self.const(w, "w"), self.const(b, "b")], kernel_shape=list(k),
                       strides=list(s), pads=[p[0], p[1], p[0], p[1]], group=conv.groups)

    def emit(self, m: nn.Module, x: str) -> str:
        if isinstance(m, ConvBNAct):
            y = self.conv(x, m[0], m[1])
            return self.act(y, m[2]) if len(m) > 2 else y
        if isinstance(m, SqueezeExcite):
            s = self.op("GlobalAveragePool", [x])
            s = self.act(self.conv(s, m.fc1), m.act)
            s = self.act(self.conv(s, m.fc2), m.gate)
            return self.op("Mul", [x, s])
        if isinstance(m, GlobalPool):
            return self.op("Flatten", [self.op("GlobalAveragePool", [x])], axis=1)
        if isinstance(m, Linear):  # dropout is the identity at inference
            y = self.op("Gemm", [x, self.const(m.weight.detach().numpy(), "w"),
                                 self.const(m.bias.detach().numpy(), "b")], transB=1)
            return self.act(y, m.act) if m.act is not None else y
        if isinstance(m, (Layer, nn.Sequential)):
            y = x
            for child in m.children():
                y = self.emit(child, y)
            return self.op("Add", [x, y]) if getattr(m, "residual", False) else y
        if isinstance(m, Net):
            return self.emit(m.head, self.emit(m.blocks, self.emit(m.stem, x)))
        raise TypeError(f"no ONNX mapping for {type(m).__name__}")


@torch.no_grad()
def module_to_onnx(module: nn.Module, input_shape: tuple[int, ...], graph_name: str = "net") -> onnx.ModelProto:
    """ONNX model of one builder module (a whole Net, a stem, a block or a head), batch 1."""
    g = _Graph()
    y = g.emit(module, "input")
    out_shape = tuple(module.eval()(torch.zeros(input_shape)).shape)
    graph = helper.make_graph(
        g.nodes, graph_name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, list(out_shape))],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nas-search_spaces")
    model.ir_version = IR_VERSION
    return model


def export_onnx(model_or_arch: Net | Arch, path: str | Path | None = None) -> onnx.ModelProto:
    """Export a network (its trained weights, or fresh ones for a bare Arch) to ONNX."""
    model = build_model(model_or_arch) if isinstance(model_or_arch, Arch) else model_or_arch
    arch = model.arch
    proto = module_to_onnx(model, (1, arch.in_channels, arch.resolution, arch.resolution))
    if path is not None:
        atomic_write(path, lambda tmp: onnx.save(proto, str(tmp)))
    return proto
