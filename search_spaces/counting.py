"""Shapes, parameters and multiply-adds per layer, computed from the IR alone.

Counts follow the builder exactly: conv weights (no bias before BN), BN affine
parameters, SE and head biases; MACs are those of convolutions and linear layers.
"""
from __future__ import annotations

from dataclasses import dataclass

from search_spaces.ir import Arch, Block


@dataclass(frozen=True)
class LayerCount:
    index: int          # 0 = stem, 1..n = blocks, n+1 = head
    name: str
    kind: str
    in_shape: tuple[int, int, int]   # C, H, W
    out_shape: tuple[int, int, int]
    params: int
    macs: int


def conv_out(size: int, kernel: int, stride: int) -> int:
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


def _conv(cin, cout, k, hw_out, groups=1, bn=True, bias=False):
    params = cout * (cin // groups) * k * k + (2 * cout if bn else 0) + (cout if bias else 0)
    return params, cout * (cin // groups) * k * k * hw_out * hw_out


def _se(channels: int, squeeze: int):
    params = channels * squeeze + squeeze + squeeze * channels + channels
    return params, 2 * channels * squeeze


def block_count(b: Block, hw_in: int) -> tuple[int, int, int]:
    """(params, macs, output H/W) of one block at input size hw_in."""
    hw = conv_out(hw_in, b.kernel, b.stride)
    parts = []
    if b.op == "ir":
        if b.mid != b.in_:
            parts.append(_conv(b.in_, b.mid, 1, hw_in))
        parts.append(_conv(b.mid, b.mid, b.kernel, hw, groups=b.mid))
        if b.se:
            parts.append(_se(b.mid, b.se.squeeze))
        parts.append(_conv(b.mid, b.out, 1, hw))
    else:
        parts.append(_conv(b.in_, b.out, b.kernel, hw))
        if b.se:
            parts.append(_se(b.out, b.se.squeeze))
    return sum(p for p, _ in parts), sum(m for _, m in parts), hw


def layer_counts(arch: Arch, resolution: int | None = None) -> list[LayerCount]:
    r = resolution or arch.resolution
    rows = []
    s = arch.stem
    hw = conv_out(r, s.kernel, s.stride)
    p, m = _conv(arch.in_channels, s.out, s.kernel, hw)
    rows.append(LayerCount(0, "stem", f"conv{s.kernel}x{s.kernel}", (arch.in_channels, r, r), (s.out, hw, hw), p, m))
    for i, b in enumerate(arch.blocks, 1):
        p, m, out_hw = block_count(b, hw)
        kind = ("conv" if b.op == "conv" else "dwsep" if b.mid == b.in_ else "mbconv") + f"{b.kernel}x{b.kernel}"
        rows.append(LayerCount(i, f"block{i - 1}", kind, (b.in_, hw, hw), (b.out, out_hw, out_hw), p, m))
        hw = out_hw
    h = arch.head
    cin = arch.last_channels
    p, m = _conv(cin, h.conv, 1, hw)
    width = h.conv
    if h.type == "mnv3":
        p += h.conv * h.hidden + h.hidden
        m += h.conv * h.hidden
        width = h.hidden
    p += width * arch.num_classes + arch.num_classes
    m += width * arch.num_classes
    rows.append(LayerCount(len(arch.blocks) + 1, "head", f"head_{h.type}", (cin, hw, hw), (arch.num_classes, 1, 1), p, m))
    return rows


def count(arch: Arch, resolution: int | None = None) -> dict:
    rows = layer_counts(arch, resolution)
    return {"params": sum(r.params for r in rows), "macs": sum(r.macs for r in rows)}
