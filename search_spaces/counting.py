"""Shapes, parameters and multiply-adds per layer, computed from the IR alone.

Counts are the sums over each layer's parts (`anatomy`), which the builder builds one to
one: conv weights (no bias before BN), BN affine parameters, SE and head biases; MACs
are those of convolutions and linear layers.
"""
from __future__ import annotations

from dataclasses import dataclass

from search_spaces.anatomy import Part, kind_name, layer_parts
from search_spaces.ir import Arch


@dataclass(frozen=True)
class LayerCount:
    index: int          # 0 = stem, 1..n = blocks, n+1 = head
    name: str
    kind: str
    in_shape: tuple[int, int, int]   # C, H, W
    out_shape: tuple[int, int, int]
    params: int
    macs: int


def parts_count(parts: tuple[Part, ...], hw: int) -> tuple[int, int, int]:
    """(params, macs, output H/W) of parts applied in order at input size hw."""
    params = macs = 0
    for p in parts:
        n, m = p.count(hw)
        params, macs, hw = params + n, macs + m, p.out_hw(hw)
    return params, macs, hw


def layer_counts(arch: Arch, resolution: int | None = None) -> list[LayerCount]:
    r = resolution or arch.resolution
    s = arch.stem
    p, m, hw = parts_count(layer_parts(s, arch.in_channels), r)
    rows = [LayerCount(0, "stem", f"conv{s.kernel}x{s.kernel}", (arch.in_channels, r, r), (s.out, hw, hw), p, m)]
    for i, b in enumerate(arch.blocks, 1):
        p, m, out_hw = parts_count(layer_parts(b, b.in_), hw)
        rows.append(LayerCount(i, f"block{i - 1}", kind_name(b), (b.in_, hw, hw), (b.out, out_hw, out_hw), p, m))
        hw = out_hw
    h, cin = arch.head, arch.last_channels
    p, m, _ = parts_count(layer_parts(h, cin, arch.num_classes), hw)
    rows.append(LayerCount(len(arch.blocks) + 1, "head", f"head_{h.type}", (cin, hw, hw), (arch.num_classes, 1, 1), p, m))
    return rows


def count(arch: Arch, resolution: int | None = None) -> dict:
    rows = layer_counts(arch, resolution)
    return {"params": sum(r.params for r in rows), "macs": sum(r.macs for r in rows)}
