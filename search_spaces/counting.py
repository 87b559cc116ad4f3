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
    hw, rows = resolution or arch.resolution, []
    layers = [("stem", arch.stem, arch.in_channels), *((f"block{i}", b, b.in_) for i, b in enumerate(arch.blocks)),
              ("head", arch.head, arch.last_channels)]
    for name, layer, cin in layers:
        parts = layer_parts(layer, cin, arch.num_classes)
        p, m, out_hw = parts_count(parts, hw)
        rows.append(LayerCount(name, kind_name(layer), (cin, hw, hw), (parts[-1].cout, out_hw, out_hw), p, m))
        hw = out_hw
    return rows


def count(arch: Arch, resolution: int | None = None) -> dict:
    rows = layer_counts(arch, resolution)
    return {"params": sum(r.params for r in rows), "macs": sum(r.macs for r in rows)}
